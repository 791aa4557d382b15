"""The NumPy fast path of the LSTM cell (``fastpaths.lstm_cell_forward``/``lstm_cell_backward``, what
``LSTMCellPointwise`` runs on the CPU) gives the plain path's values and gradients: the gate
formulas written with primitive ops, and ``nn.unfused()`` layers, in float64."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import fastpaths, nn, ops


def _plain_cell(gates, c):
    """c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c') with primitive ops (gate order i, f, g, o)."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c_new.tanh(), c_new


def _values_and_grads(function, shape, seed, scale, use_h=True, use_c=True):
    rng = np.random.default_rng(seed)
    hidden = shape[-1]
    gates = tg.tensor(scale * rng.standard_normal((*shape[:-1], 4 * hidden)), requires_grad=True)
    c = tg.tensor(scale * rng.standard_normal(shape), requires_grad=True)
    h_new, c_new = function(gates, c)
    total = 0
    if use_h:
        total = total + (h_new * tg.tensor(rng.standard_normal(shape))).sum()
    if use_c:
        total = total + (c_new * tg.tensor(rng.standard_normal(shape))).sum()
    total.backward()
    return [h_new.numpy(), c_new.numpy(), gates.grad.numpy(), c.grad.numpy()]


@given(
    shape=st.sampled_from([(3,), (2, 3), (4, 1), (2, 3, 5)]),
    seed=st.integers(0, 1000),
    scale=st.sampled_from([0.1, 1.0, 4.0]),
    which=st.sampled_from([(True, True), (True, False), (False, True)]),
)
def test_lstm_cell_fast_path_matches_the_plain_gate_formulas(shape, seed, scale, which):
    fast = _values_and_grads(ops.LSTMCellPointwise.apply, shape, seed, scale, *which)
    plain = _values_and_grads(_plain_cell, shape, seed, scale, *which)
    for name, got, want in zip(["h", "c", "dgates", "dc"], fast, plain):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13, err_msg=name)


def test_lstm_cell_fast_path_saturates_without_warnings_or_nans():
    gates = np.array([[-1000.0, 1000.0, -1000.0, 1000.0]])
    with np.errstate(all="raise"):
        h_new, c_new, activations, _ = fastpaths.lstm_cell_forward(gates, np.array([[0.5]]))
    np.testing.assert_array_equal(activations[:, 0, 0], [0.0, 1.0, -1.0, 1.0])
    np.testing.assert_allclose(c_new, [[0.5]])
    np.testing.assert_allclose(h_new, [[np.tanh(0.5)]])


def test_lstm_cell_fast_path_keeps_float32():
    gates = np.ones((2, 8), dtype=np.float32)
    c = np.ones((2, 2), dtype=np.float32)
    h_new, c_new, activations, tanh_c = fastpaths.lstm_cell_forward(gates, c)
    grad_gates, grad_c = fastpaths.lstm_cell_backward(activations, c, tanh_c, h_new, None)
    assert {a.dtype for a in (h_new, c_new, grad_gates, grad_c)} == {np.dtype(np.float32)}
    assert grad_gates.shape == (2, 8) and grad_c.shape == (2, 2)


def _lstm_model_gradients(num_layers: int, seed: int = 0) -> dict:
    tg.manual_seed(seed)
    layer = nn.LSTM(3, 5, num_layers=num_layers, dtype=tg.float64)
    readout = nn.Linear(5, 4, dtype=tg.float64)
    rng = np.random.default_rng(seed)
    x = tg.tensor(rng.standard_normal((6, 2, 3)), dtype=tg.float64, requires_grad=True)
    h0 = tg.tensor(rng.standard_normal((num_layers, 2, 5)), dtype=tg.float64, requires_grad=True)
    c0 = tg.tensor(rng.standard_normal((num_layers, 2, 5)), dtype=tg.float64, requires_grad=True)
    targets = tg.tensor(rng.integers(0, 4, size=(6, 2)))
    output, (_, c_n) = layer(x, (h0, c0))
    loss = F.cross_entropy(readout(output).reshape(-1, 4), targets.reshape(-1)) + (c_n * c_n).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in [*layer.named_parameters(), *readout.named_parameters()]}
    grads.update(x=x.grad.numpy(), h0=h0.grad.numpy(), c0=c0.grad.numpy())
    return grads


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_layer_with_the_fast_path_gives_the_unfused_gradients(num_layers):
    fast = _lstm_model_gradients(num_layers)
    with nn.unfused():
        plain = _lstm_model_gradients(num_layers)
    assert fast.keys() == plain.keys()
    for name, value in plain.items():
        np.testing.assert_allclose(fast[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_transposed_product_equals_the_plain_product_laid_out_column_major():
    rng = np.random.default_rng(3)
    a, g = rng.standard_normal((6, 4)), rng.standard_normal((6, 5))
    out = fastpaths.transposed_product(a, g)
    np.testing.assert_allclose(out, a.T @ g, rtol=1e-12)
    assert out.flags.f_contiguous


def test_deferred_weight_gradients_reach_grad_row_major_like_the_weights(monkeypatch):
    monkeypatch.setattr(fastpaths, "DEFER_MIN_BYTES", 0)
    deferred = _lstm_model_gradients(1)
    with nn.unfused():
        plain = _lstm_model_gradients(1)
    for name in ("weight_ih_l0", "weight_hh_l0"):
        np.testing.assert_allclose(deferred[name], plain[name], rtol=1e-10, atol=1e-12, err_msg=name)
        assert deferred[name].flags.c_contiguous, name
