"""``Tensor`` methods that sort and select (``sort``, ``argsort``, ``topk``, ``narrow``, ``index_select``,
``masked_select``) and scatter (``scatter``, ``scatter_add``, ``index_add``), with PyTorch's semantics.

The values of a sort or top-k are a ``gather`` of the input, so their gradient goes back to where each
value came from; the indices are int64 and not differentiable.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from . import autograd, backend, ops

SortResult = namedtuple("SortResult", ["values", "indices"])


def stable_argsort(data: Any, axis: int = -1) -> Any:
    """Indices that sort ``data`` along ``axis``, ties kept in index order (CuPy's sort is always stable
    and takes no ``kind``)."""
    if type(data) is backend.NUMPY_ARRAY:
        return data.argsort(axis=axis, kind="stable")
    return backend.get_array_module(data).argsort(data, axis=axis)


def _t() -> Any:
    return autograd.Tensor


def _checked_dim(dim: Any, ndim: int, name: str, shape: tuple) -> int:
    from .tensor import _dim

    return _dim(dim, ndim, name, shape)


def _constant(self: Any, array: Any) -> Any:
    return self._make(backend.ensure_array(array), False, None, 0)


class SelectionMethods:
    """Methods mixed into ``Tensor`` (see the module docstring)."""

    __slots__ = ()

    def _order(self: Any, axis: int, descending: bool) -> Any:
        """The int64 indices that sort along ``axis`` (stable, ties in index order)."""
        data = self._data
        if descending:
            data = -data if data.dtype.kind != "b" else ~data
        if self.ndim == 0:
            return self._xp.zeros((), dtype=backend.int64)
        return stable_argsort(data, axis).astype(backend.int64)

    def sort(self: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> SortResult:
        """``(values, indices)`` sorted along ``dim``;  values' gradient goes back to where each came from."""
        axis = _checked_dim(dim, self.ndim, "sort", self.shape)
        indices = _constant(self, self._order(axis, descending))
        if self.ndim == 0:
            return SortResult(self * 1, indices)
        return SortResult(self.gather(axis, indices), indices)

    def argsort(self: Any, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
        """The indices that sort along ``dim`` (not differentiable)."""
        axis = _checked_dim(dim, self.ndim, "argsort", self.shape)
        return _constant(self, self._order(axis, descending))

    def topk(self: Any, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> SortResult:
        """The ``k`` largest (``largest=False``: smallest) along ``dim`` as ``(values, indices)``, in
        sorted order;  values' gradient goes back to where each came from."""
        axis = _checked_dim(dim, self.ndim, "topk", self.shape)
        size = self.shape[axis] if self.ndim else 1
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= size:
            raise ValueError(
                f"topk: k must be an int in [0, {size}] for dim {dim} of shape {self.shape}, got {k}"
            )
        order = self._order(axis, largest)
        if self.ndim == 0:
            return SortResult(self * 1, _constant(self, order))
        key = (slice(None),) * axis + (slice(0, k),)
        indices = _constant(self, self._xp.ascontiguousarray(order[key]))
        return SortResult(self.gather(axis, indices), indices)

    def narrow(self: Any, dim: int, start: Any, length: int) -> Any:
        """Elements ``start`` .. ``start + length - 1`` along ``dim`` (a view)."""
        axis = _checked_dim(dim, self.ndim, "narrow", self.shape)
        start = int(start)
        size = self.shape[axis]
        if start < 0:
            start += size
        if not 0 <= start <= size or length < 0 or start + length > size:
            raise IndexError(
                f"narrow: start {start} and length {length} do not fit dim {dim} of size {size} "
                f"(shape {self.shape})"
            )
        return self[(slice(None),) * axis + (slice(start, start + length),)]

    def index_select(self: Any, dim: int, index: Any) -> Any:
        """The entries ``index`` (a 1-D integer tensor) along ``dim``;  gradient scattered back (summed)."""
        axis = _checked_dim(dim, self.ndim, "index_select", self.shape)
        if not isinstance(index, _t()) or index.dtype.kind not in "iu" or index.ndim > 1:
            raise TypeError("index_select: index must be a 1-D integer tensor")
        return self[(slice(None),) * axis + (index.reshape(-1),)]

    def masked_select(self: Any, mask: Any) -> Any:
        """The elements where ``mask`` (broadcast with self) is true, as a 1-D tensor."""
        mask = mask if isinstance(mask, _t()) else _t()(mask, device=self.device)
        if mask.dtype.kind != "b":
            raise TypeError(f"masked_select: mask must be a bool tensor, got dtype {mask.dtype}")
        shape = _broadcast_shape(self.shape, mask.shape)
        if shape is None:
            raise ValueError(f"masked_select: mask shape {mask.shape} does not broadcast with {self.shape}")
        source = self if self.shape == shape else self.expand(*shape)
        return source[_constant(self, self._xp.broadcast_to(mask._data, shape))]

    def _scatter_args(self: Any, name: str, dim: int, index: Any, src: Any) -> tuple:
        axis = _checked_dim(dim, self.ndim, name, self.shape)
        if not isinstance(index, _t()) or index.dtype.kind not in "iu":
            raise TypeError(f"{name}: index must be an integer tensor")
        if index.ndim != self.ndim or (isinstance(src, _t()) and src.ndim != self.ndim):
            raise ValueError(
                f"{name}: index, src and self must have the same number of dims, got index "
                f"{index.shape}, src {getattr(src, 'shape', None)}, self {self.shape}"
            )
        for d, n in enumerate(index.shape):
            if (d != axis and n > self.shape[d]) or (isinstance(src, _t()) and n > src.shape[d]):
                raise ValueError(
                    f"{name}: index shape {index.shape} is larger than self {self.shape} or src "
                    f"{getattr(src, 'shape', None)} in dim {d}"
                )
        size = self.shape[axis]
        if index.numel() and (int(index._data.min()) < -size or int(index._data.max()) >= size):
            raise IndexError(f"{name}: index out of range for dim {dim} of size {size}")
        if isinstance(src, _t()):
            src = self._operand(src)
            if src.shape != index.shape:
                src = src[tuple(slice(0, n) for n in index.shape)]
            if src.dtype != self.dtype:
                src = src.type(self.dtype)
        else:
            src = _constant(self, self._xp.full(index.shape, src, dtype=self.dtype))
        data = index._data.astype(backend.int64) % max(size, 1)
        return axis, data, src

    def scatter(
        self: Any, dim: int, index: Any, src: Any = None, value: Any = None, reduce: Any = None
    ) -> Any:
        """A copy with ``out[..., index[i], ...] = src[i]`` along ``dim`` (``src`` a tensor or, as ``value``,
        a number);  gradient: 0 at the written positions for self, g gathered at index for src."""
        if reduce is not None:
            raise ValueError("scatter: reduce= is not supported; use scatter_add for 'add'")
        if src is None:
            src = value
        if src is None:
            raise TypeError("scatter: needs src (a tensor) or value (a number)")
        axis, index_data, src = self._scatter_args("scatter", dim, index, src)
        return ops.Scatter.apply(self, src, index=index_data, dim=axis, add=False)

    def scatter_add(self: Any, dim: int, index: Any, src: Any) -> Any:
        """A copy with ``src`` added at ``index`` along ``dim`` (repeats accumulate);  gradient: g for
        self, g gathered at index for src."""
        if not isinstance(src, _t()):
            raise TypeError("scatter_add: src must be a tensor")
        axis, index_data, src = self._scatter_args("scatter_add", dim, index, src)
        return ops.Scatter.apply(self, src, index=index_data, dim=axis, add=True)

    def index_add(self: Any, dim: int, index: Any, source: Any, alpha: Any = 1) -> Any:
        """A copy with ``alpha * source`` added at the entries ``index`` along ``dim`` (repeats sum)."""
        from .tensor import _index_arg

        axis = _checked_dim(dim, self.ndim, "index_add", self.shape)
        if not isinstance(index, _t()) or index.dtype.kind not in "iu" or index.ndim != 1:
            raise TypeError("index_add: index must be a 1-D integer tensor")
        out = (
            self.clone()
            if autograd._grad_enabled and self.requires_grad
            else self._make(self._data.copy(), False, None, 0)
        )
        key = _index_arg((slice(None),) * axis + (index,), self)
        return out._put("index_add", key, source if alpha == 1 else source * alpha, accumulate=True)


def _broadcast_shape(a: tuple, b: tuple) -> tuple | None:
    """The broadcast of two shapes, or None when they do not broadcast."""
    width = max(len(a), len(b))
    a, b = (1,) * (width - len(a)) + a, (1,) * (width - len(b)) + b
    if any(n != m and 1 not in (n, m) for n, m in zip(a, b)):
        return None
    return tuple(m if n == 1 else n for n, m in zip(a, b))
