"""Forward-mode autodiff with dual tensors (PyTorch's ``torch.autograd.forward_ad``), batched tangents.

Inside ``with dual_level():`` a tensor made by :func:`make_dual` carries a tangent: the directional
derivative ṫ of its value along a direction of the inputs. Every op applied to tensors that carry
tangents computes its output's tangent right after its forward pass (``Function.jvp``, beside the op's
backward): ẏ = J ẋ, one Jacobian-vector product per op, so the tangent of a whole program is
the chain rule applied in the order the program runs. Nothing is recorded for it: the tape, when
there is one, is the reverse mode's business, and the two can run together.

Tangents are batched: a tangent is stored as an array ``(K, *shape)``, K directions carried by one
forward pass (``make_dual(x, tangent, batched=True)``); the unbatched form PyTorch has is K = 1.
Tangents live in a table of the open level keyed by the tensor (weakly: a tangent dies with its
tensor), so a tensor needs no extra field and the reverse mode's hot path pays one flag test.

    with forward_ad.dual_level():
        x = forward_ad.make_dual(primal, direction)
        y = f(x)
        value, jvp = forward_ad.unpack_dual(y)   # jvp = J_f(primal) @ direction
"""

from __future__ import annotations

import weakref
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import autograd, backend

__all__ = [
    "UnpackedDualTensor",
    "dual_level",
    "enter_dual_level",
    "exit_dual_level",
    "make_dual",
    "unpack_dual",
]

UnpackedDualTensor = namedtuple("UnpackedDualTensor", ["primal", "tangent"])


class _Level:
    """One open dual level: ``tangents[id(tensor)] = (weak reference to tensor, (K, *shape) array)``."""

    def __init__(self) -> None:
        self.tangents: dict[int, tuple] = {}
        self.batch_size: int | None = None  # K once a batched tangent was given
        self.batched = False


_levels: list[_Level] = []


def enter_dual_level() -> int:
    """Open a dual level (prefer ``with dual_level():``); returns its index. Levels do not nest."""
    if _levels:
        raise RuntimeError("Nested forward mode AD is not supported: a dual level is already open")
    _levels.append(_Level())
    autograd._forward_mode = True
    return len(_levels) - 1


def exit_dual_level() -> None:
    """Close the open dual level: every tangent made in it is dropped."""
    if not _levels:
        raise RuntimeError("exit_dual_level: no dual level is open")
    _levels.pop().tangents.clear()
    autograd._forward_mode = bool(_levels)


@contextmanager
def dual_level() -> Iterator[int]:
    """A block in which :func:`make_dual` tensors carry tangents through every op; they are dropped
    at its end (``unpack_dual`` then returns no tangent)."""
    level = enter_dual_level()
    try:
        yield level
    finally:
        exit_dual_level()


@contextmanager
def _suspended() -> Iterator[None]:
    """Ops run without tangent propagation (for the views ``make_dual``/``unpack_dual`` return)."""
    previous = autograd._forward_mode
    autograd._forward_mode = False
    try:
        yield
    finally:
        autograd._forward_mode = previous


def _view(tensor: Any) -> Any:
    """A tensor sharing ``tensor``'s storage and history (gradients flow back to it), no tangent."""
    if tensor.requires_grad and autograd.is_grad_enabled():
        from . import ops

        with _suspended():
            return ops.Reshape.apply(tensor, shape=tensor.shape)
    out = autograd.Tensor._make(tensor._data, False, None, 0)
    out._version = autograd._version_box(tensor)
    return out


def make_dual(tensor: Any, tangent: Any, *, batched: bool = False) -> Any:
    """A view of ``tensor`` that carries ``tangent`` in the open dual level.

    Args:
        tensor: a floating Tensor (its gradient history is kept: the result is a view of it).
        tangent: a Tensor or array of ``tensor``'s shape, or with ``batched=True`` of shape
            ``(K, *tensor.shape)``: K directions carried at once (every batched tangent of a level
            has the same K).

    Returns:
        The dual tensor; ops on it compute their outputs' tangents (``unpack_dual``).
    """
    if not _levels:
        raise RuntimeError("make_dual must be called inside a dual level: with forward_ad.dual_level(): ...")
    if not isinstance(tensor, autograd.Tensor):
        raise TypeError(f"make_dual expects a Tensor as primal, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"make_dual: the primal must be a floating tensor, got dtype {tensor.dtype}")
    data = tangent._data if isinstance(tangent, autograd.Tensor) else tangent
    if not backend.is_array(data):
        raise TypeError(f"make_dual expects a Tensor or array as tangent, got {type(tangent).__name__}")
    if backend.device_of(data) != tensor.device:
        raise RuntimeError(
            f"make_dual: the tangent is on {backend.device_of(data)} but the primal is on {tensor.device}"
        )
    level = _levels[-1]
    shape = tuple(tensor.shape)
    if batched:
        if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != shape:
            raise ValueError(
                f"make_dual: a batched tangent must have shape (K, *{shape}), got {tuple(data.shape)}"
            )
        if level.batch_size is not None and data.shape[0] != level.batch_size:
            raise ValueError(
                f"make_dual: every batched tangent of a level has the same K; got {data.shape[0]} "
                f"after {level.batch_size}"
            )
        if level.tangents and not level.batched:
            raise ValueError("make_dual: batched and unbatched tangents cannot be mixed in one level")
        level.batch_size, level.batched = data.shape[0], True
        stored = data
    else:
        if tuple(data.shape) != shape:
            raise ValueError(
                f"make_dual: the tangent must have the primal's shape {shape}, got {tuple(data.shape)} "
                "(pass batched=True for a leading axis of K directions)"
            )
        if level.batched:
            raise ValueError("make_dual: batched and unbatched tangents cannot be mixed in one level")
        stored = data[None]
    dual = _view(tensor)
    _set(level, dual, stored.astype(tensor.dtype, copy=True))
    return dual


def unpack_dual(tensor: Any) -> UnpackedDualTensor:
    """``(primal, tangent)``: a view of ``tensor`` without tangent, and its tangent as a Tensor (shape
    of the tensor, or ``(K, *shape)`` in a batched level), None when it carries none."""
    if not isinstance(tensor, autograd.Tensor):
        raise TypeError(f"unpack_dual expects a Tensor, got {type(tensor).__name__}")
    tangent = tangent_of(tensor)
    if tangent is None:
        return UnpackedDualTensor(tensor, None)
    level = _levels[-1]
    if level.batched:
        xp = backend.get_array_module(tangent)
        tangent = xp.broadcast_to(tangent, (level.batch_size, *tangent.shape[1:])).copy()
    else:
        tangent = tangent[0]
    return UnpackedDualTensor(_view(tensor), autograd.Tensor._make(tangent, False, None, 0))


# ---- the engine's side -----------------------------------------------------------------------------


def tangent_of(tensor: Any) -> Any:
    """The ``(K, *shape)`` tangent array ``tensor`` carries in the open level, or None."""
    if not _levels:
        return None
    entry = _levels[-1].tangents.get(id(tensor))
    if entry is None or entry[0]() is not tensor:
        return None
    return entry[1]


def set_tangent(tensor: Any, tangent: Any) -> None:
    """Give ``tensor`` a ``(K, *shape)`` tangent in the open level (None removes it)."""
    if not _levels:
        return
    table = _levels[-1].tangents
    if tangent is None:
        table.pop(id(tensor), None)
        return
    _set(_levels[-1], tensor, tangent)


def _set(level: _Level, tensor: Any, tangent: Any) -> None:
    table, key = level.tangents, id(tensor)

    def forget(reference: Any) -> None:
        entry = table.get(key)
        if entry is not None and entry[0] is reference:
            del table[key]

    table[key] = (weakref.ref(tensor, forget), tangent)


def propagate(ctx: Any, inputs: tuple, datas: Any, result: Any, constants: dict) -> None:
    """After ``ctx.forward``: when some input carries a tangent, run ``ctx.jvp`` and attach the
    output tangent(s) to ``result`` (a Tensor or a tuple of them)."""
    tangents = [tangent_of(t) for t in inputs]
    if all(t is None for t in tangents):
        return
    outputs = result if type(result) is tuple else (result,)
    output = tuple(o._data for o in outputs) if type(result) is tuple else result._data
    out_tangents = ctx.jvp(tuple(datas), tuple(tangents), output, **constants)
    if type(result) is not tuple:
        out_tangents = (out_tangents,)
    sizes = {t.shape[0] for t in tangents if t is not None}
    for out, tangent in zip(outputs, out_tangents):
        if tangent is None:
            continue
        if tuple(tangent.shape[1:]) != tuple(out.shape) or tangent.shape[0] not in sizes:
            raise RuntimeError(
                f"{ctx.name}.jvp returned a tangent of shape {tuple(tangent.shape)} for an output of shape "
                f"{tuple(out.shape)} (expected (K, *output shape) with K in {sorted(sizes)})"
            )
        if tangent.dtype != out.dtype and out.dtype.kind == "f":
            tangent = tangent.astype(out.dtype)
        set_tangent(out, backend.ensure_array(tangent))


# ---- helpers for the ops' jvp rules ------------------------------------------------------------------


def lift(tangent: Any, ndim: int) -> Any:
    """A ``(K, *shape)`` tangent with axes of size 1 inserted after K so that its array part has
    ``ndim`` dims: it then broadcasts against arrays of an output of rank ``ndim``, as the primal did."""
    if tangent is None:
        return None
    missing = ndim - (tangent.ndim - 1)
    if missing <= 0:
        return tangent
    return tangent.reshape((tangent.shape[0],) + (1,) * missing + tangent.shape[1:])


def total(output: Any, *terms: Any) -> Any:
    """Σ of the non-None ``terms`` (each broadcastable to ``(K, *output.shape)``), as a fresh array of
    exactly that shape (K the largest leading size among the terms)."""
    present = [t for t in terms if t is not None]
    result = present[0]
    for term in present[1:]:
        result = result + term
    size = max(t.shape[0] for t in present)
    shape = (size, *output.shape)
    if tuple(result.shape) != shape:
        result = backend.get_array_module(result).broadcast_to(result, shape).copy()
    return result


def shifted(dims: Any, ndim: int) -> tuple:
    """The axes ``dims`` of an array of rank ``ndim`` (None: all), one place to the right (past K)."""
    if dims is None:
        return tuple(range(1, ndim + 1))
    if isinstance(dims, int):
        dims = (dims,)
    return tuple(d % ndim + 1 if ndim else 1 for d in dims)


def zeros_for(primal: Any, size: int) -> Any:
    """A zero tangent ``(size, *primal.shape)`` for an input that carries none (used where a rule
    writes tangents into place, as concatenations and in-place writes do)."""
    return backend.get_array_module(primal).zeros((size, *primal.shape), dtype=primal.dtype)


def batch_size(tangents: tuple) -> int:
    return max(t.shape[0] for t in tangents if t is not None)
