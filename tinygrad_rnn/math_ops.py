"""Arithmetic ops beyond the basic set: ``Sin``, ``Cos``, ``CumSum``, ``VectorNorm``, ``Einsum``, ``Log1p``,
``Prod``, ``CumProd`` and ``Remainder``.

Part of the op set that ``tinygrad_rnn.ops`` gathers; see its docstring for the conventions.
"""

from __future__ import annotations

from . import backend
from .autograd import Function
from .forward_ad import lift, shifted, total

xp_of = backend.get_array_module


class Sin(Function):
    """out = sin(x);  dx = g * cos(x)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).sin(x)

    def backward(ctx, g):
        return g * xp_of(g).cos(ctx.saved[0])

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ cos(x)."""
        return tangents[0] * xp_of(out).cos(primals[0])


class Cos(Function):
    """out = cos(x);  dx = -g * sin(x)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).cos(x)

    def backward(ctx, g):
        return -g * xp_of(g).sin(ctx.saved[0])

    def jvp(ctx, primals, tangents, out):
        """ṫ = -ẋ sin(x)."""
        return -tangents[0] * xp_of(out).sin(primals[0])


class CumSum(Function):
    """out[i] = Σ_{j <= i} x[j] along ``dim``;  dx[j] = Σ_{i >= j} g[i] (a reversed cumulative sum)."""

    def forward(ctx, x, dim):
        ctx.dim = dim
        return xp_of(x).cumsum(x, axis=dim)

    def backward(ctx, g):
        xp = xp_of(g)
        return xp.flip(xp.cumsum(xp.flip(g, axis=ctx.dim), axis=ctx.dim), axis=ctx.dim)

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ = the running sum of ẋ along ``dim``."""
        return xp_of(out).cumsum(tangents[0], axis=dim % out.ndim + 1)


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

    def jvp(ctx, primals, tangents, out, p, dims, keepdim):
        """ṫ = Σ ẋ sign(x) |x|^(p-1) / out^(p-1) over ``dims`` (0 where out = 0, as backward)."""
        x, norm = ctx.saved
        xp = xp_of(x)
        positive = norm > 0
        safe = xp.where(positive, norm, 1)
        if p == 1:
            slope = xp.sign(x) * positive
        elif p == 2:
            slope = x / safe * positive
        else:
            slope = xp.sign(x) * (xp.abs(x) / safe) ** (p - 1) * positive
        return (tangents[0] * slope).sum(axis=shifted(dims, x.ndim), keepdims=keepdim)


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

    def jvp(ctx, primals, tangents, out, inputs, output):
        """ṫ = Σ_k einsum(equation) with operand k replaced by its tangent (K as an extra letter)."""
        xp = xp_of(out)
        used = set("".join(inputs) + output)
        letter = next(c for c in "KZYXWVUTSRQPONMLJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in used)
        terms = []
        for k, tangent in enumerate(tangents):
            if tangent is None:
                continue
            subscripts = [letter + s if j == k else s for j, s in enumerate(inputs)]
            operands = [tangent if j == k else a for j, a in enumerate(primals)]
            terms.append(xp.einsum(",".join(subscripts) + "->" + letter + output, *operands))
        return total(out, *terms)


class Log1p(Function):
    """out = log(1 + x), accurate for small x;  dx = g / (1 + x)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).log1p(x)

    def backward(ctx, g):
        return g / (1 + ctx.saved[0])

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ / (1 + x)."""
        return tangents[0] / (1 + primals[0])


def _exclusive_products(x, axis):
    """(left, right): the products of the elements strictly before and strictly after each position
    along ``axis``, built from running products so that zeros in ``x`` need no division."""
    xp = xp_of(x)
    ones_shape = list(x.shape)
    ones_shape[axis] = 1
    ones = xp.ones(ones_shape, dtype=x.dtype)
    head = xp.take(x, xp.arange(x.shape[axis] - 1), axis=axis)
    left = xp.cumprod(xp.concatenate([ones, head], axis=axis), axis=axis)
    tail = xp.flip(xp.take(x, xp.arange(1, x.shape[axis]), axis=axis), axis=axis)
    right = xp.flip(xp.cumprod(xp.concatenate([ones, tail], axis=axis), axis=axis), axis=axis)
    return left, right


class Prod(Function):
    """out = Π x along ``dim``;  dx_j = g · Π_{k≠j} x_k (the product of all the others, exact when some
    x_k are zero)."""

    def forward(ctx, x, dim, keepdim):
        ctx.dim, ctx.keepdim = dim, keepdim
        ctx.save_for_backward(x)
        return xp_of(x).prod(x, axis=dim, keepdims=keepdim)

    def backward(ctx, g):
        (x,) = ctx.saved
        xp = xp_of(g)
        if not ctx.keepdim:
            g = xp.expand_dims(g, ctx.dim)
        left, right = _exclusive_products(x, ctx.dim)
        return g * left * right

    def jvp(ctx, primals, tangents, out, dim, keepdim):
        """ṫ = Σ_j ẋ_j Π_{k≠j} x_k along ``dim`` (exact with zeros)."""
        (x,) = primals
        left, right = _exclusive_products(x, dim)
        return (tangents[0] * (left * right)).sum(axis=dim % x.ndim + 1, keepdims=keepdim)


class CumProd(Function):
    """out_i = Π_{k≤i} x_k along ``dim``;  dx_j = Σ_{i≥j} g_i Π_{k≤i, k≠j} x_k, which is
    Σ_{i≥j} g_i out_i / x_j when no x is zero (the fast form) and is computed term by term otherwise."""

    def forward(ctx, x, dim):
        ctx.dim = dim
        out = xp_of(x).cumprod(x, axis=dim)
        ctx.save_for_backward(x, out)
        return out

    def backward(ctx, g):
        x, out = ctx.saved
        xp = xp_of(g)
        dim = ctx.dim
        if bool((x != 0).all()):
            weighted = xp.flip(xp.cumsum(xp.flip(g * out, axis=dim), axis=dim), axis=dim)
            return weighted / x
        moved_x, moved_g = xp.moveaxis(x, dim, -1), xp.moveaxis(g, dim, -1)
        grad = xp.zeros_like(moved_x)
        for j in range(moved_x.shape[-1]):
            others = moved_x.copy()
            others[..., j] = 1
            running = xp.cumprod(others, axis=-1)
            grad[..., j] = (moved_g[..., j:] * running[..., j:]).sum(axis=-1)
        return xp.moveaxis(grad, -1, dim)

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ_i = Σ_{j≤i} ẋ_j Π_{k≤i, k≠j} x_k along ``dim``: out_i Σ_{j≤i} ẋ_j / x_j without zeros,
        term by term otherwise."""
        (x,), t = primals, tangents[0]
        xp = xp_of(out)
        axis = dim % x.ndim
        if bool((x != 0).all()):
            return out * xp.cumsum(t / x, axis=axis + 1)
        moved_x, moved_t = xp.moveaxis(x, axis, -1), xp.moveaxis(t, axis + 1, -1)
        result = xp.zeros(moved_t.shape[:1] + moved_x.shape, dtype=out.dtype)
        for j in range(moved_x.shape[-1]):
            others = moved_x.copy()
            others[..., j] = 1
            running = xp.cumprod(others, axis=-1)
            result[..., j:] += moved_t[..., j : j + 1] * running[..., j:]
        return xp.moveaxis(result, -1, axis + 1)


class Remainder(Function):
    """out = a - q·b with q = trunc(a / b) (``fmod``, sign of a) or floor(a / b) (``remainder``, sign of
    b);  da = g, db = -g·q (q is piecewise constant)."""

    def forward(ctx, a, b, floor):
        xp = xp_of(a)
        out = xp.mod(a, b) if floor else xp.fmod(a, b)
        ctx.save_for_backward(xp.round((a - out) / b))
        return out

    def backward(ctx, g):
        grad_a = g if ctx.needs_input_grad[0] else None
        grad_b = -g * ctx.saved[0] if ctx.needs_input_grad[1] else None
        return grad_a, grad_b

    def jvp(ctx, primals, tangents, out, floor):
        """ṫ = ȧ - ḃ q with q = (a - out) / b (piecewise constant)."""
        ta, tb = tangents
        return total(out, lift(ta, out.ndim), None if tb is None else -lift(tb, out.ndim) * ctx.saved[0])
