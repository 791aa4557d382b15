"""Functional forms of layers and losses (``tinygrad_rnn.nn.functional``, imported as ``F``), with the
names, signatures and semantics of ``torch.nn.functional``.

Layers: ``linear``, ``embedding``, ``dropout``, ``layer_norm``, ``scaled_dot_product_attention``.
Activations: ``relu``, ``tanh``, ``sigmoid``, ``softmax``, ``log_softmax``, ``gelu``, ``elu``,
``leaky_relu``, ``softplus``.
Losses: ``mse_loss``, ``l1_loss``, ``smooth_l1_loss``, ``huber_loss``, ``cross_entropy``, ``nll_loss``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``kl_div``; each takes ``reduction`` =
``"mean"`` (default), ``"sum"`` or ``"none"`` (the per-element losses); ``kl_div`` also ``"batchmean"``.

Cross-entropy is one fused node on the tape (``ops.CrossEntropy``): log-softmax and the pick of the
target's log-probability in one forward, with the closed-form gradient p - onehot in one backward.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .. import backend, functions, loss_ops, ops
from ..tensor import Tensor


def _require_tensor(name: str, argument: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {argument} must be a Tensor, got {type(value).__name__}")
    return value


def _current(array: Any) -> Any:
    """A context that makes the array's GPU current (CuPy puts results there); a no-op otherwise."""
    return backend.device_guard(array) or contextlib.nullcontext()


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input @ weightᵀ + bias.

    Shapes: input (*, in_features), weight (out_features, in_features), bias (out_features,);
    y (*, out_features). Gradients: dinput = g @ weight, dweight = Σ gᵀ input over the leading dims,
    dbias = Σ g over the leading dims.
    """
    _require_tensor("linear", "input", input)
    _require_tensor("linear", "weight", weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.dtype.kind != "f":
        # Integer input is almost always token ids meant for an Embedding.
        raise TypeError(f"linear: input must be a floating tensor, got dtype {input.dtype}")
    if input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input's last dimension must be in_features={weight.shape[1]}, got input shape "
            f"{input.shape} and weight shape {weight.shape}"
        )
    if bias is not None:
        _require_tensor("linear", "bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    operands = (input, weight) if bias is None else (input, weight, bias)
    if all(t.dtype == weight.dtype for t in operands) and len({t.device for t in operands}) == 1:
        return loss_ops.Linear.apply(*operands)  # one node: the same products, the bias added in place
    # Mixed dtypes or devices: the ops promote the dtypes, or name the devices in their error.
    out = input @ weight.T
    return out if bias is None else out + bias


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """out[..., :] = weight[input[...], :]: one row of ``weight`` per integer index.

    Shapes: input (*) of integers in [0, num_embeddings), weight (num_embeddings, embedding_dim);
    out (*, embedding_dim). Gradient: each row of dweight is the sum of g over the positions that looked
    it up; the row ``padding_idx`` (negative counts from the end) gets no gradient.
    """
    _require_tensor("embedding", "weight", weight)
    if not isinstance(input, Tensor):
        input = Tensor(input)
    if input.dtype.kind not in "iu":
        raise TypeError(f"embedding: input must be an integer tensor of indices, got dtype {input.dtype}")
    if weight.ndim != 2:
        raise ValueError(
            f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}"
        )
    size = weight.shape[0]
    if padding_idx is not None:
        if not -size <= padding_idx < size:
            raise ValueError(f"embedding: padding_idx={padding_idx} is out of range for {size} embeddings")
        padding_idx %= size
    indices = input._data

    def error(bad: int) -> IndexError:
        return IndexError(
            f"embedding: index {bad} is out of range for a vocabulary of size {size} "
            f"(indices must be in [0, {size - 1}])"
        )

    backend.check_index_range(indices, 0, size, error)  # on a GPU: checked without a host read per call
    if input.device != weight.device:
        raise RuntimeError(f"embedding: input is on {input.device} but weight is on {weight.device}")
    return ops.Embedding.apply(weight, indices=indices, padding_idx=padding_idx)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: out = input * m / (1 - p) with m ~ Bernoulli(1 - p) elementwise, identity when
    ``training`` is False. Gradient: dinput = g * m / (1 - p)."""
    _require_tensor("dropout", "input", input)
    return functions.dropout(input, p=p, training=training)


def relu(input: Tensor) -> Tensor:
    """max(x, 0) elementwise. Gradient: g where x > 0, else 0."""
    return _require_tensor("relu", "input", input).relu()


def tanh(input: Tensor) -> Tensor:
    """tanh(x) elementwise. Gradient: g (1 - tanh(x)²)."""
    return _require_tensor("tanh", "input", input).tanh()


def sigmoid(input: Tensor) -> Tensor:
    """σ(x) = 1 / (1 + exp(-x)) elementwise, without overflow. Gradient: g σ(x)(1 - σ(x))."""
    return _require_tensor("sigmoid", "input", input).sigmoid()


def _implicit_dim(ndim: int) -> int:
    # PyTorch's legacy choice when ``dim`` is not given: 0 for 0-, 1- and 3-D inputs, else 1.
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """softmax(x)_i = exp(x_i - max x) / Σ_j exp(x_j - max x) along ``dim`` (cast to ``dtype`` first).

    Gradient: dx = s ⊙ (g - Σ g ⊙ s) with s the output.
    """
    _require_tensor("softmax", "input", input)
    if dtype is not None:
        input = input.to(dtype)
    return input.softmax(_implicit_dim(input.ndim) if dim is None else dim)


def log_softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """log_softmax(x)_i = x_i - log Σ_j exp(x_j) along ``dim``, finite for logits of any size.

    Gradient: dx = g - softmax(x) Σ g.
    """
    _require_tensor("log_softmax", "input", input)
    if dtype is not None:
        input = input.to(dtype)
    return input.log_softmax(_implicit_dim(input.ndim) if dim is None else dim)


_REDUCTIONS = ("mean", "sum", "none")


def _reduction(
    name: str, reduction: str, size_average: bool | None = None, reduce: bool | None = None
) -> str:
    """Check ``reduction``; the deprecated ``size_average``/``reduce`` flags override it as in PyTorch."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        return "none" if not reduce else "mean" if size_average else "sum"
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _broadcast_shape(name: str, a: tuple, b: tuple) -> tuple:
    shape = []
    for i in range(1, max(len(a), len(b)) + 1):
        x, y = (a[-i] if i <= len(a) else 1), (b[-i] if i <= len(b) else 1)
        if x != y and 1 not in (x, y):
            raise ValueError(f"{name}: input shape {a} and target shape {b} do not broadcast")
        shape.append(max(x, y) if 0 not in (x, y) else 0)
    return tuple(reversed(shape))


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """loss = (input - target)² elementwise, then reduced (mean over all elements by default).

    Shapes must broadcast. Gradient: dinput = 2 (input - target) g (÷ numel for the mean), dtarget = -dinput.
    """
    _require_tensor("mse_loss", "input", input)
    reduction = _reduction("mse_loss", reduction, size_average, reduce)
    target = target if isinstance(target, Tensor) else input._operand(target)
    _broadcast_shape("mse_loss", input.shape, target.shape)
    difference = input - target
    return _reduce(difference * difference, reduction)


def _class_target(name: str, input: Tensor, target: Any, ignore_index: int) -> Tensor:
    """Check a class-index target against input (C,), (N, C) or (N, C, d1, ...): shape, dtype, range."""
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    if not isinstance(target, Tensor):
        target = Tensor(target)
    if target.dtype.kind not in "iu":
        hint = ""
        if target.dtype.kind == "f" and name == "cross_entropy":
            hint = f" (or class probabilities of the input's shape {input.shape})"
        raise TypeError(
            f"{name}: target must be an integer tensor of class indices, got {target.dtype}{hint}"
        )
    expected = () if input.ndim == 1 else (input.shape[0], *input.shape[2:])
    if target.shape != expected:
        raise ValueError(
            f"{name}: for input of shape {input.shape} the target must have shape {expected}, "
            f"got {target.shape}"
        )
    if target.device != input.device:
        raise RuntimeError(f"{name}: input is on {input.device} but target is on {target.device}")
    classes = input.shape[0] if input.ndim == 1 else input.shape[1]

    def error(bad: int) -> IndexError:
        return IndexError(
            f"{name}: target {bad} is out of range for {classes} classes "
            f"(expected values in [0, {classes - 1}] or ignore_index={ignore_index})"
        )

    # On a GPU: checked without a host read per call (see backend.check_index_range).
    backend.check_index_range(target._data, 0, classes, error, ignore=ignore_index)
    return target


def _class_weight(name: str, input: Tensor, weight: Tensor | None) -> Any:
    if weight is None:
        return None
    _require_tensor(name, "weight", weight)
    classes = input.shape[0] if input.ndim == 1 else input.shape[1]
    if weight.shape != (classes,):
        raise ValueError(f"{name}: weight must have shape ({classes},) (one per class), got {weight.shape}")
    if weight.device != input.device:
        raise RuntimeError(f"{name}: input is on {input.device} but weight is on {weight.device}")
    return weight._data


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between logits and class indices: loss_i = -w[t_i] log softmax(x_i)[t_i].

    Shapes: input (C,), (N, C) or (N, C, d1, ...) of unnormalised logits; target (), (N,) or (N, d1, ...)
    of integer class indices in [0, C) (entries equal to ``ignore_index`` contribute nothing). ``weight``
    (C,) rescales each class; ``label_smoothing`` ε mixes in the uniform distribution:
    loss_i = (1-ε) w[t_i](-log p_i[t_i]) + (ε/C) Σ_c w_c(-log p_i[c]). ``"mean"`` divides by Σ w[t_i] over
    non-ignored entries (nan when every entry is ignored, as in PyTorch). Exact and finite in float32 for
    logits of any magnitude (log-sum-exp after subtracting the row maximum).
    Gradient: dx_i = g_i [(1-ε) w[t_i] (softmax(x_i) - onehot(t_i)) + (ε/C)(Σw · softmax(x_i) - w)].

    A floating ``target`` of the input's shape holds class probabilities y instead:
    loss_i = -Σ_c w_c y'_{i,c} log softmax(x_i)_c with y' = (1-ε) y + ε/C; ``"mean"`` divides by the number
    of rows (N·d1·...), not by the weights, and ``ignore_index`` does not apply (as in PyTorch).
    """
    name = "cross_entropy"
    _require_tensor(name, "input", input)
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating tensor of logits, got {input.dtype}")
    reduction = _reduction(name, reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
    if isinstance(target, Tensor) and target.dtype.kind == "f" and target.shape == input.shape:
        return _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing)
    target = _class_target(name, input, target, ignore_index)
    return ops.CrossEntropy.apply(
        input,
        target=target._data,
        weight=_class_weight(name, input, weight),
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=float(label_smoothing),
    )


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities: loss_i = -w[t_i] · input[i, t_i].

    Shapes as :func:`cross_entropy` (input holds log-probabilities, e.g. from :func:`log_softmax`).
    ``"mean"`` divides by Σ w[t_i] over non-ignored entries. Gradient: dinput[i, t_i] = -w[t_i] g_i, zero
    elsewhere.
    """
    name = "nll_loss"
    _require_tensor(name, "input", input)
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating tensor of log-probabilities, got {input.dtype}")
    reduction = _reduction(name, reduction, size_average, reduce)
    target = _class_target(name, input, target, ignore_index)
    return ops.NLLLoss.apply(
        input,
        target=target._data,
        weight=_class_weight(name, input, weight),
        ignore_index=ignore_index,
        reduction=reduction,
    )


def _binary_target(name: str, what: str, input: Tensor, target: Any) -> Tensor:
    """The checks both binary cross-entropies share: a floating ``input`` (``what``: logits or
    probabilities), a target of its shape, returned as a Tensor of its dtype."""
    _require_tensor(name, "input", input)
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating tensor of {what}, got {input.dtype}")
    target = target if isinstance(target, Tensor) else input._operand(target)
    if target.shape != input.shape:
        raise ValueError(f"{name}: target shape {target.shape} must equal input shape {input.shape}")
    return target if target.dtype == input.dtype else target.to(input.dtype)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy on logits x with targets y in [0, 1], computed without overflow:

    loss = w [p y softplus(-x) + (1 - y) softplus(x)] = w [-p y log σ(x) - (1 - y) log(1 - σ(x))],
    with p = ``pos_weight`` (broadcast along the last, class, dimension) and w = ``weight`` (broadcast).
    Gradients: dx = w [(p y + 1 - y) σ(x) - p y] g, dy = w [p softplus(-x) - softplus(x)] g.
    """
    name = "binary_cross_entropy_with_logits"
    target = _binary_target(name, "logits", input, target)
    reduction = _reduction(name, reduction, size_average, reduce)
    positive = ops.Softplus.apply(-input)
    negative = ops.Softplus.apply(input)
    if pos_weight is not None:
        _require_tensor(name, "pos_weight", pos_weight)
        _broadcast_shape(name, input.shape, pos_weight.shape)
        positive = positive * pos_weight
    loss = target * positive + (1 - target) * negative
    if weight is not None:
        _require_tensor(name, "weight", weight)
        _broadcast_shape(name, input.shape, weight.shape)
        loss = loss * weight
    return _reduce(loss, reduction)


# ---- further losses and activations, with PyTorch's signatures ------------------------------------------


def _cross_entropy_probabilities(
    input: Tensor, target: Tensor, weight: Tensor | None, reduction: str, label_smoothing: float
) -> Tensor:
    """Cross-entropy against class probabilities (see :func:`cross_entropy`); a composite of the stable
    log-softmax, so its gradient is the tape's: dx = Σ_c w_c y'_c · softmax(x) - w ⊙ y'."""
    name = "cross_entropy"
    if input.ndim == 0:
        raise ValueError(f"{name}: input must have a class dimension, got a 0-d tensor")
    dim = 0 if input.ndim == 1 else 1
    classes = input.shape[dim]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    term = input.log_softmax(dim) * target
    if weight is not None:
        _class_weight(name, input, weight)
        term = term * weight.reshape(classes, *([1] * (input.ndim - dim - 1)))
    return _reduce(-term.sum(dim), reduction)


def _pointwise_target(name: str, input: Tensor, target: Any) -> Tensor:
    _require_tensor(name, "input", input)
    target = target if isinstance(target, Tensor) else input._operand(target)
    _broadcast_shape(name, input.shape, target.shape)
    if target.device != input.device:
        raise RuntimeError(f"{name}: input is on {input.device} but target is on {target.device}")
    return target


def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """loss = |input - target| elementwise, then reduced. Gradient: dinput = sign(input - target) g
    (0 where they are equal)."""
    reduction = _reduction("l1_loss", reduction, size_average, reduce)
    target = _pointwise_target("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def _smooth_l1(difference: Tensor, beta: float) -> Tensor:
    size = difference.abs()
    return functions.where(size < beta, difference * difference * (0.5 / beta), size - 0.5 * beta)


def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """loss = ½ d²/β where |d| < β, else |d| - ½β, with d = input - target (β = 0 gives the L1 loss).

    Gradient: dinput = g d/β where |d| < β, else g sign(d).
    """
    name = "smooth_l1_loss"
    reduction = _reduction(name, reduction, size_average, reduce)
    target = _pointwise_target(name, input, target)
    if beta < 0:
        raise ValueError(f"{name}: beta must be non-negative, got {beta}")
    difference = input - target
    loss = difference.abs() if beta == 0 else _smooth_l1(difference, beta)
    return _reduce(loss, reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """loss = ½ d² where |d| < δ, else δ (|d| - ½δ), with d = input - target (= δ · smooth_l1 with β = δ).

    Gradient: dinput = g d where |d| < δ, else g δ sign(d).
    """
    name = "huber_loss"
    reduction = _reduction(name, reduction)
    target = _pointwise_target(name, input, target)
    if delta <= 0:
        raise ValueError(f"{name}: delta must be positive, got {delta}")
    return _reduce(_smooth_l1(input - target, delta) * delta, reduction)


def _probability_range(name: str, what: str, tensor: Tensor) -> None:
    data = tensor._data
    if data.size:
        with _current(data):
            outside = bool(((data < 0) | (data > 1)).any()) or bool(
                backend.get_array_module(data).isnan(data).any()
            )
        if outside:
            raise ValueError(f"{name}: all elements of {what} must be between 0 and 1")


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy on probabilities x in [0, 1] with targets y in [0, 1]:

    loss = -w [y · max(log x, -100) + (1 - y) · max(log(1 - x), -100)] (the logs clamped as in PyTorch,
    so x = 0 or 1 gives a finite loss); ``weight`` w broadcasts to the input. Prefer
    :func:`binary_cross_entropy_with_logits` on logits. Gradient: dx = w g (x - y) / max(x(1 - x), 1e-12).
    """
    name = "binary_cross_entropy"
    target = _binary_target(name, "probabilities", input, target)
    reduction = _reduction(name, reduction, size_average, reduce)
    _probability_range(name, "input", input)
    _probability_range(name, "target", target)
    loss = loss_ops.BinaryCrossEntropy.apply(input, target)
    if weight is not None:
        _require_tensor(name, "weight", weight)
        _broadcast_shape(name, input.shape, weight.shape)
        loss = loss * weight
    return _reduce(loss, reduction)


_KL_REDUCTIONS = ("mean", "batchmean", "sum", "none")


def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """Kullback-Leibler divergence with ``input`` = log q and ``target`` = p (or log p with ``log_target``):

    loss = p (log p - log q) elementwise (0 where p = 0), or exp(t)(t - log q) with ``log_target``.
    ``"batchmean"`` divides the sum by input.shape[0] (the true KL divergence per sample); ``"mean"``
    divides by every element, as PyTorch does. Gradients: d(log q) = -p g; dp = (log p + 1 - log q) g.
    """
    name = "kl_div"
    _require_tensor(name, "input", input)
    if size_average is not None or reduce is not None:
        reduction = _reduction(name, "mean", size_average, reduce)
    elif reduction not in _KL_REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_KL_REDUCTIONS}, got {reduction!r}")
    target = _pointwise_target(name, input, target)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        positive = target > 0
        # log of 1 where p = 0: p log p is then 0 and so is its gradient, never 0 · (-inf).
        loss = target * (functions.where(positive, target, 1.0).log() - input)
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def _in_place(input: Tensor, result: Tensor, inplace: bool) -> Tensor:
    """PyTorch's ``inplace=True``: the result written into ``input`` (an error, not a dropped gradient,
    when ``input`` requires grad and in-place writes are not recorded)."""
    return input.copy_(result) if inplace else result


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """GELU: x Φ(x) with Φ the standard normal CDF (``approximate="none"``), or
    ½ x (1 + tanh(√(2/π)(x + 0.044715 x³))) (``"tanh"``). Gradient: g [Φ(x) + x φ(x)] (or the tanh
    form's derivative); see ``loss_ops.Gelu``."""
    _require_tensor("gelu", "input", input)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return loss_ops.Gelu.apply(input, approximate=approximate)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """ELU: x for x > 0, α (exp(x) - 1) otherwise. Gradient: g for x > 0, g α exp(x) otherwise."""
    _require_tensor("elu", "input", input)
    return _in_place(input, loss_ops.Elu.apply(input, alpha=float(alpha)), inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope · x otherwise. Gradient: g, or negative_slope · g."""
    _require_tensor("leaky_relu", "input", input)
    return _in_place(input, loss_ops.LeakyRelu.apply(input, negative_slope=float(negative_slope)), inplace)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """softplus(x) = log(1 + exp(βx)) / β, computed without overflow; x itself where βx > threshold
    (as PyTorch). Gradient: g σ(βx), or g where βx > threshold."""
    _require_tensor("softplus", "input", input)
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    scaled = input * beta if beta != 1 else input
    smooth = ops.Softplus.apply(scaled)
    if beta != 1:
        smooth = smooth / beta
    return functions.where(scaled > threshold, input, smooth)


def layer_norm(
    input: Tensor,
    normalized_shape: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalisation over the last len(normalized_shape) dims:

    y = (x - E[x]) / sqrt(Var[x] + eps) ⊙ weight + bias, with the biased variance (÷ n), as PyTorch.
    Shapes: input (*, *normalized_shape); weight and bias normalized_shape. Gradient: the tape's, through
    the mean, the centred square and the square root.
    """
    name = "layer_norm"
    _require_tensor(name, "input", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or input.shape[input.ndim - len(shape) :] != shape or input.ndim < len(shape):
        raise ValueError(
            f"{name}: given normalized_shape={list(shape)}, expected input with shape "
            f"(*, {', '.join(map(str, shape))}), got input of shape {input.shape}"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating tensor, got {input.dtype}")
    dims = tuple(range(input.ndim - len(shape), input.ndim))
    centered = input - input.mean(dims, keepdim=True)
    out = centered / ((centered * centered).mean(dims, keepdim=True) + eps).sqrt()
    for argument, value in (("weight", weight), ("bias", bias)):
        if value is not None and _require_tensor(name, argument, value).shape != shape:
            raise ValueError(f"{name}: {argument} must have shape {shape}, got {value.shape}")
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q Kᵀ · scale + M) V, with scale = 1/sqrt(E) by default, as PyTorch's.

    Shapes: query (*, L, E), key (*, S, E), value (*, S, Ev) with broadcastable leading dims; out
    (*, L, Ev). ``attn_mask``: bool (True = may attend, the opposite of ``MultiheadAttention``'s masks)
    or float (added), broadcastable to (*, L, S); ``is_causal`` masks j > i instead (not with a mask).
    ``dropout_p`` is applied to the weights whenever it is positive. Gradient: the tape's, through the
    products and the stable softmax; a masked position gets exactly zero weight and zero gradient.
    """
    name = "scaled_dot_product_attention"
    for argument, tensor in (("query", query), ("key", key), ("value", value)):
        if _require_tensor(name, argument, tensor).ndim < 2:
            raise ValueError(f"{name}: {argument} must have at least 2 dims (*, length, features)")
    if key.shape[-1] != query.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"{name}: query (*, L, E), key (*, S, E) and value (*, S, Ev) disagree: {query.shape}, "
            f"{key.shape}, {value.shape}"
        )
    if is_causal and attn_mask is not None:
        raise ValueError(f"{name}: give attn_mask or is_causal=True, not both")
    target_length, source_length = query.shape[-2], key.shape[-2]
    factor = 1.0 / query.shape[-1] ** 0.5 if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * factor
    if is_causal:
        xp = query._xp
        with _current(query._data):
            allowed = xp.tril(xp.ones((target_length, source_length), dtype=bool))
        attn_mask = Tensor(allowed)
    if attn_mask is not None:
        _require_tensor(name, "attn_mask", attn_mask)
        _broadcast_shape(name, scores.shape, attn_mask.shape)
        if attn_mask.dtype.kind == "b":
            scores = scores.masked_fill(~attn_mask, -float("inf"))
        elif attn_mask.dtype.kind == "f":
            scores = scores + attn_mask
        else:
            raise TypeError(f"{name}: attn_mask must be bool or floating, got {attn_mask.dtype}")
    weights = scores.softmax(-1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True)
    return weights @ value


# isort: split
from ..functions import one_hot as one_hot  # noqa: E402

# isort: split
# More functional forms: padding, normalisation, cosine similarity, activations (more_functional.py)
from .more_functional import cosine_similarity as cosine_similarity  # noqa: E402
from .more_functional import hardtanh as hardtanh  # noqa: E402
from .more_functional import logsigmoid as logsigmoid  # noqa: E402
from .more_functional import normalize as normalize  # noqa: E402
from .more_functional import pad as pad  # noqa: E402
from .more_functional import prelu as prelu  # noqa: E402
from .more_functional import relu6 as relu6  # noqa: E402
from .more_functional import silu as silu  # noqa: E402
from .more_functional import softsign as softsign  # noqa: E402
