"""PyTorch's legacy tensor types: ``tg.FloatTensor(2, 3)`` (zeros of a size), ``tg.LongTensor([1, 2])`` (from
data), and ``isinstance(t, tg.FloatTensor)`` true for a float32 tensor."""

from __future__ import annotations

from typing import Any

from . import backend
from .functions import zeros
from .tensor import Tensor


class _LegacyTensorType(type):
    """``isinstance(t, tg.FloatTensor)`` is true for a float32 tensor, as in PyTorch."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, Tensor) and instance.dtype == cls.dtype


def _legacy_new(dtype: Any, name: str, args: tuple, device: Any) -> Tensor:
    if len(args) == 1 and not isinstance(args[0], int):
        data = args[0]
        if isinstance(data, tuple) and all(isinstance(n, int) for n in data) and data:
            return zeros(*data, dtype=dtype, device=device)  # a size such as x.shape
        return Tensor(data, dtype=dtype, device=device)
    if all(isinstance(n, int) and not isinstance(n, bool) for n in args):
        return zeros(*args, dtype=dtype, device=device)
    raise TypeError(f"{name}(): expects sizes (ints) or data (a list, array or tensor), got {args!r}")


def _legacy_type(name: str, dtype: Any) -> type:
    def new(cls: type, *args: Any, device: Any = None) -> Tensor:
        return _legacy_new(cls.dtype, name, args, device)

    doc = f"PyTorch's legacy constructor: ``{name}(*sizes)`` (zeros) or ``{name}(data)``, dtype {dtype}."
    return _LegacyTensorType(name, (), {"dtype": dtype, "__new__": new, "__doc__": doc})


FloatTensor = _legacy_type("FloatTensor", backend.float32)
DoubleTensor = _legacy_type("DoubleTensor", backend.float64)
LongTensor = _legacy_type("LongTensor", backend.int64)
IntTensor = _legacy_type("IntTensor", backend.int32)
BoolTensor = _legacy_type("BoolTensor", backend.bool_)
