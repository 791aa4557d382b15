"""Anomaly mode: ``with tg.autograd.detect_anomaly():`` makes the first NaN or Inf produced in a
forward or backward pass raise an error that names the op and shows where the user's code created it.

Off by default and free when off: the tape checks one flag (``autograd._anomaly_enabled``) per op
and per node walked, and only calls into this module when it is set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import traceback
from collections.abc import Callable
from typing import Any

from . import autograd, backend, fastpaths
from .autograd import Function


class detect_anomaly:
    """Inside this block, the first NaN or Inf produced in a forward or backward pass raises.

    ``with tg.autograd.detect_anomaly(): loss = model(x); loss.backward()``. Every op records, when it is
    created, a short summary of the user's stack (the frames outside this package); a forward op whose
    output holds NaN/Inf raises ``RuntimeError`` naming the op and that location, and so does a backward
    function that returns a NaN/Inf gradient. ``check_nan=False`` records the locations but raises
    nothing. Off by default: outside the block, the tape pays one flag check per op. Works as a decorator.
    """

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = bool(check_nan)

    def __enter__(self) -> None:
        self.previous = (autograd._anomaly_enabled, autograd._anomaly_check_nan)
        autograd._anomaly_enabled, autograd._anomaly_check_nan = True, self.check_nan

    def __exit__(self, *exc: Any) -> None:
        autograd._anomaly_enabled, autograd._anomaly_check_nan = self.previous

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return wrapper


def set_detect_anomaly(mode: bool, check_nan: bool = True) -> None:
    """Turn anomaly mode on or off for the rest of the program (see :class:`detect_anomaly`)."""
    autograd._anomaly_enabled, autograd._anomaly_check_nan = bool(mode), bool(check_nan)


def is_anomaly_enabled() -> bool:
    """True inside :class:`detect_anomaly` (or after ``set_detect_anomaly(True)``)."""
    return autograd._anomaly_enabled


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_ANOMALY_FRAMES = 4  # the innermost user frames kept per node: enough to find the line, cheap to store


def _user_stack() -> list:
    """The innermost frames of the caller's stack that lie outside this package (where the op was made)."""
    frames = [f for f in traceback.extract_stack() if not f.filename.startswith(_PACKAGE_DIR)]
    return frames[-_ANOMALY_FRAMES:]


def _nonfinite(array: Any) -> str | None:
    """'NaN' or 'Inf' when a floating array holds one, else None."""
    if array is None or getattr(array, "dtype", None) is None or array.dtype.kind not in "fc":
        return None
    xp = backend.get_array_module(array)
    if bool(xp.isfinite(array).all()):
        return None
    return "NaN" if bool(xp.isnan(array).any()) else "Inf"


def _anomaly_error(ctx: Function, what: str, where: str) -> RuntimeError:
    trace = getattr(ctx, "anomaly_trace", None)
    created = (
        "".join(traceback.format_list(trace)).rstrip()
        if trace
        else "  (unknown: the op was created outside anomaly mode)"
    )
    return RuntimeError(
        f"anomaly detected: {ctx.name} produced {what} in its {where}.\n"
        f"{ctx.name} was created at (most recent call last):\n{created}"
    )


def check_forward(ctx: Function, outputs: Any) -> None:
    """Anomaly mode, forward: remember where ``ctx`` was created; raise if an output is NaN/Inf."""
    with contextlib.suppress(AttributeError):  # a subclass that declares __slots__ has no room for it
        ctx.anomaly_trace = _user_stack()
    if not autograd._anomaly_check_nan:
        return
    for i, out in enumerate(outputs if type(outputs) is tuple else (outputs,)):
        data = out._data if isinstance(out, autograd.Tensor) else out
        bad = _nonfinite(data)
        if bad is not None:
            raise _anomaly_error(ctx, bad, f"forward output {i} (shape {tuple(data.shape)})")


def check_backward(node: Function, input_grads: Any) -> None:
    """Anomaly mode, backward: raise if a gradient the node returned holds NaN/Inf."""
    if not autograd._anomaly_check_nan:
        return
    for i, g in enumerate(input_grads if type(input_grads) is tuple else (input_grads,)):
        bad = _nonfinite(fastpaths.dense(g))  # a deferred product is checked as the array it stands for
        if bad is not None:
            raise _anomaly_error(node, bad, f"backward gradient for input {i} (shape {tuple(g.shape)})")
