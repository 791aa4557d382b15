"""Gradients through time computed forward: RTRL equals full BPTT (to 1e-10 in float64) for RNN, LSTM,
GRU, a two-layer LSTM and a custom cell, also online with a length that is not a multiple of ``every``;
UORO and forward gradients are unbiased (their means over many draws converge to the exact gradient)."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.online import RTRL, UORO, forward_gradient


class Tagger(nn.Module):
    """A recurrent layer and a linear read-out: ``model(chunk, hidden) -> (outputs, hidden)``."""

    def __init__(self, kind, layers=1, batch_first=False):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = getattr(nn, kind)(3, 4, num_layers=layers, batch_first=batch_first)
        self.head = nn.Linear(4, 2)

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(x, hidden)
        return self.head(out), hidden


class CustomCell(nn.Module):
    """h' = tanh(W x + U (h ⊙ σ(h)) + b), written with plain ops; output = V h'."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(3, 4)
        self.u = nn.Linear(4, 4, bias=False)
        self.v = nn.Linear(4, 2)

    def forward(self, x, hidden=None):
        h = tg.zeros(x.shape[1], 4, dtype=x.dtype) if hidden is None else hidden
        outputs = []
        for step in x.unbind(0):
            h = (self.w(step) + self.u(h * h.sigmoid())).tanh()
            outputs.append(self.v(h))
        return tg.stack(outputs), h


def _mse_sum(output, target):
    return ((output - target) ** 2).sum()


def _model(kind):
    tg.manual_seed(0)
    if kind == "custom":
        return CustomCell().double()
    if kind == "LSTM2":
        return Tagger("LSTM", layers=2).double()
    if kind == "GRU_batch_first":
        return Tagger("GRU", batch_first=True).double()
    return Tagger(kind).double()


def _data(steps, batch_first=False, seed=0):
    rng = np.random.default_rng(seed)
    shape = (2, steps) if batch_first else (steps, 2)
    return tg.tensor(rng.standard_normal((*shape, 3))), tg.tensor(rng.standard_normal((*shape, 2)))


def _bptt_gradient(model, inputs, targets, batch_first=False):
    """total.backward() on the fully unrolled graph of Σ_t loss_fn(output_t, target_t), step by step."""
    model.zero_grad()
    hidden, total = None, None
    for t in range(inputs.shape[1 if batch_first else 0]):
        x = inputs[:, t : t + 1] if batch_first else inputs[t : t + 1]
        y = targets[:, t : t + 1] if batch_first else targets[t : t + 1]
        output, hidden = model(x, hidden)
        loss = _mse_sum(output, y)
        total = loss if total is None else total + loss
    total.backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    return total.item(), grads


KINDS = ["RNN", "LSTM", "GRU", "LSTM2", "custom", "GRU_batch_first"]


@pytest.mark.parametrize("kind", KINDS)
def test_rtrl_equals_full_bptt(kind):
    model = _model(kind)
    batch_first = kind == "GRU_batch_first"
    inputs, targets = _data(5, batch_first)
    expected_loss, expected = _bptt_gradient(model, inputs, targets, batch_first)
    total, _ = RTRL(model, _mse_sum).accumulate(inputs, targets)
    assert total.item() == pytest.approx(expected_loss, rel=1e-12)
    for p, g in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-10)


def test_rtrl_equals_the_whole_sequence_run_of_the_layer():
    model = _model("LSTM")
    inputs, targets = _data(6)
    model.zero_grad()
    output, _ = model(inputs)
    _mse_sum(output, targets).backward()
    expected = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    RTRL(model, _mse_sum).accumulate(inputs, targets)
    for p, g in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["LSTM", "custom"])
def test_online_rtrl_yields_every_k_steps_and_sums_to_the_full_gradient(kind):
    """7 steps with every=3: yields after steps 3, 6 and 7; their gradients add up to BPTT's."""
    model = _model(kind)
    inputs, targets = _data(7)
    _, expected = _bptt_gradient(model, inputs, targets)
    learner = RTRL(model, _mse_sum)
    seen, total = [], 0.0
    for loss, hidden in learner.updates(inputs, targets, every=3):
        seen.append([p.grad.numpy().copy() for p in model.parameters()])
        total += loss.item()
        assert not (hidden[0] if isinstance(hidden, tuple) else hidden).requires_grad
    assert len(seen) == 3
    for p, g in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-10)
    # the first yield holds exactly the gradient of the first three steps' losses
    _, first = _bptt_gradient(model, inputs[:3], targets[:3])
    for got, g in zip(seen[0], first):
        np.testing.assert_allclose(got, g, rtol=1e-10, atol=1e-10)


def test_rtrl_carries_a_given_initial_state_and_returns_the_final_one():
    model = _model("GRU")
    inputs, targets = _data(4)
    h0 = tg.tensor(np.random.default_rng(5).standard_normal((1, 2, 4)))
    model.zero_grad()
    output, h_final = model(inputs, h0)
    _mse_sum(output, targets).backward()
    expected = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    _, hidden = RTRL(model, _mse_sum).accumulate(inputs, targets, hidden=h0)
    np.testing.assert_allclose(hidden.numpy(), h_final.numpy(), rtol=1e-12)
    for p, g in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-10, atol=1e-10)


def test_online_methods_refuse_bad_input():
    model = _model("RNN")
    inputs, targets = _data(4)
    with pytest.raises(ValueError, match="targets have 3"):
        RTRL(model, _mse_sum).accumulate(inputs, targets[:3])
    with pytest.raises(ValueError, match="every must be a positive int"):
        next(RTRL(model, _mse_sum).updates(inputs, targets, every=0))
    with pytest.raises(ValueError, match="num_directions"):
        forward_gradient(model, _mse_sum, inputs, targets, num_directions=0)
    with pytest.raises(TypeError, match=r"nn\.Module"):
        RTRL(lambda x, h: (x, h), _mse_sum).accumulate(inputs, targets)


def _estimates(draw, exact, samples):
    """The flat estimates of ``samples`` draws; per-coordinate z-scores of their mean against ``exact``."""
    rows = np.stack([draw(i) for i in range(samples)])
    standard_error = rows.std(axis=0, ddof=1) / np.sqrt(samples)
    z = np.abs(rows.mean(axis=0) - exact) / np.maximum(standard_error, 1e-12)
    return rows, z


def _flat_grads(model):
    return np.concatenate([p.grad.numpy().reshape(-1) for p in model.parameters()])


def test_uoro_is_an_unbiased_estimate_of_rtrl():
    """Mean of 300 UORO estimates (fixed seed) within 4.5 standard errors of the exact gradient in every
    coordinate (a false alarm for an unbiased estimator has probability < 1e-3 over the 54 coordinates)."""
    model = _model("RNN")
    for p in model.parameters():
        p.requires_grad_(True)
    inputs, targets = _data(3)
    _, expected = _bptt_gradient(model, inputs, targets)
    exact = np.concatenate([g.reshape(-1) for g in expected])
    generator = tg.Generator().manual_seed(0)

    def draw(_):
        model.zero_grad()
        UORO(model, _mse_sum, generator=generator).accumulate(inputs, targets)
        return _flat_grads(model)

    rows, z = _estimates(draw, exact, 300)
    assert z.max() < 4.5, f"largest z-score {z.max():.2f}"
    assert not np.allclose(rows[0], exact)  # a single draw is an estimate, not the exact gradient


def test_forward_gradient_is_unbiased_and_its_variance_falls_with_directions():
    """Mean of 300 draws within 4.5 standard errors in every coordinate; the total variance with 8
    directions is between 1/16 and 1/4 of that with 1 (1/8 expected)."""
    model = _model("LSTM")
    inputs, targets = _data(4)
    _, expected = _bptt_gradient(model, inputs, targets)
    exact = np.concatenate([g.reshape(-1) for g in expected])
    generator = tg.Generator().manual_seed(1)

    def draw_with(directions):
        def draw(_):
            model.zero_grad()
            forward_gradient(model, _mse_sum, inputs, targets, num_directions=directions, generator=generator)
            return _flat_grads(model)

        return draw

    one, z = _estimates(draw_with(1), exact, 300)
    assert z.max() < 4.5, f"largest z-score {z.max():.2f}"
    eight, _ = _estimates(draw_with(8), exact, 300)
    ratio = eight.var(axis=0).sum() / one.var(axis=0).sum()
    assert 1 / 16 < ratio < 1 / 4, ratio


def test_forward_gradient_leaves_the_loss_and_state_of_the_sequence():
    model = _model("GRU")
    inputs, targets = _data(4)
    expected_loss, _ = _bptt_gradient(model, inputs, targets)
    total, hidden = forward_gradient(model, _mse_sum, inputs, targets, num_directions=3)
    assert total.item() == pytest.approx(expected_loss, rel=1e-12)
    with tg.no_grad():
        np.testing.assert_allclose(hidden.numpy(), model(inputs)[1].numpy(), rtol=1e-12)
