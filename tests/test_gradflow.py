"""Gradients through time: per-step state gradients, the contribution ledger, Jacobian products and the
effective memory, checked against the hand-derived BPTT of ``reference.py`` and finite differences."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import gradflow, nn, reference
from tinygrad_rnn.nn import functional as F


def relative_error(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


class RNNWithReadout(nn.Module):
    """nn.RNN followed by nn.Linear: the derivation's model, called as output, hidden = model(x, hidden)."""

    def __init__(self, params, cell="rnn", batch_first=False):
        super().__init__()
        hidden_size, input_size = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = layer(input_size, hidden_size, batch_first=batch_first).double()
        self.readout = nn.Linear(hidden_size, params["readout.weight"].shape[0]).double()
        self.batch_first = batch_first
        self.load_state_dict(
            {("readout." + k[8:] if k.startswith("readout.") else "rnn." + k): v for k, v in params.items()}
        )

    def forward(self, x, hidden=None):
        output, hidden = self.rnn(x, hidden)
        return self.readout(output), hidden


def problem(cell="rnn", steps=7, batch=2, input_size=3, hidden_size=4, output_size=2, seed=0):
    rng = np.random.default_rng(seed)
    params = reference.init_params(cell, input_size, hidden_size, output_size, seed=seed)
    inputs = rng.standard_normal((steps, batch, input_size))
    targets = rng.standard_normal((steps, batch, output_size))
    return params, inputs, targets


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_dc_next(params, inputs, expected):
    """The hand-derived dc_next of every step, (T, B, H): dL/dc_t through c_{t+1} = f_{t+1} c_t + i g only.

    dc_t = dc_next_t + dL/dh_t ⊙ o_t ⊙ (1 - tanh² c_t) and dc_next_{t-1} = f_t ⊙ dc_t, from the forward
    pass recomputed here (its h_t checked against the reference's) and the reference's total dL/dh_t.
    """
    hidden_size = params["weight_hh_l0"].shape[1]
    h = c = np.zeros((inputs.shape[1], hidden_size))
    forgets, outs, cells = [], [], []
    for x, h_expected in zip(inputs, expected.states[1:]):
        a = (
            x @ params["weight_ih_l0"].T
            + params["bias_ih_l0"]
            + h @ params["weight_hh_l0"].T
            + params["bias_hh_l0"]
        )
        i, f, g, o = np.split(a, 4, axis=1)
        i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        assert relative_error(h, h_expected) < 1e-12
        forgets.append(f), outs.append(o), cells.append(c)
    dc_next = np.zeros_like(expected.state_grads)
    dc = np.zeros_like(h)
    for t in range(len(inputs) - 1, -1, -1):
        dc_next[t] = dc
        dc = (dc + expected.state_grads[t] * outs[t] * (1 - np.tanh(cells[t]) ** 2)) * forgets[t]
    return dc_next


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_gradient_norms_equal_the_hand_derived_dh_next(cell):
    params, inputs, targets = problem(cell)
    expected = reference.bptt(cell, params, inputs, targets)
    direct = (expected.outputs - targets) * (2 / targets.size) @ params["readout.weight"]
    model = RNNWithReadout(params, cell)
    got = gradflow.state_gradients(model, F.mse_loss, tg.tensor(inputs), tg.tensor(targets))
    assert abs(got.loss - expected.loss) < 1e-12
    assert got.total is None  # a read-out sits between h_t and y_t
    # The last step hands nothing on; every other dh_next is the total dL/dh_t minus the read-out's part.
    handed_on = [np.sum(g**2) for g in expected.state_grads - direct]
    if cell == "lstm":  # an LSTM also hands on c_t: the norm is over (dh_next, dc_next) jointly
        handed_on = [a + np.sum(dc**2) for a, dc in zip(handed_on, lstm_dc_next(params, inputs, expected))]
    assert relative_error(got.future, np.sqrt(handed_on)) < 1e-10
    assert got.future[-1] == 0
    assert all(p.grad is None for p in model.parameters())


def test_total_state_gradient_of_a_bare_layer_equals_the_hand_derived_dl_dh():
    # A read-out W_hy = I, b_y = 0 makes y_t = h_t, so the reference's dL/dh_t is what nn.RNN's output sees.
    params, inputs, _ = problem("gru", hidden_size=3, output_size=3)
    params["readout.weight"], params["readout.bias"] = np.eye(3), np.zeros(3)
    targets = np.random.default_rng(1).standard_normal((7, 2, 3))
    expected = reference.gru_bptt(params, inputs, targets)
    layer = nn.GRU(3, 3).double()
    layer.load_state_dict({k: v for k, v in params.items() if not k.startswith("readout")})
    got = gradflow.state_gradients(layer, F.mse_loss, tg.tensor(inputs), tg.tensor(targets))
    assert relative_error(got.total, [np.linalg.norm(g) for g in expected.state_grads]) < 1e-10


def stacked(cell, steps=6, batch=2, input_size=3, hidden_size=4):
    """A two-layer nn.RNN/LSTM/GRU with the reference's parameters per layer, and the bottom layer's h_t."""
    rng = np.random.default_rng(5)
    inputs = rng.standard_normal((steps, batch, input_size))
    targets = rng.standard_normal((steps, batch, hidden_size))
    identity = {"readout.weight": np.eye(hidden_size), "readout.bias": np.zeros(hidden_size)}
    bottom = {**reference.init_params(cell, input_size, hidden_size, 1, seed=1), **identity}
    top = {**reference.init_params(cell, hidden_size, hidden_size, 1, seed=2), **identity}
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](
        input_size, hidden_size, num_layers=2
    ).double()
    layer.load_state_dict(
        {
            name[:-1] + str(level): values[name]
            for level, values in enumerate((bottom, top))
            for name in values
            if not name.startswith("readout")
        }
    )
    h_bottom = reference.bptt(cell, bottom, inputs, targets, compute_grad=False).states[1:]
    return layer, inputs, targets, bottom, top, h_bottom


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_total_state_gradient_of_a_two_layer_model_is_the_top_layers(cell):
    # y_t is the top layer's h_t: its dL/dh_t is the reference's for the top layer fed the bottom's h_t.
    layer, inputs, targets, _, top, h_bottom = stacked(cell)
    expected = reference.bptt(cell, top, h_bottom, targets)
    got = gradflow.state_gradients(layer, F.mse_loss, tg.tensor(inputs), tg.tensor(targets))
    assert abs(got.loss - expected.loss) < 1e-12
    assert relative_error(got.total, [np.linalg.norm(g) for g in expected.state_grads]) < 1e-10


def test_future_state_gradient_of_a_two_layer_rnn_covers_both_layers():
    """dh_next of the top layer is dL/dh_t minus the output's part; the bottom layer's, by hand:
    dz_t = (W_ih(top)^T dz_t(top) + dh_next_t) ⊙ (1 - h_t²) and dh_next_{t-1} = W_hh^T dz_t."""
    layer, inputs, targets, bottom, top, h_bottom = stacked("rnn")
    expected = reference.bptt("rnn", top, h_bottom, targets)
    direct = (expected.outputs - targets) * (2 / targets.size)
    dz_top = expected.state_grads * (1 - expected.states[1:] ** 2)
    from_above = dz_top @ top["weight_ih_l0"]
    dh_next_bottom = np.zeros_like(from_above)
    for t in range(len(inputs) - 1, 0, -1):
        dz = (from_above[t] + dh_next_bottom[t]) * (1 - h_bottom[t] ** 2)
        dh_next_bottom[t - 1] = dz @ bottom["weight_hh_l0"]
    handed_on = np.sqrt(
        [np.sum(a**2) + np.sum(b**2) for a, b in zip(expected.state_grads - direct, dh_next_bottom)]
    )
    got = gradflow.state_gradients(layer, F.mse_loss, tg.tensor(inputs), tg.tensor(targets))
    assert relative_error(got.future, handed_on) < 1e-10
    assert relative_error(got.output, [np.linalg.norm(d) for d in direct]) < 1e-10


@pytest.mark.parametrize("measure", ["state_gradients", "contribution_ledger", "jacobian_products"])
def test_a_bidirectional_model_is_refused_since_it_cannot_run_one_step_at_a_time(measure):
    layer = nn.GRU(3, 4, bidirectional=True).double()
    inputs, targets = tg.tensor(np.ones((5, 2, 3))), tg.tensor(np.ones((5, 2, 8)))
    arguments = (inputs,) if measure == "jacobian_products" else (F.mse_loss, inputs, targets)
    with pytest.raises(ValueError, match="bidirectional"):
        getattr(gradflow, measure)(layer, *arguments)


def test_state_gradients_work_with_batch_first_and_an_unrolled_cell():
    params, inputs, targets = problem("lstm")
    cell = nn.LSTMCell(3, 4).double()
    cell.load_state_dict({k[:-3]: v for k, v in params.items() if k.endswith("_l0")})
    readout = nn.Linear(4, 2).double()
    readout.load_state_dict({"weight": params["readout.weight"], "bias": params["readout.bias"]})
    unrolled = gradflow.Unrolled(cell, readout, batch_first=True)
    got = gradflow.state_gradients(
        unrolled, F.mse_loss, tg.tensor(inputs.transpose(1, 0, 2)), tg.tensor(targets.transpose(1, 0, 2))
    )
    layered = gradflow.state_gradients(
        RNNWithReadout(params, "lstm"), F.mse_loss, tg.tensor(inputs), tg.tensor(targets)
    )
    assert abs(got.loss - layered.loss) < 1e-12
    assert relative_error(got.future, layered.future) < 1e-10
    assert relative_error(got.output, layered.output) < 1e-10


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_ledger_terms_sum_exactly_to_the_gradient(cell):
    params, inputs, targets = problem(cell, steps=6)
    model = RNNWithReadout(params, cell)
    ledger = gradflow.contribution_ledger(model, F.mse_loss, tg.tensor(inputs), tg.tensor(targets))
    loss = F.mse_loss(model(tg.tensor(inputs))[0], tg.tensor(targets))
    loss.backward()
    for name, p in model.named_parameters():
        assert len(ledger.terms[name]) == 6
        assert relative_error(sum(ledger.terms[name]), p.grad.numpy()) < 1e-12, name
        assert relative_error(ledger.grads[name], p.grad.numpy()) < 1e-12, name


def test_ledger_terms_are_the_derivations_per_step_terms():
    """For the vanilla RNN the step-k term of ∂L/∂W_hh is dz_k h_{k-1}^T with dz_k = dL/dh_k ⊙ (1 - h_k²),
    and the read-out's is dy_k h_k^T: computed here from the hand-derived reference."""
    params, inputs, targets = problem("rnn", steps=5)
    expected = reference.rnn_bptt(params, inputs, targets)
    hs = expected.states
    dz = expected.state_grads * (1 - hs[1:] ** 2)
    dy = (expected.outputs - targets) * (2 / targets.size)
    ledger = gradflow.contribution_ledger(
        RNNWithReadout(params), F.mse_loss, tg.tensor(inputs), tg.tensor(targets)
    )
    for k in range(5):
        assert relative_error(ledger.terms["rnn.weight_hh_l0"][k], dz[k].T @ hs[k]) < 1e-10
        assert relative_error(ledger.terms["rnn.weight_ih_l0"][k], dz[k].T @ inputs[k]) < 1e-10
        assert relative_error(ledger.terms["readout.weight"][k], dy[k].T @ hs[k + 1]) < 1e-10


def test_contribution_matrix_is_causal_and_its_rows_come_from_each_loss_alone():
    params, inputs, targets = problem("gru", steps=6)
    model = RNNWithReadout(params, "gru")
    ledger = gradflow.contribution_ledger(
        model, F.mse_loss, tg.tensor(inputs), tg.tensor(targets), by_loss_step=True
    )
    matrix = np.array(ledger.matrix)
    assert matrix.shape == (6, 6)
    assert np.all(np.triu(matrix, 1) == 0)  # L_t owes nothing to steps after t
    assert np.all(np.diag(matrix) > 0)
    # The last row, from a loss made of the last step's share of the mean-squared error alone.
    last_only = gradflow.contribution_ledger(
        model,
        lambda y, t: ((y[-1:] - t[-1:]) ** 2).sum() / t.numel(),
        tg.tensor(inputs),
        tg.tensor(targets),
    )
    row = [np.sqrt(sum(np.sum(last_only.terms[n][k] ** 2) for n in last_only.terms)) for k in range(6)]
    assert relative_error(matrix[-1], row) < 1e-10


def test_step_jacobians_of_a_tanh_cell_match_the_formula_diag_one_minus_h2_w_hh():
    params, inputs, _ = problem("rnn", steps=5)
    cell = nn.RNNCell(3, 4).double()
    cell.load_state_dict({k[:-3]: v for k, v in params.items() if k.endswith("_l0")})
    products = gradflow.jacobian_products(gradflow.Unrolled(cell), tg.tensor(inputs))
    hs = reference.rnn_bptt(params, inputs, np.zeros((5, 2, 2))).states
    for t in range(1, 6):
        for b in range(2):
            formula = np.diag(1 - hs[t, b] ** 2) @ params["weight_hh_l0"]
            assert relative_error(products.steps[t - 1][b], formula) < 1e-12


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_jacobian_products_match_finite_differences_of_the_unrolled_layer(cell):
    params, inputs, _ = problem(cell, steps=4, hidden_size=3)
    layer = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](3, 3).double()
    layer.load_state_dict({k: v for k, v in params.items() if not k.startswith("readout")})
    products = gradflow.jacobian_products(layer, tg.tensor(inputs))

    def final_state(state0, start, stop):
        parts = (
            (tg.tensor(state0[:3][None, None]), tg.tensor(state0[3:][None, None]))
            if cell == "lstm"
            else tg.tensor(state0[None, None])
        )
        with tg.no_grad():
            _, hidden = layer(tg.tensor(inputs[start:stop, :1]), parts)
        parts = hidden if cell == "lstm" else (hidden,)
        return np.concatenate([p.numpy()[0, 0] for p in parts])

    with tg.no_grad():
        _, start_state = layer(tg.tensor(inputs[:1, :1]))
    state = np.concatenate([p.numpy()[0, 0] for p in (start_state if cell == "lstm" else (start_state,))])
    eps, width = 1e-6, state.size
    numeric = np.zeros((width, width))
    for j in range(width):
        step = np.zeros(width)
        step[j] = eps
        numeric[:, j] = (final_state(state + step, 1, 4) - final_state(state - step, 1, 4)) / (2 * eps)
    assert relative_error(products.product(4, 1)[0], numeric) < 1e-7
    sigmas = products.largest_singular_values()
    assert sigmas[0] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert sigmas[3][0] == pytest.approx(
        np.linalg.svd(products.product(4, 1)[0], compute_uv=False)[0], rel=1e-12
    )


def test_product_rejects_an_order_backwards_in_time():
    _, inputs, _ = problem("rnn", steps=3)
    layer = nn.RNN(3, 4).double()
    products = gradflow.jacobian_products(layer, tg.tensor(inputs))
    with pytest.raises(ValueError, match="k <= t"):
        products.product(1, 2)


def test_effective_memory_is_the_first_lag_below_the_fraction():
    assert gradflow.effective_memory([1.0, 0.5, 0.2, 0.05, 0.001], fraction=0.1) == 3
    assert gradflow.effective_memory([1.0, 0.9, 0.8], fraction=0.1) == 3  # at least the horizon
    with pytest.raises(ValueError, match="fraction"):
        gradflow.effective_memory([1.0], fraction=1.5)


def test_effective_memory_grows_with_the_recurrent_weights_scale():
    rng = np.random.default_rng(0)
    inputs = tg.tensor(0.1 * rng.standard_normal((40, 1, 2)))
    memories = []
    for scale in (0.3, 0.9):
        cell = nn.RNNCell(2, 8).double()
        q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
        cell.weight_hh.data = tg.tensor(scale * q)
        sigmas = gradflow.jacobian_products(gradflow.Unrolled(cell), inputs).largest_singular_values()
        memories.append(gradflow.effective_memory([s[0] for s in sigmas], fraction=0.01))
    assert memories[0] < memories[1]


def undetached_training_loop(steps, detach, retain_graph):
    """The classic mistake: the hidden state carried from chunk to chunk without ``detach``."""
    from tinygrad_rnn import optim

    layer = nn.RNN(2, 3).double()
    optimizer = optim.SGD(layer.parameters(), lr=0.01)
    x = tg.tensor(np.random.default_rng(0).standard_normal((4, 1, 2)))
    hidden = None
    for _ in range(steps):
        if detach and hidden is not None:
            hidden = hidden.detach()
        output, hidden = layer(x, hidden)
        optimizer.zero_grad()
        output.sum().backward(retain_graph=retain_graph)
        optimizer.step()


def test_a_tape_growing_across_optimizer_steps_warns_with_the_fix():
    with pytest.warns(tg.autograd.StaleGraphWarning, match=r"hidden = hidden\.detach\(\)"):
        undetached_training_loop(3, detach=False, retain_graph=True)


def test_a_freed_tape_reached_after_an_optimizer_step_names_the_fix_in_the_error():
    with pytest.raises(RuntimeError, match=r"second time.*before the last optimizer step.*detach"):
        undetached_training_loop(3, detach=False, retain_graph=False)


def test_a_loop_that_detaches_the_hidden_state_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", tg.autograd.StaleGraphWarning)
        undetached_training_loop(4, detach=True, retain_graph=True)
        undetached_training_loop(4, detach=True, retain_graph=False)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_an_unbatched_input_gives_the_norms_of_a_batch_of_one(cell):
    layer, inputs, targets, *_ = stacked(cell, batch=1)
    batched = gradflow.state_gradients(layer, F.mse_loss, tg.tensor(inputs), tg.tensor(targets))
    unbatched = gradflow.state_gradients(layer, F.mse_loss, tg.tensor(inputs[:, 0]), tg.tensor(targets[:, 0]))
    for field in ("total", "future", "output"):
        assert relative_error(getattr(unbatched, field), getattr(batched, field)) < 1e-12, field
    with pytest.raises(ValueError, match=r"unbatched input .*\(inputs\.unsqueeze\(1\)\)"):
        gradflow.jacobian_products(layer, tg.tensor(inputs[:, 0]))
