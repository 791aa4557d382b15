"""Ops that move, select, join and split elements without arithmetic: reshape, permute, expand,
indexing, gather, cat, stack, split and unbind. Each is a ``Function``; the backward pass puts the
gradient back where the element came from (repeated indices accumulate).

Part of the op set that ``tinygrad_rnn.ops`` gathers; see its docstring for the conventions.
"""

from __future__ import annotations

from typing import Any

from . import backend
from .autograd import Function
from .forward_ad import batch_size, lift, zeros_for

xp_of = backend.get_array_module


class Reshape(Function):
    """out = x with a new shape (same elements, row-major order);  dx = g reshaped back."""

    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    def backward(ctx, g):
        return g.reshape(ctx.shape)

    def jvp(ctx, primals, tangents, out, shape):
        """ṫ = ẋ reshaped like out."""
        t = tangents[0]
        return t.reshape((t.shape[0], *out.shape))


class Permute(Function):
    """out = x with its axes reordered by ``dims``;  dx = g with the inverse permutation."""

    def forward(ctx, x, dims):
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    def backward(ctx, g):
        return g.transpose(ctx.inverse)

    def jvp(ctx, primals, tangents, out, dims):
        """ṫ = ẋ with the same axes reordering (K stays first)."""
        ndim = primals[0].ndim
        return tangents[0].transpose((0, *(d % ndim + 1 for d in dims)))


class Expand(Function):
    """out = x broadcast to ``shape`` (a view, no copy);  dx = g summed over the stretched axes,
    which the tape's unbroadcast does."""

    def forward(ctx, x, shape):
        return xp_of(x).broadcast_to(x, shape)

    def backward(ctx, g):
        return g

    def jvp(ctx, primals, tangents, out, shape):
        """ṫ = ẋ broadcast to out's shape."""
        t = lift(tangents[0], out.ndim)
        return xp_of(t).broadcast_to(t, (t.shape[0], *out.shape))


def _basic_index(index: Any) -> bool:
    """True when ``index`` selects without integer or boolean arrays (so no element repeats)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in items)


def _batched_index(index: Any) -> tuple | None:
    """``index`` with a full slice in front, selecting the same elements of every direction of a
    ``(K, *shape)`` tangent with K kept first; None where NumPy would move K (advanced indices that
    are not adjacent put their axes first), and the caller loops over K instead."""
    items = index if isinstance(index, tuple) else (index,)
    basic = [i is None or i is Ellipsis or isinstance(i, slice) for i in items]
    advanced = [k for k, b in enumerate(basic) if not b]
    has_array = any(not isinstance(items[k], int) for k in advanced)
    if has_array and advanced[-1] - advanced[0] + 1 != len(advanced):
        return None
    return (slice(None), *items)


def batched_take(tangent: Any, index: Any) -> Any:
    """``tangent[k][index]`` for every direction k, stacked: ``(K, *x[index].shape)``."""
    batched = _batched_index(index)
    if batched is not None:
        return tangent[batched]
    return xp_of(tangent).stack([t[index] for t in tangent])


def batched_put(target: Any, index: Any, values: Any, accumulate: bool) -> None:
    """``target[k][index] = values[k]`` (``+=`` with repeats summed when ``accumulate``) for every
    direction k of a ``(K, *shape)`` target, in place; ``values`` broadcasts against the selection."""
    batched = _batched_index(index)
    if batched is None:
        for k in range(target.shape[0]):
            batched_put(target[k : k + 1], index, values[min(k, values.shape[0] - 1)][None], accumulate)
        return
    selected = target[batched].shape
    values = xp_of(target).broadcast_to(lift(values, len(selected) - 1), selected)
    if accumulate:
        backend.scatter_add(target, batched, values)
    else:
        target[batched] = values


class GetItem(Function):
    """out = x[index];  dx = zeros with g added at the selected positions (repeats accumulate)."""

    def forward(ctx, x, index):
        ctx.index, ctx.shape, ctx.dtype = index, x.shape, x.dtype
        return x[index]

    def backward(ctx, g):
        grad = xp_of(g).zeros(ctx.shape, dtype=g.dtype)
        if _basic_index(ctx.index):
            grad[ctx.index] = g
        else:
            backend.scatter_add(grad, ctx.index, g)
        return grad

    def jvp(ctx, primals, tangents, out, index):
        """ṫ = ẋ[index] for each of the K directions."""
        return batched_take(tangents[0], index)


class Gather(Function):
    """out[..., i, ...] = x[..., index[..., i, ...], ...] along ``dim`` (``torch.gather``);
    dx = zeros with g scattered back to the gathered positions (repeats accumulate)."""

    def forward(ctx, x, index, dim):
        xp = xp_of(x)
        ctx.dim, ctx.shape = dim, x.shape
        ctx.save_for_backward(index)
        return xp.take_along_axis(x, index, axis=dim)

    def backward(ctx, g):
        (index,) = ctx.saved
        xp = xp_of(g)
        grad = xp.zeros(ctx.shape, dtype=g.dtype)
        # An open grid of positions along every other axis (CuPy's indices has no sparse=True).
        positions = [
            xp.arange(n).reshape(tuple(n if k == axis else 1 for k in range(index.ndim)))
            for axis, n in enumerate(index.shape)
        ]
        positions[ctx.dim] = index
        backend.scatter_add(grad, tuple(positions), g)
        return None if not ctx.needs_input_grad[0] else grad, None

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ = gather(ẋ, index) along ``dim``."""
        t, index = tangents[0], primals[1]
        xp = xp_of(t)
        batched_index = xp.broadcast_to(index, (t.shape[0], *index.shape))
        return xp.take_along_axis(t, batched_index, axis=dim % index.ndim + 1)

    # ``index`` is passed as a non-differentiable Tensor, so the tape expects two gradients.


class Cat(Function):
    """out = the inputs joined along ``dim``;  each input's gradient is its slice of g."""

    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        ctx.bounds = []
        start = 0
        for a in arrays:
            ctx.bounds.append((start, start + a.shape[dim]))
            start += a.shape[dim]
        return xp_of(arrays[0]).concatenate(arrays, axis=dim)

    def backward(ctx, g):
        prefix = (slice(None),) * (ctx.dim % g.ndim)
        return tuple(
            g[(*prefix, slice(lo, hi))] if need else None
            for (lo, hi), need in zip(ctx.bounds, ctx.needs_input_grad)
        )

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ = the inputs' tangents joined along ``dim`` (zeros for an input without tangent)."""
        return xp_of(out).concatenate(_full_tangents(primals, tangents), axis=dim % out.ndim + 1)


class Stack(Function):
    """out = the inputs stacked along a new axis ``dim``;  input i's gradient is g's slice i there."""

    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        return _stack(arrays, dim)

    def backward(ctx, g):
        # Iterating over an array yields its slices along the first axis, as views.
        slices = g if ctx.dim == 0 else xp_of(g).moveaxis(g, ctx.dim, 0)
        needs = ctx.needs_input_grad
        if all(needs):
            return tuple(slices)
        return tuple(s if need else None for s, need in zip(slices, needs))

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ = the inputs' tangents stacked along a new axis ``dim`` (zeros for an input without tangent)."""
        return xp_of(out).stack(_full_tangents(primals, tangents), axis=dim % out.ndim + 1)


class Split(Function):
    """outs = x cut into consecutive pieces of the given sizes along ``dim`` (``split``, ``chunk``).

    The backward pass writes every piece's gradient into one buffer of x's shape (pieces that got no
    gradient stay zero), so splitting a sequence into T steps costs O(T), not O(T²).
    """

    def forward(ctx, x, sizes, dim):
        ctx.dim, ctx.shape = dim, x.shape
        prefix = (slice(None),) * dim
        ctx.slices = []
        start = 0
        for size in sizes:
            ctx.slices.append((*prefix, slice(start, start + size)))
            start += size
        return tuple(x[s] for s in ctx.slices)

    def backward(ctx, *grads):
        grad = xp_of(next(g for g in grads if g is not None)).zeros(ctx.shape, dtype=_dtype_of(grads))
        for s, g in zip(ctx.slices, grads):
            if g is not None:
                grad[s] = g
        return grad

    def jvp(ctx, primals, tangents, out, sizes, dim):
        """ṫ_k = the k-th piece of ẋ."""
        t = tangents[0]
        return tuple(t[(slice(None), *s)] for s in ctx.slices)


class Unbind(Function):
    """outs = the slices of x along ``dim`` (that axis removed);  one gradient buffer, as in Split."""

    def forward(ctx, x, dim):
        ctx.dim, ctx.shape = dim, x.shape
        xp = xp_of(x)
        return tuple(xp.moveaxis(x, dim, 0) if dim else x)  # the slices along the first axis, as views

    def backward(ctx, *grads):
        xp = xp_of(next(g for g in grads if g is not None))
        if all(g is not None for g in grads):
            # Every step has a gradient (a full recurrent pass): one stack, no zero fill, no loop.
            return _stack(grads, ctx.dim)
        grad = xp.zeros(ctx.shape, dtype=_dtype_of(grads))
        moved = xp.moveaxis(grad, ctx.dim, 0) if ctx.dim else grad
        for i, g in enumerate(grads):
            if g is not None:
                moved[i] = g
        return grad

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ_k = the k-th slice of ẋ along ``dim``."""
        t = tangents[0]
        moved = xp_of(t).moveaxis(t, dim % primals[0].ndim + 1, 1)
        return tuple(moved[:, i] for i in range(moved.shape[1]))


def _stack(arrays: tuple, dim: int) -> Any:
    """``xp.stack(arrays, axis=dim)`` for arrays of one shape. Where the new axis is not the last, it is
    one ``concatenate`` along ``dim`` reshaped to split that axis into (len(arrays), size): the same
    array, without ``stack``'s per-array Python work (60 against 25 µs for 50 (8, 64) steps)."""
    xp = xp_of(arrays[0])
    shape = arrays[0].shape
    if not 0 <= dim < len(shape) or [a.shape for a in arrays].count(shape) != len(arrays):
        return xp.stack(arrays, axis=dim)  # stack raises the error for arrays of different shapes
    return xp.concatenate(arrays, axis=dim).reshape(*shape[:dim], len(arrays), *shape[dim:])


def _full_tangents(primals: tuple, tangents: tuple) -> list:
    """Every input's tangent as ``(K, *shape)``, zeros for an input that carries none."""
    size = batch_size(tangents)
    return [
        zeros_for(p, size) if t is None else xp_of(t).broadcast_to(t, (size, *p.shape))
        for p, t in zip(primals, tangents)
    ]


def _dtype_of(grads: tuple) -> Any:
    return next(g for g in grads if g is not None).dtype
