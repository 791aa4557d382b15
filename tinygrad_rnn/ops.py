"""Every differentiable op, one ``Function`` subclass each, forward and backward side by side.

Both work on raw backend arrays; ``xp`` is NumPy or CuPy, found from the arrays themselves, so the
same code runs on either. ``g`` is always the gradient of the loss with respect to the op's output.
Gradients may be returned in a broadcast shape: the tape reduces them (``autograd.unbroadcast``).
"""

from __future__ import annotations

from typing import Any

from . import autograd, backend
from .autograd import Function, OuterProductSum
from .fused_ops import GRUCellPointwise as GRUCellPointwise
from .fused_ops import LSTMCellPointwise as LSTMCellPointwise

xp_of = backend.get_array_module


# ---- elementwise, two operands ------------------------------------------------------------------------


class Add(Function):
    """out = a + b;  da = g, db = g."""

    def forward(ctx, a, b):
        return a + b

    def backward(ctx, g):
        return g, g


class Sub(Function):
    """out = a - b;  da = g, db = -g."""

    def forward(ctx, a, b):
        return a - b

    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    """out = a * b;  da = g * b, db = g * a."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    def backward(ctx, g):
        a, b = ctx.saved
        return (g * b if ctx.needs_input_grad[0] else None), (g * a if ctx.needs_input_grad[1] else None)


class Div(Function):
    """out = a / b;  da = g / b, db = -g * a / b**2 = -g * out / b."""

    def forward(ctx, a, b):
        out = a / b
        if out.dtype == backend.float64 and a.dtype.kind in "iub" and b.dtype.kind in "iub":
            # True division of integers gives the default float dtype, as in PyTorch (NumPy: float64).
            out = out.astype(backend.get_default_dtype())
        ctx.save_for_backward(b, out)
        return out

    def backward(ctx, g):
        b, out = ctx.saved
        da = g / b if ctx.needs_input_grad[0] else None
        db = -g * out / b if ctx.needs_input_grad[1] else None
        return da, db


class Pow(Function):
    """out = a ** b (both tensors);  da = g * b * a**(b-1),  db = g * out * log(a) (0 where a <= 0)."""

    def forward(ctx, a, b):
        out = a**b
        ctx.save_for_backward(a, b, out)
        return out

    def backward(ctx, g):
        a, b, out = ctx.saved
        xp = xp_of(a)
        da = g * b * a ** (b - 1) if ctx.needs_input_grad[0] else None
        db = None
        if ctx.needs_input_grad[1]:
            positive = a > 0
            db = g * out * xp.log(xp.where(positive, a, 1)) * positive
        return da, db


class PowConstant(Function):
    """out = x ** c for a Python number c;  dx = g * c * x**(c-1)."""

    def forward(ctx, x, exponent):
        ctx.exponent = exponent
        ctx.save_for_backward(x)
        return x**exponent

    def backward(ctx, g):
        (x,) = ctx.saved
        c = ctx.exponent
        if c == 0:
            # d/dx x**0 is 0 everywhere; the general formula would give 0 * inf = nan at x = 0.
            return xp_of(g).zeros_like(g * x)
        if c == 2:
            return g * (2 * x)
        return g * (c * x ** (c - 1))


class Maximum(Function):
    """out = max(a, b) elementwise;  the gradient goes to the larger operand, half to each on a tie."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp_of(a).maximum(a, b)

    def backward(ctx, g):
        a, b = ctx.saved
        share = (a > b) + 0.5 * (a == b)
        return g * share.astype(g.dtype, copy=False), g * (1 - share).astype(g.dtype, copy=False)


class Minimum(Function):
    """out = min(a, b) elementwise;  the gradient goes to the smaller operand, half to each on a tie."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp_of(a).minimum(a, b)

    def backward(ctx, g):
        a, b = ctx.saved
        share = (a < b) + 0.5 * (a == b)
        return g * share.astype(g.dtype, copy=False), g * (1 - share).astype(g.dtype, copy=False)


class Where(Function):
    """out = a where condition else b;  da = g * condition, db = g * (not condition)."""

    def forward(ctx, condition, a, b):
        ctx.save_for_backward(condition)
        return xp_of(a).where(condition, a, b)

    def backward(ctx, g):
        (condition,) = ctx.saved
        zero = g.dtype.type(0)
        xp = xp_of(g)
        da = xp.where(condition, g, zero) if ctx.needs_input_grad[1] else None
        db = xp.where(condition, zero, g) if ctx.needs_input_grad[2] else None
        return None, da, db


# ---- elementwise, one operand --------------------------------------------------------------------------


class Neg(Function):
    """out = -x;  dx = -g."""

    def forward(ctx, x):
        return -x

    def backward(ctx, g):
        return -g


class Exp(Function):
    """out = exp(x);  dx = g * out."""

    def forward(ctx, x):
        out = xp_of(x).exp(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return g * ctx.saved[0]


class Log(Function):
    """out = log(x);  dx = g / x."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).log(x)

    def backward(ctx, g):
        return g / ctx.saved[0]


class Tanh(Function):
    """out = tanh(x);  dx = g * (1 - out**2)."""

    def forward(ctx, x):
        out = xp_of(x).tanh(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        out = ctx.saved[0]
        return g * (1 - out * out)


def stable_sigmoid(x: Any) -> Any:
    """σ(x) = 1 / (1 + e^{-x}) without overflow: with e = exp(-|x|), σ = 1/(1+e) for x >= 0, e/(1+e) else."""
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, r, e * r)


class Sigmoid(Function):
    """out = σ(x) = 1 / (1 + exp(-x)), computed without overflow;  dx = g * out * (1 - out)."""

    def forward(ctx, x):
        out = stable_sigmoid(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        out = ctx.saved[0]
        return g * out * (1 - out)


class Relu(Function):
    """out = max(x, 0);  dx = g where x > 0, else 0."""

    def forward(ctx, x):
        out = xp_of(x).maximum(x, 0)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return g * (ctx.saved[0] > 0)


class Sqrt(Function):
    """out = sqrt(x);  dx = g / (2 out)."""

    def forward(ctx, x):
        out = xp_of(x).sqrt(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return g / (2 * ctx.saved[0])


class Abs(Function):
    """out = |x|;  dx = g * sign(x) (0 at 0)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).abs(x)

    def backward(ctx, g):
        return g * xp_of(g).sign(ctx.saved[0])


class Clamp(Function):
    """out = min(max(x, low), high);  dx = g where low <= x <= high, else 0."""

    def forward(ctx, x, low=None, high=None):
        ctx.save_for_backward(x)
        ctx.low, ctx.high = low, high
        return xp_of(x).clip(x, low, high)

    def backward(ctx, g):
        (x,) = ctx.saved
        inside = True
        if ctx.low is not None:
            inside = x >= ctx.low
        if ctx.high is not None:
            inside = inside & (x <= ctx.high)
        return g * inside


class Cast(Function):
    """out = x converted to ``dtype``;  dx = g converted back to x's dtype."""

    def forward(ctx, x, dtype):
        ctx.input_dtype = x.dtype
        return x.astype(dtype)

    def backward(ctx, g):
        return g.astype(ctx.input_dtype)


class Copy(Function):
    """out = a copy of x (``clone``);  dx = g."""

    def forward(ctx, x):
        return x.copy()

    def backward(ctx, g):
        return g


class ToDevice(Function):
    """out = x moved to another device;  dx = g moved back."""

    def forward(ctx, x, device):
        ctx.source = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(ctx, g):
        return backend.to_device(g, ctx.source)


# ---- matrix product ------------------------------------------------------------------------------------


class MatMul(Function):
    """out = a @ b (1-D, 2-D or batched with broadcasting, as ``numpy.matmul``).

    With both promoted to matrices (a vector a becomes a row, a vector b a column):
    da = g @ bᵀ, db = aᵀ @ g, then reduced over broadcast batch axes and reshaped back.
    """

    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("MatMul: both operands must have at least one dimension")
        ctx.save_for_backward(a, b)
        return a @ b

    def backward(ctx, g):
        a, b = ctx.saved
        if a.ndim == 2 and b.ndim == 2:
            # The common case (every step of a recurrent layer) first. The weight gradient aᵀ g is
            # returned deferred: summed over all uses of the weight, it becomes one product.
            needs = ctx.needs_input_grad
            da = g @ b.T if needs[0] else None
            if not needs[1]:
                return da, None
            return da, (OuterProductSum(a, g) if not autograd._anomaly_enabled else a.T @ g)
        xp = xp_of(g)
        if a.ndim == 1 and b.ndim == 1:
            return g * b, g * a
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        da = db = None
        if ctx.needs_input_grad[0]:
            da = g2 @ xp.swapaxes(b2, -1, -2)
            if a.ndim == 1:
                da = da.reshape(-1, a.shape[0]).sum(axis=0)
        if ctx.needs_input_grad[1]:
            if b2.ndim == 2 and a2.ndim > 2:
                # Fold the batch axes into the rows: one large product instead of a batch of small
                # ones followed by a sum (the shape of a hoisted input projection).
                db = a2.reshape(-1, a2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                db = xp.swapaxes(a2, -1, -2) @ g2
            if b.ndim == 1:
                db = db.reshape(-1, b.shape[0]).sum(axis=0) if db.ndim > 2 else db[:, 0]
        return da, db


class AddMatMul(MatMul):
    """out = a @ b + c (``torch.addmm``'s shape of work, any operands ``matmul`` accepts, c broadcast);
    da, db as for :class:`MatMul`, dc = g (reduced over broadcast axes by the tape).

    One node instead of two for the recurrent step W_hh h + (W_ih x + b): the sum is added into the
    product's fresh buffer, with no second output array and no second node on the tape.
    """

    def forward(ctx, a, b, c):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("AddMatMul: both matmul operands must have at least one dimension")
        ctx.save_for_backward(a, b)
        out = a @ b
        # Add in place when c fits inside the product's shape (c itself, or a bias row): the product
        # is a fresh buffer nobody else holds.
        if c.dtype == out.dtype and c.ndim <= out.ndim and c.shape == out.shape[out.ndim - c.ndim :]:
            out += c
            return out
        return out + c

    def backward(ctx, g):
        da, db = MatMul.backward(ctx, g)
        return da, db, (g if ctx.needs_input_grad[2] else None)


class TanhAddMatMul(Function):
    """out = tanh(a @ b + c) for matrices a (B, K), b (K, N) and c broadcast to (B, N): the step of a
    vanilla RNN, h' = tanh(h W_hhᵀ + (W_ih x + b)), as one node instead of two.

    With d = g ⊙ (1 - out²): da = d @ bᵀ, db = aᵀ @ d (deferred, as :class:`MatMul`'s), dc = d.
    """

    def forward(ctx, a, b, c):
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"TanhAddMatMul: a and b must be matrices, got shapes {a.shape} and {b.shape}")
        out = a @ b
        if c.shape == out.shape and c.dtype == out.dtype:
            out += c
        else:
            out = out + c
        xp_of(out).tanh(out, out=out)  # ``out`` is this op's fresh buffer
        ctx.save_for_backward(a, b, out)
        return out

    def backward(ctx, g):
        a, b, out = ctx.saved
        d = out * out
        xp_of(d).subtract(1, d, out=d)
        d *= g
        needs = ctx.needs_input_grad
        da = d @ b.T if needs[0] else None
        db = None
        if needs[1]:
            db = OuterProductSum(a, d) if not autograd._anomaly_enabled else a.T @ d
        return da, db, (d if needs[2] else None)


# ---- reductions --------------------------------------------------------------------------------------


def _expand_reduced(g: Any, shape: tuple, dims: tuple, keepdim: bool) -> Any:
    """Bring a reduced gradient back to the input's rank so that it broadcasts against it."""
    if not keepdim and dims:
        g = g.reshape(tuple(1 if i in dims else n for i, n in enumerate(shape)))
    return g


class Sum(Function):
    """out = Σ x over ``dims``;  dx = g broadcast back over the summed axes."""

    def forward(ctx, x, dims, keepdim):
        ctx.dims, ctx.keepdim, ctx.shape = dims, keepdim, x.shape
        return x.sum(axis=dims, keepdims=keepdim)

    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.dims, ctx.keepdim)
        return xp_of(g).broadcast_to(g, ctx.shape)


class Mean(Function):
    """out = (1/n) Σ x over ``dims``;  dx = g / n broadcast back."""

    def forward(ctx, x, dims, keepdim):
        ctx.dims, ctx.keepdim, ctx.shape = dims, keepdim, x.shape
        out = x.mean(axis=dims, keepdims=keepdim)
        ctx.count = max(x.size // max(out.size, 1), 1) if x.size else 1
        return out

    def backward(ctx, g):
        g = _expand_reduced(g, ctx.shape, ctx.dims, ctx.keepdim) / g.dtype.type(ctx.count)
        return xp_of(g).broadcast_to(g, ctx.shape)


class Amax(Function):
    """out = max of x over ``dims``;  dx = g shared evenly among the elements equal to the maximum."""

    def forward(ctx, x, dims, keepdim):
        ctx.dims, ctx.keepdim = dims, keepdim
        out = x.max(axis=dims, keepdims=True)
        ctx.save_for_backward(x, out)
        return out if keepdim else out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))

    def backward(ctx, g):
        x, out = ctx.saved
        winners = (x == out).astype(g.dtype)
        winners /= winners.sum(axis=ctx.dims, keepdims=True)
        return _expand_reduced(g, x.shape, ctx.dims, ctx.keepdim) * winners


class LogSumExp(Function):
    """out = log Σ exp(x) over ``dims``, computed as m + log Σ exp(x - m) with m the maximum;
    dx = g * softmax(x) = g * exp(x - m) / Σ exp(x - m) (0 where every x is -inf)."""

    def forward(ctx, x, dims, keepdim):
        xp = xp_of(x)
        m = x.max(axis=dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        e = xp.exp(x - m)
        total = e.sum(axis=dims, keepdims=True)
        out = xp.log(total) + m
        ctx.dims, ctx.keepdim = dims, keepdim
        # Save the softmax itself: exp(x - out) loses digits once out is rounded at the scale of x
        # (a relative error of 1e-4 for float32 logits of 1e4).
        ctx.save_for_backward(e / xp.where(total > 0, total, 1))
        return out if keepdim else out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))

    def backward(ctx, g):
        (softmax,) = ctx.saved
        return _expand_reduced(g, softmax.shape, ctx.dims, ctx.keepdim) * softmax


class Softmax(Function):
    """out = exp(x - max) / Σ exp(x - max) along ``dim``;  dx = out * (g - Σ g*out)."""

    def forward(ctx, x, dim):
        xp = xp_of(x)
        e = xp.exp(x - x.max(axis=dim, keepdims=True))
        out = e / e.sum(axis=dim, keepdims=True)
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        out = ctx.saved[0]
        return out * (g - (g * out).sum(axis=ctx.dim, keepdims=True))


class LogSoftmax(Function):
    """out = x - logsumexp(x) along ``dim`` (finite for logits of any size);  dx = g - softmax(x) Σ g."""

    def forward(ctx, x, dim):
        xp = xp_of(x)
        shifted = x - x.max(axis=dim, keepdims=True)
        out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        out = ctx.saved[0]
        return g - xp_of(g).exp(out) * g.sum(axis=ctx.dim, keepdims=True)


# ---- movement ----------------------------------------------------------------------------------------


class Reshape(Function):
    """out = x with a new shape (same elements, row-major order);  dx = g reshaped back."""

    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return x.reshape(shape)

    def backward(ctx, g):
        return g.reshape(ctx.shape)


class Permute(Function):
    """out = x with its axes reordered by ``dims``;  dx = g with the inverse permutation."""

    def forward(ctx, x, dims):
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    def backward(ctx, g):
        return g.transpose(ctx.inverse)


class Expand(Function):
    """out = x broadcast to ``shape`` (a view, no copy);  dx = g summed over the stretched axes,
    which the tape's unbroadcast does."""

    def forward(ctx, x, shape):
        return xp_of(x).broadcast_to(x, shape)

    def backward(ctx, g):
        return g


def _basic_index(index: Any) -> bool:
    """True when ``index`` selects without integer or boolean arrays (so no element repeats)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in items)


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


class Stack(Function):
    """out = the inputs stacked along a new axis ``dim``;  input i's gradient is g's slice i there."""

    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        return xp_of(arrays[0]).stack(arrays, axis=dim)

    def backward(ctx, g):
        prefix = (slice(None),) * ctx.dim
        return tuple(g[(*prefix, i)] if need else None for i, need in enumerate(ctx.needs_input_grad))


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


class Unbind(Function):
    """outs = the slices of x along ``dim`` (that axis removed);  one gradient buffer, as in Split."""

    def forward(ctx, x, dim):
        ctx.dim, ctx.shape = dim, x.shape
        xp = xp_of(x)
        moved = xp.moveaxis(x, dim, 0) if dim else x
        return tuple(moved[i] for i in range(x.shape[dim]))

    def backward(ctx, *grads):
        xp = xp_of(next(g for g in grads if g is not None))
        if all(g is not None for g in grads):
            # Every step has a gradient (a full recurrent pass): one stack, no zero fill, no loop.
            return xp.stack(grads, axis=ctx.dim)
        grad = xp.zeros(ctx.shape, dtype=_dtype_of(grads))
        moved = xp.moveaxis(grad, ctx.dim, 0) if ctx.dim else grad
        for i, g in enumerate(grads):
            if g is not None:
                moved[i] = g
        return grad


def _dtype_of(grads: tuple) -> Any:
    return next(g for g in grads if g is not None).dtype


# ---- random --------------------------------------------------------------------------------------------


class Dropout(Function):
    """out = x * mask / (1 - p) with mask ~ Bernoulli(1 - p) (inverted dropout);  dx = g * mask / (1 - p)."""

    def forward(ctx, x, p):
        dev = backend.device_of(x)
        keep = backend.random_uniform(x.shape, x.dtype, dev) >= p
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
        ctx.save_for_backward(mask)
        return x * mask

    def backward(ctx, g):
        return g * ctx.saved[0]


# ---- lookup and losses ---------------------------------------------------------------------------------


class Embedding(Function):
    """out[..., :] = weight[indices[...], :] (row lookup);  dweight = g scattered back to the looked-up
    rows (repeats accumulate), with the row ``padding_idx`` (if any) getting no gradient."""

    def forward(ctx, weight, indices, padding_idx):
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        ctx.indices = indices
        return weight[indices]

    def backward(ctx, g):
        grad = xp_of(g).zeros(ctx.shape, dtype=g.dtype)
        backend.scatter_add(grad, ctx.indices, g)
        if ctx.padding_idx is not None:
            grad[ctx.padding_idx] = 0
        return grad


class Softplus(Function):
    """out = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) (no overflow);  dx = g * σ(x)."""

    def forward(ctx, x):
        xp = xp_of(x)
        ctx.save_for_backward(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(ctx, g):
        return g * stable_sigmoid(ctx.saved[0])


def _class_rows(x: Any) -> Any:
    """(C,) -> (1, C); (N, C) as is; (N, C, d1, ...) -> (N·d1·..., C): one row of class scores per target."""
    if x.ndim == 1:
        return x[None, :]
    if x.ndim == 2:
        return x
    return xp_of(x).moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _class_unrows(rows: Any, shape: tuple) -> Any:
    """Inverse of :func:`_class_rows` for a gradient."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = rows.reshape((shape[0], *shape[2:], shape[1]))
    return xp_of(rows).moveaxis(moved, -1, 1)


def _picked(ctx: Any, log_probs: Any, target: Any, weight: Any, ignore_index: int) -> Any:
    """Per-row -w[t]·log p[t] (zero where t == ignore_index); keeps on ctx what the backward needs."""
    xp = xp_of(log_probs)
    t = target.reshape(-1)
    valid = t != ignore_index
    ctx.safe = xp.where(valid, t, 0)
    ctx.rows = xp.arange(t.shape[0])
    ctx.valid = valid.astype(log_probs.dtype)
    ctx.weight_t = ctx.valid if weight is None else weight[ctx.safe].astype(log_probs.dtype) * ctx.valid
    return -log_probs[ctx.rows, ctx.safe] * ctx.weight_t


def _reduce_rows(ctx: Any, losses: Any, reduction: str, target_shape: tuple) -> Any:
    ctx.reduction, ctx.target_shape = reduction, target_shape
    if reduction == "none":
        return losses.reshape(target_shape)
    if reduction == "sum":
        return losses.sum()
    # Mean over the weights of the non-ignored targets, as PyTorch: 0/0 = nan when all are ignored,
    # which is the documented result, so NumPy's warning about it is silenced.
    ctx.denominator = ctx.weight_t.sum()
    errstate = getattr(xp_of(losses), "errstate", None)
    if errstate is None:
        return losses.sum() / ctx.denominator
    with errstate(invalid="ignore", divide="ignore"):
        return losses.sum() / ctx.denominator


def _row_scale(ctx: Any, g: Any) -> Any:
    """The upstream gradient of each row's loss."""
    if ctx.reduction == "none":
        return g.reshape(-1)
    if ctx.reduction == "sum":
        return g
    # Every row is ignored when the denominator is 0: their gradients are zero, as in PyTorch, not 0·∞.
    denominator = ctx.denominator
    return g / xp_of(g).where(denominator == 0, 1, denominator)


class NLLLoss(Function):
    """loss_i = -w[t_i] · x[i, t_i] over rows of log-probabilities x (class axis 1), reduced by
    ``reduction`` (mean divides by Σ w[t_i] over non-ignored rows);  dx[i, t_i] = -w[t_i] · g_i."""

    def forward(ctx, x, target, weight, ignore_index, reduction):
        ctx.shape = x.shape
        losses = _picked(ctx, _class_rows(x), target, weight, ignore_index)
        return _reduce_rows(ctx, losses, reduction, target.shape)

    def backward(ctx, g):
        xp = xp_of(g)
        scale = _row_scale(ctx, g) * ctx.weight_t
        grad = xp.zeros((ctx.rows.shape[0], ctx.shape[0] if len(ctx.shape) == 1 else ctx.shape[1]), g.dtype)
        grad[ctx.rows, ctx.safe] = -scale
        return _class_unrows(grad, ctx.shape)


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood over class axis 1 (one node instead of several).

    With log p = x - logsumexp(x) per row, w the class weights (ones when None), ε the label smoothing
    and C the number of classes: loss_i = (1-ε) w[t_i](-log p[i, t_i]) + (ε/C) Σ_c w_c(-log p[i, c]),
    zero for rows with t_i == ignore_index; mean divides by Σ w[t_i] over non-ignored rows.
    Gradient: dx_i = g_i [(1-ε) w[t_i] (p_i - onehot(t_i)) + (ε/C)(Σ_c w_c · p_i - w)].

    The forward pass keeps e = exp(x - max) and its row sums, never the full log p: the backward pass
    is then one scaled copy of e (p = e / Σe) plus a scatter at the targets.
    """

    def forward(ctx, x, target, weight, ignore_index, reduction, label_smoothing):
        xp = xp_of(x)
        ctx.shape, ctx.smoothing = x.shape, label_smoothing
        rows = _class_rows(x)
        shifted = rows - rows.max(axis=1, keepdims=True)
        ctx.exp = xp.exp(shifted)
        ctx.total = ctx.exp.sum(axis=1)
        log_total = xp.log(ctx.total)
        # -log p[i, t] = log Σe - shifted[i, t]
        losses = _picked(ctx, shifted, target, weight, ignore_index) + log_total * ctx.weight_t
        ctx.class_weight = None if weight is None else weight.astype(x.dtype)
        if label_smoothing:
            classes = rows.shape[1]
            if weight is None:
                smooth = classes * log_total - shifted.sum(axis=1)
            else:
                smooth = ctx.class_weight.sum() * log_total - shifted @ ctx.class_weight
            losses = (1 - label_smoothing) * losses + (label_smoothing / classes) * smooth * ctx.valid
        return _reduce_rows(ctx, losses, reduction, target.shape)

    def backward(ctx, g):
        scale = _row_scale(ctx, g)
        nll_scale = (1 - ctx.smoothing) * scale * ctx.weight_t
        probability_scale = nll_scale
        if ctx.smoothing:
            classes = ctx.exp.shape[1]
            w = ctx.class_weight
            smooth_scale = (ctx.smoothing / classes) * scale * ctx.valid
            probability_scale = nll_scale + smooth_scale * (classes if w is None else w.sum())
        grad = ctx.exp * (probability_scale / ctx.total)[:, None]
        grad[ctx.rows, ctx.safe] -= nll_scale
        if ctx.smoothing:
            grad -= smooth_scale[:, None] if w is None else smooth_scale[:, None] * w
        return _class_unrows(grad, ctx.shape)
