"""The fused LSTM/GRU cell ops equal the composition of primitive ops, in values and gradients.

On the CPU the fused ops compute with NumPy; with the CuPy test double (``fake_cupy``) they run the
kernels' C bodies, read as NumPy expressions, so the formulas in the kernels are checked here too.
On a real GPU (``device="cuda"``) the same tests run the compiled kernels.
"""

import numpy as np
import pytest
from fake_cupy import install
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import backend, ops


def lstm_unfused(gates, c):
    """c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c') with primitive ops (gate order i, f, g, o)."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c_new = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c_new.tanh(), c_new


def gru_unfused(input_gates, hidden_gates, h):
    """r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r h_n), h' = (1 - z) n + z h."""
    x_r, x_z, x_n = input_gates.chunk(3, dim=-1)
    h_r, h_z, h_n = hidden_gates.chunk(3, dim=-1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return (1 - z) * n + z * h


def lstm_fused(gates, c):
    return ops.LSTMCellPointwise.apply(gates, c)


def gru_fused(input_gates, hidden_gates, h):
    return ops.GRUCellPointwise.apply(input_gates, hidden_gates, h)


def leaves(shapes, device, scale=2.0):
    """float64 leaves on ``device`` with values spread over the nonlinearities' curved range."""
    generator = np.random.default_rng(sum(sum(s) for s in shapes))
    return [
        tg.tensor(scale * generator.standard_normal(s), device=device, requires_grad=True) for s in shapes
    ]


def values_and_grads(function, inputs, weights):
    """Outputs and the gradients of Σ w ⊙ output, as host arrays."""
    for t in inputs:
        t.grad = None
    outputs = function(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = sum((o * tg.tensor(w, device=o.device)).sum() for o, w in zip(outputs, weights))
    total.backward()
    return [o.numpy() for o in outputs], [t.grad.numpy() for t in inputs]


def assert_same(fused, unfused, inputs, n_outputs):
    generator = np.random.default_rng(7)
    with tg.no_grad():
        shapes = [o.shape for o in (lambda r: r if isinstance(r, tuple) else (r,))(unfused(*inputs))]
    weights = [generator.standard_normal(s) for s in shapes[:n_outputs]]
    fused_values, fused_grads = values_and_grads(fused, inputs, weights)
    values, grads = values_and_grads(unfused, inputs, weights)
    for got, expected in zip(fused_values + fused_grads, values + grads):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@given(batch=st.integers(1, 4), hidden=st.integers(1, 5))
def test_lstm_pointwise_equals_unfused_composition_in_values_and_gradients(batch, hidden):
    inputs = leaves([(batch, 4 * hidden), (batch, hidden)], "cpu")
    assert_same(lstm_fused, lstm_unfused, inputs, 2)


@given(batch=st.integers(1, 4), hidden=st.integers(1, 5))
def test_gru_pointwise_equals_unfused_composition_in_values_and_gradients(batch, hidden):
    inputs = leaves([(batch, 3 * hidden), (batch, 3 * hidden), (batch, hidden)], "cpu")
    assert_same(gru_fused, gru_unfused, inputs, 1)


def test_lstm_pointwise_passes_gradcheck(device):
    inputs = leaves([(3, 8), (3, 2)], device)
    assert tg.gradcheck(lstm_fused, inputs)


def test_gru_pointwise_passes_gradcheck(device):
    inputs = leaves([(3, 6), (3, 6), (3, 2)], device)
    assert tg.gradcheck(gru_fused, inputs)


def test_fused_cells_match_unfused_on_each_device(device):
    assert_same(lstm_fused, lstm_unfused, leaves([(5, 12), (5, 3)], device), 2)
    assert_same(gru_fused, gru_unfused, leaves([(5, 9), (5, 9), (5, 3)], device), 1)


def test_lstm_pointwise_with_only_h_used_gives_the_gradient_of_h_alone():
    gates, c = leaves([(2, 8), (2, 2)], "cpu")
    h, _ = lstm_fused(gates, c)
    h.sum().backward()
    expected_gates, expected_c = (t.detach().clone().requires_grad_() for t in (gates, c))
    lstm_unfused(expected_gates, expected_c)[0].sum().backward()
    np.testing.assert_allclose(gates.grad.numpy(), expected_gates.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(c.grad.numpy(), expected_c.grad.numpy(), atol=1e-12)


def test_fused_cells_keep_float32():
    gates, c = (t.detach().float().requires_grad_() for t in leaves([(2, 8), (2, 2)], "cpu"))
    h, c_new = lstm_fused(gates, c)
    (h.sum() + c_new.sum()).backward()
    assert h.dtype == c_new.dtype == gates.grad.dtype == tg.float32


def test_fused_cells_reject_gates_that_do_not_match_the_state():
    gates, c = leaves([(2, 7), (2, 2)], "cpu")
    with pytest.raises(ValueError, match=r"LSTMCellPointwise.*\(2, 7\).*\(2, 2\)"):
        lstm_fused(gates, c)
    input_gates, hidden_gates, h = leaves([(2, 6), (3, 6), (2, 2)], "cpu")
    with pytest.raises(ValueError, match="GRUCellPointwise"):
        gru_fused(input_gates, hidden_gates, h)


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_kernel_bodies_on_the_cuda_path_compute_the_cell_formulas(monkeypatch, dtype):
    """The CUDA branch runs the kernels' C text (read as NumPy by the double) against the CPU path."""
    inputs_cpu = [t.detach().to(dtype).requires_grad_() for t in leaves([(4, 12), (4, 3)], "cpu", 6.0)]
    gru_cpu = [t.detach().to(dtype).requires_grad_() for t in leaves([(4, 9), (4, 9), (4, 3)], "cpu", 6.0)]
    weights = [np.random.default_rng(1).standard_normal((4, 3)).astype(dtype)] * 2
    expected_lstm = values_and_grads(lstm_fused, inputs_cpu, weights)
    expected_gru = values_and_grads(gru_fused, gru_cpu, weights[:1])
    fake = install(monkeypatch)
    inputs_gpu = [t.detach().cuda().requires_grad_() for t in inputs_cpu]
    gru_gpu = [t.detach().cuda().requires_grad_() for t in gru_cpu]
    got_lstm = values_and_grads(lstm_fused, inputs_gpu, weights)
    got_gru = values_and_grads(gru_fused, gru_gpu, weights[:1])
    assert sorted(k.name for k in fake.kernels if k.calls) == [
        "tinygrad_rnn_gru_pointwise_backward",
        "tinygrad_rnn_gru_pointwise_forward",
        "tinygrad_rnn_lstm_pointwise_backward",
        "tinygrad_rnn_lstm_pointwise_forward",
    ]
    tolerance = 1e-5 if dtype == tg.float32 else 1e-12
    for got, expected in ((got_lstm, expected_lstm), (got_gru, expected_gru)):
        for a, b in zip(got[0] + got[1], expected[0] + expected[1]):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_kernels_are_built_once_per_definition(monkeypatch):
    fake = install(monkeypatch)
    for _ in range(3):
        h, c = lstm_fused(*(t.cuda() for t in leaves([(2, 8), (2, 2)], "cpu")))
        (h.sum() + c.sum()).backward()
    assert len(fake.kernels) == 2
    assert [k.calls for k in fake.kernels] == [3, 3]
    assert backend.fused_kernel(np.zeros(2), "T a", "T b", "b = a;", "copy") is None


def test_the_stand_in_evaluates_kernel_bodies_with_c_arithmetic(monkeypatch):
    """`1 / 2` is 0 in C: a kernel that relies on Python's division must fail here as on a GPU."""
    fake = install(monkeypatch)
    x = fake.asarray(np.array([2.0, 4.0]))
    halve_c = fake.ElementwiseKernel("T x", "T y", "y = x * (1 / 2)", "c_integer_division")
    halve_float = fake.ElementwiseKernel("T x", "T y", "y = x * (1.0 / 2)", "c_float_division")
    truncated = fake.ElementwiseKernel("T x", "T y", "y = x + (-7 / 2)", "c_truncation")
    assert backend.to_numpy(halve_c(x)).tolist() == [0.0, 0.0]
    assert backend.to_numpy(halve_float(x)).tolist() == [1.0, 2.0]
    assert backend.to_numpy(truncated(x)).tolist() == [-1.0, 1.0]  # -7 / 2 is -3 in C, not -4
    with pytest.raises(NotImplementedError, match="cannot read"):
        fake.ElementwiseKernel("T x", "T y", "y = x > 0 ? x : 0", "c_branch")
