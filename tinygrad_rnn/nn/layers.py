"""Basic layers: ``Linear``, ``Embedding``, ``Dropout`` and the activations as modules, with PyTorch's
names, shapes and default initialisation."""

from __future__ import annotations

import math
from typing import Any

from .. import functions
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter


def _empty_parameter(shape: tuple[int, ...], dtype: Any, device: Any) -> Parameter:
    return Parameter(functions.empty(*shape, dtype=dtype, device=device))


class Linear(Module):
    """y = x @ Wᵀ + b.

    Shapes: x (*, in_features) -> y (*, out_features); ``weight`` (out_features, in_features), ``bias``
    (out_features,). Both start as U(-1/sqrt(in_features), 1/sqrt(in_features)), as in PyTorch.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Linear: {name} must be a non-negative int, got {value!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty_parameter((out_features, in_features), dtype, device)
        if bias:
            self.bias = _empty_parameter((out_features,), dtype, device)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weight and bias from U(-1/sqrt(in_features), 1/sqrt(in_features))."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class Embedding(Module):
    """A lookup table: out[..., :] = weight[index[...], :].

    Shapes: integer input (*) -> (*, embedding_dim); ``weight`` (num_embeddings, embedding_dim) starts
    as N(0, 1). The row ``padding_idx`` starts at zero and receives no gradient.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        device: Any = None,
        dtype: Any = None,
        _weight: Tensor | None = None,
        _freeze: bool = False,
    ) -> None:
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx={padding_idx} must be within num_embeddings={num_embeddings}"
                )
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if _weight is not None:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(
                    f"Embedding: _weight has shape {tuple(_weight.shape)}, expected "
                    f"{(num_embeddings, embedding_dim)}"
                )
            self.weight = Parameter(_weight, requires_grad=not _freeze)
            return
        self.weight = _empty_parameter((num_embeddings, embedding_dim), dtype, device)
        self.reset_parameters()

    @classmethod
    def from_pretrained(
        cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None
    ) -> Embedding:
        """An ``Embedding`` whose table is ``embeddings`` (a 2-D floating tensor of shape
        (num_embeddings, embedding_dim), shared, not copied, as PyTorch's ``Parameter(embeddings)``),
        frozen (``requires_grad=False``) unless ``freeze=False``. The ``padding_idx`` row keeps its values
        but receives no gradient."""
        if not isinstance(embeddings, Tensor):
            raise TypeError(
                f"Embedding.from_pretrained: embeddings must be a Tensor, got {type(embeddings).__name__} "
                "(wrap an array with tg.tensor(...))"
            )
        if embeddings.ndim != 2:
            raise ValueError(
                f"Embedding.from_pretrained: embeddings must be 2-D (num_embeddings, embedding_dim), got "
                f"shape {embeddings.shape}"
            )
        if embeddings.dtype.kind != "f":
            raise TypeError(f"Embedding.from_pretrained: embeddings must be floating, got {embeddings.dtype}")
        rows, columns = embeddings.shape
        return cls(rows, columns, padding_idx=padding_idx, _weight=embeddings, _freeze=freeze)

    def reset_parameters(self) -> None:
        """Draw the table from N(0, 1) and zero the padding row."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight._data[self.padding_idx] = 0

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text if self.padding_idx is None else f"{text}, padding_idx={self.padding_idx}"


class Dropout(Module):
    """Inverted dropout in training mode: out = x * m / (1 - p), m ~ Bernoulli(1 - p); identity in
    evaluation mode (``model.eval()``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Identity(Module):
    """out = input."""

    def forward(self, input: Tensor) -> Tensor:
        return input


class Tanh(Module):
    """out = tanh(input) elementwise."""

    def forward(self, input: Tensor) -> Tensor:
        return input.tanh()


class ReLU(Module):
    """out = max(input, 0) elementwise."""

    def forward(self, input: Tensor) -> Tensor:
        return input.relu()


class Sigmoid(Module):
    """out = 1 / (1 + exp(-input)) elementwise."""

    def forward(self, input: Tensor) -> Tensor:
        return input.sigmoid()
