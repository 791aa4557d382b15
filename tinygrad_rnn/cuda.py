"""``tg.cuda``: what PyTorch users ask about GPUs, answered through the backend.

Nothing here imports CuPy itself: ``backend`` does, lazily, so ``import tinygrad_rnn`` works (and
every CPU path runs) on machines without CuPy or without a GPU.
"""

from __future__ import annotations

from . import backend


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA GPU."""
    return backend.cuda_is_available()


def device_count() -> int:
    """Number of CUDA GPUs CuPy can see (0 without CuPy or a GPU)."""
    return backend.cuda_device_count()


def current_device() -> int:
    """Index of the current GPU (where CuPy allocates when no index is given)."""
    return backend.cuda_current_device()


def set_device(device: int | str | backend.Device) -> None:
    """Make a GPU the current one (where CuPy allocates and runs; ops also switch to their operands' GPU)."""
    backend.use_device(_cuda_device(device))


def get_device_name(device: int | str | backend.Device | None = None) -> str:
    """The product name of a GPU (the current one by default)."""
    return backend.cuda_device_name(_cuda_device(device))


def synchronize(device: int | str | backend.Device | None = None) -> None:
    """Block until all kernels queued on the GPU have finished; time GPU code only after this."""
    backend.cuda_synchronize(_cuda_device(device))


def memory_allocated(device: int | str | backend.Device | None = None) -> int:
    """Bytes of GPU memory held by live arrays on the device (CuPy's memory pool, ``used_bytes``)."""
    dev = _cuda_device(device)
    pool = backend.cuda_memory_pool(dev)
    with backend.require_cuda(dev).cuda.Device(dev.index):
        return int(pool.used_bytes())


def memory_reserved(device: int | str | backend.Device | None = None) -> int:
    """Bytes of GPU memory the pool holds, in use or cached for reuse (``total_bytes``)."""
    dev = _cuda_device(device)
    pool = backend.cuda_memory_pool(dev)
    with backend.require_cuda(dev).cuda.Device(dev.index):
        return int(pool.total_bytes())


def empty_cache() -> None:
    """Return the cached, unused blocks of the memory pool to the GPU (live arrays are untouched)."""
    backend.cuda_memory_pool(_cuda_device(None)).free_all_blocks()


def manual_seed(seed: int) -> None:
    """Seed the generators (every device's, as ``tg.manual_seed``: one seed gives one stream per device)."""
    backend.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    """Seed every device's generator (the same as ``tg.manual_seed``)."""
    backend.manual_seed(seed)


def _cuda_device(device: int | str | backend.Device | None) -> backend.Device:
    if device is None:
        return backend.Device("cuda", backend.cuda_current_device())
    dev = backend.device(device)
    if dev.type != "cuda":
        raise ValueError(f"expected a CUDA device, got {dev}")
    return dev
