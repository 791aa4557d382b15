"""Elementwise ``Tensor`` methods beyond the basic set, with PyTorch's names and semantics: ``log1p``,
``rsqrt``, ``reciprocal``, ``square``, ``ceil``/``trunc``, ``fmod``/``remainder``, the predicates
(``isnan``, ``isinf``, ``isfinite``), the logical operators, ``bernoulli``, the dtype shorthands
``half``/``byte`` and the size queries ``nelement``/``element_size``.

Differentiable ones are a ``Function`` of ``ops`` or a composition of differentiable methods; the
predicates and logical operators give bool tensors that are not differentiable, as in PyTorch.
"""

from __future__ import annotations

from typing import Any

from . import backend, ops
from .selection import _constant, _t
from .tensor_methods import _zero_gradient


def _floating(self: Any) -> Any:
    """``self`` as a floating tensor: integers and bools become the default dtype (PyTorch's promotion
    for ``log1p``, ``rsqrt``, ``reciprocal``)."""
    return self if self.dtype.kind == "f" else self.type(backend.get_default_dtype())


def _as_bool(self: Any, other: Any, name: str) -> Any:
    if isinstance(other, _t()):
        data = other._data
    elif isinstance(other, int | float | bool):
        data = other
    else:
        raise TypeError(f"{name}: expects a tensor or a number, got {type(other).__name__}")
    return self._xp.asarray(data).astype(bool)


class PointwiseMethods:
    """Methods mixed into ``Tensor`` (see the module docstring)."""

    __slots__ = ()

    def log1p(self: Any) -> Any:
        """log(1 + x), accurate for small x;  gradient g / (1 + x)."""
        return ops.Log1p.apply(_floating(self))

    def rsqrt(self: Any) -> Any:
        """1 / sqrt(x);  gradient -g / (2 x^(3/2))."""
        return _floating(self) ** -0.5

    def reciprocal(self: Any) -> Any:
        """1 / x;  gradient -g / x²."""
        return 1.0 / _floating(self)

    def square(self: Any) -> Any:
        """x²;  gradient 2 g x."""
        return self * self

    def ceil(self: Any) -> Any:
        """Rounded up (gradient 0)."""
        return _zero_gradient(self, _constant(self, self._xp.ceil(self._data)), self)

    def trunc(self: Any) -> Any:
        """Rounded toward zero (gradient 0)."""
        return _zero_gradient(self, _constant(self, self._xp.trunc(self._data)), self)

    fix = trunc

    def _remainder(self: Any, other: Any, floor: bool, name: str) -> Any:
        if not isinstance(other, _t() | int | float) or isinstance(other, bool):
            raise TypeError(f"{name}: the divisor must be a tensor or a number, got {type(other).__name__}")
        divisor = self._operand(other)
        if self.dtype.kind in "iu" and divisor.dtype.kind in "iu" and bool((divisor._data == 0).any()):
            raise ZeroDivisionError(f"{name}: integer division by zero")
        dividend = self if self.dtype.kind == "f" or divisor.dtype.kind != "f" else self.type(divisor.dtype)
        return ops.Remainder.apply(dividend, divisor, floor=floor)

    def fmod(self: Any, other: Any) -> Any:
        """C's remainder ``a - trunc(a / b) b`` (the sign of a);  gradients g and -g trunc(a / b)."""
        return self._remainder(other, False, "fmod")

    def remainder(self: Any, other: Any) -> Any:
        """Python's remainder ``a - floor(a / b) b`` (the sign of b, as ``%``);  gradients g and
        -g floor(a / b)."""
        return self._remainder(other, True, "remainder")

    def __mod__(self: Any, other: Any) -> Any:
        return self.remainder(other)

    def __rmod__(self: Any, other: Any) -> Any:
        return self._operand(other).remainder(self)

    # ---- predicates and logic (bool results, not differentiable) --------------------------------------

    def isnan(self: Any) -> Any:
        """True where the element is NaN."""
        return _constant(self, self._xp.isnan(self._data))

    def isinf(self: Any) -> Any:
        """True where the element is +inf or -inf."""
        return _constant(self, self._xp.isinf(self._data))

    def isfinite(self: Any) -> Any:
        """True where the element is neither NaN nor infinite."""
        return _constant(self, self._xp.isfinite(self._data))

    def logical_not(self: Any) -> Any:
        """True where the element is zero."""
        return _constant(self, ~self._data.astype(bool))

    def logical_and(self: Any, other: Any) -> Any:
        """True where both are nonzero (broadcast)."""
        return _constant(self, self._data.astype(bool) & _as_bool(self, other, "logical_and"))

    def logical_or(self: Any, other: Any) -> Any:
        """True where either is nonzero (broadcast)."""
        return _constant(self, self._data.astype(bool) | _as_bool(self, other, "logical_or"))

    def logical_xor(self: Any, other: Any) -> Any:
        """True where exactly one is nonzero (broadcast)."""
        return _constant(self, self._data.astype(bool) ^ _as_bool(self, other, "logical_xor"))

    def is_floating_point(self: Any) -> bool:
        """True for a floating dtype."""
        return self.dtype.kind == "f"

    # ---- random draws -------------------------------------------------------------------------------

    def bernoulli(self: Any, p: Any = None, generator: Any = None) -> Any:
        """Samples in {0, 1} with P(1) = the element (or ``p`` when given), in this tensor's dtype; not
        differentiable. The probabilities must lie in [0, 1]."""
        from . import random

        probability = self._data if p is None else (p._data if isinstance(p, _t()) else p)
        xp = self._xp
        probability = xp.asarray(probability)
        if self.dtype.kind != "f" and p is None:
            raise TypeError(f"bernoulli: the probabilities must be floating, got dtype {self.dtype}")
        if probability.size and not bool(((probability >= 0) & (probability <= 1)).all()):
            raise ValueError("bernoulli: every probability must lie in [0, 1]")
        stream = random.stream_for(generator, self.device, "bernoulli")
        draws = stream.random(self.shape)
        return _constant(self, (xp.asarray(draws) < probability).astype(self.dtype))

    def bernoulli_(self: Any, p: Any = 0.5, generator: Any = None) -> Any:
        """In place: each element set to 1 with probability ``p`` (a number or a broadcastable tensor),
        else 0."""
        return self._put("bernoulli_", Ellipsis, self.bernoulli(p, generator=generator))

    # ---- dtypes and sizes ---------------------------------------------------------------------------

    def half(self: Any) -> Any:
        """Converted to float16 (differentiable from a floating tensor)."""
        return self.type(backend.float16)

    def byte(self: Any) -> Any:
        """Converted to uint8 (not differentiable)."""
        return self.type("uint8")

    def short(self: Any) -> Any:
        """Converted to int16 (not differentiable)."""
        return self.type("int16")

    def nelement(self: Any) -> int:
        """The number of elements (as ``numel``)."""
        return self.numel()

    def element_size(self: Any) -> int:
        """Bytes per element."""
        return int(self.dtype.itemsize)
