"""``LayerNorm`` with PyTorch's arguments, parameter names and initialisation."""

from __future__ import annotations

from typing import Any

from .. import functions
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module, Parameter


class LayerNorm(Module):
    """y = (x - E[x]) / sqrt(Var[x] + eps) ⊙ weight + bias over the last len(normalized_shape) dims.

    Shapes: input (*, *normalized_shape) -> the same. ``weight`` (ones) and ``bias`` (zeros) have shape
    ``normalized_shape`` when ``elementwise_affine`` (``bias=False`` drops the bias), as in PyTorch.
    """

    def __init__(
        self,
        normalized_shape: Any,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, int) and n > 0 for n in shape):
            raise ValueError(f"LayerNorm: normalized_shape must be positive ints, got {normalized_shape!r}")
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(functions.empty(*shape, dtype=dtype, device=device))
            if bias:
                self.bias = Parameter(functions.empty(*shape, dtype=dtype, device=device))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """weight = 1, bias = 0."""
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
