"""The hand-derived BPTT references: against finite differences of their own forward pass, and against
``backward()`` of the same networks unrolled on the tape."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import reference

CELLS = ["rnn", "lstm", "gru"]
LOSSES = ["mse", "cross_entropy"]


def relative_error(a, b):
    """max |a - b| / max |b|: the error measured against the gradient's own scale."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def make_problem(cell, loss, steps, batch, input_size, hidden_size, output_size, seed):
    rng = np.random.default_rng(seed)
    params = reference.init_params(cell, input_size, hidden_size, output_size, seed=seed)
    inputs = rng.standard_normal((steps, batch, input_size))
    if loss == "mse":
        targets = rng.standard_normal((steps, batch, output_size))
    else:
        targets = rng.integers(0, output_size, (steps, batch))
    h0 = 0.5 * rng.standard_normal((batch, hidden_size))
    c0 = 0.5 * rng.standard_normal((batch, hidden_size)) if cell == "lstm" else None
    return params, inputs, targets, h0, c0


def tape_loss(cell, weights, inputs, targets, h0, c0, loss, reduction="mean"):
    """The same network written with Tensor ops, one step at a time, so the tape does the BPTT."""
    w_ih, w_hh, b_ih, b_hh = (
        weights[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    hidden_size = w_hh.shape[1]
    h, c = h0, c0
    outputs = []
    for t in range(inputs.shape[0]):
        x = inputs[t]
        if cell == "rnn":
            h = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).tanh()
        elif cell == "lstm":
            i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).split(hidden_size, dim=1)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
        else:
            xr, xz, xn = (x @ w_ih.T + b_ih).split(hidden_size, dim=1)
            hr, hz, hn = (h @ w_hh.T + b_hh).split(hidden_size, dim=1)
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (xn + r * hn).tanh()
            h = (1 - z) * n + z * h
        outputs.append(h @ weights["readout.weight"].T + weights["readout.bias"])
    y = tg.stack(outputs, dim=0)
    if loss == "mse":
        total = ((y - tg.tensor(targets)) ** 2).sum()
        count = y.numel()
    else:
        log_probs = y.reshape(-1, y.shape[-1]).log_softmax(dim=1)
        total = -log_probs.gather(1, tg.tensor(targets.reshape(-1, 1))).sum()
        count = targets.size
    return total / count if reduction == "mean" else total


def tape_gradients(cell, params, inputs, targets, h0, c0, loss, reduction="mean"):
    weights = {name: tg.tensor(value, requires_grad=True) for name, value in params.items()}
    weights["h0"] = tg.tensor(h0, requires_grad=True)
    if c0 is not None:
        weights["c0"] = tg.tensor(c0, requires_grad=True)
    value = tape_loss(
        cell, weights, tg.tensor(inputs), targets, weights["h0"], weights.get("c0"), loss, reduction
    )
    value.backward()
    return value.item(), {name: w.grad.numpy() for name, w in weights.items()}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", LOSSES)
def test_reference_gradient_matches_finite_differences_of_its_own_forward(cell, loss):
    params, inputs, targets, h0, c0 = make_problem(cell, loss, 4, 2, 3, 4, 3, seed=7)
    result = reference.bptt(cell, params, inputs, targets, h0, c0, loss=loss)
    variables = dict(params, h0=h0, **({"c0": c0} if c0 is not None else {}))
    eps = 1e-6
    for name, array in variables.items():
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            kept = array[index]
            array[index] = kept + eps
            up = reference.bptt(cell, params, inputs, targets, h0, c0, loss=loss, compute_grad=False).loss
            array[index] = kept - eps
            down = reference.bptt(cell, params, inputs, targets, h0, c0, loss=loss, compute_grad=False).loss
            array[index] = kept
            numeric[index] = (up - down) / (2 * eps)
        assert relative_error(result.grads[name], numeric) < 1e-6, f"{cell}/{loss}: {name}"


@given(
    cell=st.sampled_from(CELLS),
    loss=st.sampled_from(LOSSES),
    reduction=st.sampled_from(["mean", "sum"]),
    steps=st.integers(1, 9),
    batch=st.integers(1, 4),
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 6),
    output_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_tape_backward_equals_hand_derived_bptt_to_1e10(
    cell, loss, reduction, steps, batch, input_size, hidden_size, output_size, seed
):
    params, inputs, targets, h0, c0 = make_problem(
        cell, loss, steps, batch, input_size, hidden_size, output_size, seed
    )
    result = reference.bptt(cell, params, inputs, targets, h0, c0, loss=loss, reduction=reduction)
    value, grads = tape_gradients(cell, params, inputs, targets, h0, c0, loss, reduction)
    assert abs(value - result.loss) <= 1e-12 * max(1.0, abs(value))
    assert set(grads) == set(result.grads)
    for name, grad in grads.items():
        assert relative_error(grad, result.grads[name]) < 1e-10, f"{cell}/{loss}: {name}"


@pytest.mark.parametrize("cell", CELLS)
def test_reference_outputs_and_final_state_match_the_tape_forward(cell):
    params, inputs, targets, h0, c0 = make_problem(cell, "mse", 6, 3, 2, 5, 2, seed=3)
    result = reference.bptt(cell, params, inputs, targets, h0, c0, compute_grad=False)
    weights = {name: tg.tensor(value) for name, value in params.items()}
    initial_cell = None if c0 is None else tg.tensor(c0)
    value = tape_loss(cell, weights, tg.tensor(inputs), targets, tg.tensor(h0), initial_cell, "mse")
    assert abs(value.item() - result.loss) < 1e-12
    assert result.outputs.shape == (6, 3, 2)
    assert result.hidden.shape == (3, 5)
    assert (result.cell is not None) == (cell == "lstm")
    assert result.grads == {}


def test_reference_runs_in_float32_and_keeps_the_dtype():
    params, inputs, targets, _, _ = make_problem("lstm", "mse", 5, 2, 3, 4, 2, seed=1)
    params32 = {name: value.astype(np.float32) for name, value in params.items()}
    result = reference.lstm_bptt(params32, inputs.astype(np.float32), targets.astype(np.float32))
    exact = reference.lstm_bptt(params, inputs, targets)
    for name, grad in result.grads.items():
        assert grad.dtype == np.float32, name
        assert relative_error(grad, exact.grads[name]) < 1e-4, name


def test_reference_rejects_unknown_cell_loss_and_bad_shapes():
    params, inputs, targets, _, _ = make_problem("rnn", "mse", 3, 2, 3, 4, 2, seed=0)
    with pytest.raises(ValueError, match="unknown cell"):
        reference.bptt("transformer", params, inputs, targets)
    with pytest.raises(ValueError, match="loss must be"):
        reference.bptt("rnn", params, inputs, targets, loss="hinge")
    with pytest.raises(ValueError, match=r"\(T, B, I\)"):
        reference.bptt("rnn", params, inputs[0], targets)
    with pytest.raises(ValueError, match="weight_hh_l0 of a lstm"):
        reference.bptt("lstm", params, inputs, targets)
    with pytest.raises(ValueError, match="lacks"):
        reference.bptt("rnn", {"weight_ih_l0": params["weight_ih_l0"]}, inputs, targets)


def test_reference_runs_on_each_device(device):
    params, inputs, targets, _, _ = make_problem("gru", "mse", 4, 2, 3, 4, 2, seed=5)
    on_device = {name: tg.tensor(value, device=device)._data for name, value in params.items()}
    result = reference.gru_bptt(
        on_device, tg.tensor(inputs, device=device)._data, tg.tensor(targets, device=device)._data
    )
    exact = reference.gru_bptt(params, inputs, targets)
    for name, grad in result.grads.items():
        assert relative_error(tg.backend.to_numpy(grad), exact.grads[name]) < 1e-10, name


MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def module_gradients(cell, params, inputs, targets, h0, c0, loss, reduction, batch_first=False):
    """The library's own modules, nn.RNN/LSTM/GRU and nn.Linear, unrolled on the tape by backward()."""
    from tinygrad_rnn import nn
    from tinygrad_rnn.nn import functional as F

    hidden_size, input_size = params["weight_hh_l0"].shape[1], params["weight_ih_l0"].shape[1]
    layer = getattr(nn, MODULES[cell])(input_size, hidden_size, batch_first=batch_first).double()
    readout = nn.Linear(hidden_size, params["readout.weight"].shape[0]).double()
    layer.load_state_dict(
        {n: params[n] for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")}
    )
    readout.load_state_dict({"weight": params["readout.weight"], "bias": params["readout.bias"]})
    initial = {"h0": tg.tensor(h0[None], requires_grad=True)}
    if c0 is not None:
        initial["c0"] = tg.tensor(c0[None], requires_grad=True)
    x = tg.tensor(inputs.transpose(1, 0, 2) if batch_first else inputs)
    hx = (initial["h0"], initial["c0"]) if cell == "lstm" else initial["h0"]
    output, _ = layer(x, hx)
    y = readout(output.transpose(0, 1) if batch_first else output)
    if loss == "mse":
        value = F.mse_loss(y, tg.tensor(targets), reduction=reduction)
    else:
        value = F.cross_entropy(
            y.reshape(-1, y.shape[-1]), tg.tensor(targets.reshape(-1)), reduction=reduction
        )
    value.backward()
    grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
    grads.update({"readout." + name: p.grad.numpy() for name, p in readout.named_parameters()})
    grads.update({name: t.grad.numpy()[0] for name, t in initial.items()})
    return value.item(), grads


@given(
    cell=st.sampled_from(CELLS),
    loss=st.sampled_from(LOSSES),
    reduction=st.sampled_from(["mean", "sum"]),
    batch_first=st.booleans(),
    steps=st.integers(1, 9),
    batch=st.integers(1, 4),
    input_size=st.integers(1, 5),
    hidden_size=st.integers(1, 6),
    output_size=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_module_backward_equals_hand_derived_bptt_for_every_parameter_and_initial_state(
    cell, loss, reduction, batch_first, steps, batch, input_size, hidden_size, output_size, seed
):
    params, inputs, targets, h0, c0 = make_problem(
        cell, loss, steps, batch, input_size, hidden_size, output_size, seed
    )
    result = reference.bptt(cell, params, inputs, targets, h0, c0, loss=loss, reduction=reduction)
    value, grads = module_gradients(cell, params, inputs, targets, h0, c0, loss, reduction, batch_first)
    assert abs(value - result.loss) <= 1e-12 * max(1.0, abs(value))
    assert set(grads) == set(result.grads)
    for name, grad in grads.items():
        assert relative_error(grad, result.grads[name]) < 1e-10, f"{cell}/{loss}: {name}"
