"""Functional forms of layers and losses (``tinygrad_rnn.nn.functional``, imported as ``F``), with the
names, signatures and semantics of ``torch.nn.functional``.

Layers: ``linear``, ``embedding``, ``dropout``. Activations: ``relu``, ``tanh``, ``sigmoid``, ``softmax``,
``log_softmax``.
Losses: ``mse_loss``, ``cross_entropy``, ``nll_loss``, ``binary_cross_entropy_with_logits``; each takes
``reduction`` = ``"mean"`` (default), ``"sum"`` or ``"none"`` (the per-element losses).

Cross-entropy is one fused node on the tape (``ops.CrossEntropy``): log-softmax and the pick of the
target's log-probability in one forward, with the closed-form gradient p - onehot in one backward.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .. import backend, functions, ops
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
    out = input @ weight.T
    if bias is not None:
        _require_tensor("linear", "bias", bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
        out = out + bias
    return out


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
        if target.dtype.kind == "f" and target.shape == input.shape:
            hint = " (class-probability targets are not supported; pass class indices)"
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
    """
    name = "cross_entropy"
    _require_tensor(name, "input", input)
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating tensor of logits, got {input.dtype}")
    reduction = _reduction(name, reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be in [0, 1], got {label_smoothing}")
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
    _require_tensor(name, "input", input)
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be a floating tensor of logits, got {input.dtype}")
    reduction = _reduction(name, reduction, size_average, reduce)
    target = target if isinstance(target, Tensor) else input._operand(target)
    if target.shape != input.shape:
        raise ValueError(f"{name}: target shape {target.shape} must equal input shape {input.shape}")
    if target.dtype.kind != "f":
        target = target.to(input.dtype)
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
