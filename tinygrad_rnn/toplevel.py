"""Module-level functions and small utilities that PyTorch programs call as ``torch.<name>``: method
forms (``tg.prod(x, 1)`` is ``x.prod(1)``), ``as_tensor``, ``allclose``, ``inference_mode``, the thread
settings, ``is_floating_point``, ``finfo``/``iinfo`` and ``Size``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

from . import autograd, backend
from .functions import _method, _require_tensor
from .tensor import Tensor

(
    clone,
    log1p,
    prod,
    cumprod,
    isnan,
    isinf,
    isfinite,
    nonzero,
    unique,
    repeat_interleave,
    std,
    var,
    rsqrt,
    reciprocal,
    square,
    ceil,
    trunc,
    fmod,
    remainder,
    dot,
    outer,
    diag,
    diagonal,
    logical_and,
    logical_or,
    logical_not,
    logical_xor,
    unflatten,
    index_fill,
    bernoulli,
    argwhere,
) = (
    _method(n)
    for n in (
        "clone",
        "log1p",
        "prod",
        "cumprod",
        "isnan",
        "isinf",
        "isfinite",
        "nonzero",
        "unique",
        "repeat_interleave",
        "std",
        "var",
        "rsqrt",
        "reciprocal",
        "square",
        "ceil",
        "trunc",
        "fmod",
        "remainder",
        "dot",
        "outer",
        "diag",
        "diagonal",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",
        "unflatten",
        "index_fill",
        "bernoulli",
        "argwhere",
    )
)


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """``data`` as a tensor, sharing memory where it can: a tensor already of this dtype and device is
    returned itself, a NumPy array of the same dtype on the CPU is wrapped without a copy; anything else
    is converted (copied). The result does not require grad unless it is the given tensor."""
    if isinstance(data, Tensor):
        out = data
        if device is not None:
            out = out.to(device)
        if dtype is not None:
            out = out.type(dtype)
        return out
    dev = backend.device(device) if device is not None else None
    if backend.is_array(data):
        target = backend.as_dtype(dtype) if dtype is not None else data.dtype
        same_device = dev is None or dev == backend.device_of(data)
        if target == data.dtype and same_device:
            return Tensor._make(data, False, None, 0)
    return Tensor(data, dtype=dtype, device=dev)


def allclose(
    input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False
) -> bool:
    """True when |input - other| <= atol + rtol·|other| everywhere (broadcast), as ``torch.allclose``."""
    _require_tensor("allclose", input)
    _require_tensor("allclose", other)
    if input.device != other.device:
        raise RuntimeError(f"allclose: tensors on {input.device} and {other.device}")
    xp = input._xp
    try:
        return bool(xp.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))
    except ValueError:
        raise ValueError(f"allclose: shapes {input.shape} and {other.shape} do not broadcast") from None


def isclose(
    input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False
) -> Tensor:
    """Elementwise |input - other| <= atol + rtol·|other| (a bool tensor)."""
    _require_tensor("isclose", input)
    _require_tensor("isclose", other)
    close = input._xp.isclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan)
    return Tensor._make(backend.ensure_array(close), False, None, 0)


def is_floating_point(input: Tensor) -> bool:
    """True for a tensor of a floating dtype."""
    _require_tensor("is_floating_point", input)
    return input.dtype.kind == "f"


class inference_mode(autograd.no_grad):
    """As ``no_grad`` (nothing is recorded on the tape): PyTorch's faster variant of it, which here has
    nothing further to skip. ``inference_mode(False)`` leaves recording as it is. Works as a context
    manager and as a decorator, with or without the call: ``@inference_mode`` and ``@inference_mode()``."""

    def __new__(cls, mode: Any = True) -> Any:
        if callable(mode):  # used bare as a decorator: @inference_mode
            return autograd.no_grad()(mode)
        return super().__new__(cls)

    def __init__(self, mode: bool = True) -> None:
        self.mode = bool(mode)

    def __enter__(self) -> None:
        self.previous = autograd._grad_enabled
        if self.mode:
            super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        autograd._grad_enabled = self.previous

    def __call__(self, fn: Callable) -> Callable:
        if not self.mode:
            return fn
        return super().__call__(fn)


def is_inference_mode_enabled() -> bool:
    """True while gradient recording is off (this library's inference mode is ``no_grad``)."""
    return not autograd._grad_enabled


_requested_threads: int | None = None


def set_num_threads(num: int) -> None:
    """Accepted for porting, with a warning that it changes nothing: the thread pool of NumPy's BLAS is
    sized when the library loads and cannot be resized without an extra dependency. Set
    ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``) before starting Python instead.
    """
    global _requested_threads
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {num!r}")
    _requested_threads = num
    warnings.warn(
        "set_num_threads has no effect here: NumPy's BLAS thread pool is fixed when it loads; set "
        "OMP_NUM_THREADS before starting Python to choose it",
        UserWarning,
        stacklevel=2,
    )


def get_num_threads() -> int:
    """The number of threads BLAS was started with as far as the environment tells: ``OMP_NUM_THREADS``
    (or ``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``) when set, else the CPU count (the libraries'
    default). A call to :func:`set_num_threads` does not change it, since it changes nothing."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.strip().isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def finfo(dtype: Any = None) -> Any:
    """Machine limits of a floating dtype (the default dtype when None): ``eps``, ``max``, ``min``,
    ``tiny``, ``bits``, ... (the backend's ``finfo``)."""
    dtype = backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"finfo: expects a floating dtype, got {dtype}; use iinfo for integers")
    return backend.finfo(dtype)


def iinfo(dtype: Any) -> Any:
    """Limits of an integer dtype: ``max``, ``min``, ``bits`` (the backend's ``iinfo``)."""
    dtype = backend.as_dtype(dtype)
    if dtype.kind not in "iub":
        raise TypeError(f"iinfo: expects an integer dtype, got {dtype}; use finfo for floating ones")
    return backend.iinfo(dtype)


class Size(tuple):
    """A shape: a tuple of ints (``tg.Size([2, 3])``), with ``numel()``. ``Tensor.shape`` is a plain
    tuple, which compares equal to it."""

    def __new__(cls, sizes: Any = ()) -> Size:
        sizes = tuple(sizes)
        for n in sizes:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise TypeError(f"Size: expects non-negative ints, got {sizes!r}")
        return super().__new__(cls, sizes)

    def numel(self) -> int:
        """The number of elements of a tensor of this shape."""
        count = 1
        for n in self:
            count *= n
        return count

    def __repr__(self) -> str:
        return f"tinygrad_rnn.Size({list(self)})"
