"""Hand-derived backpropagation through time for RNN, LSTM and GRU, on raw arrays, with no tape.

These are the formulas of ``docs/bptt.md`` written out by hand. They serve twice: the tests hold the
engine's ``backward()`` on the unrolled modules against them (to 1e-10 in float64), and the benchmarks
hold the framework's speed against them, so they are written the way careful NumPy BPTT is written:

* the input projections of all timesteps in one matrix product before the loop;
* the read-out's forward, its weight gradient and its gradient into the hidden states in one product
  each over all steps;
* the recurrent weights' gradients in one product each after the backward loop, from the buffer of
  pre-activation gradients the loop fills;
* every per-step buffer allocated once, before the loops.

The model is one recurrent layer (PyTorch's layout, names ``weight_ih_l0`` ...) followed by a linear
read-out (``readout.weight`` (O, H), ``readout.bias`` (O,)), y_t = W_hy h_t + b_y, and the loss is
L = Σ_t L_t with a per-step mean-squared error or cross-entropy. Inputs are time-major: x (T, B, I).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import backend

CELLS = {"rnn": 1, "lstm": 4, "gru": 3}  # cell -> number of gate blocks stacked in weight_ih_l0
LOSSES = ("mse", "cross_entropy")
READOUT_WEIGHT, READOUT_BIAS = "readout.weight", "readout.bias"


@dataclass
class ReferenceResult:
    """What a reference pass returns.

    Attributes:
        loss: L = Σ_t L_t as a Python float.
        outputs: the read-out y_t for every step, (T, B, O).
        hidden: h_T, (B, H); ``cell`` is c_T for an LSTM, else None.
        grads: dL/dθ for every parameter (same names as the modules) and for ``h0`` (and ``c0``);
            empty when the gradient was not asked for.
        states: h_0 … h_T, (T+1, B, H).
        state_grads: dL/dh_t for t = 1 … T, (T, B, H): the read-out's W_hy^T dy_t plus dh_next, the
            gradient arriving from step t+1 (None when the gradient was not asked for).
    """

    loss: float
    outputs: Any
    hidden: Any
    cell: Any
    grads: dict[str, Any]
    states: Any = None
    state_grads: Any = None


def parameter_names(cell: str) -> list[str]:
    """The names of the parameters of ``cell`` ("rnn", "lstm", "gru") and its read-out, in order."""
    _check_cell(cell)
    return ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", READOUT_WEIGHT, READOUT_BIAS]


def init_params(
    cell: str,
    input_size: int,
    hidden_size: int,
    output_size: int,
    dtype: Any = "float64",
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Random parameters as PyTorch initialises them: every entry uniform in (-1/√H, 1/√H).

    Shapes: ``weight_ih_l0`` (G·H, I), ``weight_hh_l0`` (G·H, H), biases (G·H,), with G = 1, 4, 3 gate
    blocks for rnn, lstm, gru; ``readout.weight`` (O, H), ``readout.bias`` (O,).
    """
    gates = _check_cell(cell)
    xp = backend.xp_for(backend.device(device))
    rng = xp.random.default_rng(seed)
    bound = 1.0 / math.sqrt(hidden_size)
    shapes = {
        "weight_ih_l0": (gates * hidden_size, input_size),
        "weight_hh_l0": (gates * hidden_size, hidden_size),
        "bias_ih_l0": (gates * hidden_size,),
        "bias_hh_l0": (gates * hidden_size,),
        READOUT_WEIGHT: (output_size, hidden_size),
        READOUT_BIAS: (output_size,),
    }
    dtype = backend.as_dtype(dtype)
    return {name: (rng.random(shape) * (2 * bound) - bound).astype(dtype) for name, shape in shapes.items()}


def bptt(
    cell: str,
    params: dict[str, Any],
    inputs: Any,
    targets: Any,
    h0: Any = None,
    c0: Any = None,
    loss: str = "mse",
    reduction: str = "mean",
    compute_grad: bool = True,
) -> ReferenceResult:
    """Forward pass, loss and (unless ``compute_grad=False``) hand-derived BPTT gradients.

    Args:
        cell: "rnn" (h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)), "lstm" or "gru" (PyTorch's
            gate order i, f, g, o and r, z, n, the GRU's reset applied to (W_hn h + b_hn)).
        params: arrays named as in :func:`parameter_names`.
        inputs: x, (T, B, I). targets: (T, B, O) floats for "mse", (T, B) class indices for
            "cross_entropy".
        h0, c0: initial states (B, H); zeros when None.
        loss: "mse": L_t = Σ_b Σ_o (y_tbo - target_tbo)²;
            "cross_entropy": L_t = -Σ_b log softmax(y_tb)[target_tb].
        reduction: "mean" divides L = Σ_t L_t by the number of terms (T·B·O for mse, T·B for cross-entropy),
            as ``F.mse_loss``/``F.cross_entropy`` over the whole sequence do; "sum" leaves it a sum.
    """
    gates = _check_cell(cell)
    if loss not in LOSSES:
        raise ValueError(f"bptt: loss must be one of {LOSSES}, got {loss!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"bptt: reduction must be 'mean' or 'sum', got {reduction!r}")
    missing = [name for name in parameter_names(cell) if name not in params]
    if missing:
        raise ValueError(f"bptt: params lacks {missing}")
    if inputs.ndim != 3:
        raise ValueError(f"bptt: inputs must be (T, B, I), got shape {tuple(inputs.shape)}")
    xp = backend.get_array_module(inputs)
    steps, batch, _ = inputs.shape
    hidden_size = params["weight_hh_l0"].shape[1]
    if params["weight_hh_l0"].shape != (gates * hidden_size, hidden_size):
        raise ValueError(
            f"bptt: weight_hh_l0 of a {cell} must be ({gates}·H, H), got {params['weight_hh_l0'].shape}"
        )
    dtype = params["weight_hh_l0"].dtype
    h0 = xp.zeros((batch, hidden_size), dtype) if h0 is None else h0
    if cell == "lstm":
        c0 = xp.zeros((batch, hidden_size), dtype) if c0 is None else c0

    x2 = inputs.reshape(steps * batch, -1)
    forward = {"rnn": _rnn_forward, "lstm": _lstm_forward, "gru": _gru_forward}[cell]
    hs, cache = forward(params, x2, h0, c0, steps, batch, xp)

    # Read-out of all steps in one product: y = H W_hy^T + b_y with H the (T·B, H) stack of h_1..h_T.
    h_all = hs[1:].reshape(steps * batch, hidden_size)
    w_hy = params[READOUT_WEIGHT]
    y2 = h_all @ w_hy.T
    y2 += params[READOUT_BIAS]
    outputs = y2.reshape(steps, batch, -1)
    value, dy2 = _loss_and_grad(loss, y2, targets, reduction, compute_grad, xp)
    cell_state = cache["cs"][-1] if cell == "lstm" else None
    if not compute_grad:
        return ReferenceResult(value, outputs, hs[-1], cell_state, {}, hs)

    grads = {READOUT_WEIGHT: dy2.T @ h_all, READOUT_BIAS: dy2.sum(axis=0)}
    # dL_t/dh_t from the read-out, for every t at once: W_hy^T dy_t.
    dh_out = (dy2 @ w_hy).reshape(steps, batch, hidden_size)
    backward = {"rnn": _rnn_backward, "lstm": _lstm_backward, "gru": _gru_backward}[cell]
    grads.update(backward(params, x2, hs, cache, dh_out, xp))
    # The backward loops added dh_next into dh_out in place: it now holds the total dL/dh_t.
    return ReferenceResult(value, outputs, hs[-1], cell_state, grads, hs, dh_out)


def rnn_bptt(
    params: dict[str, Any], inputs: Any, targets: Any, h0: Any = None, **options: Any
) -> ReferenceResult:
    """:func:`bptt` for the tanh RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    return bptt("rnn", params, inputs, targets, h0, **options)


def lstm_bptt(
    params: dict[str, Any], inputs: Any, targets: Any, h0: Any = None, c0: Any = None, **options: Any
) -> ReferenceResult:
    """:func:`bptt` for the LSTM (gates i, f, g, o stacked in that order, as PyTorch does)."""
    return bptt("lstm", params, inputs, targets, h0, c0, **options)


def gru_bptt(
    params: dict[str, Any], inputs: Any, targets: Any, h0: Any = None, **options: Any
) -> ReferenceResult:
    """:func:`bptt` for the GRU (gates r, z, n; reset applied after the recurrent product)."""
    return bptt("gru", params, inputs, targets, h0, **options)


# ---- helpers -----------------------------------------------------------------------------------------


def _check_cell(cell: str) -> int:
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}: expected one of {tuple(CELLS)}")
    return CELLS[cell]


def _sigmoid_(a: Any, xp: Any) -> None:
    """σ(a) in place, as ½(1 + tanh(a/2)): the same function, and it never overflows."""
    a *= 0.5
    xp.tanh(a, out=a)
    a += 1
    a *= 0.5


def _loss_and_grad(kind: str, y2: Any, targets: Any, reduction: str, compute_grad: bool, xp: Any) -> tuple:
    """The loss over the (T·B, O) read-out and dL/dy for every row (None without ``compute_grad``)."""
    rows, classes = y2.shape
    if kind == "mse":
        diff = y2 - targets.reshape(rows, classes)
        count = diff.size if reduction == "mean" else 1
        value = float((diff * diff).sum()) / count
        # L = Σ (y - target)² / count  ⇒  dL/dy = 2 (y - target) / count
        return value, (diff * (2.0 / count) if compute_grad else None)
    labels = targets.reshape(rows)
    shifted = y2 - y2.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows_index = xp.arange(rows)
    count = rows if reduction == "mean" else 1
    value = -float(log_probs[rows_index, labels].sum()) / count
    if not compute_grad:
        return value, None
    # L = -Σ log softmax(y)[label] / count  ⇒  dL/dy = (softmax(y) - onehot(label)) / count
    dy2 = xp.exp(log_probs)
    dy2[rows_index, labels] -= 1
    dy2 /= count
    return value, dy2


def _weight_grads(d_pre: Any, x2: Any, hs: Any, names: tuple[str, str, str, str], d_rec: Any = None) -> dict:
    """The four weight gradients from the pre-activation gradients of all steps, one product each.

    ``d_pre`` (T, B, G·H) is dL/da_t for the input side a_t = W_ih x_t + b_ih; ``d_rec`` for the recurrent
    side W_hh h_{t-1} + b_hh when it differs (the GRU's n gate), else the same array.
    """
    steps, batch, width = d_pre.shape
    d_pre2 = d_pre.reshape(steps * batch, width)
    d_rec2 = d_pre2 if d_rec is None else d_rec.reshape(steps * batch, width)
    h_prev = hs[:-1].reshape(steps * batch, hs.shape[-1])
    w_ih, w_hh, b_ih, b_hh = names
    return {
        w_ih: d_pre2.T @ x2,  # Σ_t dL/da_t x_t^T
        w_hh: d_rec2.T @ h_prev,  # Σ_t dL/da_t h_{t-1}^T: the shared weight collects a term per step
        b_ih: d_pre2.sum(axis=0),
        b_hh: d_rec2.sum(axis=0),
    }


_NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


# ---- vanilla RNN ---------------------------------------------------------------------------------------


def _rnn_forward(params: dict, x2: Any, h0: Any, c0: Any, steps: int, batch: int, xp: Any) -> tuple:
    w_hh = params["weight_hh_l0"]
    hidden_size = w_hh.shape[1]
    hs = xp.empty((steps + 1, batch, hidden_size), w_hh.dtype)
    hs[0] = h0
    # z_t = (W_ih x_t + b_ih + b_hh) + W_hh h_{t-1}; the bracket for all t in one product.
    z = (x2 @ params["weight_ih_l0"].T).reshape(steps, batch, hidden_size)
    z += params["bias_ih_l0"] + params["bias_hh_l0"]
    recurrent = xp.empty((batch, hidden_size), w_hh.dtype)
    w_hh_t = w_hh.T
    for t in range(steps):
        xp.matmul(hs[t], w_hh_t, out=recurrent)
        z[t] += recurrent
        xp.tanh(z[t], out=hs[t + 1])
    return hs, {}


def _rnn_backward(params: dict, x2: Any, hs: Any, cache: dict, dh_out: Any, xp: Any) -> dict:
    w_hh = params["weight_hh_l0"]
    steps, batch, hidden_size = dh_out.shape
    dz = xp.empty_like(dh_out)  # dL/dz_t for every t, filled by the loop
    dh_next = xp.zeros((batch, hidden_size), w_hh.dtype)  # dL/dh_t arriving from step t+1
    for t in range(steps - 1, -1, -1):
        # dL/dh_t = W_hy^T dy_t (read-out at t) + dh_next (everything after t)
        dh = dh_out[t]
        dh += dh_next
        h = hs[t + 1]
        # dz_t = dL/dh_t ⊙ tanh'(z_t) = dL/dh_t ⊙ (1 - h_t²)
        xp.multiply(h, h, out=dz[t])
        xp.subtract(1, dz[t], out=dz[t])
        dz[t] *= dh
        # dh_next for step t-1: (∂h_t/∂h_{t-1})^T dL/dh_t = W_hh^T dz_t
        xp.matmul(dz[t], w_hh, out=dh_next)
    grads = _weight_grads(dz, x2, hs, _NAMES)
    grads["h0"] = dh_next
    return grads


# ---- LSTM ----------------------------------------------------------------------------------------------


def _lstm_forward(params: dict, x2: Any, h0: Any, c0: Any, steps: int, batch: int, xp: Any) -> tuple:
    w_hh = params["weight_hh_l0"]
    hidden_size = w_hh.shape[1]
    hs = xp.empty((steps + 1, batch, hidden_size), w_hh.dtype)
    cs = xp.empty_like(hs)
    hs[0], cs[0] = h0, c0
    tanh_c = xp.empty((steps, batch, hidden_size), w_hh.dtype)
    # a_t = W_ih x_t + b_ih + b_hh + W_hh h_{t-1}, four blocks i, f, g, o; overwritten by the activations.
    gates = (x2 @ params["weight_ih_l0"].T).reshape(steps, batch, 4 * hidden_size)
    gates += params["bias_ih_l0"] + params["bias_hh_l0"]
    recurrent = xp.empty((batch, 4 * hidden_size), w_hh.dtype)
    w_hh_t = w_hh.T
    h1, h2, h3 = hidden_size, 2 * hidden_size, 3 * hidden_size
    for t in range(steps):
        a = gates[t]
        xp.matmul(hs[t], w_hh_t, out=recurrent)
        a += recurrent
        _sigmoid_(a[:, :h2], xp)  # i, f
        xp.tanh(a[:, h2:h3], out=a[:, h2:h3])  # g
        _sigmoid_(a[:, h3:], xp)  # o
        i, f, g, o = a[:, :h1], a[:, h1:h2], a[:, h2:h3], a[:, h3:]
        # c_t = f ⊙ c_{t-1} + i ⊙ g;  h_t = o ⊙ tanh(c_t)
        xp.multiply(f, cs[t], out=cs[t + 1])
        cs[t + 1] += i * g
        xp.tanh(cs[t + 1], out=tanh_c[t])
        xp.multiply(o, tanh_c[t], out=hs[t + 1])
    return hs, {"gates": gates, "cs": cs, "tanh_c": tanh_c}


def _lstm_backward(params: dict, x2: Any, hs: Any, cache: dict, dh_out: Any, xp: Any) -> dict:
    w_hh = params["weight_hh_l0"]
    steps, batch, hidden_size = dh_out.shape
    gates, cs, tanh_c = cache["gates"], cache["cs"], cache["tanh_c"]
    h1, h2, h3 = hidden_size, 2 * hidden_size, 3 * hidden_size
    d_gates = xp.empty_like(gates)  # dL/da_t for the four pre-activation blocks, every t
    dh_next = xp.zeros((batch, hidden_size), w_hh.dtype)  # dL/dh_t arriving from step t+1
    dc = xp.zeros((batch, hidden_size), w_hh.dtype)  # dL/dc_t; holds dc_next on entry to each step
    for t in range(steps - 1, -1, -1):
        a = gates[t]
        i, f, g, o = a[:, :h1], a[:, h1:h2], a[:, h2:h3], a[:, h3:]
        tc = tanh_c[t]
        dh = dh_out[t]
        dh += dh_next
        # dL/dc_t = dc_next (through c_{t+1} = f_{t+1} c_t + ...) + dL/dh_t ⊙ o ⊙ (1 - tanh² c_t)
        dc += dh * o * (1 - tc * tc)
        da = d_gates[t]
        # Each gate's pre-activation: the gate's share of dc (or dh), times its activation's derivative.
        xp.multiply(dc * g, i * (1 - i), out=da[:, :h1])  # i: ∂c/∂i = g
        xp.multiply(dc * cs[t], f * (1 - f), out=da[:, h1:h2])  # f: ∂c/∂f = c_{t-1}
        xp.multiply(dc * i, 1 - g * g, out=da[:, h2:h3])  # g: ∂c/∂g = i
        xp.multiply(dh * tc, o * (1 - o), out=da[:, h3:])  # o: ∂h/∂o = tanh c_t
        dc *= f  # dc_next for step t-1: ∂c_t/∂c_{t-1} = f_t
        xp.matmul(da, w_hh, out=dh_next)  # dh_next = W_hh^T dL/da_t
    grads = _weight_grads(d_gates, x2, hs, _NAMES)
    grads["h0"], grads["c0"] = dh_next, dc
    return grads


# ---- GRU -----------------------------------------------------------------------------------------------


def _gru_forward(params: dict, x2: Any, h0: Any, c0: Any, steps: int, batch: int, xp: Any) -> tuple:
    w_hh, b_hh = params["weight_hh_l0"], params["bias_hh_l0"]
    hidden_size = w_hh.shape[1]
    h2 = 2 * hidden_size
    hs = xp.empty((steps + 1, batch, hidden_size), w_hh.dtype)
    hs[0] = h0
    # Input side W_ih x_t + b_ih for all t (blocks r, z, n); overwritten by the gate activations.
    gates = (x2 @ params["weight_ih_l0"].T).reshape(steps, batch, 3 * hidden_size)
    gates += params["bias_ih_l0"]
    hn = xp.empty((steps, batch, hidden_size), w_hh.dtype)  # W_hn h_{t-1} + b_hn, which r multiplies
    recurrent = xp.empty((batch, 3 * hidden_size), w_hh.dtype)
    w_hh_t = w_hh.T
    for t in range(steps):
        a = gates[t]
        xp.matmul(hs[t], w_hh_t, out=recurrent)
        recurrent += b_hh
        a[:, :h2] += recurrent[:, :h2]
        _sigmoid_(a[:, :h2], xp)  # r, z
        r, z, n = a[:, :hidden_size], a[:, hidden_size:h2], a[:, h2:]
        hn[t] = recurrent[:, h2:]
        # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        n += r * hn[t]
        xp.tanh(n, out=n)
        # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1} = n + z ⊙ (h_{t-1} - n)
        h = hs[t + 1]
        xp.subtract(hs[t], n, out=h)
        h *= z
        h += n
    return hs, {"gates": gates, "hn": hn}


def _gru_backward(params: dict, x2: Any, hs: Any, cache: dict, dh_out: Any, xp: Any) -> dict:
    w_hh = params["weight_hh_l0"]
    steps, batch, hidden_size = dh_out.shape
    gates, hn = cache["gates"], cache["hn"]
    h2 = 2 * hidden_size
    d_input = xp.empty_like(gates)  # dL/d(W_ih x_t + b_ih), blocks r, z, n
    d_recurrent = xp.empty_like(gates)  # dL/d(W_hh h_{t-1} + b_hh): same r, z blocks, n block times r
    dh_next = xp.zeros((batch, hidden_size), w_hh.dtype)  # dL/dh_t arriving from step t+1
    for t in range(steps - 1, -1, -1):
        a = gates[t]
        r, z, n = a[:, :hidden_size], a[:, hidden_size:h2], a[:, h2:]
        h_prev = hs[t]
        dh = dh_out[t]
        dh += dh_next
        di, dr = d_input[t], d_recurrent[t]
        # n's pre-activation: dh ⊙ (1 - z) ⊙ (1 - n²)
        xp.multiply(dh * (1 - z), 1 - n * n, out=di[:, h2:])
        # z's: dh ⊙ (h_{t-1} - n) ⊙ z(1 - z);  r's: (dL/d n-pre ⊙ hn) ⊙ r(1 - r)
        xp.multiply(dh * (h_prev - n), z * (1 - z), out=di[:, hidden_size:h2])
        xp.multiply(di[:, h2:] * hn[t], r * (1 - r), out=di[:, :hidden_size])
        dr[:, :h2] = di[:, :h2]
        xp.multiply(di[:, h2:], r, out=dr[:, h2:])
        # dh_next = z ⊙ dh (the direct path) + W_hh^T dL/d(W_hh h_{t-1} + b_hh)
        xp.matmul(dr, w_hh, out=dh_next)
        dh_next += z * dh
    grads = _weight_grads(d_input, x2, hs, _NAMES, d_rec=d_recurrent)
    grads["h0"] = dh_next
    return grads


# ---- checking a user-written cell's hand-derived BPTT against the tape ---------------------------------


@dataclass
class CellBPTTCheck:
    """What :func:`check_cell_bptt` measured.

    Attributes:
        errors: max relative error max|hand − tape| / max|tape| for every parameter (by its name),
            every initial state (``d<name>_0``) and every state part's gradient over all steps
            (``d<name>_t``: ∂L/∂s_t as handed to ``hand_backward``, the other parts held fixed).
        tape: the gradients ``backward()`` computed, by the same keys (``d<name>_t`` stacked (T, ...)).
        hand: the gradients the hand-derived backward computed, by the same keys.
    """

    errors: dict[str, float]
    tape: dict[str, Any]
    hand: dict[str, Any]

    @property
    def max_error(self) -> float:
        """The largest of :attr:`errors`."""
        return max(self.errors.values())

    def assert_close(self, tolerance: float = 1e-8) -> None:
        """Raise ``AssertionError`` naming every term whose relative error exceeds ``tolerance``."""
        wrong = {name: error for name, error in self.errors.items() if not error <= tolerance}
        if wrong:
            listed = ", ".join(f"{name}: {error:.3g}" for name, error in sorted(wrong.items()))
            raise AssertionError(
                f"hand-derived BPTT differs from the tape (tolerance {tolerance:g}): {listed}"
            )


def check_cell_bptt(
    cell_fn: Any,
    hand_backward: Any,
    params: dict[str, Any],
    inputs: Any,
    state0: Any,
    state_names: tuple[str, ...] | None = None,
    seed: int = 0,
) -> CellBPTTCheck:
    """Hold a user-written cell's hand-derived BPTT against ``backward()`` on its unrolled tape.

    The cell maps (x_t, s_{t−1}) to s_t with parameters θ; the state s is one array (h) or a tuple
    (h, c, ...). Over T steps the helper builds the loss L = Σ_t Σ_k ⟨G_{t,k}, s_{t,k}⟩, with fixed random
    G (so ∂L/∂s_t has a direct part G_t at every step, as a read-out would give), and computes its
    gradient twice, in float64:

    * tape: ``cell_fn(params, x_t, state)`` on Tensors, unrolled T times, then ``L.backward()``;
    * hand: for t = T … 1, ``ds = G_t + ds_next`` (the total ∂L/∂s_t), then
      ``grads_t, ds_next = hand_backward(params, x_t, s_{t−1}, ds)``, and θ's gradient is Σ_t grads_t.

    Args:
        cell_fn: ``(params: dict[str, Tensor], x_t: Tensor, state) -> new state``, with Tensor ops;
            the state is a Tensor or a tuple of Tensors, the same structure as ``state0``.
        hand_backward: ``(params: dict[str, array], x_t: array, state_prev, d_state) ->
            (dict[str, array] of this step's parameter gradients, d_state_prev)`` on raw arrays;
            ``d_state`` is ∂L/∂s_t in total (direct plus from later steps), ``d_state_prev`` must be
            ∂L/∂s_{t−1} through this step only (the helper adds the direct part). It may recompute
            whatever forward quantities it needs from ``x_t`` and ``state_prev``.
        params: name -> array, the cell's parameters. inputs: x, (T, ...) (step t is ``inputs[t]``).
        state0: the initial state, an array or a tuple of arrays.
        state_names: names of the state's parts in the report; default ("h",) or ("s0", "s1", ...).
        seed: seeds the random G.

    Returns:
        A :class:`CellBPTTCheck`; ``.assert_close(tolerance)`` raises naming every term that differs.

    Raises:
        ValueError: no steps, a state or gradient of the wrong structure or shape, or a parameter
            gradient the hand backward left out (or one that names no parameter).
    """
    from .functions import tensor

    xp = backend.get_array_module(inputs)
    inputs = xp.asarray(inputs, dtype="float64")
    if inputs.ndim < 1 or inputs.shape[0] == 0:
        raise ValueError(f"check_cell_bptt: inputs must be (T, ...) with T ≥ 1, got shape {inputs.shape}")
    single = not isinstance(state0, tuple | list)
    states0 = [xp.asarray(s, dtype="float64") for s in ([state0] if single else state0)]
    if state_names is None:
        state_names = ("h",) if single else tuple(f"s{k}" for k in range(len(states0)))
    if len(state_names) != len(states0):
        raise ValueError(f"check_cell_bptt: {len(states0)} state parts but state_names {state_names}")
    arrays = {name: xp.asarray(value, dtype="float64") for name, value in params.items()}
    steps = inputs.shape[0]
    rng = xp.random.default_rng(seed)
    directs = [[rng.standard_normal(s.shape) for s in states0] for _ in range(steps)]

    def parts(state: Any, what: str) -> list:
        got = [state] if single else list(state) if isinstance(state, tuple | list) else None
        if got is None or len(got) != len(states0):
            raise ValueError(
                f"check_cell_bptt: {what} must have the structure of state0 ({len(states0)} parts)"
            )
        for value, like, name in zip(got, states0, state_names):
            if tuple(value.shape) != like.shape:
                shape = tuple(value.shape)
                raise ValueError(
                    f"check_cell_bptt: {what} part {name!r} has shape {shape}, expected {like.shape}"
                )
        return got

    # The tape.
    leaves = {name: tensor(value, requires_grad=True) for name, value in arrays.items()}
    start = [tensor(s, requires_grad=True) for s in states0]
    state = start[0] if single else tuple(start)
    recorded, probes, loss = [], [], None
    for t in range(steps):
        new_state = parts(cell_fn(leaves, tensor(inputs[t]), state), f"cell_fn's state at step {t}")
        # Each part is handed on through a zero probe leaf: the probe's gradient is ∂L/∂s_t as the
        # hand walk defines it (direct part plus later steps, the other parts of s_t held fixed),
        # not the total derivative a retained gradient would give when c_t also feeds h_t.
        handed = []
        for value, direct in zip(new_state, directs[t]):
            probe = tensor(xp.zeros(value.shape), requires_grad=True)
            probes.append(probe)
            recorded.append(value)
            value = value + probe
            handed.append(value)
            term = (value * tensor(direct)).sum()
            loss = term if loss is None else loss + term
        state = handed[0] if single else tuple(handed)
    loss.backward()
    tape: dict[str, Any] = {}
    for name, leaf in leaves.items():
        tape[name] = xp.asarray(leaf.grad.numpy()) if leaf.grad is not None else xp.zeros_like(arrays[name])
    count = len(states0)
    for k, name in enumerate(state_names):
        tape[f"d{name}_0"] = xp.asarray(start[k].grad.numpy())
        tape[f"d{name}_t"] = xp.stack([xp.asarray(probes[t * count + k].grad.numpy()) for t in range(steps)])

    # The hand-derived walk, on raw arrays.
    hand = {name: xp.zeros_like(value) for name, value in arrays.items()}
    totals = [xp.zeros((steps, *s.shape)) for s in states0]
    forward = [states0]
    with_values = [xp.asarray(s.numpy()) for s in recorded]
    for t in range(steps):
        forward.append(with_values[t * count : (t + 1) * count])
    carried = [xp.zeros_like(s) for s in states0]
    for t in range(steps - 1, -1, -1):
        d_state = [c + d for c, d in zip(carried, directs[t])]
        for k in range(count):
            totals[k][t] = d_state[k]
        previous = forward[t][0] if single else tuple(forward[t])
        result = hand_backward(arrays, inputs[t], previous, d_state[0] if single else tuple(d_state))
        if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[0], dict):
            raise ValueError(
                "check_cell_bptt: hand_backward must return (dict of parameter gradients, d_state_prev)"
            )
        grads, carried = result[0], parts(result[1], f"hand_backward's d_state_prev at step {t}")
        unknown, missing = set(grads) - set(arrays), set(arrays) - set(grads)
        if unknown or missing:
            raise ValueError(
                f"check_cell_bptt: hand_backward's gradients at step {t} lack {sorted(missing)} "
                f"and name no parameter {sorted(unknown)}"
            )
        for name, g in grads.items():
            if tuple(g.shape) != arrays[name].shape:
                raise ValueError(
                    f"check_cell_bptt: gradient of {name!r} has shape {tuple(g.shape)}, "
                    f"expected {arrays[name].shape}"
                )
            hand[name] += g
    for k, name in enumerate(state_names):
        hand[f"d{name}_0"] = carried[k]
        hand[f"d{name}_t"] = totals[k]

    errors = {}
    for name, expected in tape.items():
        scale = float(xp.abs(expected).max()) if expected.size else 0.0
        difference = float(xp.abs(hand[name] - expected).max()) if expected.size else 0.0
        errors[name] = difference / scale if scale > 0 else difference
    return CellBPTTCheck(errors, tape, hand)
