"""More of ``torch.nn.functional`` (re-exported by ``nn.functional``): ``pad`` (constant mode),
``normalize``, ``cosine_similarity`` and the activations ``silu``, ``logsigmoid``, ``hardtanh``,
``relu6``, ``softsign`` and ``prelu``.

Each is a composition of differentiable tensor ops, so its gradient is the chain rule through them;
the formulas are in the docstrings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functions, ops
from ..selection import _broadcast_shape
from ..tensor import Tensor


def _require_tensor(name: str, argument: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: {argument} must be a Tensor, got {type(value).__name__}")
    return value


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """``input`` padded with ``value`` (0 by default), PyTorch's pad order: ``(left, right)`` for the last
    dim, then ``(top, bottom)`` for the one before, and so on. A negative amount crops. Only
    ``mode="constant"`` is supported (the others raise). Gradient: the padded places get none, the rest
    passes through."""
    _require_tensor("pad", "input", input)
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is supported, got mode={mode!r}")
    amounts = tuple(pad)
    if len(amounts) % 2 or any(not isinstance(n, int) or isinstance(n, bool) for n in amounts):
        raise ValueError(f"pad: expects an even number of ints, got {pad!r}")
    if len(amounts) // 2 > input.ndim:
        raise ValueError(f"pad: {len(amounts) // 2} dims to pad but the input has shape {input.shape}")
    fill = 0 if value is None else value
    out = input
    for k in range(len(amounts) // 2):
        dim = input.ndim - 1 - k
        before, after = amounts[2 * k], amounts[2 * k + 1]
        size = out.shape[dim]
        start, stop = max(-before, 0), size - max(-after, 0)
        if stop < start:
            raise ValueError(f"pad: cropping {(before, after)} leaves a negative size of dim {dim} ({size})")
        if start or stop != size:
            out = out.narrow(dim, start, stop - start)
        pieces = []
        for amount in (max(before, 0), max(after, 0)):
            shape = list(out.shape)
            shape[dim] = amount
            pieces.append(functions.full(tuple(shape), fill, dtype=out.dtype, device=out.device))
        if before > 0 or after > 0:
            out = functions.cat([pieces[0], out, pieces[1]], dim=dim)
    return out if out is not input else input * 1


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(‖x‖_p, eps) along ``dim`` (unit vectors; zero vectors stay zero)."""
    _require_tensor("normalize", "input", input)
    return input / input.norm(p, dim=dim, keepdim=True).clamp_min(eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x1·x2 / max(‖x1‖ ‖x2‖, eps) along ``dim``, the two broadcast against each other; ``dim`` removed."""
    _require_tensor("cosine_similarity", "x1", x1)
    _require_tensor("cosine_similarity", "x2", x2)
    if _broadcast_shape(x1.shape, x2.shape) is None:
        raise ValueError(f"cosine_similarity: shapes {x1.shape} and {x2.shape} do not broadcast")
    dot = (x1 * x2).sum(dim)
    norms = x1.norm(2, dim=dim) * x2.norm(2, dim=dim)
    return dot / norms.clamp_min(eps)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """SiLU (swish): x σ(x);  gradient g σ(x) (1 + x (1 - σ(x)))."""
    _require_tensor("silu", "input", input)
    result = input * input.sigmoid()
    return input.copy_(result) if inplace else result


def logsigmoid(input: Tensor) -> Tensor:
    """log σ(x) = -softplus(-x), without overflow;  gradient g (1 - σ(x))."""
    _require_tensor("logsigmoid", "input", input)
    return -ops.Softplus.apply(-input)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """x clipped to [min_val, max_val];  gradient g inside, 0 outside."""
    _require_tensor("hardtanh", "input", input)
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    result = input.clamp(min_val, max_val)
    return input.copy_(result) if inplace else result


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6) (``hardtanh(x, 0, 6)``)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|);  gradient g / (1 + |x|)²."""
    _require_tensor("softsign", "input", input)
    return input / (1 + input.abs())


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x for x >= 0, a·x otherwise, with ``weight`` a 1-element tensor (one slope) or one slope per
    channel, the channels being dim 1 (dim 0 of a 1-D input). Gradients: g or a·g for x; g·x where
    x < 0, summed over the positions sharing a slope, for a."""
    _require_tensor("prelu", "input", input)
    _require_tensor("prelu", "weight", weight)
    if weight.ndim > 1:
        raise ValueError(f"prelu: weight must be 1-D (or 0-D), got shape {weight.shape}")
    slopes = weight
    if weight.numel() != 1:
        channels = input.shape[1] if input.ndim >= 2 else (input.shape[0] if input.ndim else 1)
        if weight.numel() != channels:
            raise ValueError(
                f"prelu: weight has {weight.numel()} slopes but the input (shape {input.shape}) has "
                f"{channels} channels"
            )
        if input.ndim >= 2:
            slopes = weight.reshape(channels, *([1] * (input.ndim - 2)))
    else:
        slopes = weight.reshape(())
    return functions.where(input >= 0, input, input * slopes)
