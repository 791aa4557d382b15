"""Arithmetic ops beyond the basic set: ``Sin``, ``Cos``, ``CumSum``, ``VectorNorm`` and ``Einsum``.

Part of the op set that ``tinygrad_rnn.ops`` gathers; see its docstring for the conventions.
"""

from __future__ import annotations

from . import backend
from .autograd import Function

xp_of = backend.get_array_module


class Sin(Function):
    """out = sin(x);  dx = g * cos(x)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).sin(x)

    def backward(ctx, g):
        return g * xp_of(g).cos(ctx.saved[0])


class Cos(Function):
    """out = cos(x);  dx = -g * sin(x)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).cos(x)

    def backward(ctx, g):
        return -g * xp_of(g).sin(ctx.saved[0])


class CumSum(Function):
    """out[i] = Σ_{j <= i} x[j] along ``dim``;  dx[j] = Σ_{i >= j} g[i] (a reversed cumulative sum)."""

    def forward(ctx, x, dim):
        ctx.dim = dim
        return xp_of(x).cumsum(x, axis=dim)

    def backward(ctx, g):
        xp = xp_of(g)
        return xp.flip(xp.cumsum(xp.flip(g, axis=ctx.dim), axis=ctx.dim), axis=ctx.dim)


class VectorNorm(Function):
    """out = (Σ |x|^p)^(1/p) over ``dims`` for a finite p >= 1;
    dx = g * sign(x) |x|^(p-1) / out^(p-1), taken as 0 where out = 0 (PyTorch's subgradient)."""

    def forward(ctx, x, p, dims, keepdim):
        xp = xp_of(x)
        magnitude = xp.abs(x)
        if p == 2:
            out = xp.sqrt((x * x).sum(axis=dims, keepdims=True))
        elif p == 1:
            out = magnitude.sum(axis=dims, keepdims=True)
        else:
            # Scaled by the largest entry so that |x|^p neither overflows nor underflows.
            scale = magnitude.max(axis=dims, keepdims=True)
            safe = xp.where(scale > 0, scale, 1)
            out = ((magnitude / safe) ** p).sum(axis=dims, keepdims=True) ** (1.0 / p) * scale
        ctx.p, ctx.dims, ctx.keepdim = p, dims, keepdim
        ctx.save_for_backward(x, out)
        return out if keepdim else out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))

    def backward(ctx, g):
        x, out = ctx.saved
        xp = xp_of(g)
        if not ctx.keepdim:
            g = g.reshape(out.shape)
        positive = out > 0
        safe = xp.where(positive, out, 1)
        if ctx.p == 1:
            return g * xp.sign(x) * positive
        if ctx.p == 2:
            return g * x / safe * positive
        ratio = xp.abs(x) / safe
        return g * xp.sign(x) * ratio ** (ctx.p - 1) * positive


class Einsum(Function):
    """out = einsum(equation, *operands) for an explicit equation ``"ij,jk->ik"`` (no ``...``, no letter
    repeated within one operand);  d operand_k = einsum of g with the other operands onto operand k's
    letters, broadcast along the letters that appear in operand k alone (they were summed out)."""

    def forward(ctx, *arrays, inputs, output):
        xp = xp_of(arrays[0])
        ctx.inputs, ctx.output = inputs, output
        ctx.sizes = {letter: n for sub, a in zip(inputs, arrays) for letter, n in zip(sub, a.shape)}
        ctx.save_for_backward(*arrays)
        return xp.einsum(",".join(inputs) + "->" + output, *arrays)

    def backward(ctx, g):
        arrays = ctx.saved
        xp = xp_of(g)
        grads = []
        for k, sub in enumerate(ctx.inputs):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            others = [(s, a) for j, (s, a) in enumerate(zip(ctx.inputs, arrays)) if j != k]
            seen = set(ctx.output).union(*(set(s) for s, _ in others))
            kept = "".join(letter for letter in sub if letter in seen)
            equation = ",".join([ctx.output, *(s for s, _ in others)]) + "->" + kept
            partial = xp.einsum(equation, g, *(a for _, a in others))
            # Letters summed out of operand k alone: the gradient is the same along them.
            shape = tuple(ctx.sizes[letter] if letter in seen else 1 for letter in sub)
            full = partial.reshape(shape)
            grads.append(xp.broadcast_to(full, tuple(ctx.sizes[letter] for letter in sub)))
        return tuple(grads)
