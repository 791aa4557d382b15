"""More ``Tensor`` methods, with PyTorch's names and semantics: batched products (``bmm``,
``baddbmm``, ``addmm``, ``einsum``), rearrangements (``repeat``, ``flip``, ``roll``, ``tril``/``triu``),
``cumsum``, ``norm``, ``sin``/``cos``, the ``new_*`` factories and the in-place shape changes
(sorting, selection and scatters are in ``selection.py``).

``Tensor`` inherits them; differentiable ones are built on a ``Function`` of ``ops`` (or on differentiable
methods), and every argument is checked here, at the public call.
"""

from __future__ import annotations

import math
from typing import Any

from . import autograd, backend, ops
from .selection import SelectionMethods, _checked_dim, _constant, _t


def _zero_gradient(self: Any, result: Any, *inputs: Any) -> Any:
    """``result`` (a constant) tied to ``inputs`` with a zero gradient: the derivative of a step
    function (floor, round, sign, a rounded division) almost everywhere, as PyTorch records it."""
    out = result
    for t in inputs:
        if isinstance(t, _t()) and t.requires_grad and autograd._grad_enabled:
            out = out + ops.Where.apply(_constant(self, self._xp.zeros((), dtype=bool)), t, t._operand(0))
    return out


class TensorMethods(SelectionMethods):
    """Methods mixed into ``Tensor`` (see the module docstring)."""

    __slots__ = ()

    # ---- arithmetic forms ----------------------------------------------------------------------------

    def add(self: Any, other: Any, alpha: Any = 1) -> Any:
        """``self + alpha * other``; also PyTorch's old ``add(number, tensor)`` order."""
        if isinstance(alpha, _t()) and not isinstance(other, _t()):
            other, alpha = alpha, other
        return self + (other if alpha == 1 else other * alpha)

    def sub(self: Any, other: Any, alpha: Any = 1) -> Any:
        """``self - alpha * other``."""
        return self - (other if alpha == 1 else other * alpha)

    def div(self: Any, other: Any, rounding_mode: str | None = None) -> Any:
        """``self / other``; ``rounding_mode="trunc"`` rounds toward zero, ``"floor"`` down (gradient 0,
        integer tensors stay integer)."""
        if rounding_mode is None:
            return self / other
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        xp = self._xp
        b = other._data if isinstance(other, _t()) else other
        a = self._data
        if (
            a.dtype.kind in "iu"
            and (getattr(b, "dtype", None) is None or b.dtype.kind in "iu")
            and not isinstance(b, float)
        ):
            if xp.any(xp.asarray(b) == 0):
                raise ZeroDivisionError("div: integer division by zero")
            out = xp.floor_divide(a, b)
            if rounding_mode == "trunc":
                out = xp.where((out < 0) & (out * b != a), out + 1, out)
        else:
            quotient = a / b
            out = xp.floor(quotient) if rounding_mode == "floor" else xp.trunc(quotient)
            if self.dtype.kind == "f":
                out = out.astype(self.dtype, copy=False)
        return _zero_gradient(self, _constant(self, out), self, other)

    divide = div

    def floor(self: Any) -> Any:
        """Rounded down (gradient 0)."""
        return _zero_gradient(self, _constant(self, self._xp.floor(self._data)), self)

    def round(self: Any) -> Any:
        """Rounded to the nearest integer, halves to even (gradient 0)."""
        return _zero_gradient(self, _constant(self, self._xp.round(self._data)), self)

    def sign(self: Any) -> Any:
        """-1, 0 or 1 (gradient 0)."""
        return _zero_gradient(self, _constant(self, self._xp.sign(self._data)), self)

    def clamp_min(self: Any, min: Any) -> Any:
        """``max(self, min)``."""
        return self.clamp(min=min)

    def clamp_max(self: Any, max: Any) -> Any:
        """``min(self, max)``."""
        return self.clamp(max=max)

    def sin(self: Any) -> Any:
        """sin(x);  gradient g·cos(x)."""
        return ops.Sin.apply(self)

    def cos(self: Any) -> Any:
        """cos(x);  gradient -g·sin(x)."""
        return ops.Cos.apply(self)

    def cumsum(self: Any, dim: int) -> Any:
        """Running sums along ``dim``;  gradient: reversed running sums of g."""
        return ops.CumSum.apply(self, dim=_checked_dim(dim, self.ndim, "cumsum", self.shape))

    def norm(self: Any, p: Any = "fro", dim: Any = None, keepdim: bool = False) -> Any:
        """The p-norm over ``dim`` (all elements by default): p = 'fro' or 2, any finite p >= 1, inf, -inf
        or 0 (the count of nonzeros, not differentiable). At 0 the gradient is taken as 0, as PyTorch's."""
        if p == "fro":
            p = 2
        if isinstance(p, str) or not isinstance(p, int | float):
            raise ValueError(f"norm: p must be a number or 'fro', got {p!r}")
        dims = self._dims(dim, "norm")
        if self.dtype.kind != "f":
            raise TypeError(f"norm: needs a floating tensor, got dtype {self.dtype}")
        if p == math.inf:
            return self.abs().amax(dims, keepdim)
        if p == -math.inf:
            return self.abs().amin(dims, keepdim)
        if p == 0:
            count = (self._data != 0).sum(axis=dims, keepdims=keepdim).astype(self.dtype)
            return _constant(self, count)
        if not p >= 1 or not math.isfinite(p):
            raise ValueError(f"norm: p must be 'fro', 0, inf, -inf or a finite number >= 1, got {p}")
        if not dims:
            return self.abs()
        return ops.VectorNorm.apply(self, p=float(p), dims=dims, keepdim=keepdim)

    # ---- comparisons as methods ----------------------------------------------------------------------

    def eq(self: Any, other: Any) -> Any:
        """``self == other`` elementwise (a bool tensor)."""
        return self == other

    def ne(self: Any, other: Any) -> Any:
        """``self != other`` elementwise."""
        return self != other

    def lt(self: Any, other: Any) -> Any:
        """``self < other`` elementwise."""
        return self < other

    def le(self: Any, other: Any) -> Any:
        """``self <= other`` elementwise."""
        return self <= other

    def gt(self: Any, other: Any) -> Any:
        """``self > other`` elementwise."""
        return self > other

    def ge(self: Any, other: Any) -> Any:
        """``self >= other`` elementwise."""
        return self >= other

    def equal(self: Any, other: Any) -> bool:
        """True when both have the same shape and elements."""
        return self.shape == other.shape and bool((self._data == other._data).all())

    def all(self: Any, dim: int | None = None, keepdim: bool = False) -> Any:
        """True where every element (along ``dim``) is nonzero."""
        axis = None if dim is None else _checked_dim(dim, self.ndim, "all", self.shape)
        return _constant(self, self._xp.asarray(self._data.astype(bool).all(axis=axis, keepdims=keepdim)))

    def any(self: Any, dim: int | None = None, keepdim: bool = False) -> Any:
        """True where some element (along ``dim``) is nonzero."""
        axis = None if dim is None else _checked_dim(dim, self.ndim, "any", self.shape)
        return _constant(self, self._xp.asarray(self._data.astype(bool).any(axis=axis, keepdims=keepdim)))

    # ---- products ------------------------------------------------------------------------------------

    def mm(self: Any, other: Any) -> Any:
        """The matrix product of two 2-D tensors."""
        if self.ndim != 2 or getattr(other, "ndim", None) != 2:
            raise ValueError(
                f"mm: expects two 2-D tensors, got shapes {self.shape} and {getattr(other, 'shape', None)}"
            )
        return self @ other

    def bmm(self: Any, other: Any) -> Any:
        """Batched matrix product of (b, n, m) and (b, m, p) tensors."""
        shape = getattr(other, "shape", None)
        if (
            self.ndim != 3
            or shape is None
            or len(shape) != 3
            or shape[0] != self.shape[0]
            or shape[1] != self.shape[2]
        ):
            raise ValueError(
                f"bmm: expects (b, n, m) and (b, m, p) tensors, got shapes {self.shape} and {shape}"
            )
        return self @ other

    def baddbmm(self: Any, batch1: Any, batch2: Any, beta: Any = 1, alpha: Any = 1) -> Any:
        """``beta * self + alpha * (batch1 @ batch2)`` for batched matrices."""
        product = batch1.bmm(batch2)
        return _scaled_sum(self, product, beta, alpha)

    def addmm(self: Any, mat1: Any, mat2: Any, beta: Any = 1, alpha: Any = 1) -> Any:
        """``beta * self + alpha * (mat1 @ mat2)`` for matrices."""
        return _scaled_sum(self, mat1.mm(mat2), beta, alpha)

    # ---- rearrangements ------------------------------------------------------------------------------

    def repeat(self: Any, *sizes: Any) -> Any:
        """The tensor tiled ``sizes[i]`` times along dim i (leading new dims when more sizes than dims)."""
        from .tensor import _shape_arg

        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim or any(not isinstance(n, int) or n < 0 for n in sizes):
            raise ValueError(f"repeat: needs at least {self.ndim} non-negative int sizes, got {sizes}")
        shape = (1,) * (len(sizes) - self.ndim) + self.shape
        interleaved = [n for pair in zip((1,) * len(shape), shape) for n in pair]
        target = [n for pair in zip(sizes, shape) for n in pair]
        tiled = self.reshape(*interleaved).expand(*target)
        return tiled.reshape(*(r * n for r, n in zip(sizes, shape)))

    def flip(self: Any, *dims: Any) -> Any:
        """The order of the elements reversed along ``dims``."""
        from .tensor import _shape_arg

        axes = {_checked_dim(d, self.ndim, "flip", self.shape) for d in _shape_arg(dims)}
        key = tuple(slice(None, None, -1) if axis in axes else slice(None) for axis in range(self.ndim))
        return self[key] * 1 if axes else self * 1

    def roll(self: Any, shifts: Any, dims: Any = None) -> Any:
        """Elements shifted by ``shifts`` along ``dims`` with wrap-around (flattened when dims is None)."""
        if dims is None:
            if isinstance(shifts, tuple | list):
                raise ValueError("roll: several shifts need as many dims")
            return self.reshape(-1).roll(shifts, 0).reshape(self.shape)
        shifts = tuple(shifts) if isinstance(shifts, tuple | list) else (shifts,)
        dims = tuple(dims) if isinstance(dims, tuple | list) else (dims,)
        if len(shifts) != len(dims):
            raise ValueError(f"roll: shifts {shifts} and dims {dims} differ in length")
        out = self
        for shift, dim in zip(shifts, dims):
            axis = _checked_dim(dim, self.ndim, "roll", self.shape)
            size = self.shape[axis]
            if size == 0 or shift % size == 0:
                continue
            source = (self._xp.arange(size) - shift) % size
            out = out[(slice(None),) * axis + (_constant(self, source),)]
        return out if out is not self else self * 1

    def _triangle(self: Any, name: str, diagonal: int, lower: bool) -> Any:
        if self.ndim < 2:
            raise ValueError(f"{name}: expects a tensor of at least 2 dims, got shape {self.shape}")
        rows, cols = self.shape[-2:]
        xp = self._xp
        offset = xp.arange(cols)[None, :] - xp.arange(rows)[:, None]
        keep = offset <= diagonal if lower else offset >= diagonal
        return self.where(_constant(self, keep), 0)

    def tril(self: Any, diagonal: int = 0) -> Any:
        """The lower triangle (on and below ``diagonal``) kept, the rest 0."""
        return self._triangle("tril", diagonal, True)

    def triu(self: Any, diagonal: int = 0) -> Any:
        """The upper triangle (on and above ``diagonal``) kept, the rest 0."""
        return self._triangle("triu", diagonal, False)

    def diagonal(self: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Any:
        """The diagonal ``out[..., k] = self[..., i_k, i_k + offset]`` over dims ``dim1``/``dim2``, which are
        removed and the diagonal appended as the last dim, as ``torch.diagonal``. Built on advanced
        indexing, so the gradient scatters back onto the diagonal and is 0 elsewhere."""
        if self.ndim < 2:
            raise ValueError(f"diagonal: expects a tensor of at least 2 dims, got shape {self.shape}")
        first = _checked_dim(dim1, self.ndim, "diagonal", self.shape)
        second = _checked_dim(dim2, self.ndim, "diagonal", self.shape)
        if first == second:
            raise ValueError(f"diagonal: dim1 and dim2 must differ, got {dim1} and {dim2}")
        rest = [d for d in range(self.ndim) if d not in (first, second)]
        moved = self.permute(*rest, first, second)
        rows, cols = moved.shape[-2:]
        start_row, start_col = max(-offset, 0), max(offset, 0)
        length = max(min(rows - start_row, cols - start_col), 0)
        xp = self._xp
        row_index = _constant(self, xp.arange(start_row, start_row + length))
        col_index = _constant(self, xp.arange(start_col, start_col + length))
        return moved[(Ellipsis, row_index, col_index)]

    def reshape_as(self: Any, other: Any) -> Any:
        """Reshaped to ``other``'s shape."""
        return self.reshape(other.shape)

    # ---- in-place shape changes ----------------------------------------------------------------------

    def _reshape_in_place(self: Any, name: str, make: Any) -> Any:
        from . import inplace

        if inplace._fn_of(self) not in (None, inplace.DETACHED) or inplace.live_views(self):
            raise RuntimeError(
                f"{name}: changing the shape in place of a view, or of a tensor that has live views, is not "
                "supported; use the out-of-place form"
            )
        if autograd._grad_enabled and self.requires_grad and self._ctx is None:
            raise RuntimeError(
                f"{name}: a leaf Variable that requires grad is being used in an in-place operation."
            )
        new = make(self)
        self._data = new._data
        if new._ctx is not None:
            self._ctx, self._index = new._ctx, new._index
        info = inplace.view_info(self)
        if type(info) is inplace.ViewInfo:
            info.views = None  # ``new`` was its only view, and it is now this tensor itself
        return self

    def unsqueeze_(self: Any, dim: int) -> Any:
        """In place :meth:`unsqueeze` (the tensor's shape changes)."""
        return self._reshape_in_place("unsqueeze_", lambda t: t.unsqueeze(dim))

    def squeeze_(self: Any, dim: int | None = None) -> Any:
        """In place :meth:`squeeze`."""
        return self._reshape_in_place("squeeze_", lambda t: t.squeeze(dim))

    def t_(self: Any) -> Any:
        """In place :meth:`t`."""
        return self._reshape_in_place("t_", lambda t: t.t())

    def transpose_(self: Any, dim0: int, dim1: int) -> Any:
        """In place :meth:`transpose`."""
        return self._reshape_in_place("transpose_", lambda t: t.transpose(dim0, dim1))

    # ---- factories on the tensor's dtype and device --------------------------------------------------

    def new_zeros(
        self: Any, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Any:
        """Zeros of ``size``, with this tensor's dtype and device unless given."""
        from . import functions

        return functions.zeros(
            *size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
        )

    def new_ones(
        self: Any, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Any:
        """Ones of ``size``, with this tensor's dtype and device unless given."""
        from . import functions

        return functions.ones(
            *size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
        )

    def new_empty(
        self: Any, *size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Any:
        """A tensor of ``size`` (zeros here), with this tensor's dtype and device unless given."""
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_full(
        self: Any,
        size: Any,
        fill_value: Any,
        dtype: Any = None,
        device: Any = None,
        requires_grad: bool = False,
    ) -> Any:
        """``fill_value`` in ``size``, with this tensor's dtype and device unless given."""
        from . import functions

        return functions.full(
            size,
            fill_value,
            dtype=dtype or self.dtype,
            device=device or self.device,
            requires_grad=requires_grad,
        )

    def new_tensor(
        self: Any, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False
    ) -> Any:
        """A copy of ``data``, with this tensor's dtype and device unless given."""
        return _t()(
            data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
        )

    # ---- the rest of the everyday surface ------------------------------------------------------------

    def __iter__(self: Any) -> Any:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    @property
    def is_cuda(self: Any) -> bool:
        """True on a GPU."""
        return self.device.type == "cuda"

    def is_contiguous(self: Any) -> bool:
        """Whether the data is C-contiguous in memory."""
        return bool(self._data.flags.c_contiguous)

    def random_(self: Any, low: int = 0, high: int | None = None) -> Any:
        """In place: integers drawn uniformly from [low, high) (``random_(n)``: [0, n))."""
        if high is None:
            if low == 0:
                raise ValueError("random_: give the upper bound, e.g. random_(10) or random_(0, 10)")
            low, high = 0, low
        if not low < high:
            raise ValueError(f"random_: high must be greater than low, got {low} and {high}")
        values = backend.random_integers(low, high, self.shape, self.device)
        return self._put("random_", Ellipsis, _constant(self, values.astype(self.dtype)))


def _scaled_sum(base: Any, product: Any, beta: Any, alpha: Any) -> Any:
    scaled = product if alpha == 1 else product * alpha
    if beta == 0:
        return scaled  # as PyTorch: base is ignored, even nan or inf in it
    return (base if beta == 1 else base * beta) + scaled
