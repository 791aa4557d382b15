"""``tg.cuda``: what PyTorch users ask about GPUs, answered through the backend."""

from __future__ import annotations

from . import backend


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA GPU."""
    return backend.cuda_is_available()


def device_count() -> int:
    """Number of CUDA GPUs CuPy can see (0 without CuPy or a GPU)."""
    return backend.cuda_device_count()


def manual_seed_all(seed: int) -> None:
    """Seed every device's generator (the same as ``tg.manual_seed``)."""
    backend.manual_seed(seed)
