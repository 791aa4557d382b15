"""Every differentiable op, one ``Function`` subclass each, forward and backward side by side.

Both work on raw backend arrays; ``xp`` is NumPy or CuPy, found from the arrays themselves, so the
same code runs on either. ``g`` is always the gradient of the loss with respect to the op's output.
Gradients may be returned in a broadcast shape: the tape reduces them (``autograd.unbroadcast``).

This module holds the arithmetic (elementwise, matrix products, reductions, softmax, dropout). The
ops that move, select, join and split elements are in ``shape_ops.py``, the lookup and loss ops in
``loss_ops.py``, the fused recurrent-cell ops in ``fused_ops.py``; all are re-exported here, so every
op is ``ops.<Name>``.
"""

from __future__ import annotations

from typing import Any

from . import backend, fastpaths
from .autograd import Function
from .forward_ad import lift, shifted, total
from .fused_ops import GRUCellPointwise as GRUCellPointwise
from .fused_ops import LSTMCellPointwise as LSTMCellPointwise
from .loss_ops import CrossEntropy as CrossEntropy
from .loss_ops import Embedding as Embedding
from .loss_ops import NLLLoss as NLLLoss
from .loss_ops import Softplus as Softplus
from .shape_ops import Cat as Cat
from .shape_ops import Expand as Expand
from .shape_ops import Gather as Gather
from .shape_ops import GetItem as GetItem
from .shape_ops import Permute as Permute
from .shape_ops import Reshape as Reshape
from .shape_ops import Split as Split
from .shape_ops import Stack as Stack
from .shape_ops import Unbind as Unbind

xp_of = backend.get_array_module


# ---- elementwise, two operands ------------------------------------------------------------------------


class Add(Function):
    """out = a + b;  da = g, db = g."""

    def forward(ctx, a, b):
        return a + b

    def backward(ctx, g):
        return g, g

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ + ḃ."""
        return total(out, lift(tangents[0], out.ndim), lift(tangents[1], out.ndim))


class Sub(Function):
    """out = a - b;  da = g, db = -g."""

    def forward(ctx, a, b):
        return a - b

    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ - ḃ."""
        ta, tb = tangents
        return total(out, lift(ta, out.ndim), None if tb is None else -lift(tb, out.ndim))


class Mul(Function):
    """out = a * b;  da = g * b, db = g * a."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    def backward(ctx, g):
        a, b = ctx.saved
        return (g * b if ctx.needs_input_grad[0] else None), (g * a if ctx.needs_input_grad[1] else None)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ b + a ḃ."""
        (a, b), (ta, tb) = primals, tangents
        return total(
            out,
            None if ta is None else lift(ta, out.ndim) * b,
            None if tb is None else lift(tb, out.ndim) * a,
        )


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

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ / b - ḃ out / b."""
        b, (ta, tb) = primals[1], tangents
        return total(
            out,
            None if ta is None else lift(ta, out.ndim) / b,
            None if tb is None else -lift(tb, out.ndim) * (out / b),
        )


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

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ b a^(b-1) + ḃ out log(a) (the second term 0 where a <= 0, as in backward)."""
        (a, b), (ta, tb) = primals, tangents
        xp = xp_of(out)
        da = None if ta is None else lift(ta, out.ndim) * (b * a ** (b - 1))
        db = None
        if tb is not None:
            positive = a > 0
            db = lift(tb, out.ndim) * (out * xp.log(xp.where(positive, a, 1)) * positive)
        return total(out, da, db)


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

    def jvp(ctx, primals, tangents, out, exponent):
        """ṫ = ẋ c x^(c-1) (0 for c = 0)."""
        (x,), (t,) = primals, tangents
        if exponent == 0:
            return total(out, t * 0)
        return t * (exponent * x ** (exponent - 1))


class Maximum(Function):
    """out = max(a, b) elementwise;  the gradient goes to the larger operand, half to each on a tie."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp_of(a).maximum(a, b)

    def backward(ctx, g):
        a, b = ctx.saved
        share = (a > b) + 0.5 * (a == b)
        return g * share.astype(g.dtype, copy=False), g * (1 - share).astype(g.dtype, copy=False)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ where a > b, ḃ where b > a, (ȧ + ḃ)/2 on a tie (the backward's shares)."""
        (a, b), (ta, tb) = primals, tangents
        share = ((a > b) + 0.5 * (a == b)).astype(out.dtype)
        return total(
            out,
            None if ta is None else lift(ta, out.ndim) * share,
            None if tb is None else lift(tb, out.ndim) * (1 - share),
        )


class Minimum(Function):
    """out = min(a, b) elementwise;  the gradient goes to the smaller operand, half to each on a tie."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp_of(a).minimum(a, b)

    def backward(ctx, g):
        a, b = ctx.saved
        share = (a < b) + 0.5 * (a == b)
        return g * share.astype(g.dtype, copy=False), g * (1 - share).astype(g.dtype, copy=False)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ where a < b, ḃ where b < a, (ȧ + ḃ)/2 on a tie (the backward's shares)."""
        (a, b), (ta, tb) = primals, tangents
        share = ((a < b) + 0.5 * (a == b)).astype(out.dtype)
        return total(
            out,
            None if ta is None else lift(ta, out.ndim) * share,
            None if tb is None else lift(tb, out.ndim) * (1 - share),
        )


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

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ where condition else ḃ."""
        condition = primals[0]
        _, ta, tb = tangents
        zero = out.dtype.type(0)
        xp = xp_of(out)
        return total(
            out,
            None if ta is None else xp.where(condition, lift(ta, out.ndim), zero),
            None if tb is None else xp.where(condition, zero, lift(tb, out.ndim)),
        )


# ---- elementwise, one operand --------------------------------------------------------------------------


class Neg(Function):
    """out = -x;  dx = -g."""

    def forward(ctx, x):
        return -x

    def backward(ctx, g):
        return -g

    def jvp(ctx, primals, tangents, out):
        """ṫ = -ẋ."""
        return -tangents[0]


class Exp(Function):
    """out = exp(x);  dx = g * out."""

    def forward(ctx, x):
        out = xp_of(x).exp(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return g * ctx.saved[0]

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ out."""
        return tangents[0] * out


class Log(Function):
    """out = log(x);  dx = g / x."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).log(x)

    def backward(ctx, g):
        return g / ctx.saved[0]

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ / x."""
        return tangents[0] / primals[0]


class Tanh(Function):
    """out = tanh(x);  dx = g * (1 - out**2)."""

    def forward(ctx, x):
        out = xp_of(x).tanh(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        out = ctx.saved[0]
        return g * (1 - out * out)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ (1 - out²)."""
        return tangents[0] * (1 - out * out)


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

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ out (1 - out)."""
        return tangents[0] * (out * (1 - out))


class Relu(Function):
    """out = max(x, 0);  dx = g where x > 0, else 0."""

    def forward(ctx, x):
        out = xp_of(x).maximum(x, 0)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return g * (ctx.saved[0] > 0)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ where x > 0, else 0."""
        return tangents[0] * (out > 0)


class Sqrt(Function):
    """out = sqrt(x);  dx = g / (2 out)."""

    def forward(ctx, x):
        out = xp_of(x).sqrt(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return g / (2 * ctx.saved[0])

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ / (2 out)."""
        return tangents[0] / (2 * out)


class Abs(Function):
    """out = |x|;  dx = g * sign(x) (0 at 0)."""

    def forward(ctx, x):
        ctx.save_for_backward(x)
        return xp_of(x).abs(x)

    def backward(ctx, g):
        return g * xp_of(g).sign(ctx.saved[0])

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ sign(x)."""
        return tangents[0] * xp_of(out).sign(primals[0])


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

    def jvp(ctx, primals, tangents, out, low=None, high=None):
        """ṫ = ẋ where low <= x <= high, else 0."""
        return Clamp.backward(ctx, tangents[0])


class Cast(Function):
    """out = x converted to ``dtype``;  dx = g converted back to x's dtype."""

    def forward(ctx, x, dtype):
        ctx.input_dtype = x.dtype
        return x.astype(dtype)

    def backward(ctx, g):
        return g.astype(ctx.input_dtype)

    def jvp(ctx, primals, tangents, out, dtype):
        """ṫ = ẋ converted to ``dtype``."""
        return tangents[0].astype(dtype)


class Copy(Function):
    """out = a copy of x (``clone``);  dx = g."""

    def forward(ctx, x):
        return x.copy()

    def backward(ctx, g):
        return g

    def jvp(ctx, primals, tangents, out):
        """ṫ = a copy of ẋ."""
        return tangents[0].copy()


class ToDevice(Function):
    """out = x moved to another device;  dx = g moved back."""

    def forward(ctx, x, device):
        ctx.source = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(ctx, g):
        return backend.to_device(g, ctx.source)

    def jvp(ctx, primals, tangents, out, device):
        """ṫ = ẋ moved to the output's device."""
        return backend.to_device(tangents[0], device)


# ---- matrix product ------------------------------------------------------------------------------------


def _matmul(a: Any, b: Any) -> Any:
    """``a @ b``, with the leading axes of a stacked ``a`` folded into the rows when ``b`` is a matrix:
    NumPy's matmul runs one small product per leading index, one large product is up to 2x faster
    (a read-out applied to the (T, B, H) states of a whole sequence)."""
    if a.ndim > 2 and b.ndim == 2:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])
    return a @ b


def _matmul_tangent_left(ta: Any, a: Any, b: Any) -> Any:
    """ȧ @ b with K leading ȧ (None when ȧ is None); a 1-D a is a row, as ``matmul`` promotes it."""
    if ta is None:
        return None
    if a.ndim == 1:
        return (lift(ta[:, None, :], max(2, b.ndim)) @ b)[..., 0, :] if b.ndim > 1 else ta @ b
    return lift(ta, max(a.ndim, b.ndim)) @ b


def _matmul_tangent_right(a: Any, tb: Any, b: Any) -> Any:
    """a @ ḃ with K leading ḃ (None when ḃ is None); a 1-D b is a column, as ``matmul`` promotes it."""
    if tb is None:
        return None
    if b.ndim == 1:
        return (a @ lift(tb[..., None], max(2, a.ndim)))[..., 0]
    return a @ lift(tb, max(a.ndim, b.ndim))


class MatMul(Function):
    """out = a @ b (1-D, 2-D or batched with broadcasting, as ``numpy.matmul``).

    With both promoted to matrices (a vector a becomes a row, a vector b a column):
    da = g @ bᵀ, db = aᵀ @ g, then reduced over broadcast batch axes and reshaped back. For two
    matrices db is returned as ``fastpaths.outer_product(a, g)``: the value aᵀ @ g, summed lazily
    with the other uses of b (one product for a weight used at every step of a sequence).
    """

    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("MatMul: both operands must have at least one dimension")
        ctx.save_for_backward(a, b)
        return _matmul(a, b)

    def backward(ctx, g):
        a, b = ctx.saved
        if a.ndim == 2 and b.ndim == 2:
            # The common case (every step of a recurrent layer) first.
            needs = ctx.needs_input_grad
            da = g @ b.T if needs[0] else None
            return da, (fastpaths.outer_product(a, g) if needs[1] else None)
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
            da = _matmul(g2, xp.swapaxes(b2, -1, -2))
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

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ @ b + a @ ḃ (each term with K as a leading batch axis)."""
        (a, b), (ta, tb) = primals[:2], tangents[:2]
        return total(out, _matmul_tangent_left(ta, a, b), _matmul_tangent_right(a, tb, b))


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
        out = _matmul(a, b)
        # Add in place when c fits inside the product's shape (c itself, or a bias row): the product
        # is a fresh buffer nobody else holds.
        if c.dtype == out.dtype and c.ndim <= out.ndim and c.shape == out.shape[out.ndim - c.ndim :]:
            out += c
            return out
        return out + c

    def backward(ctx, g):
        da, db = MatMul.backward(ctx, g)
        return da, db, (g if ctx.needs_input_grad[2] else None)

    def jvp(ctx, primals, tangents, out):
        """ṫ = ȧ @ b + a @ ḃ + ċ."""
        (a, b, _), (ta, tb, tc) = primals, tangents
        return total(out, _matmul_tangent_left(ta, a, b), _matmul_tangent_right(a, tb, b), lift(tc, out.ndim))


class TanhAddMatMul(Function):
    """out = tanh(a @ b + c) for matrices a (B, K), b (K, N) and c broadcast to (B, N): the step of a
    vanilla RNN, h' = tanh(h W_hhᵀ + (W_ih x + b)), as one node instead of MatMul -> Add -> Tanh.

    With d = g ⊙ (1 - out²): da = d @ bᵀ, db = aᵀ @ d (as ``fastpaths.outer_product(a, d)``, the
    same value summed lazily over the steps), dc = d.
    """

    def forward(ctx, a, b, c):
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"TanhAddMatMul: a and b must be matrices, got shapes {a.shape} and {b.shape}")
        xp = xp_of(a)
        # ``dot`` is ``@`` for two matrices, without matmul's broadcasting set-up (about 0.7 µs less of a
        # step that costs 15 µs at B = 8, H = 64).
        out = xp.dot(a, b)
        if c.shape == out.shape and c.dtype == out.dtype:
            out += c  # the product is a fresh buffer nobody else holds
        else:
            out = out + c
        xp.tanh(out, out=out)
        ctx.save_for_backward(a, b, out)
        return out

    def backward(ctx, g):
        a, b, out = ctx.saved
        xp = xp_of(out)
        # d = g (1 - out²), computed as g - g out²: array-array ops only (a Python scalar operand
        # costs NumPy a conversion per call).
        d = out * out
        d *= g
        xp.subtract(g, d, out=d)
        needs = ctx.needs_input_grad
        da = xp.dot(d, b.T) if needs[0] else None
        db = fastpaths.outer_product(a, d) if needs[1] else None
        return da, db, (d if needs[2] else None)

    def jvp(ctx, primals, tangents, out):
        """ṫ = (1 - out²) ⊙ (ȧ @ b + a @ ḃ + ċ)."""
        (a, b, _), (ta, tb, tc) = primals, tangents
        inner = total(
            out, _matmul_tangent_left(ta, a, b), _matmul_tangent_right(a, tb, b), lift(tc, out.ndim)
        )
        return inner * (1 - out * out)


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

    def jvp(ctx, primals, tangents, out, dims, keepdim):
        """ṫ = Σ ẋ over ``dims``."""
        return tangents[0].sum(axis=shifted(dims, primals[0].ndim), keepdims=keepdim)


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

    def jvp(ctx, primals, tangents, out, dims, keepdim):
        """ṫ = (1/n) Σ ẋ over ``dims``."""
        summed = tangents[0].sum(axis=shifted(dims, primals[0].ndim), keepdims=keepdim)
        return summed / out.dtype.type(ctx.count)


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

    def jvp(ctx, primals, tangents, out, dims, keepdim):
        """ṫ = the mean of ẋ over the elements equal to the maximum (the backward's even share)."""
        x, reduced = ctx.saved
        winners = (x == reduced).astype(out.dtype)
        winners /= winners.sum(axis=dims, keepdims=True)
        return (tangents[0] * winners).sum(axis=shifted(dims, x.ndim), keepdims=keepdim)


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

    def jvp(ctx, primals, tangents, out, dims, keepdim):
        """ṫ = Σ softmax(x) ẋ over ``dims``."""
        (softmax,) = ctx.saved
        return (tangents[0] * softmax).sum(axis=shifted(dims, softmax.ndim), keepdims=keepdim)


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

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ = out ⊙ (ẋ - Σ out ẋ) along ``dim``."""
        t = tangents[0]
        return out * (t - (t * out).sum(axis=shifted(dim, out.ndim), keepdims=True))


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

    def jvp(ctx, primals, tangents, out, dim):
        """ṫ = ẋ - Σ softmax(x) ẋ along ``dim``."""
        t = tangents[0]
        return t - (t * xp_of(out).exp(out)).sum(axis=shifted(dim, out.ndim), keepdims=True)


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

    def jvp(ctx, primals, tangents, out, p):
        """ṫ = ẋ ⊙ mask / (1 - p), the same mask as the forward pass."""
        return tangents[0] * ctx.saved[0]


# ---- in-place writes, scatters and the ops beyond the basic set (index_ops.py, math_ops.py) -----------

from .index_ops import CopySlices as CopySlices  # noqa: E402
from .index_ops import IndexPut as IndexPut  # noqa: E402
from .index_ops import Scatter as Scatter  # noqa: E402
from .index_ops import ViewOf as ViewOf  # noqa: E402
from .math_ops import Cos as Cos  # noqa: E402
from .math_ops import CumProd as CumProd  # noqa: E402
from .math_ops import CumSum as CumSum  # noqa: E402
from .math_ops import Einsum as Einsum  # noqa: E402
from .math_ops import Log1p as Log1p  # noqa: E402
from .math_ops import Prod as Prod  # noqa: E402
from .math_ops import Remainder as Remainder  # noqa: E402
from .math_ops import Sin as Sin  # noqa: E402
from .math_ops import VectorNorm as VectorNorm  # noqa: E402
