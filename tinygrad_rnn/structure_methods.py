"""``Tensor`` methods that multiply along a dim or change which elements are where, with PyTorch's names
and semantics: ``prod``, ``cumprod``, ``dot``, ``outer``, ``diag``, ``repeat_interleave``, ``unflatten``,
``mT``, ``index_fill``/``index_fill_``, and the index queries ``nonzero`` and ``unique`` (integer results,
not differentiable).
"""

from __future__ import annotations

import math
from typing import Any

from . import backend, ops
from .selection import _checked_dim, _constant, _t


def _index_vector(self: Any, index: Any, name: str) -> Any:
    """``index`` as a 1-D int64 array on self's device (a tensor, a list or an int)."""
    data = index._data if isinstance(index, _t()) else self._xp.asarray(index)
    if data.dtype.kind not in "iu" or data.ndim > 1:
        raise IndexError(f"{name}: index must be a 0-D or 1-D integer tensor, got dtype {data.dtype}")
    return data.reshape(-1).astype(backend.int64)


class StructureMethods:
    """Methods mixed into ``Tensor`` (see the module docstring)."""

    __slots__ = ()

    # ---- products -----------------------------------------------------------------------------------

    def prod(self: Any, dim: int | None = None, keepdim: bool = False, dtype: Any = None) -> Any:
        """The product of all elements, or along ``dim``;  gradient g · (product of the others), exact
        when some elements are zero. Integer and bool tensors give int64, as PyTorch's."""
        source = self if dtype is None else self.type(dtype)
        if dtype is None and source.dtype.kind in "biu":
            source = source.type(backend.int64)
        if dim is None:
            flat = source.reshape(-1)
            return ops.Prod.apply(flat, dim=0, keepdim=False)
        axis = _checked_dim(dim, self.ndim, "prod", self.shape)
        if self.ndim == 0:
            return source * 1
        return ops.Prod.apply(source, dim=axis, keepdim=keepdim)

    def cumprod(self: Any, dim: int, dtype: Any = None) -> Any:
        """Running products along ``dim``;  gradient dx_j = Σ_{i≥j} g_i Π_{k≤i, k≠j} x_k."""
        axis = _checked_dim(dim, self.ndim, "cumprod", self.shape)
        source = self if dtype is None else self.type(dtype)
        if self.ndim == 0:
            return source * 1
        return ops.CumProd.apply(source, dim=axis)

    def dot(self: Any, other: Any) -> Any:
        """The inner product Σ a_i b_i of two 1-D tensors of equal length."""
        shape = getattr(other, "shape", None)
        if self.ndim != 1 or shape is None or len(shape) != 1 or shape[0] != self.shape[0]:
            raise ValueError(
                f"dot: expects two 1-D tensors of equal length, got shapes {self.shape} and {shape}"
            )
        if other.dtype != self.dtype:
            raise TypeError(f"dot: expects tensors of one dtype, got {self.dtype} and {other.dtype}")
        return (self * other).sum()

    def outer(self: Any, vec2: Any) -> Any:
        """The outer product out[i, j] = a_i b_j of two 1-D tensors."""
        shape = getattr(vec2, "shape", None)
        if self.ndim != 1 or shape is None or len(shape) != 1:
            raise ValueError(f"outer: expects two 1-D tensors, got shapes {self.shape} and {shape}")
        return self.unsqueeze(1) * vec2.unsqueeze(0)

    ger = outer

    def diag(self: Any, diagonal: int = 0) -> Any:
        """From a 1-D tensor, the square matrix with it on the ``diagonal``-th diagonal (0 elsewhere); from
        a 2-D tensor, that diagonal as a 1-D tensor. Differentiable both ways."""
        if not isinstance(diagonal, int) or isinstance(diagonal, bool):
            raise TypeError(f"diag: diagonal must be an int, got {diagonal!r}")
        if self.ndim == 2:
            return self.diagonal(diagonal)
        if self.ndim != 1:
            raise ValueError(f"diag: expects a 1-D or 2-D tensor, got shape {self.shape}")
        n = self.shape[0] + abs(diagonal)
        xp = self._xp
        rows = xp.arange(self.shape[0]) + max(-diagonal, 0)
        cols = xp.arange(self.shape[0]) + max(diagonal, 0)
        flat = _constant(self, (rows * n + cols).astype(backend.int64))
        zeros = self.new_zeros(n * n)
        return zeros.index_add(0, flat, self).reshape(n, n)

    # ---- rearrangements ---------------------------------------------------------------------------

    def repeat_interleave(
        self: Any, repeats: Any, dim: int | None = None, output_size: int | None = None
    ) -> Any:
        """Each element repeated ``repeats`` times (an int, or one count per element along ``dim``) in
        place, along ``dim`` (the flattened tensor when None): [a, b] → [a, a, b, b]. The gradient sums
        the copies back."""
        source = self.reshape(-1) if dim is None else self
        axis = 0 if dim is None else _checked_dim(dim, self.ndim, "repeat_interleave", self.shape)
        size = source.shape[axis] if source.ndim else 1
        xp = self._xp
        if isinstance(repeats, _t()):
            counts = repeats._data.reshape(-1)
            if counts.dtype.kind not in "iu":
                raise TypeError(f"repeat_interleave: repeats must be integers, got dtype {counts.dtype}")
            if counts.size == 1:
                counts = xp.full(size, int(counts[0]))
        elif isinstance(repeats, int) and not isinstance(repeats, bool):
            counts = xp.full(size, repeats)
        else:
            raise TypeError(
                f"repeat_interleave: repeats must be an int or a tensor, got {type(repeats).__name__}"
            )
        if counts.shape[0] != size:
            raise ValueError(
                f"repeat_interleave: repeats has {counts.shape[0]} counts for a dim of size {size}"
            )
        if bool((counts < 0).any()):
            raise ValueError("repeat_interleave: repeats must be non-negative")
        positions = xp.repeat(xp.arange(size), counts).astype(backend.int64)
        if output_size is not None and output_size != positions.shape[0]:
            raise ValueError(
                f"repeat_interleave: output_size={output_size} but the result has {positions.shape[0]}"
            )
        if source.ndim == 0:
            source = source.reshape(1)
        return source.index_select(axis, _constant(self, positions))

    def unflatten(self: Any, dim: int, sizes: Any) -> Any:
        """Dim ``dim`` split into ``sizes`` (one may be -1): (2, 12).unflatten(1, (3, 4)) → (2, 3, 4)."""
        axis = _checked_dim(dim, self.ndim, "unflatten", self.shape)
        sizes = tuple(sizes)
        if not sizes or any(not isinstance(n, int) or isinstance(n, bool) for n in sizes):
            raise TypeError(f"unflatten: sizes must be a non-empty sequence of ints, got {sizes!r}")
        if sizes.count(-1) > 1:
            raise ValueError("unflatten: only one size may be -1")
        known = math.prod(n for n in sizes if n != -1)
        if -1 in sizes:
            if known == 0 or self.shape[axis] % known:
                raise ValueError(
                    f"unflatten: sizes {sizes} do not divide dim {dim} of size {self.shape[axis]}"
                )
            sizes = tuple(self.shape[axis] // known if n == -1 else n for n in sizes)
        elif known != self.shape[axis]:
            raise ValueError(
                f"unflatten: sizes {sizes} multiply to {known}, not to dim {dim} of size {self.shape[axis]}"
            )
        return self.reshape(*self.shape[:axis], *sizes, *self.shape[axis + 1 :])

    @property
    def mT(self: Any) -> Any:
        """The last two dims swapped (batched matrix transpose)."""
        if self.ndim < 2:
            raise ValueError(f"mT: expects a tensor of at least 2 dims, got shape {self.shape}")
        return self.transpose(-2, -1)

    @property
    def mH(self: Any) -> Any:
        """As ``mT`` (real tensors only here)."""
        return self.mT

    def index_fill(self: Any, dim: int, index: Any, value: Any) -> Any:
        """A copy with ``value`` written at positions ``index`` along ``dim``; the overwritten part gets a
        zero gradient, ``value`` (a 0-D tensor) the sum of the gradient there."""
        return self.clone().index_fill_(dim, index, value)

    def index_fill_(self: Any, dim: int, index: Any, value: Any) -> Any:
        """In place: ``value`` (a number or a 0-D tensor) written at positions ``index`` along ``dim``."""
        axis = _checked_dim(dim, self.ndim, "index_fill_", self.shape)
        positions = _index_vector(self, index, "index_fill_")
        size = self.shape[axis] if self.ndim else 1
        if positions.size and bool(((positions < -size) | (positions >= size)).any()):
            raise IndexError(f"index_fill_: index out of range for dim {dim} of size {size}")
        if isinstance(value, _t()) and value.ndim:
            raise ValueError(f"index_fill_: value must be a number or a 0-D tensor, got shape {value.shape}")
        if self.ndim == 0:
            return self._put("index_fill_", Ellipsis, value) if positions.size else self
        key = (slice(None),) * axis + (positions % size,)
        return self._put("index_fill_", key, value)

    # ---- index queries ------------------------------------------------------------------------------

    def nonzero(self: Any, *, as_tuple: bool = False) -> Any:
        """The indices of the nonzero elements: an (n, ndim) int64 tensor, or with ``as_tuple`` one 1-D
        tensor per dim (usable as an index)."""
        data = self._data if self.ndim else self._data.reshape(1)
        found = self._xp.nonzero(data)
        if as_tuple:
            return tuple(_constant(self, a.astype(backend.int64)) for a in found)
        if self.ndim == 0:
            return _constant(self, self._xp.zeros((int(bool(self._data)), 0), dtype=backend.int64))
        return _constant(self, self._xp.stack(found, axis=1).astype(backend.int64))

    def argwhere(self: Any) -> Any:
        """``nonzero()`` as an (n, ndim) tensor."""
        return self.nonzero()

    def unique(
        self: Any,
        sorted: bool = True,
        return_inverse: bool = False,
        return_counts: bool = False,
        dim: int | None = None,
    ) -> Any:
        """The distinct elements (sorted; ``sorted=False`` gives them sorted too, which PyTorch allows),
        with ``return_inverse`` the index of each element's value in them (self's shape) and with
        ``return_counts`` how often each occurs. Over rows/slices when ``dim`` is given."""
        xp = self._xp
        if dim is None:
            values, inverse, counts = xp.unique(
                self._data.reshape(-1), return_inverse=True, return_counts=True
            )
            inverse = inverse.reshape(self.shape)
        else:
            axis = _checked_dim(dim, self.ndim, "unique", self.shape)
            values, inverse, counts = xp.unique(
                self._data, return_inverse=True, return_counts=True, axis=axis
            )
            inverse = inverse.reshape(-1)
        outputs = [_constant(self, values)]
        if return_inverse:
            outputs.append(_constant(self, inverse.astype(backend.int64)))
        if return_counts:
            outputs.append(_constant(self, counts.astype(backend.int64)))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
