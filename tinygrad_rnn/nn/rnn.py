"""Recurrent layers (``RNN``, ``LSTM``, ``GRU``) with PyTorch's names, shapes, gate layouts and default
initialisation, and the elementwise step they share with the cells of ``cells.py``.

Nothing here differentiates by hand: a layer unrolls its recurrence as a loop of primitive ops on
the tape, and ``loss.backward()`` is backpropagation through time. The loop is kept lean because
its per-step cost is the whole cost of a small recurrent network:

* the input projection of every timestep is one matmul before the loop, ``(T*B, I) @ W_ihᵀ``, with
  the biases that simply add (RNN and LSTM: b_ih + b_hh) folded into it;
* one ``Unbind`` op splits that projection into T steps; ``W_hh`` is transposed once and the outputs
  are stacked once;
* inside the loop the recurrent product and the pointwise maths call the ops directly.

The elementwise maths of one step lives in the ``_*_pointwise`` functions below, so that a fused
kernel can replace exactly that part.

Gate layouts (rows of ``weight_ih``/``weight_hh``, as in PyTorch):
LSTM i, f, g, o: c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c').
GRU r, z, n: r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r ⊙ h_n), h' = (1 - z) n + z h,
where x_* = W_i* x + b_i* and h_* = W_h* h + b_h* (the reset gate multiplies W_hn h + b_hn).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

from .. import functions, ops
from ..tensor import Tensor
from . import init
from .module import Module, Parameter
from .packed import packed_forward
from .utils.rnn import PackedSequence

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- the switch between fused and plain steps ----------------------------------------------------------

_fused = True


class unfused:
    """Inside ``with nn.unfused():`` recurrent layers and cells record the plain ops of each step
    instead of the fused nodes, so the tape shows exactly the nodes of the derivation in docs/bptt.md.

    Per step: RNN ``MatMul -> Add -> Tanh`` (``Relu`` for ``nonlinearity='relu'``) instead of one
    ``TanhAddMatMul``; LSTM ``MatMul -> Add`` for the gates, ``Split`` into i, f, g, o, ``Sigmoid``/
    ``Tanh`` on each and ``Mul``/``Add`` for c' and h' instead of ``AddMatMul`` + ``LSTMCellPointwise``;
    GRU likewise for r, z, n and h' instead of ``GRUCellPointwise``. The input projection of a whole
    sequence is ``MatMul`` then ``Add`` instead of ``AddMatMul``. Values and gradients are the same
    (up to rounding); the fused tape is faster. Works as a decorator too.
    """

    def __enter__(self) -> None:
        global _fused
        self.previous, _fused = _fused, False

    def __exit__(self, *exc: Any) -> None:
        global _fused
        _fused = self.previous

    def __call__(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with unfused():
                return fn(*args, **kwargs)

        return wrapper


# ---- one step's elementwise maths (fused ops, or their plain ops under ``unfused()``) -----------------


def _rnn_tanh_pointwise(gates: Tensor) -> Tensor:
    """h' = tanh(gates), gates = W_ih x + b_ih + W_hh h + b_hh."""
    return ops.Tanh.apply(gates)


def _rnn_relu_pointwise(gates: Tensor) -> Tensor:
    """h' = relu(gates)."""
    return ops.Relu.apply(gates)


def _lstm_pointwise(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """gates (B, 4H) laid out i, f, g, o; returns h' = σ(o) tanh(c'), c' = σ(f) c + σ(i) tanh(g).

    One fused op on every device: one kernel on a GPU, and on the CPU one node instead of eleven per
    step, which measured 1.43x -> 1.22x the hand-written BPTT's time at the medium size (see
    docs/performance.md).
    """
    if _fused:
        return ops.LSTMCellPointwise.apply(gates, c)
    a_i, a_f, a_g, a_o = ops.Split.apply(gates, sizes=_quarters(gates, 4), dim=gates.ndim - 1)
    i, f, o = ops.Sigmoid.apply(a_i), ops.Sigmoid.apply(a_f), ops.Sigmoid.apply(a_o)
    g = ops.Tanh.apply(a_g)
    c_new = ops.Add.apply(ops.Mul.apply(f, c), ops.Mul.apply(i, g))
    return ops.Mul.apply(o, ops.Tanh.apply(c_new)), c_new


def _gru_pointwise(input_gates: Tensor, hidden_gates: Tensor, h: Tensor) -> Tensor:
    """input_gates = W_ih x + b_ih and hidden_gates = W_hh h + b_hh, both (B, 3H) laid out r, z, n;
    returns h' = n + z (h - n) = (1 - z) n + z h.

    One fused op on every device, as for the LSTM (medium size: 1.84x -> 1.16x the hand-written
    BPTT's time on the CPU).
    """
    if _fused:
        return ops.GRUCellPointwise.apply(input_gates, hidden_gates, h)
    x_r, x_z, x_n = ops.Split.apply(input_gates, sizes=_quarters(input_gates, 3), dim=input_gates.ndim - 1)
    h_r, h_z, h_n = ops.Split.apply(hidden_gates, sizes=_quarters(hidden_gates, 3), dim=hidden_gates.ndim - 1)
    r = ops.Sigmoid.apply(ops.Add.apply(x_r, h_r))
    z = ops.Sigmoid.apply(ops.Add.apply(x_z, h_z))
    n = ops.Tanh.apply(ops.Add.apply(x_n, ops.Mul.apply(r, h_n)))
    return ops.Add.apply(n, ops.Mul.apply(z, ops.Sub.apply(h, n)))


def _quarters(gates: Tensor, parts: int) -> tuple:
    """The sizes of the ``parts`` equal gate blocks of the last axis."""
    return (gates.shape[-1] // parts,) * parts


def _plain_addmm(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """a @ b + c as the two nodes MatMul -> Add (what ``AddMatMul`` fuses)."""
    return ops.Add.apply(ops.MatMul.apply(a, b), c)


# ---- shared parameter handling -------------------------------------------------------------------------


def _check_size(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


def _new_parameter(shape: tuple[int, ...], dtype: Any, device: Any) -> Parameter:
    return Parameter(functions.empty(*shape, dtype=dtype, device=device))


def _reset_uniform(module: Module, hidden_size: int) -> None:
    """Every weight and bias from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for recurrent layers."""
    bound = 1.0 / math.sqrt(hidden_size)
    for param in module.parameters():
        init.uniform_(param, -bound, bound)


def _check_dtype(owner: str, input: Tensor, weight: Tensor, label: str = "input") -> None:
    if input.dtype != weight.dtype:
        # Only floating dtypes can hold parameters, so for an integer input the model cannot follow it.
        model = f"model.to({str(input.dtype)!r}) or " if input.dtype.kind == "f" else ""
        raise TypeError(
            f"{owner}: {label} has dtype {input.dtype} but the parameters have dtype {weight.dtype}; "
            f"convert one of them (e.g. {model}{label}.to({str(weight.dtype)!r}))"
        )


# ---- layers ---------------------------------------------------------------------------------------------


class _RNNBase(Module):
    mode = "RNN_TANH"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_size(name, "input_size", input_size)
        _check_size(name, "hidden_size", hidden_size)
        _check_size(name, "num_layers", num_layers)
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.dropout = float(dropout)
        if dropout and num_layers == 1:
            warnings.warn(
                f"{name}: dropout is applied between recurrent layers, so dropout={dropout} has no effect "
                "with num_layers=1",
                stacklevel=2,
            )
        directions = 2 if bidirectional else 1
        rows = _GATES[self.mode] * hidden_size
        # Registration order is PyTorch's, so state_dict() lists the same names in the same order.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                setattr(self, "weight_ih" + suffix, _new_parameter((rows, layer_input), dtype, device))
                setattr(self, "weight_hh" + suffix, _new_parameter((rows, hidden_size), dtype, device))
                if bias:
                    setattr(self, "bias_ih" + suffix, _new_parameter((rows,), dtype, device))
                    setattr(self, "bias_hh" + suffix, _new_parameter((rows,), dtype, device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        _reset_uniform(self, self.hidden_size)

    def flatten_parameters(self) -> None:
        """Kept for code written for PyTorch's cuDNN layers; parameters here need no flattening."""

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text

    # ---- checks -----------------------------------------------------------------------------------

    def _check_input(self, input: Any) -> None:
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            layout = "(batch, seq_len, input_size)" if self.batch_first else "(seq_len, batch, input_size)"
            raise ValueError(
                f"{name}: expected a 3-D input {layout} or a 2-D unbatched input (seq_len, input_size), "
                f"got shape {input.shape}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input.size(-1) must be equal to input_size: expected {self.input_size}, "
                f"got {input.shape[-1]} (input shape {input.shape})"
            )
        if input.shape[0 if input.ndim == 2 or not self.batch_first else 1] == 0:
            raise ValueError(f"{name}: input has no time steps (seq_len = 0, input shape {input.shape})")
        _check_dtype(name, input, self.weight_ih_l0)

    def _check_hidden(self, hx: Any, label: str, batch: int, batched: bool) -> Tensor:
        """hx must be (layers × directions, B, H) (or without B for unbatched input)."""
        name = type(self).__name__
        directions = 2 if self.bidirectional else 1
        stacked = self.num_layers * directions
        expected = (stacked, batch, self.hidden_size) if batched else (stacked, self.hidden_size)
        if not isinstance(hx, Tensor):
            raise TypeError(f"{name}: {label} must be a Tensor, got {type(hx).__name__}")
        if hx.shape != expected:
            raise ValueError(
                f"{name}: expected {label} of shape {expected} (num_layers * num_directions = "
                f"{self.num_layers} * {directions}, batch = {batch}, hidden_size = {self.hidden_size}), "
                f"got {hx.shape}"
            )
        _check_dtype(name, hx, self.weight_ih_l0, label)
        return hx if batched else hx.reshape(stacked, 1, self.hidden_size)

    # ---- the unrolled loop ------------------------------------------------------------------------

    def _direction(self, layer_input: Tensor, suffix: str, reverse: bool, h: Tensor, c: Tensor | None) -> Any:
        """Run one layer in one direction over (T, B, I); returns (outputs (T, B, H), h_T, c_T)."""
        steps, batch, features = layer_input.shape
        weight_ih = self._parameters["weight_ih" + suffix]
        weight_hh_t = ops.Permute.apply(self._parameters["weight_hh" + suffix], dims=(1, 0))
        bias_ih = self._parameters.get("bias_ih" + suffix)
        bias_hh = self._parameters.get("bias_hh" + suffix)
        flat = ops.Reshape.apply(layer_input, shape=(steps * batch, features))
        weight_ih_t = ops.Permute.apply(weight_ih, dims=(1, 0))
        if bias_ih is None:
            projection = ops.MatMul.apply(flat, weight_ih_t)
        else:
            # b_hh adds straight onto W_ih x for RNN and LSTM; a GRU's b_hn sits inside r ⊙ (·). The
            # bias is added into the product's buffer (AddMatMul): no second (T·B, G·H) array.
            bias = bias_ih if self.mode == "GRU" else ops.Add.apply(bias_ih, bias_hh)
            if _fused:
                projection = ops.AddMatMul.apply(flat, weight_ih_t, bias)
            else:
                projection = ops.Add.apply(ops.MatMul.apply(flat, weight_ih_t), bias)
        rows = projection.shape[1]
        inputs = ops.Unbind.apply(ops.Reshape.apply(projection, shape=(steps, batch, rows)), dim=0)
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        outputs: list[Tensor] = []
        # One AddMatMul per step: W_hh h plus the step's slice of the projection, one node, one buffer.
        matmul = ops.MatMul.apply
        addmm = ops.AddMatMul.apply if _fused else _plain_addmm
        if self.mode == "LSTM":
            for t in order:
                h, c = _lstm_pointwise(addmm(h, weight_hh_t, inputs[t]), c)
                outputs.append(h)
        elif self.mode == "GRU":
            for t in order:
                if bias_hh is not None:
                    hidden_gates = addmm(h, weight_hh_t, bias_hh)
                else:
                    hidden_gates = matmul(h, weight_hh_t)
                h = _gru_pointwise(inputs[t], hidden_gates, h)
                outputs.append(h)
        elif self.mode == "RNN_TANH":
            # The whole step, tanh(h W_hhᵀ + projection slice), is one TanhAddMatMul node.
            for t in order:
                if _fused:
                    h = ops.TanhAddMatMul.apply(h, weight_hh_t, inputs[t])
                else:  # the three nodes of docs/bptt.md §3
                    h = ops.Tanh.apply(ops.Add.apply(ops.MatMul.apply(h, weight_hh_t), inputs[t]))
                outputs.append(h)
        else:
            for t in order:
                h = _rnn_relu_pointwise(addmm(h, weight_hh_t, inputs[t]))
                outputs.append(h)
        if reverse:
            outputs.reverse()
        return ops.Stack.apply(*outputs, dim=0), h, c

    def _run(self, input: Tensor, hx: Tensor | None, cx: Tensor | None) -> tuple[Tensor, Tensor, Any]:
        """The whole stack; input (T, B, I) batched, returns (output, h_n, c_n) in the batched layout."""
        batch = input.shape[1]
        directions = 2 if self.bidirectional else 1
        stacked = self.num_layers * directions
        is_lstm = self.mode == "LSTM"
        if hx is None:
            zeros = functions.zeros(batch, self.hidden_size, dtype=input.dtype, device=input.device)
            initial_h = [zeros] * stacked
            initial_c = [zeros] * stacked if is_lstm else None
        else:
            initial_h = (
                ops.Unbind.apply(hx, dim=0) if stacked > 1 else (ops.Reshape.apply(hx, shape=hx.shape[1:]),)
            )
            if is_lstm:
                initial_c = (
                    ops.Unbind.apply(cx, dim=0)
                    if stacked > 1
                    else (ops.Reshape.apply(cx, shape=cx.shape[1:]),)
                )
        final_h, final_c = [], []
        layer_input = input
        for layer in range(self.num_layers):
            results = []
            for direction in range(directions):
                index = layer * directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                c0 = initial_c[index] if is_lstm else None
                output, h_last, c_last = self._direction(
                    layer_input, suffix, bool(direction), initial_h[index], c0
                )
                results.append(output)
                final_h.append(h_last)
                final_c.append(c_last)
            layer_input = results[0] if directions == 1 else ops.Cat.apply(*results, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = functions.dropout(layer_input, p=self.dropout, training=True)
        h_n = ops.Stack.apply(*final_h, dim=0)
        c_n = ops.Stack.apply(*final_c, dim=0) if is_lstm else None
        return layer_input, h_n, c_n

    def _forward(self, input: Tensor, hx: Any) -> tuple[Any, Tensor, Any]:
        if isinstance(input, PackedSequence):
            return packed_forward(self, input, hx)
        self._check_input(input)
        batched = input.ndim == 3
        if not batched:
            input = input.reshape(input.shape[0], 1, self.input_size)
        elif self.batch_first:
            input = input.transpose(0, 1)
        batch = input.shape[1]
        h0 = c0 = None
        if hx is not None:
            if self.mode == "LSTM":
                if not isinstance(hx, tuple | list) or len(hx) != 2:
                    raise TypeError(f"{type(self).__name__}: hx must be a tuple (h_0, c_0) or None")
                h0 = self._check_hidden(hx[0], "h_0", batch, batched)
                c0 = self._check_hidden(hx[1], "c_0", batch, batched)
            else:
                h0 = self._check_hidden(hx, "hx", batch, batched)
        if input.device != self.weight_ih_l0.device:
            raise RuntimeError(
                f"{type(self).__name__}: input is on {input.device} but the parameters are on "
                f"{self.weight_ih_l0.device}; move one with .to(device)"
            )
        output, h_n, c_n = self._run(input, h0, c0)
        if not batched:
            output = output.reshape(output.shape[0], output.shape[2])
            h_n = h_n.reshape(h_n.shape[0], h_n.shape[2])
            c_n = None if c_n is None else c_n.reshape(c_n.shape[0], c_n.shape[2])
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, h_n, c_n


_LAYER_DOC = """

    Shapes (D = 2 if bidirectional else 1, L = num_layers): input (T, B, input_size), or (B, T,
    input_size) with ``batch_first``, or unbatched (T, input_size); output (T, B, D*H) in the input's
    layout, the top layer's hidden state at every step (both directions concatenated);
    h_n (D*L, B, H) (or (D*L, H) unbatched), the last state of every layer and direction, ordered
    layer 0 forward, layer 0 reverse, layer 1 forward, ... ``dropout`` is applied to the outputs of
    every layer but the last, in training mode only. ``input`` may also be a ``PackedSequence``
    (``nn.utils.rnn``): each sequence then runs to its own length only, output is a ``PackedSequence``
    and h_n holds each sequence's state at its own last step (see ``nn/packed.py``).

    Parameters, per layer k and direction (``_reverse`` for the backward one): ``weight_ih_lk``
    (G*H, input_size for k = 0 else D*H), ``weight_hh_lk`` (G*H, H), ``bias_ih_lk`` and
    ``bias_hh_lk`` (G*H,), with G the number of gates; all from U(-1/sqrt(H), 1/sqrt(H)).
"""


class RNN(_RNNBase):
    """Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (``nonlinearity='relu'`` for relu),
    stacked ``num_layers`` deep. ``forward(input, hx=None)`` returns ``(output, h_n)``; G = 1."""

    __doc__ = (__doc__ or "") + _LAYER_DOC

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        # Set before Module.__init__, which needs the mode to size the weights.
        object.__setattr__(self, "mode", "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU")
        object.__setattr__(self, "nonlinearity", nonlinearity)
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype
        )

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, h_n, _ = self._forward(input, hx)
        return output, h_n


class LSTM(_RNNBase):
    """LSTM with gates i, f, g, o: c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g), h_t = σ(o) ⊙ tanh(c_t), where
    (i, f, g, o) = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh. ``forward(input, (h_0, c_0)=None)`` returns
    ``(output, (h_n, c_n))``, c_n shaped like h_n; G = 4."""

    __doc__ = (__doc__ or "") + _LAYER_DOC
    mode = "LSTM"

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple]:
        output, h_n, c_n = self._forward(input, hx)
        return output, (h_n, c_n)


class GRU(_RNNBase):
    """GRU with gates r, z, n: r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}.
    ``forward(input, hx=None)`` returns ``(output, h_n)``; G = 3."""

    __doc__ = (__doc__ or "") + _LAYER_DOC
    mode = "GRU"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, h_n, _ = self._forward(input, hx)
        return output, h_n
