"""Ops for lookups, the read-out and losses: embedding rows, a fused linear layer (one node instead of
transpose + matmul + add), softplus, negative log-likelihood and a fused cross-entropy (one node instead
of log_softmax + pick + reduce), each a ``Function`` with its gradient.

Part of the op set that ``tinygrad_rnn.ops`` gathers; see its docstring for the conventions.
"""

from __future__ import annotations

from typing import Any

from . import backend
from .autograd import Function
from .forward_ad import lift, total

xp_of = backend.get_array_module


class Embedding(Function):
    """out[..., :] = weight[indices[...], :] (row lookup);  dweight = g scattered back to the looked-up
    rows (repeats accumulate), with the row ``padding_idx`` (if any) getting no gradient.

    The scatter is ``backend.row_sums`` (sorted segments on NumPy): the same sums as ``add.at`` into
    zeros, without its per-element loop."""

    def forward(ctx, weight, indices, padding_idx):
        ctx.shape, ctx.padding_idx = weight.shape, padding_idx
        ctx.save_for_backward(indices)
        return weight[indices]

    def backward(ctx, g):
        (indices,) = ctx.saved
        grad = backend.row_sums(indices, g, ctx.shape[0])
        if ctx.padding_idx is not None:
            grad[ctx.padding_idx] = 0
        return grad

    def jvp(ctx, primals, tangents, out, indices, padding_idx):
        """ṫ = ẇ[indices] (0 at ``padding_idx``, which the backward pass does not update either)."""
        t = tangents[0][:, indices]
        if padding_idx is not None:
            t = t * (indices != padding_idx)[..., None]
        return t


class Linear(Function):
    """out = x @ Wᵀ + b over the last axis: x (*, in), W (out, in), b (out,) (optional); out (*, out).

    With x and g folded into rows X (N, in) and G (N, out): dx = G @ W, dW = (Xᵀ @ G)ᵀ, db = Σ_rows G.
    One node instead of Transpose -> MatMul -> Add, with the same products in the same layouts (so the
    same bits for x and W): the bias is added into the product's fresh buffer, not into a second
    (N, out) array, and its gradient is one row sum instead of the tape's reduction of a broadcast.
    """

    def forward(ctx, x, weight, *bias):
        rows = x.reshape(_row_count(x), x.shape[-1])
        out = rows @ weight.T
        if bias:
            out += bias[0]
        ctx.save_for_backward(x, weight)
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(ctx, g):
        x, weight = ctx.saved
        needs = ctx.needs_input_grad
        g_rows = g.reshape(_row_count(x), weight.shape[0])
        dx = (g_rows @ weight).reshape(x.shape) if needs[0] else None
        dweight = (x.reshape(g_rows.shape[0], x.shape[-1]).T @ g_rows).T if needs[1] else None
        if len(needs) == 2:
            return dx, dweight
        return dx, dweight, (g_rows.sum(axis=0) if needs[2] else None)

    def jvp(ctx, primals, tangents, out, *unused):
        """ṫ = ẋ @ Wᵀ + x @ Ẇᵀ + ḃ (each with K as a leading batch axis)."""
        x, weight = primals[0], primals[1]
        tx, tweight = tangents[0], tangents[1]
        tbias = tangents[2] if len(tangents) > 2 else None
        xp = xp_of(out)
        from_x = None if tx is None else tx @ weight.T
        from_weight = None
        if tweight is not None:
            rows = x.reshape(_row_count(x), x.shape[-1])
            products = rows @ xp.swapaxes(tweight, -1, -2)
            from_weight = products.reshape(tweight.shape[0], *out.shape)
        return total(out, from_x, from_weight, lift(tbias, out.ndim))


def _row_count(x: Any) -> int:
    """The number of rows of x folded to (rows, x.shape[-1]) (also for x with no elements)."""
    count = 1
    for size in x.shape[:-1]:
        count *= size
    return count


class Softplus(Function):
    """out = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)) (no overflow);  dx = g * σ(x)."""

    def forward(ctx, x):
        xp = xp_of(x)
        ctx.save_for_backward(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(ctx, g):
        x = ctx.saved[0]
        xp = xp_of(x)
        return g * xp.exp(-xp.logaddexp(0, -x))  # σ(x) = exp(-softplus(-x)), exact and finite

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ σ(x)."""
        x = primals[0]
        return tangents[0] * xp_of(x).exp(-xp_of(x).logaddexp(0, -x))


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


def _picked(log_probs: Any, target: Any, weight: Any, ignore_index: int) -> tuple:
    """Per-row -w[t]·log p[t] (zero where t == ignore_index), with what the backward needs:
    (losses, safe targets, valid mask, per-row weights)."""
    xp = xp_of(log_probs)
    t = target.reshape(-1)
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    valid = valid.astype(log_probs.dtype)
    weight_t = valid if weight is None else weight[safe].astype(log_probs.dtype) * valid
    return -log_probs[xp.arange(t.shape[0]), safe] * weight_t, safe, valid, weight_t


def _reduce_rows(ctx: Any, losses: Any, weight_t: Any, reduction: str, target_shape: tuple) -> tuple:
    """The reduced loss and the mean's denominator (Σ w[t_i], or None for "none"/"sum")."""
    ctx.reduction, ctx.target_shape = reduction, target_shape
    if reduction == "none":
        return losses.reshape(target_shape), None
    if reduction == "sum":
        return losses.sum(), None
    # Mean over the weights of the non-ignored targets, as PyTorch: 0/0 = nan when all are ignored,
    # which is the documented result, so NumPy's warning about it is silenced.
    denominator = weight_t.sum()
    errstate = getattr(xp_of(losses), "errstate", None)
    if errstate is None:
        return losses.sum() / denominator, denominator
    with errstate(invalid="ignore", divide="ignore"):
        return losses.sum() / denominator, denominator


def _row_scale(ctx: Any, g: Any, denominator: Any) -> Any:
    """The upstream gradient of each row's loss."""
    if ctx.reduction == "none":
        return g.reshape(-1)
    if ctx.reduction == "sum":
        return g
    # Every row is ignored when the denominator is 0: their gradients are zero, as in PyTorch, not 0·∞.
    return g / xp_of(g).where(denominator == 0, 1, denominator)


def _batched_rows(tangent: Any, ndim: int) -> Any:
    """:func:`_class_rows` for a ``(K, *shape)`` tangent of an input of rank ``ndim``: ``(K, rows, C)``."""
    if ndim == 1:
        return tangent[:, None, :]
    if ndim == 2:
        return tangent
    moved = xp_of(tangent).moveaxis(tangent, 2, -1)
    return moved.reshape(tangent.shape[0], -1, tangent.shape[2])


def _reduce_row_tangents(ctx: Any, rows: Any, denominator: Any) -> Any:
    """The tangent of the reduced loss from the per-row tangents ``(K, rows)`` (as :func:`_row_scale`)."""
    if ctx.reduction == "none":
        return rows.reshape((rows.shape[0], *ctx.target_shape))
    summed = rows.sum(axis=1)
    if ctx.reduction == "sum":
        return summed
    return summed / xp_of(rows).where(denominator == 0, 1, denominator)


class NLLLoss(Function):
    """loss_i = -w[t_i] · x[i, t_i] over rows of log-probabilities x (class axis 1), reduced by
    ``reduction`` (mean divides by Σ w[t_i] over non-ignored rows);  dx[i, t_i] = -w[t_i] · g_i."""

    def forward(ctx, x, target, weight, ignore_index, reduction):
        ctx.shape = x.shape
        losses, safe, _, weight_t = _picked(_class_rows(x), target, weight, ignore_index)
        out, denominator = _reduce_rows(ctx, losses, weight_t, reduction, target.shape)
        ctx.save_for_backward(safe, weight_t, denominator)
        return out

    def backward(ctx, g):
        safe, weight_t, denominator = ctx.saved
        xp = xp_of(g)
        scale = _row_scale(ctx, g, denominator) * weight_t
        rows = safe.shape[0]
        grad = xp.zeros((rows, ctx.shape[0] if len(ctx.shape) == 1 else ctx.shape[1]), g.dtype)
        grad[xp.arange(rows), safe] = -scale
        return _class_unrows(grad, ctx.shape)

    def jvp(ctx, primals, tangents, out, target, weight, ignore_index, reduction):
        """ṫ_i = -w[t_i] ẋ[i, t_i], reduced as the loss is."""
        safe, weight_t, denominator = ctx.saved
        rows = _batched_rows(tangents[0], primals[0].ndim)
        picked = rows[:, xp_of(rows).arange(rows.shape[1]), safe]
        return _reduce_row_tangents(ctx, -picked * weight_t, denominator)


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
        exp = xp.exp(shifted)
        total = exp.sum(axis=1)
        log_total = xp.log(total)
        # -log p[i, t] = log Σe - shifted[i, t]
        losses, safe, valid, weight_t = _picked(shifted, target, weight, ignore_index)
        losses = losses + log_total * weight_t
        class_weight = None if weight is None else weight.astype(x.dtype)
        if label_smoothing:
            classes = rows.shape[1]
            if weight is None:
                smooth = classes * log_total - shifted.sum(axis=1)
            else:
                smooth = class_weight.sum() * log_total - shifted @ class_weight
            losses = (1 - label_smoothing) * losses + (label_smoothing / classes) * smooth * valid
        out, denominator = _reduce_rows(ctx, losses, weight_t, reduction, target.shape)
        ctx.save_for_backward(exp, total, safe, valid, weight_t, class_weight, denominator)
        return out

    def backward(ctx, g):
        exp, total, safe, valid, weight_t, w, denominator = ctx.saved
        scale = _row_scale(ctx, g, denominator)
        nll_scale = (1 - ctx.smoothing) * scale * weight_t
        probability_scale = nll_scale
        if ctx.smoothing:
            classes = exp.shape[1]
            smooth_scale = (ctx.smoothing / classes) * scale * valid
            probability_scale = nll_scale + smooth_scale * (classes if w is None else w.sum())
        grad = exp * (probability_scale / total)[:, None]
        grad[xp_of(grad).arange(grad.shape[0]), safe] -= nll_scale
        if ctx.smoothing:
            grad -= smooth_scale[:, None] if w is None else smooth_scale[:, None] * w
        return _class_unrows(grad, ctx.shape)

    def jvp(ctx, primals, tangents, out, target, weight, ignore_index, reduction, label_smoothing):
        """With s_i = Σ_c p[i, c] ẋ[i, c] (the tangent of logsumexp): ṫ_i = (1-ε) w[t_i] (s_i - ẋ[i, t_i])
        + (ε/C) valid_i (W s_i - Σ_c w_c ẋ[i, c]) with W = Σ_c w_c, reduced as the loss is."""
        exp, row_total, safe, valid, weight_t, w, denominator = ctx.saved
        rows = _batched_rows(tangents[0], primals[0].ndim)
        xp = xp_of(rows)
        probabilities = exp / row_total[:, None]
        s = (rows * probabilities).sum(axis=-1)
        row_tangents = (1 - label_smoothing) * weight_t * (s - rows[:, xp.arange(rows.shape[1]), safe])
        if label_smoothing:
            classes = exp.shape[1]
            weighted = rows.sum(axis=-1) if w is None else rows @ w
            all_weight = classes if w is None else w.sum()
            row_tangents = row_tangents + (label_smoothing / classes) * valid * (all_weight * s - weighted)
        return _reduce_row_tangents(ctx, row_tangents, denominator)


# ---- activations and the probability-input binary cross-entropy ----------------------------------------


def _with_ignored_warnings(xp: Any, compute: Any) -> Any:
    """Run ``compute()`` with NumPy's divide/invalid warnings off (log 0 = -inf is intended here)."""
    errstate = getattr(xp, "errstate", None)
    if errstate is None:
        return compute()
    with errstate(divide="ignore", invalid="ignore"):
        return compute()


def _clamped_log(x: Any) -> Any:
    """max(log x, -100): PyTorch's clamp, so that a probability of exactly 0 or 1 gives a finite loss."""
    xp = xp_of(x)
    return xp.maximum(_with_ignored_warnings(xp, lambda: xp.log(x)), -100)


class BinaryCrossEntropy(Function):
    """loss = -[y · max(log x, -100) + (1 - y) · max(log(1 - x), -100)] for probabilities x in [0, 1].

    Gradients (PyTorch's): dx = g (x - y) / max(x (1 - x), 1e-12);
    dy = g [max(log(1 - x), -100) - max(log x, -100)].
    """

    def forward(ctx, x, y):
        log_x, log_not_x = _clamped_log(x), _clamped_log(1 - x)
        ctx.save_for_backward(x, y, log_x, log_not_x)
        return -(y * log_x + (1 - y) * log_not_x)

    def backward(ctx, g):
        x, y, log_x, log_not_x = ctx.saved
        xp = xp_of(x)
        dx = g * (x - y) / xp.maximum(x * (1 - x), 1e-12) if ctx.needs_input_grad[0] else None
        dy = g * (log_not_x - log_x) if ctx.needs_input_grad[1] else None
        return dx, dy

    def jvp(ctx, primals, tangents, out):
        """ṫ = ẋ (x - y) / max(x (1 - x), 1e-12) + ẏ [max(log(1 - x), -100) - max(log x, -100)]
        (the derivatives the backward pass uses)."""
        x, y, log_x, log_not_x = ctx.saved
        tx, ty = tangents
        xp = xp_of(x)
        return total(
            out,
            None if tx is None else lift(tx, out.ndim) * ((x - y) / xp.maximum(x * (1 - x), 1e-12)),
            None if ty is None else lift(ty, out.ndim) * (log_not_x - log_x),
        )


_SQRT_2_OVER_PI = 0.7978845608028654
_ONE_OVER_SQRT_2PI = 0.3989422804014327
_TANH_CUBIC = 0.044715
_TWO_OVER_SQRT_PI = 1.1283791670955126


def erf(z: Any) -> Any:
    """The error function erf(z) = 2/√π ∫₀^z exp(-t²) dt on a backend array, to a few float64 ulps.

    NumPy has no erf, so it is summed here, in float64 whatever the input's dtype (so a float32 result
    is correctly rounded), from the series with positive terms only (no cancellation):
    erf(z) = 2/√π · exp(-z²) · Σ_n z (2z²)^n / (1·3·5···(2n+1)). For |z| ≥ 6, erf = ±1 to float64
    precision (erfc(6) ≈ 2e-17), so the series only runs on |z| < 6, where ~100 terms suffice.
    """
    xp = xp_of(z)
    wide = z.astype(xp.float64)
    clipped = xp.clip(wide, -6.0, 6.0)
    square2 = 2 * clipped * clipped
    term = clipped.copy()
    total = clipped.copy()
    n = 0
    while True:
        for _ in range(8):
            n += 1
            term = term * square2 / (2 * n + 1)
            total = total + term
        if not bool((xp.abs(term) > 1e-17 * xp.abs(total)).any()):
            break
    result = _TWO_OVER_SQRT_PI * xp.exp(-clipped * clipped) * total
    return xp.where(xp.abs(wide) >= 6, xp.sign(wide), result).astype(z.dtype)


class Gelu(Function):
    """GELU. ``approximate="none"``: out = x Φ(x), Φ(x) = ½(1 + erf(x/√2)); dx = g [Φ(x) + x φ(x)] with
    φ(x) = exp(-x²/2)/√(2π). ``approximate="tanh"``: out = ½ x (1 + tanh u), u = √(2/π)(x + 0.044715 x³);
    dx = g [½(1 + tanh u) + ½ x (1 - tanh² u) √(2/π)(1 + 3·0.044715 x²)]."""

    def forward(ctx, x, approximate):
        xp = xp_of(x)
        ctx.approximate = approximate
        if approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + _TANH_CUBIC * x * x * x))
            ctx.save_for_backward(x, t)
            return 0.5 * x * (1 + t)
        cdf = 0.5 * (1 + erf(x * 0.7071067811865476))
        ctx.save_for_backward(x, cdf)
        return x * cdf

    def backward(ctx, g):
        x, saved = ctx.saved
        xp = xp_of(x)
        if ctx.approximate == "tanh":
            slope = _SQRT_2_OVER_PI * (1 + 3 * _TANH_CUBIC * x * x)
            return g * (0.5 * (1 + saved) + 0.5 * x * (1 - saved * saved) * slope)
        return g * (saved + x * _ONE_OVER_SQRT_2PI * xp.exp(-0.5 * x * x))

    def jvp(ctx, primals, tangents, out, approximate):
        """ṫ = ẋ GELU'(x) (the formulas of the backward pass)."""
        return Gelu.backward(ctx, tangents[0])


class Elu(Function):
    """out = x for x > 0, α (exp(x) - 1) otherwise (expm1 of min(x, 0): no overflow in the unused branch);
    dx = g for x > 0, g α exp(x) otherwise."""

    def forward(ctx, x, alpha):
        xp = xp_of(x)
        negative_part = alpha * xp.expm1(xp.minimum(x, 0))
        ctx.alpha = alpha
        ctx.save_for_backward(x, negative_part)
        return xp.where(x > 0, x, negative_part)

    def backward(ctx, g):
        x, negative_part = ctx.saved
        return g * xp_of(x).where(x > 0, 1, negative_part + ctx.alpha)

    def jvp(ctx, primals, tangents, out, alpha):
        """ṫ = ẋ for x > 0, ẋ α exp(x) otherwise."""
        return Elu.backward(ctx, tangents[0])


class LeakyRelu(Function):
    """out = x for x > 0, s·x otherwise (s = negative_slope);  dx = g for x > 0, s·g otherwise."""

    def forward(ctx, x, negative_slope):
        xp = xp_of(x)
        ctx.negative_slope = negative_slope
        ctx.save_for_backward(x > 0)
        return xp.where(x > 0, x, negative_slope * x)

    def backward(ctx, g):
        (positive,) = ctx.saved
        return xp_of(g).where(positive, g, ctx.negative_slope * g)

    def jvp(ctx, primals, tangents, out, negative_slope):
        """ṫ = ẋ for x > 0, s ẋ otherwise."""
        return LeakyRelu.backward(ctx, tangents[0])
