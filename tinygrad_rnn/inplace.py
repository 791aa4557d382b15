"""In-place writes on the tape: ``x[index] = value``, ``index_put_``, ``masked_fill_``, ``copy_``, ``fill_``,
``zero_`` and the ``op_`` forms.

When the written tensor, its base or the value requires grad (and gradients are recorded), a write is an
op on the tape, as in PyTorch:

- a write into a tensor ``x`` that views no other is one node (``IndexPut`` for an indexed write, or the
  out-of-place op applied to a copy of x's old values for ``x.mul_(y)``); its result is written into x's
  own array (aliases see the new values) and ``x`` then refers to that node, so the overwritten part of
  x's old value gets a zero gradient and the value gets its slice of the gradient;
- a write into a view ``v`` of a base ``b`` (``b[0].zero_()``, ``b.view(-1)[2] = y``) computes v's new
  values as above and records ``CopySlices(b, new values)``: ``b`` then refers to that node;
- every live view of the written storage whose elements may have changed is re-derived from the new
  node (``ViewOf``), so later uses of the view see the write in their gradient too.

Every write counts one in-place change of the storage (the version counter shared by its views), so a
node that saved the old values raises in backward. A write into a leaf that requires grad (or a view of
one) is refused while gradients are recorded; under ``no_grad`` it is a plain write (initialisation,
optimizers). A write of a value that requires grad into a detached alias of a tensor that requires grad,
or into an expanded tensor, raises: neither could be recorded correctly.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from . import autograd, forward_ad
from .index_ops import CopySlices, IndexPut, ViewOf

EXPANDED = "expanded"  # a broadcast view: several elements share one memory location
DETACHED = "detached"  # ``detach()``/``.data`` of a tensor that requires grad: same storage, no history


class ViewInfo:
    """What a root (a tensor that views no other) knows about its storage: its live ``views`` (weak
    references, pruned as they die). A detached alias is a root too, with ``base`` its source and ``fn``
    ``DETACHED``. A view itself holds the cheaper tuple ``(root, fn)``: its root and the recipe from the
    root's array to its own (``EXPANDED`` for a broadcast view)."""

    __slots__ = ("base", "fn", "limit", "views")

    def __init__(self, base: Any = None, fn: Any = None) -> None:
        self.base, self.fn, self.views, self.limit = base, fn, None, 64


def view_info(t: Any) -> Any:
    """``t._view``: None, a ``ViewInfo`` (a root) or ``(root, fn)`` (a view). A tensor built without
    ``Tensor.__init__``/``_make`` (a subclass's own constructor) may not have it set."""
    try:
        return t._view
    except AttributeError:
        return None


def _fn_of(t: Any) -> Any:
    info = view_info(t)
    if info is None:
        return None
    return info[1] if type(info) is tuple else info.fn


def register_view(base: Any, out: Any, view_fn: Callable[[Any], Any] | None) -> None:
    """Record that ``out``'s array is ``view_fn(base's array)`` (None: an expanded, unwritable view).

    The view keeps its root and its recipe from the root's array; the root keeps weak references to its
    live views, to re-derive them after a write (in-place writes are rare, views are not: this is kept
    cheap, a weak reference appended, the dead ones dropped whenever the list has doubled).
    """
    parent = view_info(base)
    if type(parent) is tuple:
        root, parent_fn = parent
        if parent_fn is EXPANDED or view_fn is None:
            fn: Any = EXPANDED
        else:
            fn = _compose(parent_fn, view_fn)
    else:
        root, fn = base, (EXPANDED if view_fn is None else view_fn)
    out._view = (root, fn)
    if fn is EXPANDED:
        return
    info = view_info(root)
    if info is None:
        info = root._view = ViewInfo()
    views = info.views
    if views is None:
        info.views = [weakref.ref(out)]
    else:
        views.append(weakref.ref(out))
        if len(views) >= info.limit:
            views[:] = [r for r in views if r() is not None]
            info.limit = max(64, 2 * len(views))  # amortised O(1) per view, however many live


def live_views(t: Any) -> list:
    """The live views registered on root ``t``."""
    info = view_info(t)
    if type(info) is not ViewInfo or not info.views:
        return []
    return [v for v in (r() for r in info.views) if v is not None]


def mark_detached(source: Any, out: Any) -> None:
    """``out`` shares ``source``'s storage without its history (``detach``)."""
    out._view = ViewInfo(source, DETACHED)


def _compose(first: Callable, second: Callable) -> Callable:
    return lambda array: second(first(array))


def root_of(x: Any, name: str) -> tuple[Any, Callable | None]:
    """The tensor whose storage a write into ``x`` changes, and x's recipe from it (None: x itself)."""
    info = view_info(x)
    if type(info) is not tuple:
        return x, None
    if info[1] is EXPANDED:
        raise ValueError(
            f"{name}: more than one element of the written-to tensor refers to a single memory location "
            f"(it was made by expand or expand_as); clone() it first: it is read-only "
            f"(tensor shape {x.shape})"
        )
    return info


def records(x: Any, root: Any, others: tuple = ()) -> bool:
    """True when a write into ``x`` must be recorded on the tape (or carry a forward-mode tangent)."""
    if autograd._forward_mode and _carries_tangent((x, root, *others)):
        return True
    if not autograd._grad_enabled:
        return False
    if x.requires_grad or root.requires_grad:
        return True
    tensor = autograd.Tensor
    return any(isinstance(o, tensor) and o.requires_grad for o in others)


def check_recordable(x: Any, root: Any, name: str) -> None:
    """Refuse the writes that cannot be recorded, with PyTorch's wording where it has one."""
    if root._ctx is None and root.requires_grad:
        what = "a leaf Variable" if root is x else "a view of a leaf Variable"
        raise RuntimeError(
            f"{name}: {what} that requires grad is being used in an in-place operation. Change it "
            "inside `with tg.no_grad():` (as initialisation and optimizers do), or write into a clone()"
        )
    if _fn_of(x) == DETACHED:
        raise RuntimeError(
            f"{name}: writing a value that requires grad into a detached alias (detach() or .data) of a "
            "tensor that requires grad would bypass its graph; write into the tensor itself or a clone()"
        )


def _snapshot(x: Any) -> Any:
    """A tensor with x's history and a copy of its current values (what an op on x's old value reads)."""
    snapshot = x._make(x._data.copy(), x.requires_grad, x._ctx, x._index)
    if autograd._forward_mode:
        forward_ad.set_tangent(snapshot, forward_ad.tangent_of(x))
    return snapshot


def _rebase(t: Any, out: Any) -> None:
    if autograd._forward_mode:  # the written tensor now carries the write's tangent
        forward_ad.set_tangent(t, forward_ad.tangent_of(out))
        if not autograd._grad_enabled:
            return  # only a tangent to carry: the tape is not being recorded
    t._ctx, t._index, t.requires_grad = out._ctx, out._index, out.requires_grad


def _carries_tangent(tensors: tuple) -> bool:
    tensor = autograd.Tensor
    return any(isinstance(t, tensor) and forward_ad.tangent_of(t) is not None for t in tensors)


def _finish(root: Any, changed: Any) -> None:
    """Count the change and re-derive every live view of ``root`` that may overlap ``changed``."""
    autograd.bump_version(root)
    if view_info(root) is None:
        return
    if not root.requires_grad and not (autograd._forward_mode and _carries_tangent((root,))):
        return
    xp = root._xp
    for view in live_views(root):
        if xp.may_share_memory(view._data, changed):
            _rebase(view, ViewOf.apply(root, view_fn=view._view[1]))


def _as_value(x: Any, value: Any, name: str) -> Any:
    """``value`` as a tensor of x's dtype on x's device (differentiably converted when it is a tensor)."""
    tensor = autograd.Tensor
    if not isinstance(value, tensor):
        return x._make(x._xp.asarray(_device_array(x, value), dtype=x.dtype), False, None, 0)
    if value.device != x.device:
        value = value.to(x.device)
    if value.dtype != x.dtype:
        if value.requires_grad and x.dtype.kind != "f":
            raise RuntimeError(
                f"{name}: a value that requires grad cannot be written into a {x.dtype} tensor"
            )
        value = value.type(x.dtype)
    return value


def _device_array(x: Any, value: Any) -> Any:
    from . import backend

    return backend.to_device(value, x.device) if backend.is_array(value) else value


def index_write(x: Any, index: Any, value: Any, accumulate: bool, name: str) -> bool:
    """Record ``x[index] = value`` (or ``+=`` when ``accumulate``) when it must be; False when the write
    is not recorded and the caller writes the array itself."""
    root, fn = root_of(x, name)
    if not records(x, root, (value,)):
        return False
    check_recordable(x, root, name)
    value = _as_value(x, value, name)
    try:
        if fn is None:
            _rebase(x, IndexPut.apply(x, value, index=index, accumulate=accumulate))
            changed = x._data[index] if _is_basic(index) else x._data
        else:
            new_values = IndexPut.apply(_snapshot(x), value, index=index, accumulate=accumulate)
            _rebase(root, CopySlices.apply(root, new_values, view_fn=fn))
            changed = x._data
    except ValueError as error:
        raise ValueError(f"{name}: {error} (tensor shape {x.shape})") from None
    _finish(root, changed)
    return True


def op_write(x: Any, name: str, compute: Callable[[Any], Any], others: tuple = ()) -> bool:
    """Record ``x = compute(x)`` in place (the ``op_`` forms) when it must be; False when not recorded."""
    root, fn = root_of(x, name)
    if not records(x, root, others):
        return False
    check_recordable(x, root, name)
    # An operand that shares x's memory (``y.mul_(y)``) is read through a copy of its old values too,
    # so that what the op saves is not overwritten by the write.
    xp = x._xp
    tensor = autograd.Tensor
    operands = [
        _snapshot(o) if isinstance(o, tensor) and xp.may_share_memory(o._data, x._data) else o for o in others
    ]
    try:
        new = compute(_snapshot(x), *operands)
    except ValueError as error:
        raise ValueError(f"{name}: {error} (tensor shape {x.shape})") from None
    if new.shape != x.shape:
        raise ValueError(
            f"{name}: the result has shape {new.shape} but the tensor written in place has shape {x.shape} "
            "(an in-place op cannot broadcast the tensor it writes)"
        )
    if new.dtype != x.dtype:
        new = new.type(x.dtype)
    if fn is None:
        x._data[...] = new._data
        _rebase(x, new)
    else:
        _rebase(root, CopySlices.apply(root, new, view_fn=fn))
    _finish(root, x._data)
    return True


def plain_write_allowed(x: Any, name: str) -> Any:
    """For an unrecorded write: the root whose version to count (raises for an expanded tensor)."""
    return root_of(x, name)[0]


def _is_basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in items)


class InPlaceMethods:
    """The in-place methods of ``Tensor``: recorded on the tape when they must be (see the module
    docstring), otherwise plain writes into the array that count one in-place change."""

    __slots__ = ()

    def _inplace(self: Any, name: str) -> None:
        root_of(self, name)  # an expanded tensor cannot be written
        autograd.bump_version(self)

    def _write(self: Any, name: str, array: Any) -> Any:
        self._inplace(name)
        try:
            self._xp.copyto(self._data, array, casting="same_kind")
        except (ValueError, TypeError) as error:
            raise ValueError(f"{name}: {error} (tensor shape {self.shape})") from None
        return self

    def _bump_version(self: Any) -> None:
        """Count an in-place change; nodes that saved this storage compare the count in backward."""
        autograd.bump_version(self)

    def _update(self: Any, name: str, compute: Callable[[Any], Any], others: tuple = ()) -> Any:
        """``self = compute(self)`` in place: recorded when it must be, else computed without history."""
        for other in others:
            if isinstance(other, autograd.Tensor) and other.ndim and other.device != self.device:
                raise RuntimeError(
                    f"{name}: expected a tensor on {self.device}, got one on {other.device}; "
                    "move it with .to(device) first"
                )
        if op_write(self, name, compute, others):
            return self
        with autograd.no_grad():
            try:
                new = compute(self, *others)
            except ValueError as error:
                raise ValueError(f"{name}: {error} (tensor shape {self.shape})") from None
        return self._write(name, new._data)

    def _put(self: Any, name: str, index: Any, value: Any, accumulate: bool = False) -> Any:
        """``self[index] = value`` (``+=`` when ``accumulate``), index already converted."""
        if index_write(self, index, value, accumulate, name):
            return self
        self._inplace(name)
        data = value._data if isinstance(value, autograd.Tensor) else value
        if isinstance(value, autograd.Tensor) or not isinstance(data, int | float | bool):
            from . import backend

            data = backend.to_device(backend.as_array(data, None, self.device, copy=False), self.device)
        try:
            if accumulate:
                from . import backend

                target_shape = self._data[index].shape
                values = self._xp.broadcast_to(self._xp.asarray(data).astype(self.dtype), target_shape)
                backend.scatter_add(self._data, index, values)
            else:
                self._data[index] = data
        except (ValueError, TypeError) as error:
            raise ValueError(f"{name}: {error} (tensor shape {self.shape})") from None
        return self

    # ---- writes of values ----------------------------------------------------------------------------

    def __setitem__(self: Any, index: Any, value: Any) -> None:
        from .tensor import _index_arg

        self._put("__setitem__", _index_arg(index, self), value)

    def index_put_(self: Any, indices: Any, values: Any, accumulate: bool = False) -> Any:
        """In place: ``self[indices] = values`` (``+=`` with repeats summed when ``accumulate``);
        ``indices`` is a tuple of index tensors, one per leading dim. Gradient: the overwritten part of
        self gets 0 (all of g when accumulating), ``values`` gets ``g[indices]``."""
        from .tensor import _index_arg

        if not isinstance(indices, tuple | list):
            raise TypeError(f"index_put_: indices must be a tuple of tensors, got {type(indices).__name__}")
        return self._put("index_put_", _index_arg(tuple(indices), self), values, accumulate)

    def index_put(self: Any, indices: Any, values: Any, accumulate: bool = False) -> Any:
        """Out of place :meth:`index_put_` (on a clone)."""
        return self.clone().index_put_(indices, values, accumulate)

    def masked_fill_(self: Any, mask: Any, value: Any) -> Any:
        """In place: ``value`` where ``mask`` (broadcast to self's shape) is true."""
        mask = mask._data if isinstance(mask, autograd.Tensor) else self._xp.asarray(mask)
        if mask.dtype.kind != "b":
            mask = mask != 0
        if isinstance(value, autograd.Tensor) and value.ndim:
            raise ValueError(
                f"masked_fill_: value must be a number or a 0-dim tensor, got shape {value.shape}"
            )
        try:
            index = self._xp.broadcast_to(mask, self.shape)
        except ValueError:
            raise ValueError(
                f"masked_fill_: mask of shape {tuple(mask.shape)} does not broadcast to {self.shape}"
            ) from None
        return self._put("masked_fill_", index, value)

    def fill_(self: Any, value: Any) -> Any:
        """In place: every element set to ``value`` (a number or a 0-dim tensor)."""
        if isinstance(value, autograd.Tensor) and value.ndim:
            raise ValueError(f"fill_: value must be a number or a 0-dim tensor, got shape {value.shape}")
        if isinstance(value, str):
            raise ValueError(f"fill_: value must be a number, got {value!r}")
        return self._put("fill_", Ellipsis, value)

    def zero_(self: Any) -> Any:
        """In place: every element set to 0."""
        return self._put("zero_", Ellipsis, 0)

    def copy_(self: Any, source: Any, non_blocking: bool = False) -> Any:
        """In place: ``source``'s values (broadcast to self's shape, converted to self's dtype and
        device); gradient: self's old value gets 0, ``source`` gets g (summed over broadcast)."""
        return self._put("copy_", Ellipsis, source)

    def uniform_(self: Any, low: float = 0.0, high: float = 1.0) -> Any:
        """In place: uniform samples in [low, high) from the seeded generator."""
        from . import backend

        u = backend.random_uniform(self.shape, self.dtype, self.device)
        return self._put("uniform_", Ellipsis, low + (high - low) * u)

    def normal_(self: Any, mean: float = 0.0, std: float = 1.0) -> Any:
        """In place: normal samples with ``mean`` and ``std`` from the seeded generator."""
        from . import backend

        return self._put(
            "normal_", Ellipsis, mean + std * backend.random_normal(self.shape, self.dtype, self.device)
        )

    # ---- op_ forms -----------------------------------------------------------------------------------

    def add_(self: Any, other: Any, alpha: Any = 1) -> Any:
        """In place: ``self += alpha * other``; also PyTorch's old ``add_(number, tensor)`` order."""
        other, alpha = _legacy_alpha(other, alpha)
        return self._update("add_", lambda s, o: s + (o if alpha == 1 else o * alpha), (other,))

    def sub_(self: Any, other: Any, alpha: Any = 1) -> Any:
        """In place: ``self -= alpha * other``."""
        other, alpha = _legacy_alpha(other, alpha)
        return self._update("sub_", lambda s, o: s - (o if alpha == 1 else o * alpha), (other,))

    def mul_(self: Any, other: Any) -> Any:
        """In place: ``self *= other``."""
        return self._update("mul_", lambda s, o: s * o, (other,))

    def div_(self: Any, other: Any, rounding_mode: str | None = None) -> Any:
        """In place: ``self /= other`` (``rounding_mode`` as in :meth:`Tensor.div`)."""
        return self._update("div_", lambda s, o: s.div(o, rounding_mode=rounding_mode), (other,))

    def pow_(self: Any, exponent: Any) -> Any:
        """In place: ``self **= exponent``."""
        return self._update("pow_", lambda s, e: s**e, (exponent,))

    def clamp_(self: Any, min: Any = None, max: Any = None) -> Any:
        """In place: clamp to [min, max]."""
        return self._update("clamp_", lambda s: s.clamp(min, max))

    clip_ = clamp_

    def clamp_min_(self: Any, min: Any) -> Any:
        """In place: ``max(self, min)``."""
        return self._update("clamp_min_", lambda s: s.clamp(min=min))

    def clamp_max_(self: Any, max: Any) -> Any:
        """In place: ``min(self, max)``."""
        return self._update("clamp_max_", lambda s: s.clamp(max=max))

    def addcmul_(self: Any, tensor1: Any, tensor2: Any, value: Any = 1) -> Any:
        """In place: ``self += value * tensor1 * tensor2``."""
        return self._update("addcmul_", lambda s, a, b: s + a * b * value, (tensor1, tensor2))

    def addcdiv_(self: Any, tensor1: Any, tensor2: Any, value: Any = 1) -> Any:
        """In place: ``self += value * tensor1 / tensor2``."""
        return self._update("addcdiv_", lambda s, a, b: s + a / b * value, (tensor1, tensor2))

    def lerp_(self: Any, end: Any, weight: Any) -> Any:
        """In place: ``self += weight * (end - self)``."""
        return self._update("lerp_", lambda s, e, w: s + (e - s) * w, (end, weight))

    def scatter_(self: Any, dim: int, index: Any, src: Any = None, value: Any = None) -> Any:
        """In place :meth:`Tensor.scatter`."""
        return self._update("scatter_", lambda s, o: s.scatter(dim, index, o, value=value), (src,))

    def scatter_add_(self: Any, dim: int, index: Any, src: Any) -> Any:
        """In place :meth:`Tensor.scatter_add`."""
        return self._update("scatter_add_", lambda s, o: s.scatter_add(dim, index, o), (src,))

    def index_add_(self: Any, dim: int, index: Any, source: Any, alpha: Any = 1) -> Any:
        """In place :meth:`Tensor.index_add`."""
        return self._update("index_add_", lambda s, o: s.index_add(dim, index, o, alpha=alpha), (source,))

    def masked_scatter_(self: Any, mask: Any, source: Any) -> Any:
        """In place: the elements where ``mask`` is true replaced, in row-major order, by the first
        elements of ``source``;  source gets the gradient of the elements it filled."""
        mask = mask._data if isinstance(mask, autograd.Tensor) else self._xp.asarray(mask)
        index = self._xp.broadcast_to(mask != 0, self.shape)
        count = int(index.sum())
        if source.numel() < count:
            raise ValueError(
                f"masked_scatter_: source has {source.numel()} elements, the mask selects {count}"
            )
        return self._put("masked_scatter_", index, source.reshape(-1)[:count])


def _legacy_alpha(other: Any, alpha: Any) -> tuple[Any, Any]:
    """PyTorch's deprecated ``add_(number, tensor)``: the number scales the tensor."""
    tensor = autograd.Tensor
    if isinstance(alpha, tensor) and not isinstance(other, tensor):
        return alpha, other
    return other, alpha


def _unary_inplace(name: str) -> Callable:
    def method(self: Any) -> Any:
        return self._update(name + "_", lambda s: getattr(s, name)())

    method.__name__ = name + "_"
    method.__doc__ = f"In place :meth:`Tensor.{name}`."
    return method


for _name in ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "neg", "sin", "cos", "floor", "round"):
    setattr(InPlaceMethods, _name + "_", _unary_inplace(_name))
