"""Ops that write into a tensor's storage or move elements by an index tensor: ``IndexPut`` (``x[i] = v``,
``index_put_``, ``masked_fill_``), ``CopySlices`` (a write through a view into its base), ``ViewOf`` (a
view re-derived from its written base), ``Scatter``, ``IndexSelect``, ``Flip``, ``Roll``, ``CumSum``,
``Sort`` and ``Sin``/``Cos``.

The writing ops are in place: their forward changes the first input's array and returns that same
array, so every alias of the storage sees the new values; the Tensor methods in ``inplace.py`` then
make the written tensor refer to the new node (PyTorch's ``CopySlices``). They save no array of the
written tensor, so a later write never invalidates them.

Part of the op set that ``tinygrad_rnn.ops`` gathers; see its docstring for the conventions.
"""

from __future__ import annotations

import math
from typing import Any

from . import backend
from .autograd import Function
from .forward_ad import batch_size, zeros_for
from .shape_ops import batched_put

xp_of = backend.get_array_module


def _positions(shape: tuple, view_fn: Any, xp: Any) -> Any:
    """The row-major flat positions in an array of ``shape`` of the elements ``view_fn`` selects.

    ``view_fn`` is a chain of basic indexing, reshape and transpose (the view's recipe from its base), so
    applied to the array of positions it names the base element behind every view element, whatever the
    memory layout of the arrays the backward pass receives.
    """
    return view_fn(xp.arange(math.prod(shape)).reshape(shape)).reshape(-1)


class IndexPut(Function):
    """out = x with out[index] = value (``accumulate``: out[index] += value, repeats summed), written into
    x's own array;  dx = g with g[index] = 0 (g itself when accumulating), dvalue = g[index] (summed over
    the axes along which value was broadcast, by the tape)."""

    def forward(ctx, x, value, index, accumulate):
        ctx.index, ctx.accumulate = index, accumulate
        if accumulate:
            target_shape = x[index].shape
            backend.scatter_add(x, index, xp_of(x).broadcast_to(value.astype(x.dtype), target_shape))
        else:
            x[index] = value
        return x

    def backward(ctx, g):
        dx = None
        if ctx.needs_input_grad[0]:
            if ctx.accumulate:
                dx = g
            else:
                dx = g.copy()
                dx[ctx.index] = 0
        dvalue = g[ctx.index] if ctx.needs_input_grad[1] else None
        return dx, dvalue

    def jvp(ctx, primals, tangents, out, index, accumulate):
        """ṫ = ẋ with ṫ[index] = v̇ (``accumulate``: ṫ[index] += v̇, repeats summed)."""
        x, value = primals
        tx, tv = tangents
        size = batch_size(tangents)
        result = zeros_for(x, size) if tx is None else xp_of(tx).broadcast_to(tx, (size, *x.shape)).copy()
        if tv is not None:
            batched_put(result, index, tv, accumulate)
        elif not accumulate:
            batched_put(result, index, zeros_for(value, 1), False)
        return result


class CopySlices(Function):
    """out = base with view_fn(out)[...] = values: a write through a view into the array it views,
    in place;  dbase = g with the viewed elements zeroed, dvalues = view_fn(g)."""

    def forward(ctx, base, values, view_fn):
        target = view_fn(base)
        if not xp_of(base).may_share_memory(target, base):
            raise RuntimeError(
                "the view no longer shares memory with its base (its base's data was replaced); "
                "clone() the view before writing into it"
            )
        target[...] = values
        ctx.view_fn, ctx.shape = view_fn, base.shape
        return base

    def backward(ctx, g):
        dbase = None
        if ctx.needs_input_grad[0]:
            xp = xp_of(g)
            dbase = g.copy()
            dbase.reshape(-1)[_positions(ctx.shape, ctx.view_fn, xp)] = 0
        dvalues = ctx.view_fn(g) if ctx.needs_input_grad[1] else None
        return dbase, dvalues

    def jvp(ctx, primals, tangents, out, view_fn):
        """ṫ = ḃase with view_fn(ṫ)[...] = v̇alues, for each direction."""
        base = primals[0]
        tb, tv = tangents
        size = batch_size(tangents)
        result = zeros_for(base, size)
        if tb is not None:
            result += tb
        for k in range(size):
            view_fn(result[k])[...] = 0 if tv is None else tv[min(k, tv.shape[0] - 1)]
        return result


class ViewOf(Function):
    """out = view_fn(base), a view of base's array (a view re-derived after its base was written);
    dbase = zeros with g put at the viewed positions (a view names each base element at most once)."""

    def forward(ctx, base, view_fn):
        ctx.view_fn, ctx.shape = view_fn, base.shape
        return view_fn(base)

    def backward(ctx, g):
        xp = xp_of(g)
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        grad.reshape(-1)[_positions(ctx.shape, ctx.view_fn, xp)] = g.reshape(-1)
        return grad

    def jvp(ctx, primals, tangents, out, view_fn):
        """ṫ = view_fn(ḃase), for each direction."""
        return xp_of(out).stack([view_fn(t) for t in tangents[0]])


def _along_axis(index: Any, dim: int, xp: Any) -> tuple:
    """An open grid addressing, for every entry of ``index``, the element at that index along ``dim``
    and at the entry's own position along every other axis (``take_along_axis``'s addressing)."""
    positions = [
        xp.arange(n).reshape(tuple(n if k == axis else 1 for k in range(index.ndim)))
        for axis, n in enumerate(index.shape)
    ]
    positions[dim] = index
    return tuple(positions)


class Scatter(Function):
    """out = x with out[..., index[i], ...] = src[i] along ``dim`` (``torch.scatter``; ``add``: the values
    are summed in instead, repeats accumulating, ``torch.scatter_add``);  dx = g with the written
    positions zeroed (g itself when adding), dsrc = g gathered at index."""

    def forward(ctx, x, src, index, dim, add):
        xp = xp_of(x)
        ctx.where, ctx.add = _along_axis(index, dim, xp), add
        out = x.copy()
        if add:
            backend.scatter_add(out, ctx.where, src.astype(x.dtype, copy=False))
        else:
            out[ctx.where] = src
        return out

    def backward(ctx, g):
        dx = None
        if ctx.needs_input_grad[0]:
            dx = g if ctx.add else g.copy()
            if not ctx.add:
                dx[ctx.where] = 0
        dsrc = g[ctx.where] if ctx.needs_input_grad[1] else None
        return dx, dsrc

    def jvp(ctx, primals, tangents, out, index, dim, add):
        """ṫ = ẋ with ṡrc written at the scattered positions (``add``: summed in there)."""
        x, src = primals
        tx, ts = tangents
        size = batch_size(tangents)
        xp = xp_of(out)
        result = zeros_for(x, size) if tx is None else xp.broadcast_to(tx, (size, *x.shape)).copy()
        where = (xp.arange(size).reshape((size,) + (1,) * index.ndim), *(w[None] for w in ctx.where))
        values = zeros_for(src, 1) if ts is None else ts
        values = xp.broadcast_to(values, (size, *src.shape))
        values = values[(slice(None), *(slice(0, n) for n in index.shape))]
        if add:
            backend.scatter_add(result, where, values)
        else:
            result[where] = values
        return result
