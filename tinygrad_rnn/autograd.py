"""The tape: ``Function`` (one subclass per op, its instance is the graph node), the iterative
backward walk, gradient modes and the one place where broadcast gradients are reduced.

How a backward pass runs
------------------------
Every node records the order in which it was created (``seq``). Creation order is a topological
order of the graph (a node's inputs always exist before it), so walking nodes from the highest
``seq`` down visits every node after all of its consumers: when a node is popped, the gradients of
its outputs are complete. The walk keeps a heap of the nodes that have received a gradient; there is
no recursion, so an RNN unrolled over 100,000 steps backprops like a 10-step one.

Gradients flowing into a node's output are summed (``+=``, never overwritten, so ``x * x`` is right),
popped as soon as the node has used them, and the node's saved arrays are freed unless
``retain_graph=True``. Gradients reaching leaves are summed over the whole walk, passed through the
leaf's hooks, then added to ``leaf.grad``.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import warnings
from collections.abc import Callable
from typing import Any

from . import backend

# The Tensor class registers itself here on import (tensor.py imports this module, not the reverse).
Tensor: Any = None

_grad_enabled = True
_anomaly_enabled = False
_anomaly_check_nan = True
_creation_counter = itertools.count()


class Function:
    """One differentiable op. Subclasses define ``forward(ctx, *arrays, **constants)`` and
    ``backward(ctx, grad_output)``, both on raw backend arrays; ``ctx`` is the node itself.

    ``forward`` receives the data of every ``Tensor`` argument (positional) and the non-differentiable
    options (keywords), stores what ``backward`` needs with :meth:`save_for_backward` (or as plain
    attributes for small constants), and returns an array (or a tuple of arrays for an op with
    several outputs). ``backward`` receives the gradient of the loss with respect to each output
    (``None`` for an output of a multi-output op that received none) and returns one gradient per
    positional input, ``None`` where ``ctx.needs_input_grad[i]`` is false. It may return gradients
    in the broadcast shape: the tape reduces them to the input's shape in one place (:func:`unbroadcast`).
    """

    # Attributes every recorded node sets live in slots; the rarely used ones are class-level
    # defaults that a node overrides only when it needs them. The first two parents sit in slots of
    # the node itself rather than in a tuple: the node is then the only object per op that Python's
    # cycle collector tracks, which halves the cost of its full collections on a long tape.
    __slots__ = ("first", "needs_input_grad", "second", "seq")

    more_parents: tuple | None = None  # all parents, for an op with more than two inputs

    saved: Any = ()  # None once the backward pass has freed them
    saved_versions: tuple | None = None
    hooks: list | None = None
    parent_indices: tuple | None = None
    input_shapes: tuple | None = None  # only kept when some input's shape differs from the output's
    n_outputs = 1

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays for the backward pass; freed when the backward pass has used them."""
        self.saved = arrays

    def forward(self, *arrays: Any, **constants: Any) -> Any:
        raise NotImplementedError

    def backward(self, *grad_outputs: Any) -> Any:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def parents(self) -> tuple:
        """One entry per positional input: the node that produced it, the leaf tensor itself, or None
        when that input needs no gradient."""
        if self.more_parents is not None:
            return self.more_parents
        return (self.first,) if len(self.needs_input_grad) == 1 else (self.first, self.second)

    def __repr__(self) -> str:
        return f"<{self.name} node #{self.seq}>"

    @classmethod
    def apply(cls, *inputs: Any, **constants: Any) -> Any:
        """Run the op forward on ``inputs`` (Tensors) and, when a gradient is needed, record the node.

        This runs once per op of every forward pass, so it is written for speed: no per-op work that
        the backward pass does not need (see docs/performance.md for the measurements).
        """
        ctx = _object_new(cls)
        if len(inputs) == 1:
            datas: Any = (inputs[0]._data,)
        else:
            datas = [t._data for t in inputs]
            for d in datas:
                if type(d) is not _NDARRAY:
                    _check_same_device(cls, inputs, datas)
                    break
        if datas and type(datas[0]) is not _NDARRAY:
            backend.follow_device(datas[0])  # compute on the operands' GPU, as PyTorch does
        try:
            out = ctx.forward(*datas, **constants)
        except (ValueError, IndexError, TypeError) as error:
            raise _explain(cls, error, datas) from None
        if _anomaly_enabled:
            anomaly.check_forward(ctx, out)

        record = False
        if _grad_enabled:
            for t in inputs:
                if t.requires_grad:
                    record = True
                    break
        if type(out) is tuple:
            return _wrap_outputs(ctx, inputs, datas, out, record)
        if type(out) is not _NDARRAY:
            out = _as_ndarray(out)  # NumPy returns scalars for 0-d results
        if not record:
            return _make(out, False, None, 0)

        # Parents are the producing nodes (or leaf tensors); keeping nodes rather than input tensors
        # lets an interior tensor's data be freed as soon as no op saved it. One- and two-input ops
        # (nearly all of them) take an unrolled path.
        shape = out.shape
        n_inputs = len(inputs)
        if n_inputs == 1:
            a = inputs[0]
            node = a._ctx
            ctx.second = None
            if node is None:
                ctx.first = a
            else:
                ctx.first = node
                if a._index:
                    ctx.parent_indices = (a._index,)
            ctx.needs_input_grad = _NEEDS_ONE
            if datas[0].shape != shape:
                ctx.input_shapes = (datas[0].shape,)
        elif n_inputs == 2:
            a, b = inputs
            if a._index or b._index:  # an output of a multi-output op (a step of an unbound sequence)
                ctx.parent_indices = (a._index, b._index)
            if a.requires_grad:
                pa = a if a._ctx is None else a._ctx
                ctx.first = pa
                if b.requires_grad:
                    ctx.second = b if b._ctx is None else b._ctx
                    ctx.needs_input_grad = _NEEDS_BOTH
                else:
                    ctx.second = None
                    ctx.needs_input_grad = _NEEDS_FIRST
            else:
                ctx.first = None
                ctx.second = b if b._ctx is None else b._ctx
                ctx.needs_input_grad = _NEEDS_SECOND
            a_shape, b_shape = datas[0].shape, datas[1].shape
            if a_shape != shape or b_shape != shape:
                ctx.input_shapes = (a_shape, b_shape)
        else:
            _link_parents(ctx, inputs, datas, shape)
        ctx.seq = _next_seq()
        output = _make(out, True, ctx, 0)
        if ctx.saved:
            ctx.saved_versions = _saved_versions(ctx.saved, inputs, (output,))
        return output


_object_new = object.__new__
_NDARRAY = backend.NUMPY_ARRAY
_NEEDS_ONE = (True,)
_NEEDS_BOTH, _NEEDS_FIRST, _NEEDS_SECOND = (True, True), (True, False), (False, True)
_NEEDS_TWO = {_NEEDS_BOTH: _NEEDS_BOTH, _NEEDS_FIRST: _NEEDS_FIRST, _NEEDS_SECOND: _NEEDS_SECOND}
_as_ndarray = backend.ensure_array
_next_seq = _creation_counter.__next__
_VERSION_BYTES = 8
_VERSION_ZERO = bytes(_VERSION_BYTES)


def _make(data: Any, requires_grad: bool, ctx: Any, index: int) -> Any:
    """``Tensor._make``; tensor.py rebinds this name to it directly when it registers the class."""
    return Tensor._make(data, requires_grad, ctx, index)


def _link_parents(ctx: Function, inputs: tuple, datas: Any, shape: tuple) -> None:
    """Record the parents, which inputs need a gradient, and the input shapes when they differ."""
    parents = []
    indices = None
    differ = False
    for position, t in enumerate(inputs):
        if datas[position].shape != shape:
            differ = True
        if not t.requires_grad:
            parents.append(None)
        elif t._ctx is None:
            parents.append(t)
        else:
            parents.append(t._ctx)
            if t._index:
                if indices is None:
                    indices = [0] * len(inputs)
                indices[position] = t._index
    parents.append(None)  # a single-input op's empty second slot
    ctx.first, ctx.second = parents[0], parents[1]
    if len(inputs) > 2:
        ctx.more_parents = tuple(parents[:-1])
    needs = tuple([p is not None for p in parents[: len(inputs)]])
    ctx.needs_input_grad = _NEEDS_TWO.get(needs, needs)
    if indices is not None:
        ctx.parent_indices = tuple(indices)
    if differ:
        ctx.input_shapes = tuple([d.shape for d in datas])


def _wrap_outputs(ctx: Function, inputs: tuple, datas: Any, out: tuple, record: bool) -> tuple:
    """The multi-output path of :meth:`Function.apply` (split, unbind, fused cells)."""
    ensure = backend.ensure_array
    if not record:
        return tuple(_make(ensure(o), False, None, 0) for o in out)
    # Multi-output ops reduce or slice, so their inputs' shapes are always kept for the walk.
    _link_parents(ctx, inputs, datas, None)
    ctx.n_outputs = len(out)
    ctx.seq = _next_seq()
    outputs = tuple(_make(ensure(o), True, ctx, i) for i, o in enumerate(out))
    if ctx.saved:
        ctx.saved_versions = _saved_versions(ctx.saved, inputs, outputs)
    return outputs


def _version_box(t: Any) -> Any:
    """The tensor's in-place version counter, created on first need.

    It is an 8-byte ``bytearray`` holding a little-endian count: mutable, shared by every alias of the
    storage (``detach``), and, unlike ``array.array`` or a list, not tracked by Python's cycle
    collector, so the nodes that record it cost the collector nothing. A node keeps an immutable
    ``bytes`` snapshot of it; the backward pass compares the two.
    """
    box = t._version
    if box is None:
        box = t._version = bytearray(_VERSION_BYTES)
    return box


def version_number(box: Any) -> int:
    """The count held in a version box (0 for a tensor never changed in place, whose box is None)."""
    return 0 if box is None else int.from_bytes(box, "little")


def bump_version(t: Any) -> None:
    """Count one in-place change of ``t``'s storage."""
    box = _version_box(t)
    box[:] = (int.from_bytes(box, "little") + 1).to_bytes(_VERSION_BYTES, "little")


def _saved_versions(saved: tuple, inputs: tuple, outputs: tuple) -> tuple | None:
    """Record (version box, snapshot of it) for every input or output whose data the op saved.

    Runs once per recorded op that saves arrays, so it avoids allocating: a box still at version 0
    (nearly all of them) is snapshotted as the shared ``_VERSION_ZERO``.
    """
    versions: tuple = ()
    for saved_array in saved:
        for t in inputs:
            if t._data is saved_array:
                break
        else:
            for t in outputs:
                if t._data is saved_array:
                    break
            else:
                continue
        box = t._version
        if box is None:
            box = t._version = bytearray(_VERSION_BYTES)
            versions += (box, _VERSION_ZERO)
        elif box == _VERSION_ZERO:
            versions += (box, _VERSION_ZERO)
        else:
            versions += (box, bytes(box))
    return versions or None


def _check_same_device(cls: type, inputs: tuple, datas: list) -> None:
    numpy_array = backend.NUMPY_ARRAY
    for d in datas:
        if type(d) is not numpy_array:
            break
    else:
        return  # all on the CPU
    devices = [t.device for t in inputs]
    if any(d != devices[0] for d in devices):
        spelled = ", ".join(str(d) for d in devices)
        raise RuntimeError(
            f"{cls.__name__}: expected all tensors on the same device, got tensors on {spelled}; "
            f"move them with .to(device) first"
        )


def _explain(cls: type, error: Exception, datas: list) -> Exception:
    """Re-raise a backend error at the public call with the op's name and the shapes involved."""
    message = str(error)
    if message.startswith(cls.__name__):
        return error
    shapes = ", ".join(str(tuple(d.shape)) for d in datas)
    return type(error)(f"{cls.__name__}: {message} (input shapes: {shapes})")


# ---- gradient modes ----------------------------------------------------------------------------------


class _GradMode:
    """Base for ``no_grad``/``enable_grad``: a context manager that also works as a decorator."""

    enabled = True

    def __enter__(self) -> None:
        global _grad_enabled
        self.previous = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc: Any) -> None:
        global _grad_enabled
        _grad_enabled = self.previous

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Record nothing on the tape inside the block: outputs have ``requires_grad=False``."""

    enabled = False


class enable_grad(_GradMode):
    """Record on the tape again inside a ``no_grad`` block."""

    enabled = True


class set_grad_enabled(_GradMode):
    """Turn recording on or off: ``with set_grad_enabled(False): ...``."""

    def __init__(self, mode: bool) -> None:
        self.enabled = bool(mode)


def is_grad_enabled() -> bool:
    return _grad_enabled


# ---- broadcasting ------------------------------------------------------------------------------------


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Reduce a gradient computed in a broadcast shape back to an operand's ``shape``.

    Broadcasting prepends axes of size 1 and stretches axes of size 1; the gradient of a stretched
    operand is the sum over the stretched axes: sum the leading extra axes away, then sum (keeping
    the axis) every axis where ``shape`` has 1 and the gradient does not. Works for any pair of ranks.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        # A gradient of lower rank than its operand (a scalar for a size-1 operand): stretch it.
        return backend.get_array_module(grad).broadcast_to(grad, shape).copy()
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return backend.ensure_array(grad)


# ---- deferred weight gradients -------------------------------------------------------------------------


class OuterProductSum:
    """A gradient Σ_k a_kᵀ g_k (plus an optional dense term) kept as its factors until it is needed.

    ``MatMul`` returns its weight gradient aᵀ g in this form. A recurrent weight used at every one
    of T steps then collects T pairs instead of T (M, N) products added one by one; when the walk
    needs the sum it is one product, [a_1; …; a_T]ᵀ [g_1; …; g_T]: the same arithmetic in one large
    BLAS call, and no (M, N) array written T times (as the hand-written BPTT computes dW_hh after
    its loop). The tape owns these objects: they are never passed to an op's backward, hook or user.
    """

    __slots__ = ("dense", "lefts", "rights", "shape")
    __array_ufunc__ = None  # ndarray + this returns NotImplemented, so Python calls our __radd__

    def __init__(self, left: Any, right: Any) -> None:
        self.lefts, self.rights, self.dense = [left], [right], None
        self.shape = (left.shape[-1], right.shape[-1])

    def __add__(self, other: Any) -> OuterProductSum:
        # Only the walk holds this object, so summing into it in place is safe.
        if type(other) is OuterProductSum:
            self.lefts += other.lefts
            self.rights += other.rights
            other = other.dense
            if other is None:
                return self
        self.dense = other if self.dense is None else self.dense + other
        return self

    __radd__ = __add__
    __iadd__ = __add__

    def materialize(self) -> Any:
        """The sum as one array: one product of the stacked factors, plus the dense term.

        When the factors already lie end to end in a few buffers (a recurrent layer writes its states
        and its step gradients into one (T, B, H) buffer each), each stretch is multiplied in place:
        Σ_k a_kᵀ g_k = Σ_runs A_runᵀ G_run, with no concatenated copy of either side.
        """
        lefts, rights = self.lefts, self.rights
        if len(lefts) == 1:
            out = lefts[0].T @ rights[0]
        else:
            out = _product_of_runs(lefts, rights)
            if out is None:
                xp = backend.get_array_module(rights[0])
                out = xp.concatenate(lefts).T @ xp.concatenate(rights)
        if self.dense is not None:
            out = out + self.dense
        return out


_MAX_RUNS = 4  # beyond this many stretches, one product of concatenated copies is faster


def _product_of_runs(lefts: list, rights: list) -> Any:
    """Σ_k lefts[k]ᵀ rights[k] as one product per stretch of factors that lie end to end in memory on
    both sides, or None when there are more than ``_MAX_RUNS`` such stretches."""
    if type(rights[0]) is not _NDARRAY or rights[0].base is None or rights[-1].base is None:
        return None  # fresh arrays, not slots of a buffer (the common case outside recurrent layers)
    if backend.data_address(rights[0]) > backend.data_address(rights[-1]):
        # The walk collects the steps newest first; the buffers hold them oldest first.
        lefts, rights = lefts[::-1], rights[::-1]
    starts = {start for start, _ in backend.contiguous_runs(rights)}
    if len(starts) > _MAX_RUNS:
        return None
    starts.update(start for start, _ in backend.contiguous_runs(lefts))
    if len(starts) > _MAX_RUNS:
        return None
    bounds = [*sorted(starts), len(lefts)]
    out = None
    for start, stop in itertools.pairwise(bounds):
        a = backend.join_run(lefts[start:stop])
        g = backend.join_run(rights[start:stop])
        product = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
        if out is None:
            out = product
        else:
            out += product
    return out


class StepGradients:
    """A (T, ...) buffer that the T steps of an unrolled layer write their gradients into, one slot
    each, during one backward walk.

    The steps' gradients then already form the single array that ``Unbind``'s backward would stack
    and that the deferred weight gradient would concatenate (:class:`OuterProductSum`), so both use
    it as it is. A walk gets its own buffer (allocated on first use, uninitialised: only written slots
    are read), and the holder lets go of it when the walk ends, so a kept graph holds no gradient
    memory and a second walk (``retain_graph``) never writes into arrays the first one handed out.
    """

    __slots__ = ("array", "shape", "walk")

    def __init__(self, shape: tuple) -> None:
        self.shape, self.array, self.walk = shape, None, 0

    def slot(self, index: int, like: Any) -> Any:
        """Slot ``index`` for the walk in progress (dtype and device of ``like``), or None outside one."""
        if _walk_current == 0:
            return None
        if self.walk != _walk_current or self.array is None:
            self.array = backend.get_array_module(like).empty(self.shape, like.dtype)
            self.walk = _walk_current
            _walk_scratch.append(self)
        return self.array[index]


_walk_serials = itertools.count(1)
_walk_current = 0  # serial number of the walk in progress, 0 outside any
_walk_scratch: list = []  # StepGradients holders that handed out a buffer in the walk in progress


def dense(grad: Any) -> Any:
    """``grad`` as an array (a deferred :class:`OuterProductSum` is computed)."""
    return grad.materialize() if type(grad) is OuterProductSum else grad


# ---- the backward walk -------------------------------------------------------------------------------


def run_backward(root: Any, grad_root: Any, retain_graph: bool) -> None:
    """Propagate ``grad_root`` (the gradient of the loss w.r.t. ``root``) to every leaf that needs it."""
    if root._ctx is None:
        leaf_grads: dict[int, list] = {}
        _add_leaf_grad(leaf_grads, root, grad_root)
        _finish_leaves(leaf_grads)
        return
    _finish_leaves(_walk([root], [grad_root], retain_graph))


def leaf_gradients(roots: list, grad_roots: list, retain_graph: bool = False) -> dict[int, Any]:
    """Backpropagate from several roots at once and return the gradients that reach the leaves,
    ``{id(leaf): gradient array}``, without touching ``leaf.grad`` or running leaf hooks.

    This is what a node that runs a graph of its own inside its backward (``checkpoint``) needs: the
    gradients it gets back become its input gradients, and the outer walk accumulates them once.
    """
    return {key: dense(entry[1]) for key, entry in _walk(roots, grad_roots, retain_graph).items()}


def _walk(roots: list, grad_roots: list, retain_graph: bool) -> dict[int, list]:
    """The backward walk from ``roots`` (tensors) seeded with ``grad_roots`` (arrays of their shapes).

    Returns the summed leaf gradients as ``{id(leaf): [leaf, gradient, owned]}``. Each walk has its
    own serial number (a walk run inside a node's backward, as ``checkpoint`` does, gets a new one and
    restores the outer one), under which :class:`StepGradients` hands out its buffers.
    """
    global _walk_current, _walk_scratch
    outer = _walk_current, _walk_scratch
    _walk_current, _walk_scratch = next(_walk_serials), []
    try:
        return _walk_nodes(roots, grad_roots, retain_graph)
    finally:
        for holder in _walk_scratch:
            holder.array = None  # the arrays live on only in the gradients handed out
        _walk_current, _walk_scratch = outer


def _walk_nodes(roots: list, grad_roots: list, retain_graph: bool) -> dict[int, list]:
    """The body of :func:`_walk`."""
    leaf_grads: dict[int, list] = {}
    grads: dict[Function, Any] = {}
    owned: set[Function] = set()  # gradient buffers created here, safe to add into in place
    heap: list = []
    push, pop = heapq.heappush, heapq.heappop
    for root, grad_root in zip(roots, grad_roots):
        start = root._ctx
        if start is None:
            _add_leaf_grad(leaf_grads, root, grad_root)
        elif start.n_outputs == 1:
            if start in grads:
                grads[start] = grads[start] + grad_root
            else:
                grads[start] = grad_root
                push(heap, (-start.seq, start))
        else:
            slots = grads.get(start)
            if slots is None:
                slots = grads[start] = [None] * start.n_outputs
                push(heap, (-start.seq, start))
            previous = slots[root._index]
            slots[root._index] = grad_root if previous is None else previous + grad_root
    tensor_type = Tensor

    node = None
    while heap:
        node = pop(heap)[1]
        grad = grads.pop(node)
        if type(grad) is OuterProductSum:
            grad = grad.materialize()
        elif type(grad) is list:
            grad = [dense(g) for g in grad]
        if node.saved is None:
            raise RuntimeError(
                f"Trying to backward through the graph a second time: the arrays that {node.name} saved "
                "were freed by the first backward. Pass retain_graph=True to the first backward() if you "
                "need to backward twice, or run the forward pass again." + _stale_hint(node)
            )
        if node.hooks:
            grad = _run_node_hooks(node, grad)
        record = node.saved_versions
        if record is not None:
            for position in range(0, len(record), 2):
                if record[position] != record[position + 1]:
                    _check_versions(node)
        if backend._cupy is not None:
            input_grads = _backward_on_its_device(node, grad)
        else:
            input_grads = node.backward(grad) if node.n_outputs == 1 else node.backward(*grad)
        del grad
        if _anomaly_enabled:
            anomaly.check_backward(node, input_grads)
        if not retain_graph:
            node.saved = None
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)

        shapes = node.input_shapes
        indices = node.parent_indices
        position = -1
        parents = node.more_parents
        if parents is None:
            parents = (node.first, node.second)  # a single-input op's second is None
        for parent in parents:
            position += 1
            if parent is None:
                continue
            g = input_grads[position]
            if g is None:
                continue
            if shapes is not None and g.shape != shapes[position]:
                g = unbroadcast(dense(g), shapes[position])
            if isinstance(parent, tensor_type):  # a leaf, also a subclass such as nn.Parameter
                entry = leaf_grads.get(id(parent))
                if entry is None:
                    leaf_grads[id(parent)] = [parent, g, False]
                elif entry[2] and type(g) is not OuterProductSum:
                    entry[1] += g
                else:
                    entry[1] = entry[1] + g
                    entry[2] = True
            elif parent.n_outputs == 1:
                existing = grads.get(parent)
                if existing is None:
                    grads[parent] = g
                    push(heap, (-parent.seq, parent))
                elif parent in owned and type(g) is not OuterProductSum:
                    existing += g
                    grads[parent] = existing
                else:
                    grads[parent] = existing + g
                    owned.add(parent)
            else:
                slots = grads.get(parent)
                if slots is None:
                    slots = grads[parent] = [None] * parent.n_outputs
                    push(heap, (-parent.seq, parent))
                index = indices[position] if indices else 0
                slots[index] = g if slots[index] is None else slots[index] + g
    # Nodes are popped newest first, so ``node`` is now the oldest one the walk reached.
    if node is not None and node.seq < _step_seq:
        warnings.warn(_STALE_GRAPH + _stale_hint(node), StaleGraphWarning, stacklevel=5)
    return leaf_grads


# ---- a tape that keeps growing across optimizer steps ------------------------------------------------

_step_seq = -1  # creation index at the last optimizer step: older nodes saw the old parameters


class StaleGraphWarning(UserWarning):
    """A backward pass reached nodes recorded before the last optimizer step."""


_STALE_GRAPH = (
    "backward() walked back past the last optimizer step: the tape keeps growing across updates, so every "
    "backward pass walks the whole history (its time and memory grow with the stream) and the gradient "
    "flows through activations computed with the old weights."
)


def _stale_hint(node: Function) -> str:
    if node.seq >= _step_seq:
        return ""
    return (
        f" ({node.name} node #{node.seq} was recorded before the last optimizer step.) In a recurrent "
        "training loop, detach the hidden state between updates: hidden = hidden.detach(), or "
        "hidden = tuple(h.detach() for h in hidden) for an LSTM (tinygrad_rnn.bptt.TBPTT does this for you)."
    )


def mark_optimizer_step() -> None:
    """Record that the parameters change now; optimizers call it from ``step()``. A later backward pass
    that reaches a node recorded before this point warns (``StaleGraphWarning``) with the fix."""
    global _step_seq
    _step_seq = _next_seq()


def _backward_on_its_device(node: Function, grad: Any) -> Any:
    """Run a node's backward with its gradient's GPU current, so the arrays it makes land there."""
    single = node.n_outputs == 1
    backend.follow_device(grad if single else next(g for g in grad if g is not None))
    return node.backward(grad) if single else node.backward(*grad)


def _add_leaf_grad(leaf_grads: dict, leaf: Any, grad: Any) -> None:
    entry = leaf_grads.get(id(leaf))
    if entry is None:
        leaf_grads[id(leaf)] = [leaf, grad, False]
    elif entry[2]:
        entry[1] += grad
    else:
        entry[1] = entry[1] + grad
        entry[2] = True


def _finish_leaves(leaf_grads: dict) -> None:
    for leaf, grad, owned in leaf_grads.values():
        if type(grad) is OuterProductSum:
            grad, owned = grad.materialize(), True
        if leaf._hooks:
            for hook in leaf._hooks:
                result = hook(Tensor._make(grad, False, None, 0))
                if result is not None:
                    grad, owned = _hook_result(result, grad), False
        _accumulate_into(leaf, grad, owned)


def _accumulate_into(t: Any, grad: Any, owned: bool) -> None:
    """``t.grad += grad``, creating ``t.grad`` on first use; never aliases a buffer someone else holds."""
    grad = backend.ensure_array(grad)
    if grad.dtype != t._data.dtype:
        grad = grad.astype(t._data.dtype)
        owned = True
    if t.grad is None:
        t.grad = Tensor._make(grad if owned else grad.copy(), False, None, 0)
    else:
        t.grad._data += grad


def _hook_result(result: Any, grad: Any) -> Any:
    data = result._data if isinstance(result, Tensor) else result
    if tuple(data.shape) != tuple(grad.shape):
        raise RuntimeError(f"a hook returned a gradient of shape {tuple(data.shape)}, expected {grad.shape}")
    return data


def _run_node_hooks(node: Function, grad: Any) -> Any:
    """Apply the hooks registered on the node's outputs (interior tensors) to their gradients."""
    single = node.n_outputs == 1
    slots = [grad] if single else list(grad)
    for index, hook in node.hooks:
        if slots[index] is None:
            continue
        result = hook(Tensor._make(slots[index], False, None, 0))
        if result is not None:
            slots[index] = _hook_result(result, slots[index])
    return slots[0] if single else slots


def _check_versions(node: Function) -> None:
    record = node.saved_versions
    for position in range(0, len(record), 2):
        box, snapshot = record[position], record[position + 1]
        if box != snapshot:
            raise RuntimeError(
                f"a tensor that {node.name} saved for backward was modified in place after it was used "
                f"(its version is now {version_number(box)}, expected {version_number(snapshot)}); "
                "the gradient would be wrong. "
                "Use an out-of-place op (e.g. x = x * 2 instead of x.mul_(2)) or clone the tensor first."
            )


# Anomaly mode lives in anomaly.py; it reads and sets the two flags above, which the tape's hot path
# checks. Imported last because it refers back to this module.
from . import anomaly  # noqa: E402
from .anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly  # noqa: E402, F401
