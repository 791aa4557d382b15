"""The elementwise part of an LSTM or GRU cell as one op each, fused into one GPU kernel on CuPy.

A recurrent cell is two matrix products followed by a dozen elementwise ops (gate nonlinearities,
the cell update). Recorded op by op, every step of the sequence launches a dozen small kernels and
keeps a dozen intermediate arrays; here the elementwise part is one ``Function`` whose forward and
backward are each one ``cupy.ElementwiseKernel`` on a GPU. On NumPy the same ``Function`` computes
the same formulas with ``xp`` operations, so there is one op, two array modules, as everywhere else.

The kernel bodies are C, restricted to declarations and assignments of arithmetic, ``exp`` and
``tanh``, so that the tests can evaluate the very same text on the CPU (``tests/fake_cupy_kernel.py``).
σ(a) is written 1 / (1 + exp(-a)): on a GPU exp overflows to inf for large -a and σ correctly
becomes 0. The NumPy path computes σ as ½(1 + tanh(a/2)), which never overflows (so NumPy never
warns) and costs fewer array passes.
"""

from __future__ import annotations

from typing import Any

from . import backend, fastpaths
from .autograd import Function
from .forward_ad import batch_size, zeros_for

xp_of = backend.get_array_module


def _sigmoid(x: Any) -> Any:
    """σ(x) = ½(1 + tanh(x/2)): the same function, no overflow for any x, and one new array written
    in place four times instead of the two-sided form's six passes (measured on the GRU step)."""
    out = x * 0.5
    xp_of(x).tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def _split(array: Any, parts: int) -> list:
    """Views of the ``parts`` equal chunks of the last axis (the gate blocks of PyTorch's layout)."""
    size = array.shape[-1] // parts
    return [array[..., k * size : (k + 1) * size] for k in range(parts)]


def _check_gates(name: str, gates: Any, state: Any, parts: int) -> None:
    hidden = state.shape[-1]
    if gates.shape[-1] != parts * hidden or gates.shape[:-1] != state.shape[:-1]:
        raise ValueError(
            f"{name}: gates must have shape (..., {parts} * hidden_size) matching the state (..., "
            f"hidden_size); got gates {tuple(gates.shape)} and state {tuple(state.shape)}"
        )


# ---- LSTM ---------------------------------------------------------------------------------------------

LSTM_FORWARD = (
    "T a_in, T a_forget, T a_cell, T a_out, T c_prev",
    "T c_new, T h_new, T in_gate, T forget_gate, T cell_gate, T out_gate",
    """
    in_gate = 1 / (1 + exp(-a_in));
    forget_gate = 1 / (1 + exp(-a_forget));
    cell_gate = tanh(a_cell);
    out_gate = 1 / (1 + exp(-a_out));
    c_new = forget_gate * c_prev + in_gate * cell_gate;
    h_new = out_gate * tanh(c_new);
    """,
    "tinygrad_rnn_lstm_pointwise_forward",
)

LSTM_BACKWARD = (
    "T in_gate, T forget_gate, T cell_gate, T out_gate, T c_prev, T c_new, T grad_h, T grad_c",
    "T grad_a_in, T grad_a_forget, T grad_a_cell, T grad_a_out, T grad_c_prev",
    """
    T tanh_c = tanh(c_new);
    T grad_c_total = grad_c + grad_h * out_gate * (1 - tanh_c * tanh_c);
    grad_a_in = grad_c_total * cell_gate * in_gate * (1 - in_gate);
    grad_a_forget = grad_c_total * c_prev * forget_gate * (1 - forget_gate);
    grad_a_cell = grad_c_total * in_gate * (1 - cell_gate * cell_gate);
    grad_a_out = grad_h * tanh_c * out_gate * (1 - out_gate);
    grad_c_prev = grad_c_total * forget_gate;
    """,
    "tinygrad_rnn_lstm_pointwise_backward",
)


class LSTMCellPointwise(Function):
    """The elementwise part of an LSTM cell (PyTorch's gate order i, f, g, o).

    Inputs: ``gates`` (..., 4H) = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh and ``c_prev`` (..., H).
    Outputs ``(h_new, c_new)``, both (..., H)::

        i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

    Gradient, with gh = ∂L/∂h' and gc = ∂L/∂c' (zero when absent)::

        dc = gc + gh ⊙ o ⊙ (1 - tanh²(c'))
        da_i = dc ⊙ g ⊙ i(1 - i),  da_f = dc ⊙ c ⊙ f(1 - f),  da_g = dc ⊙ i ⊙ (1 - g²),
        da_o = gh ⊙ tanh(c') ⊙ o(1 - o),  dc_prev = dc ⊙ f

    One fused kernel for the forward and one for the backward on a GPU; on NumPy the same formulas in
    few array passes (``fastpaths.lstm_cell_forward``/``lstm_cell_backward``).
    """

    def forward(ctx, gates, c_prev):
        _check_gates("LSTMCellPointwise", gates, c_prev, 4)
        kernel = backend.fused_kernel(gates, *LSTM_FORWARD)
        if kernel is None:  # NumPy: the same formulas in few array passes (fastpaths.lstm_cell_forward)
            h_new, c_new, activations, tanh_c = fastpaths.lstm_cell_forward(gates, c_prev)
            ctx.save_for_backward(activations, c_prev, tanh_c)
            return h_new, c_new
        c_new, h_new, i, f, g, o = kernel(*_split(gates, 4), c_prev)
        ctx.save_for_backward(i, f, g, o, c_prev, c_new)
        return h_new, c_new

    def backward(ctx, grad_h, grad_c):
        if len(ctx.saved) == 3:
            activations, c_prev, tanh_c = ctx.saved
            grad_gates, grad_c_prev = fastpaths.lstm_cell_backward(
                activations, c_prev, tanh_c, grad_h, grad_c
            )
            return grad_gates, (grad_c_prev if ctx.needs_input_grad[1] else None)
        i, f, g, o, c_prev, c_new = ctx.saved
        xp = xp_of(c_new)
        if grad_h is None:
            grad_h = xp.zeros_like(c_new)
        if grad_c is None:
            grad_c = xp.zeros_like(c_new)
        grad_gates = xp.empty((*c_new.shape[:-1], 4 * c_new.shape[-1]), dtype=c_new.dtype)
        grad_c_prev = xp.empty_like(c_new)
        kernel = backend.fused_kernel(c_new, *LSTM_BACKWARD)
        kernel(i, f, g, o, c_prev, c_new, grad_h, grad_c, *_split(grad_gates, 4), grad_c_prev)
        return grad_gates, (grad_c_prev if ctx.needs_input_grad[1] else None)

    def jvp(ctx, primals, tangents, out):
        """With ȧ = (ȧ_i, ȧ_f, ȧ_g, ȧ_o) the gates' tangent and ċ the previous cell's (0 when absent)::

        di = i(1-i) ȧ_i, df = f(1-f) ȧ_f, dg = (1-g²) ȧ_g, do = o(1-o) ȧ_o
        ċ' = df ⊙ c + f ⊙ ċ + di ⊙ g + i ⊙ dg,   ḣ' = do ⊙ tanh(c') + o ⊙ (1 - tanh²(c')) ⊙ ċ'
        """
        c_new = out[1]
        if len(ctx.saved) == 3:  # the NumPy fast path saved the gates gate-major and tanh(c')
            activations, c_prev, tanh_c = ctx.saved
            i, f, g, o = (gate.reshape(c_new.shape) for gate in activations)
            tanh_c = tanh_c.reshape(c_new.shape)
        else:
            i, f, g, o, c_prev, _ = ctx.saved
            tanh_c = xp_of(c_new).tanh(c_new)
        t_gates, t_c = tangents
        xp = xp_of(c_new)
        size = batch_size(tangents)
        if t_gates is None:
            t_gates = zeros_for(primals[0], size)
        a_in, a_forget, a_cell, a_out = _split(t_gates, 4)
        c_dot = (i * (1 - i)) * a_in * g + (f * (1 - f)) * a_forget * c_prev + i * ((1 - g * g) * a_cell)
        if t_c is not None:
            c_dot = c_dot + f * t_c
        c_dot = xp.broadcast_to(c_dot, (size, *c_new.shape))
        h_dot = (o * (1 - o)) * a_out * tanh_c + (o * (1 - tanh_c * tanh_c)) * c_dot
        return xp.broadcast_to(h_dot, (size, *c_new.shape)), c_dot


# ---- GRU ----------------------------------------------------------------------------------------------

GRU_FORWARD = (
    "T x_r, T x_z, T x_n, T h_r, T h_z, T h_n, T h_prev",
    "T h_new, T reset, T update, T candidate",
    """
    reset = 1 / (1 + exp(-(x_r + h_r)));
    update = 1 / (1 + exp(-(x_z + h_z)));
    candidate = tanh(x_n + reset * h_n);
    h_new = (1 - update) * candidate + update * h_prev;
    """,
    "tinygrad_rnn_gru_pointwise_forward",
)

GRU_BACKWARD = (
    "T reset, T update, T candidate, T h_n, T h_prev, T grad_h",
    "T grad_x_r, T grad_x_z, T grad_x_n, T grad_h_n, T grad_h_prev",
    """
    T grad_a_n = grad_h * (1 - update) * (1 - candidate * candidate);
    grad_x_n = grad_a_n;
    grad_h_n = grad_a_n * reset;
    grad_x_r = grad_a_n * h_n * reset * (1 - reset);
    grad_x_z = grad_h * (h_prev - candidate) * update * (1 - update);
    grad_h_prev = grad_h * update;
    """,
    "tinygrad_rnn_gru_pointwise_backward",
)


class GRUCellPointwise(Function):
    """The elementwise part of a GRU cell (PyTorch's gate order r, z, n; r applied to W_hn h + b_hn).

    Inputs: ``input_gates`` (..., 3H) = x W_ihᵀ + b_ih, ``hidden_gates`` (..., 3H) = h W_hhᵀ + b_hh and
    ``h_prev`` (..., H). Output ``h_new`` (..., H)::

        r = σ(x_r + h_r),  z = σ(x_z + h_z),  n = tanh(x_n + r ⊙ h_n),  h' = (1 - z) ⊙ n + z ⊙ h

    Gradient, with gh = ∂L/∂h'::

        da_n = gh ⊙ (1 - z) ⊙ (1 - n²);  dx_n = da_n,  dh_n = da_n ⊙ r
        dx_r = dh_r = da_n ⊙ h_n ⊙ r(1 - r);  dx_z = dh_z = gh ⊙ (h - n) ⊙ z(1 - z);  dh = gh ⊙ z

    One fused kernel for the forward and one for the backward on a GPU; ``xp`` operations on NumPy.
    """

    def forward(ctx, input_gates, hidden_gates, h_prev):
        _check_gates("GRUCellPointwise", input_gates, h_prev, 3)
        _check_gates("GRUCellPointwise", hidden_gates, h_prev, 3)
        x_r, x_z, x_n = _split(input_gates, 3)
        h_r, h_z, h_n = _split(hidden_gates, 3)
        kernel = backend.fused_kernel(input_gates, *GRU_FORWARD)
        if kernel is not None:
            h_new, r, z, n = kernel(x_r, x_z, x_n, h_r, h_z, h_n, h_prev)
        else:
            xp = xp_of(input_gates)
            r, z = _sigmoid(x_r + h_r), _sigmoid(x_z + h_z)
            n = xp.tanh(x_n + r * h_n)
            h_new = (1 - z) * n + z * h_prev
        ctx.save_for_backward(r, z, n, h_n, h_prev)
        return h_new

    def backward(ctx, grad_h):
        r, z, n, h_n, h_prev = ctx.saved
        xp = xp_of(grad_h)
        hidden = h_prev.shape[-1]
        grad_input = xp.empty((*h_prev.shape[:-1], 3 * hidden), dtype=grad_h.dtype)
        grad_hidden = xp.empty_like(grad_input)
        grad_x_r, grad_x_z, grad_x_n = _split(grad_input, 3)
        grad_h_n = grad_hidden[..., 2 * hidden :]
        kernel = backend.fused_kernel(grad_h, *GRU_BACKWARD)
        if kernel is not None:
            grad_h_prev = xp.empty_like(h_prev)
            kernel(r, z, n, h_n, h_prev, grad_h, grad_x_r, grad_x_z, grad_x_n, grad_h_n, grad_h_prev)
        else:
            grad_a_n = grad_h * (1 - z) * (1 - n * n)
            grad_x_n[...] = grad_a_n
            grad_h_n[...] = grad_a_n * r
            grad_x_r[...] = grad_a_n * h_n * r * (1 - r)
            grad_x_z[...] = grad_h * (h_prev - n) * z * (1 - z)
            grad_h_prev = grad_h * z
        # The reset and update pre-activations enter as sums x + h: both halves get the same gradient.
        grad_hidden[..., : 2 * hidden] = grad_input[..., : 2 * hidden]
        return (
            grad_input if ctx.needs_input_grad[0] else None,
            grad_hidden if ctx.needs_input_grad[1] else None,
            grad_h_prev if ctx.needs_input_grad[2] else None,
        )

    def jvp(ctx, primals, tangents, out):
        """With ẋ_*, ḣ_* the gate blocks' tangents and ḣ the previous state's (0 when absent)::

        ṙ = r(1-r)(ẋ_r + ḣ_r),  ż = z(1-z)(ẋ_z + ḣ_z),  ṅ = (1-n²)(ẋ_n + ṙ ⊙ h_n + r ⊙ ḣ_n)
        ḣ' = ż ⊙ (h - n) + (1 - z) ⊙ ṅ + z ⊙ ḣ
        """
        r, z, n, h_n, h_prev = ctx.saved
        t_input, t_hidden, t_h = tangents
        size = batch_size(tangents)
        if t_input is None:
            t_input = zeros_for(primals[0], 1)
        if t_hidden is None:
            t_hidden = zeros_for(primals[1], 1)
        x_r, x_z, x_n = _split(t_input, 3)
        hr, hz, hn = _split(t_hidden, 3)
        r_dot = (r * (1 - r)) * (x_r + hr)
        z_dot = (z * (1 - z)) * (x_z + hz)
        n_dot = (1 - n * n) * (x_n + r_dot * h_n + r * hn)
        h_dot = z_dot * (h_prev - n) + (1 - z) * n_dot
        if t_h is not None:
            h_dot = h_dot + z * t_h
        return xp_of(h_dot).broadcast_to(h_dot, (size, *h_prev.shape)).copy()
