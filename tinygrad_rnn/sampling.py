"""Random draws PyTorch code reaches besides the factories: ``randperm`` and ``multinomial``, both from
the device's seeded generator (``tg.manual_seed``)."""

from __future__ import annotations

from typing import Any

from . import backend
from .functions import _factory_args, _require_tensor
from .selection import stable_argsort
from .tensor import Tensor


def randperm(n: int, dtype: Any = None, device: Any = None) -> Tensor:
    """A random permutation of 0 .. n-1 (int64) from the seeded generator."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    _, _, dev, _ = _factory_args((), None, device)
    keys = backend.random_uniform((n,), backend.float64, dev)
    order = stable_argsort(keys).astype(backend.int64 if dtype is None else backend.as_dtype(dtype))
    return Tensor._make(order, False, None, 0)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False) -> Tensor:
    """Indices drawn from each row of ``input`` (non-negative weights, need not sum to 1), from the seeded
    generator: with ``replacement`` independently, without it distinct (the Gumbel top-k trick)."""
    _require_tensor("multinomial", input)
    if input.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {input.shape}")
    weights = input._data.astype(backend.float64)
    xp = input._xp
    rows = weights.reshape(-1, weights.shape[-1])
    categories = rows.shape[1]
    if bool((rows < 0).any()) or not bool(xp.isfinite(rows).all()) or bool((rows.sum(axis=1) <= 0).any()):
        raise ValueError("multinomial: weights must be finite, non-negative and have a positive sum per row")
    if not replacement and num_samples > categories:
        raise ValueError(
            f"multinomial: cannot draw {num_samples} distinct samples from {categories} categories"
        )
    if num_samples <= 0:
        raise ValueError(f"multinomial: num_samples must be positive, got {num_samples}")
    uniform = backend.random_uniform(
        (rows.shape[0], num_samples if replacement else categories), backend.float64, input.device
    )
    if replacement:
        cumulative = xp.cumsum(rows, axis=1)
        cumulative /= cumulative[:, -1:]
        # The category of u is the number of cumulative bounds at or below it.
        picks = xp.minimum((uniform[:, :, None] >= cumulative[:, None, :]).sum(axis=2), categories - 1)
    else:
        # argmax over log(w) + Gumbel noise, taken k times without the chosen ones, is a draw without
        # replacement; a zero weight gets -inf and is never chosen before a positive one.
        with xp.errstate(divide="ignore") if xp is backend.np else _nothing():
            keys = xp.log(rows) - xp.log(-xp.log(xp.clip(uniform, 1e-300, 1.0)))
        picks = stable_argsort(-keys, 1)[:, :num_samples]
        zero = xp.take_along_axis(rows, picks, axis=1) == 0
        if bool(zero.any()):
            raise ValueError(
                "multinomial: fewer categories with positive weight than samples without replacement"
            )
    picks = picks.astype(backend.int64)
    return Tensor._make(picks.reshape(num_samples) if input.ndim == 1 else picks, False, None, 0)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
