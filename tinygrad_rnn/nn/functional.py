"""Functional forms of layers and losses (``tinygrad_rnn.nn.functional``, imported as ``F``), with the
names, signatures and semantics of ``torch.nn.functional``.

Layers: ``linear``, ``embedding``, ``dropout``. Activations: ``softmax``, ``log_softmax``.
"""

from __future__ import annotations

from typing import Any

from .. import functions, ops
from ..tensor import Tensor


def _require_tensor(name: str, argument: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {argument} must be a Tensor, got {type(value).__name__}")
    return value


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
    if indices.size:
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= size:
            bad = low if low < 0 else high
            raise IndexError(
                f"embedding: index {bad} is out of range for a vocabulary of size {size} "
                f"(indices must be in [0, {size - 1}])"
            )
    if input.device != weight.device:
        raise RuntimeError(f"embedding: input is on {input.device} but weight is on {weight.device}")
    return ops.Embedding.apply(weight, indices=indices, padding_idx=padding_idx)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: out = input * m / (1 - p) with m ~ Bernoulli(1 - p) elementwise, identity when
    ``training`` is False. Gradient: dinput = g * m / (1 - p)."""
    _require_tensor("dropout", "input", input)
    return functions.dropout(input, p=p, training=training)
