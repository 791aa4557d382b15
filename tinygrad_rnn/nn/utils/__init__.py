"""Gradient clipping (``tinygrad_rnn.nn.utils``), as in ``torch.nn.utils``.

Exploding gradients are the classic failure of backpropagation through time: a product of T
Jacobians whose norms exceed 1 grows geometrically. Rescaling the whole gradient vector when its norm
passes a threshold keeps its direction and bounds the step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

from ... import backend
from ...tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _gradients(name: str, parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """The ``.grad`` tensors of the parameters that have one (a single tensor is accepted too)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = []
    for position, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}: parameter {position} is a {type(p).__name__}, expected a Tensor")
        if p.grad is not None:
            grads.append(p.grad)
    return grads


def _device_of(t: Tensor) -> Any:
    """A context that makes the tensor's GPU current, since CuPy allocates results there."""
    return backend.device_guard(t._data) or contextlib.nullcontext()


def _on(array: Any, dev: backend.Device) -> Any:
    return backend.ensure_array(backend.to_device(backend.ensure_array(array), dev))


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Rescale all gradients together so that their joint norm is at most ``max_norm``, in place.

    The gradients are treated as one vector g: ‖g‖_p = (Σ_i |g_i|^p)^(1/p), or max_i |g_i| for
    ``norm_type=inf``. Every gradient is multiplied by min(1, max_norm / (‖g‖ + 1e-6)). The norm is
    computed after dividing by the largest |g_i|, so finite gradients never overflow to an infinite
    norm and are never turned into NaN. Returns ‖g‖ before clipping as a 0-d tensor on the first
    gradient's device (0 when no parameter has a gradient). With ``error_if_nonfinite`` a NaN or
    infinite norm raises ``RuntimeError`` before any gradient is touched.
    """
    name = "clip_grad_norm_"
    norm_type = float(norm_type)
    if math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"{name}: norm_type must be positive or inf, got {norm_type}")
    max_norm = float(max_norm)
    if math.isnan(max_norm) or max_norm < 0:
        raise ValueError(f"{name}: max_norm must be a non-negative number, got {max_norm}")
    grads = _gradients(name, parameters)
    if not grads:
        return Tensor(0.0)
    first = grads[0]
    if norm_type == 2.0:
        squares = _host_sum_of_squares(grads)
        if squares is not None:
            return _clip_on_host(grads, math.sqrt(squares), max_norm, first)
    # Every array of the total lives on the first gradient's device; CuPy allocates each result on the
    # current GPU, so that GPU is made current here and each gradient's own GPU while reading it.
    with _device_of(first):
        total = _total_norm(grads, norm_type, first)
        if error_if_nonfinite and not bool(first._xp.isfinite(total)):
            raise RuntimeError(
                f"{name}: the total norm of order {norm_type} of the gradients is non-finite "
                f"({float(total)}), so they cannot be clipped; pass error_if_nonfinite=False to clip anyway"
            )
        coefficient = first._xp.minimum(max_norm / (total + 1e-6), 1.0)
        with backend.np.errstate(over="ignore"):  # the returned norm is inf when float32 cannot hold it
            total = backend.ensure_array(first._xp.asarray(total, dtype=first.dtype))
    for g in grads:
        with _device_of(g):
            g.mul_(_on(coefficient, g.device).astype(g.dtype))
    return Tensor._make(total, False, None, 0)


# Terms per BLAS dot product: OpenBLAS's float32 dot accumulates in float32 lanes, so long vectors are
# summed in chunks whose partial sums are added in float64 (relative error ~1e-9 at 16M terms, where one
# dot over all of them is off by ~2e-5).
_DOT_CHUNK = 8192
# Below this sum of squares, squares that underflowed (|g| < 1.1e-19) could matter; above it they are
# below float32 resolution of the total.
_SMALLEST_SAFE_SQUARES = 2.0**-60


def _host_sum_of_squares(grads: list[Tensor]) -> float | None:
    """Σ g² over all gradients by chunked BLAS dot products when every gradient is a floating CPU array
    that does not require grad, or None when the scaled two-pass sum is needed: a GPU gradient (this
    would read the device), a non-finite sum (an overflowing square, an inf or nan entry) or one so
    small that squares may have underflowed. Equal to the scaled sum of :func:`_total_norm` up to
    float32 rounding, at a tenth of its cost (one pass over each gradient instead of four)."""
    total = 0.0
    for g in grads:
        if g.requires_grad or g.device != backend.CPU or g.dtype.kind != "f":
            return None
        flat = g._data.reshape(-1)
        vdot = g._xp.vdot
        for start in range(0, flat.shape[0], _DOT_CHUNK):
            chunk = flat[start : start + _DOT_CHUNK]
            total += float(vdot(chunk, chunk))
    if not math.isfinite(total) or total < _SMALLEST_SAFE_SQUARES:
        return None
    return total


def _clip_on_host(grads: list[Tensor], norm: float, max_norm: float, first: Tensor) -> Tensor:
    """Scale CPU gradients by min(1, max_norm / (norm + 1e-6)) in place; return the norm as a 0-d tensor
    of the first gradient's dtype. A coefficient of exactly 1 leaves the gradients untouched (g · 1 = g
    bit for bit), so an update whose gradients are within the bound does no pass over them."""
    coefficient = min(max_norm / (norm + 1e-6), 1.0)
    if coefficient < 1.0:
        for g in grads:
            g.mul_(g._xp.asarray(coefficient, dtype=g.dtype))
    return Tensor._make(first._xp.asarray(norm, dtype=first.dtype), False, None, 0)


def _total_norm(grads: list[Tensor], norm_type: float, first: Tensor) -> Any:
    """‖g‖_p of all gradients as one vector, a 0-d array on the first gradient's device."""
    dev, xp = first.device, first._xp
    largest = None
    for g in grads:
        if g.numel() == 0:
            continue
        with _device_of(g):
            peak = g._xp.abs(g._data).max()
        peak = _on(peak, dev)
        largest = peak if largest is None else xp.maximum(largest, peak)
    if largest is None:
        return xp.zeros((), dtype=first.dtype)
    if norm_type == math.inf:
        return largest
    # Dividing by the largest entry keeps every term in [0, 1]: no overflow, no underflow to 0.
    scale = xp.where(xp.isfinite(largest) & (largest > 0), largest, 1)
    accumulated = xp.zeros((), dtype=largest.dtype)
    for g in grads:
        if g.numel() == 0:
            continue
        with _device_of(g):
            ratio = g._xp.abs(g._data / _on(scale, g.device).astype(g.dtype))
            terms = (ratio * ratio if norm_type == 2.0 else ratio**norm_type).sum()
        accumulated = accumulated + _on(terms, dev)
    # In float64: the norm of finite float32 gradients near the largest float32 can exceed it, and
    # they must still be clipped (an infinite norm would zero them) and not be reported non-finite.
    return scale.astype(xp.float64) * accumulated.astype(xp.float64) ** (1.0 / norm_type)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient entry into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    if math.isnan(clip_value) or clip_value < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be a non-negative number, got {clip_value}")
    for g in _gradients("clip_grad_value_", parameters):
        g.clamp_(-clip_value, clip_value)


# ---- variable-length sequences (torch.nn.utils.rnn) ----
from . import rnn  # noqa: E402

# isort: split
# Parameters as one flat vector and back
from .convert_parameters import parameters_to_vector, vector_to_parameters  # noqa: E402

__all__ += ["parameters_to_vector", "vector_to_parameters"]
