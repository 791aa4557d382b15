"""The tape: ``Function`` (one subclass per op; its instance is the graph node), the backward walk
and the gradient modes, in that order. Read it as the algorithm below; ``docs/engine.md`` is the guide.

The algorithm
-------------
1. Record. ``Function.apply`` runs an op forward on raw arrays and, when an input requires grad,
   keeps the instance as a node: its parents (the node that made each input, the leaf tensor
   itself, or None), the arrays it saved for backward, and a creation index ``seq``.
2. Order. Creation order is a topological order (a node's inputs exist before it), so visiting
   nodes from the highest ``seq`` down reaches every node after all of its consumers. The walk keeps
   a heap of the nodes that have received a gradient: no recursion, so an RNN unrolled over 100,000
   steps backprops like a 10-step one.
3. Walk. Pop the newest node: the gradients of its outputs are now complete. Call its ``backward``,
   free what it saved (unless ``retain_graph``), reduce each input gradient to the input's shape
   (:func:`unbroadcast`) and add it to the parent's gradient (:func:`accumulate`: ``+=``, never
   overwrite, so ``x * x`` is right). A gradient is popped as soon as its node has used it.
4. Finish. Gradients that reached leaves, summed over the whole walk, pass through the leaf's hooks
   and are added to ``leaf.grad``.

:func:`reference_walk` is the same algorithm in twenty plain lines; the walk here differs only in
freeing memory early and in the speed-ups of ``fastpaths.py``, and a property test holds the two equal.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import warnings
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from . import backend, fastpaths

# The Tensor class registers itself here on import (tensor.py imports this module, not the reverse).
Tensor: Any = None

_grad_enabled = True
_forward_mode = False  # set by forward_ad while a dual level is open: Function.apply then computes tangents
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
    # (output index, hook) from an interior tensor's register_hook, ("pre", hook), ("post", hook)
    hooks: list | None = None
    parent_indices: tuple | None = None
    input_shapes: tuple | None = None  # only kept when some input's shape differs from the output's
    n_outputs = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("forward"), staticmethod):
            # PyTorch's form: forward(ctx, *args)/backward(ctx, *grads) on Tensors (custom_function.py).
            cls.apply = classmethod(custom_function.apply)  # type: ignore[method-assign,assignment]

    def save_for_backward(self, *arrays: Any) -> None:
        """Keep arrays for the backward pass; freed when the backward pass has used them."""
        self.saved = arrays

    def forward(self, *arrays: Any, **constants: Any) -> Any:
        raise NotImplementedError

    def backward(self, *grad_outputs: Any) -> Any:
        raise NotImplementedError

    def jvp(self, primals: tuple, tangents: tuple, output: Any, **constants: Any) -> Any:
        """Forward mode: the output tangent(s) given the inputs' tangents (``forward_ad``).

        Called after ``forward`` on the same node (so what forward kept is at hand) only when some
        input carries a tangent. ``primals`` are the input arrays, ``tangents[i]`` is None or an array
        ``(K, *primals[i].shape)`` (K directions at once; K may be 1 where another input has K > 1),
        ``output`` the forward result. Returns ``(K, *output.shape)`` (a tuple for several outputs).
        """
        raise NotImplementedError(
            f"no forward-mode rule for {self.name}: it defines no jvp, so its output tangent is unknown"
        )

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

    @property
    def next_functions(self) -> tuple:
        """PyTorch's view of the graph: one ``(node, output_index)`` pair per positional input, where
        ``node`` is the ``Function`` that produced the input, an :class:`AccumulateGrad` for a leaf
        that requires grad, or ``None`` (with index 0) for an input that needs no gradient."""
        indices = self.parent_indices or (0,) * len(self.needs_input_grad)
        pairs = []
        for parent, index in zip(self.parents, indices):
            if parent is None:
                pairs.append((None, 0))
            elif isinstance(parent, Function):
                pairs.append((parent, index))
            else:
                pairs.append((AccumulateGrad.of(parent), 0))
        return tuple(pairs)

    def __repr__(self) -> str:
        return f"<{self.name} node #{self.seq}>"

    def register_prehook(self, hook: Callable[[tuple], Any]) -> Callable[[], None]:
        """Node hook run when the walk reaches this node, before its backward: ``hook(grad_outputs)``
        gets one gradient per output (a Tensor, or None where an output received none), now
        complete; a returned tuple replaces them. Returns a function that removes the hook."""
        return self._add_hook("pre", hook)

    def register_hook(self, hook: Callable[[tuple, tuple], Any]) -> Callable[[], None]:
        """Node hook run right after this node's backward: ``hook(grad_inputs, grad_outputs)``, with
        one gradient per input (None where an input needs none); a returned tuple replaces
        ``grad_inputs``. On a recurrent step this shows dh_t arriving and dz_t leaving."""
        return self._add_hook("post", hook)

    def _add_hook(self, kind: str, hook: Callable) -> Callable[[], None]:
        if self.hooks is None:
            self.hooks = []
        hooks, entry = self.hooks, (kind, hook)
        hooks.append(entry)
        return lambda: hooks.remove(entry) if entry in hooks else None

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
            outputs = _wrap_outputs(ctx, inputs, datas, out, record)
            if _forward_mode:
                forward_ad.propagate(ctx, inputs, datas, outputs, constants)
            return outputs
        if type(out) is not _NDARRAY:
            out = _as_ndarray(out)  # NumPy returns scalars for 0-d results
        if not record:
            output = _make(out, False, None, 0)
            if _forward_mode:
                forward_ad.propagate(ctx, inputs, datas, output, constants)
            return output

        # Parents are the producing nodes (or leaf tensors); keeping nodes rather than input tensors
        # lets an interior tensor's data be freed as soon as no op saved it. One-, two- and
        # three-input ops (nearly all of them) take an unrolled path.
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
        elif n_inputs == 3:
            _link_three_parents(ctx, inputs, datas, shape)
        else:
            _link_parents(ctx, inputs, datas, shape)
        ctx.seq = _next_seq()
        output = _make(out, True, ctx, 0)
        if ctx.saved:
            ctx.saved_versions = _saved_versions(ctx.saved, inputs, (output,))
        if _forward_mode:
            forward_ad.propagate(ctx, inputs, datas, output, constants)
        return output


class AccumulateGrad:
    """The end of a path in ``grad_fn.next_functions``: the leaf ``variable`` whose ``.grad`` the walk
    adds into (PyTorch's ``AccumulateGrad``). One object per leaf while anyone holds it."""

    _alive: ClassVar[weakref.WeakValueDictionary] = weakref.WeakValueDictionary()
    next_functions: tuple = ()
    name = "AccumulateGrad"

    def __init__(self, variable: Any) -> None:
        self.variable = variable

    @classmethod
    def of(cls, leaf: Any) -> AccumulateGrad:
        # Keyed by id: the entry holds the leaf alive, so the id cannot be reused while it exists.
        node = cls._alive.get(id(leaf))
        if node is None:
            node = cls._alive[id(leaf)] = cls(leaf)
        return node

    def __repr__(self) -> str:
        return f"<AccumulateGrad of a leaf of shape {tuple(self.variable.shape)}>"


_object_new = object.__new__
_DEFERRED = fastpaths.OuterProductSum
_NDARRAY = backend.NUMPY_ARRAY
_NEEDS_ONE = (True,)
_NEEDS_BOTH, _NEEDS_FIRST, _NEEDS_SECOND = (True, True), (True, False), (False, True)
# The common patterns, shared by every node that has them (a fused recurrent step has three inputs).
_NEEDS = {n: n for n in (_NEEDS_BOTH, _NEEDS_FIRST, _NEEDS_SECOND, (True, True, True))}
_as_ndarray = backend.ensure_array
_next_seq = _creation_counter.__next__
_VERSION_BYTES = 8


def _make(data: Any, requires_grad: bool, ctx: Any, index: int) -> Any:
    """``Tensor._make``; tensor.py rebinds this name to it directly when it registers the class."""
    return Tensor._make(data, requires_grad, ctx, index)


def _link_parents(ctx: Function, inputs: tuple, datas: Any, shape: tuple | None) -> None:
    """Record the parents, which inputs need a gradient, and the input shapes when they differ from
    ``shape`` (always, when ``shape`` is None)."""
    parents, indices, shapes = [], [], []
    for t, data in zip(inputs, datas):
        parents.append((t if t._ctx is None else t._ctx) if t.requires_grad else None)
        indices.append(t._index)  # nonzero for an output of a multi-output op (a step of an unbind)
        shapes.append(data.shape)
    ctx.first = parents[0]
    ctx.second = parents[1] if len(parents) > 1 else None
    if len(parents) > 2:
        ctx.more_parents = tuple(parents)
    needs = tuple([p is not None for p in parents])
    ctx.needs_input_grad = _NEEDS.get(needs, needs)
    if any(indices):
        ctx.parent_indices = tuple(indices)
    if shapes.count(shape) != len(shapes):
        ctx.input_shapes = tuple(shapes)


def _link_three_parents(ctx: Function, inputs: tuple, datas: Any, shape: tuple) -> None:
    """:func:`_link_parents` unrolled for three inputs, the fused recurrent steps' count
    (``TanhAddMatMul``, ``AddMatMul``, ``GRUCellPointwise``): 1.5 µs less per step than the loop."""
    a, b, c = inputs
    first = (a if a._ctx is None else a._ctx) if a.requires_grad else None
    second = (b if b._ctx is None else b._ctx) if b.requires_grad else None
    third = (c if c._ctx is None else c._ctx) if c.requires_grad else None
    ctx.first, ctx.second, ctx.more_parents = first, second, (first, second, third)
    needs = (first is not None, second is not None, third is not None)
    ctx.needs_input_grad = _NEEDS.get(needs, needs)
    if a._index or b._index or c._index:
        ctx.parent_indices = (a._index, b._index, c._index)
    shapes = (datas[0].shape, datas[1].shape, datas[2].shape)
    if shapes.count(shape) != 3:
        ctx.input_shapes = shapes


def _wrap_outputs(ctx: Function, inputs: tuple, datas: Any, out: tuple, record: bool) -> tuple:
    """The multi-output path of :meth:`Function.apply` (split, unbind, fused cells)."""
    ensure = backend.ensure_array
    if not record:
        return tuple([_make(ensure(o), False, None, 0) for o in out])
    # Multi-output ops reduce or slice, so their inputs' shapes are always kept for the walk.
    _link_parents(ctx, inputs, datas, None)
    ctx.n_outputs = len(out)
    ctx.seq = _next_seq()
    outputs = tuple([_make(o if type(o) is _NDARRAY else ensure(o), True, ctx, i) for i, o in enumerate(out)])
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
    """Record ``(box_1, ..., box_k, snapshot)``: the version box of every input or output whose data
    the op saved, then the bytes of all of them joined now. The walk joins the boxes again and
    compares: one step, however many arrays were saved. One tuple per node, because every object a
    node keeps is one more for Python's cycle collector (a second tuple cost ~0.8 µs/op in bench_tape).
    """
    boxes = []
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
        boxes.append(box)
    if not boxes:
        return None
    boxes.append(b"".join(boxes))
    return tuple(boxes)


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


# ---- the backward walk -------------------------------------------------------------------------------


def run_backward(root: Any, grad_root: Any, retain_graph: bool) -> None:
    """``root.backward(grad_root)``: propagate the gradient of the loss w.r.t. ``root`` to every leaf
    that requires grad, and add it into the leaves' ``.grad``."""
    for leaf, grad in _walk([root], [grad_root], retain_graph).values():
        _finish_leaf(leaf, grad)


def leaf_gradients(roots: list, grad_roots: list, retain_graph: bool = False) -> dict[int, Any]:
    """Backpropagate from several roots at once and return the gradients that reach the leaves,
    ``{id(leaf): gradient array}``, without touching ``leaf.grad`` or running leaf hooks.

    This is what a node that runs a graph of its own inside its backward (``checkpoint``) needs: the
    gradients it gets back become its input gradients, and the outer walk accumulates them once.
    """
    found = _walk(roots, grad_roots, retain_graph)
    return {key: fastpaths.dense(grad) for key, (_, grad) in found.items()}


def seed_gradient(output: Any, gradient: Any, caller: str) -> Any:
    """The gradient a walk starts from at ``output``: ``gradient`` as an array of ``output``'s shape,
    dtype and device, or 1 for a one-element output when ``gradient`` is None."""
    if not output.requires_grad:
        raise RuntimeError(
            f"{caller} called on a tensor of shape {output.shape} that does not require grad: no "
            "tensor it was computed from has requires_grad=True (or it was computed under no_grad, "
            "or detached)"
        )
    if gradient is None:
        if output._data.size != 1:
            raise RuntimeError(
                f"{caller} without a gradient needs a one-element (scalar) output, got shape "
                f"{output.shape}; reduce it (e.g. loss.sum()) or pass the gradient of that shape"
            )
        return output._xp.ones(output._data.shape, dtype=output.dtype)  # fresh: the walk may add into it
    grad = gradient._data if isinstance(gradient, Tensor) else gradient
    grad = backend.as_array(grad, output.dtype, output.device, copy=False)
    if tuple(grad.shape) != output.shape:
        raise RuntimeError(
            f"{caller}: gradient has shape {tuple(grad.shape)} but the tensor has shape {output.shape}"
        )
    return grad


def accumulate(total: Any, grad: Any) -> Any:
    """The one accumulation policy: every gradient that reaches the same place is added, never
    overwritten (so ``x * x`` gets 2x). ``total`` is None for the first one.

    Always out of place: the first gradient may be an array an op also handed to another input
    (``Add`` returns ``g, g``), so adding into it would change both. A deferred weight gradient
    (``fastpaths.OuterProductSum``) sums itself with ``+`` and stays deferred.
    """
    return grad if total is None else total + grad


def _walk(roots: list, grad_roots: list, retain_graph: bool) -> dict[int, list]:
    """The backward walk from ``roots`` (tensors) seeded with ``grad_roots`` (arrays of their shapes).

    Returns the summed leaf gradients as ``{id(leaf): [leaf, gradient]}``.
    """
    leaf_grads: dict[int, list] = {}
    grads: dict[Function, Any] = {}  # node -> the gradient of its output(s), summed so far
    heap: list = []  # (-seq, node): the newest node that has a gradient pops first
    for root, grad_root in zip(roots, grad_roots):
        _seed(root, grad_root, grads, heap, leaf_grads)

    node = None
    while heap:
        node = heapq.heappop(heap)[1]
        # Complete: every consumer was newer and has run. One array for a single-output node, a list
        # with one entry per output (None where an output got no gradient) for a multi-output one.
        grad = grads.pop(node)
        single = node.n_outputs == 1
        if not single:
            grad = [fastpaths.dense(g) for g in grad]
        elif type(grad) is _DEFERRED:
            grad = grad.materialize()
        if node.saved is None:
            raise RuntimeError(
                f"Trying to backward through the graph a second time: the arrays that {node.name} saved "
                "were freed by the first backward. Pass retain_graph=True to the first backward() if you "
                "need to backward twice, or run the forward pass again." + _stale_hint(node)
            )
        hooks = node.hooks
        if hooks:
            grad = _run_node_hooks(node, grad)
        versions = node.saved_versions  # (*boxes, snapshot): raise if a saved array changed since
        if versions is not None and b"".join(versions[:-1]) != versions[-1]:
            _raise_changed_in_place(node, versions[:-1], versions[-1])
        if backend._cupy is not None:  # run on the gradient's GPU, so the arrays it makes land there
            backend.follow_device(grad if single else next(g for g in grad if g is not None))
        input_grads = node.backward(grad) if single else node.backward(*grad)
        if _anomaly_enabled:
            anomaly.check_backward(node, input_grads)
        if not retain_graph:
            node.saved = None
        if type(input_grads) is not tuple:
            input_grads = (input_grads,)
        if hooks:
            input_grads = _run_post_hooks(node, input_grads, grad)
        del grad

        # Send each input's gradient to its parent: a node's output, or a leaf's running total.
        shapes, indices = node.input_shapes, node.parent_indices
        # ``node.parents`` read straight from the slots (a property call here cost ~1 µs per node).
        parents = node.more_parents or ((node.first,) if node.second is None else (node.first, node.second))
        for position, parent in enumerate(parents):
            grad = input_grads[position]
            if parent is None or grad is None:
                continue
            if shapes is not None and grad.shape != shapes[position]:
                grad = unbroadcast(fastpaths.dense(grad), shapes[position])
            if isinstance(parent, Function):
                if parent.n_outputs == 1:
                    total = grads.get(parent)
                    if total is None:  # the first gradient for this node: it joins the heap
                        grads[parent] = grad
                        heapq.heappush(heap, (-parent.seq, parent))
                    else:
                        grads[parent] = accumulate(total, grad)
                else:
                    slots = grads.get(parent)
                    if slots is None:
                        slots = grads[parent] = [None] * parent.n_outputs
                        heapq.heappush(heap, (-parent.seq, parent))
                    index = indices[position] if indices else 0
                    slots[index] = accumulate(slots[index], grad)
            else:  # a leaf tensor (also a subclass such as nn.Parameter)
                entry = leaf_grads.get(id(parent))
                if entry is None:
                    leaf_grads[id(parent)] = [parent, grad]
                else:
                    entry[1] = accumulate(entry[1], grad)
    # Nodes are popped newest first, so ``node`` is now the oldest one the walk reached.
    if node is not None and node.seq < _step_seq:
        warnings.warn(_STALE_GRAPH + _stale_hint(node), StaleGraphWarning, stacklevel=4)
    return leaf_grads


def _seed(root: Any, grad: Any, grads: dict, heap: list, leaf_grads: dict) -> None:
    """Give ``root`` (a tensor) its gradient before the walk, as the walk itself would."""
    node = root._ctx
    if node is None:
        entry = leaf_grads.setdefault(id(root), [root, None])
        entry[1] = accumulate(entry[1], grad)
        return
    if node not in grads:
        grads[node] = None if node.n_outputs == 1 else [None] * node.n_outputs
        heapq.heappush(heap, (-node.seq, node))
    if node.n_outputs == 1:
        grads[node] = accumulate(grads[node], grad)
    else:
        grads[node][root._index] = accumulate(grads[node][root._index], grad)


def _finish_leaf(leaf: Any, grad: Any) -> None:
    """Run the leaf's hooks on its summed gradient, then ``leaf.grad += grad`` (created on first use)."""
    grad = backend.ensure_array(fastpaths.dense(grad))
    if leaf._hooks:
        for hook in leaf._hooks:
            result = hook(Tensor._make(grad, False, None, 0))
            if result is not None:
                grad = _hook_result(result, grad)
    if leaf.grad is None:
        # A copy: the array may also be held by an op's output or another leaf's gradient.
        leaf.grad = Tensor._make(grad.astype(leaf._data.dtype, copy=True), False, None, 0)
    else:
        leaf.grad._data += grad


def _run_node_hooks(node: Function, grad: Any) -> Any:
    """Hooks that see a node's output gradients, complete, when the walk reaches the node: those of
    its outputs (``h_t.register_hook(fn)`` on an interior tensor, a returned tensor replaces that
    gradient), and its pre-hooks (``fn(grad_outputs)``, a returned tuple replaces them all)."""
    single = node.n_outputs == 1
    slots = [grad] if single else list(grad)
    for kind, hook in node.hooks:
        if kind == "pre":
            result = hook(_as_tensors(slots))
            replacements = () if result is None else result
            for index, replacement in enumerate(replacements):
                if slots[index] is not None and replacement is not None:
                    slots[index] = _hook_result(replacement, slots[index])
        elif kind != "post" and slots[kind] is not None:
            result = hook(Tensor._make(slots[kind], False, None, 0))
            if result is not None:
                slots[kind] = _hook_result(result, slots[kind])
    return slots[0] if single else slots


def _run_post_hooks(node: Function, input_grads: tuple, grad: Any) -> tuple:
    """``hook(grad_inputs, grad_outputs)`` after a node's backward; a returned tuple replaces grad_inputs."""
    grad_outputs = [grad] if node.n_outputs == 1 else grad
    for kind, hook in node.hooks:
        if kind != "post":
            continue
        input_grads = tuple(fastpaths.dense(g) for g in input_grads)
        result = hook(_as_tensors(input_grads), _as_tensors(grad_outputs))
        if result is not None:
            input_grads = tuple(
                None if new is None or old is None else _hook_result(new, old)
                for new, old in zip(result, input_grads)
            )
    return input_grads


def _as_tensors(arrays: Any) -> tuple:
    return tuple(None if a is None else Tensor._make(a, False, None, 0) for a in arrays)


def _hook_result(result: Any, grad: Any) -> Any:
    data = result._data if isinstance(result, Tensor) else result
    if tuple(data.shape) != tuple(grad.shape):
        raise RuntimeError(f"a hook returned a gradient of shape {tuple(data.shape)}, expected {grad.shape}")
    return data


def _raise_changed_in_place(node: Function, boxes: tuple, snapshot: bytes) -> None:
    for position, box in enumerate(boxes):
        then = snapshot[position * _VERSION_BYTES : (position + 1) * _VERSION_BYTES]
        if box != then:
            break
    raise RuntimeError(
        f"a tensor that {node.name} saved for backward was modified in place after it was used "
        f"(its version is now {version_number(box)}, expected {version_number(then)}); "
        "the gradient would be wrong. "
        "Use an out-of-place op (e.g. x = x * 2 instead of x.mul_(2)) or clone the tensor first."
    )


def reference_walk(root: Any, grad_root: Any) -> dict[int, Any]:
    """The backward walk in its plainest form, for reading and for testing the real one against.

    Returns ``{id(leaf): gradient}`` for every leaf that requires grad, without touching ``.grad``,
    hooks or saved arrays (``retain_graph`` semantics). Same algorithm as :func:`_walk`: visit nodes
    newest first (creation order is topological), call ``backward``, ``+=`` into the parents.
    """
    nodes, stack = {}, [root._ctx] if root._ctx is not None else []
    while stack:  # collect every node reachable from the root
        node = stack.pop()
        if node not in nodes:
            nodes[node] = None
            stack.extend(p for p in node.parents if isinstance(p, Function))
    grads = {root._ctx or root: {root._index: grad_root}}
    for node in sorted(nodes, key=lambda n: -n.seq):
        outputs = grads.pop(node, {})
        if not outputs:
            continue
        input_grads = node.backward(*[fastpaths.dense(outputs.get(i)) for i in range(node.n_outputs)])
        input_grads = input_grads if type(input_grads) is tuple else (input_grads,)
        for position, (parent, grad) in enumerate(zip(node.parents, input_grads)):
            if parent is None or grad is None:
                continue
            grad = unbroadcast(fastpaths.dense(grad), _input_shape(node, position, grad))
            index = node.parent_indices[position] if node.parent_indices else 0
            slot = grads.setdefault(parent, {})
            slot[index] = slot[index] + grad if index in slot else grad
    return {id(leaf): fastpaths.dense(g[0]) for leaf, g in grads.items() if not isinstance(leaf, Function)}


def _input_shape(node: Function, position: int, grad: Any) -> tuple:
    """The shape of a node's input: recorded only where it differs from the output's."""
    return grad.shape if node.input_shapes is None else node.input_shapes[position]


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


# Anomaly mode lives in anomaly.py; it reads and sets the two flags above, which the tape's hot path
# checks. Imported last because it refers back to this module.
from . import anomaly, custom_function, forward_ad  # noqa: E402

# PyTorch's functional forms of the walk (torch.autograd.grad / backward) live in gradients.py.
from . import gradients as _gradients  # noqa: E402
from .anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly  # noqa: E402, F401

grad = _gradients.grad
backward = _gradients.backward
