"""Recurrent cells, one step each: ``RNNCell``, ``LSTMCell``, ``GRUCell``, with PyTorch's names, shapes,
gate layouts and default initialisation. The elementwise maths of a step is shared with the layers
(``rnn.py``), which unroll the same step over a sequence.
"""

from __future__ import annotations

from typing import Any

from .. import functions
from ..tensor import Tensor
from .module import Module
from .rnn import (
    _GATES,
    _check_dtype,
    _check_size,
    _gru_pointwise,
    _lstm_pointwise,
    _new_parameter,
    _reset_uniform,
    _rnn_relu_pointwise,
    _rnn_tanh_pointwise,
)


class _CellBase(Module):
    mode = "RNN_TANH"

    def __init__(self, input_size: int, hidden_size: int, bias: bool, device: Any, dtype: Any) -> None:
        super().__init__()
        name = type(self).__name__
        _check_size(name, "input_size", input_size)
        _check_size(name, "hidden_size", hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        rows = _GATES[self.mode] * hidden_size
        self.weight_ih = _new_parameter((rows, input_size), dtype, device)
        self.weight_hh = _new_parameter((rows, hidden_size), dtype, device)
        if bias:
            self.bias_ih = _new_parameter((rows,), dtype, device)
            self.bias_hh = _new_parameter((rows,), dtype, device)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        _reset_uniform(self, self.hidden_size)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        return text

    def _prepare(self, input: Tensor, hx: Tensor | None, name: str) -> tuple[Tensor, Tensor, bool]:
        """Check shapes, add a batch axis to unbatched input; returns (input (B, I), hx (B, H), batched)."""
        cell = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{cell}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{cell}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), "
                f"got {input.shape}"
            )
        _check_dtype(cell, input, self.weight_ih)
        batched = input.ndim == 2
        if not batched:
            input = input.reshape(1, self.input_size)
        batch = input.shape[0]
        if hx is None:
            hx = functions.zeros(batch, self.hidden_size, dtype=input.dtype, device=input.device)
        else:
            expected = (batch, self.hidden_size) if batched else (self.hidden_size,)
            if not isinstance(hx, Tensor) or hx.shape != expected:
                got = hx.shape if isinstance(hx, Tensor) else type(hx).__name__
                raise ValueError(f"{cell}: expected {name} of shape {expected}, got {got}")
            if not batched:
                hx = hx.reshape(1, self.hidden_size)
        return input, hx, batched

    def _gates(self, input: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(W_ih x + b_ih, W_hh h + b_hh)."""
        input_gates = input @ self.weight_ih.T
        hidden_gates = h @ self.weight_hh.T
        if self.bias:
            input_gates = input_gates + self.bias_ih
            hidden_gates = hidden_gates + self.bias_hh
        return input_gates, hidden_gates


class RNNCell(_CellBase):
    """One step of an Elman RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu).

    Shapes: input (B, input_size) or (input_size,); hx (B, hidden_size) or (hidden_size,), zeros when
    omitted; returns h' of hx's shape. ``weight_ih`` (H, I), ``weight_hh`` (H, H), biases (H,).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        # Set before Module.__init__, which needs the mode to size the weights.
        object.__setattr__(self, "mode", "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU")
        object.__setattr__(self, "nonlinearity", nonlinearity)
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, hx, batched = self._prepare(input, hx, "hx")
        input_gates, hidden_gates = self._gates(input, hx)
        pointwise = _rnn_tanh_pointwise if self.mode == "RNN_TANH" else _rnn_relu_pointwise
        h = pointwise(input_gates + hidden_gates)
        return h if batched else h.reshape(self.hidden_size)


class LSTMCell(_CellBase):
    """One LSTM step with gates i, f, g, o (rows of the weights in that order):
    (i, f, g, o) = W_ih x + b_ih + W_hh h + b_hh; c' = σ(f) c + σ(i) tanh(g); h' = σ(o) tanh(c').

    Shapes: input (B, I) or (I,); hx = (h, c), each (B, H) or (H,), zeros when omitted; returns (h', c').
    ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), biases (4H,).
    """

    mode = "LSTM"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, tuple | list) or len(hx) != 2):
            raise TypeError("LSTMCell: hx must be a tuple (h, c) or None")
        h, c = (None, None) if hx is None else hx
        input_2d, h, batched = self._prepare(input, h, "h")
        _, c, _ = self._prepare(input, c, "c")
        input_gates, hidden_gates = self._gates(input_2d, h)
        h, c = _lstm_pointwise(input_gates + hidden_gates, c)
        if not batched:
            h, c = h.reshape(self.hidden_size), c.reshape(self.hidden_size)
        return h, c


class GRUCell(_CellBase):
    """One GRU step with gates r, z, n: r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h.

    Shapes: input (B, I) or (I,); hx (B, H) or (H,), zeros when omitted; returns h'.
    ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), biases (3H,).
    """

    mode = "GRU"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        input, hx, batched = self._prepare(input, hx, "hx")
        h = _gru_pointwise(*self._gates(input, hx), hx)
        return h if batched else h.reshape(self.hidden_size)
