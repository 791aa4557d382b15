"""``torch.autograd.grad`` and ``torch.autograd.backward``: the backward walk of autograd.py called as a
function, returning gradients (``grad``) or accumulating them into leaves (``backward``)."""

from __future__ import annotations

from typing import Any

from . import autograd, backend


def grad(
    outputs: Any,
    inputs: Any,
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool | None = None,
    materialize_grads: bool = False,
) -> tuple:
    """``torch.autograd.grad``: the sum over ``outputs`` of d(output)/d(input) · grad_output, for each
    of ``inputs``, returned as a tuple of Tensors without touching any ``.grad``.

    ``inputs`` may be leaves or interior tensors (the gradient arriving at an interior tensor is read
    as a hook would see it). An input the outputs do not depend on raises unless ``allow_unused``
    (then None, or zeros with ``materialize_grads``). Higher-order gradients (``create_graph=True``)
    are not supported: the backward functions run on raw arrays, off the tape, so this raises.
    """
    if create_graph:
        raise NotImplementedError(
            "autograd.grad: create_graph=True (higher-order gradients) is not supported: backward "
            "passes run on raw arrays and are not recorded on the tape"
        )
    outputs = [outputs] if isinstance(outputs, autograd.Tensor) else list(outputs)
    single_input = isinstance(inputs, autograd.Tensor)
    inputs = [inputs] if single_input else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, autograd.Tensor):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"autograd.grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for t in inputs:
        if not isinstance(t, autograd.Tensor) or not t.requires_grad:
            raise RuntimeError("autograd.grad: one of the differentiated Tensors does not require grad")
    seeds = [autograd.seed_gradient(o, g, "autograd.grad") for o, g in zip(outputs, grad_outputs)]

    # Interior inputs: catch the gradient arriving at each, complete, when the walk reaches its node.
    arrived: dict[int, Any] = {}
    removers = []
    for position, t in enumerate(inputs):
        if t._ctx is not None:

            def catch(g: Any, position: int = position) -> None:
                arrived[position] = g._data

            removers.append(t.register_hook(catch))
    try:
        at_leaves = autograd.leaf_gradients(outputs, seeds, retain_graph=bool(retain_graph))
    finally:
        for remove in removers:
            remove()
    results = []
    for position, t in enumerate(inputs):
        g = at_leaves.get(id(t)) if t._ctx is None else arrived.get(position)
        if g is None:
            if not allow_unused and not materialize_grads:
                raise RuntimeError(
                    "autograd.grad: one of the differentiated Tensors appears to not have been used in "
                    "the graph. Set allow_unused=True if this is the desired behavior."
                )
            results.append(t._xp.zeros(t._data.shape, t.dtype) if materialize_grads else None)
        else:
            results.append(backend.ensure_array(g).astype(t.dtype, copy=True))
    return tuple(None if g is None else autograd.Tensor._make(g, False, None, 0) for g in results)


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None) -> None:
    """``torch.autograd.backward``: ``t.backward(g)`` for every pair, in one walk."""
    tensors = [tensors] if isinstance(tensors, autograd.Tensor) else list(tensors)
    if grad_tensors is None or isinstance(grad_tensors, autograd.Tensor):
        grad_tensors = [grad_tensors] * len(tensors) if grad_tensors is None else [grad_tensors]
    grad_tensors = list(grad_tensors)
    if len(grad_tensors) != len(tensors):
        raise ValueError(
            f"autograd.backward: got {len(grad_tensors)} grad_tensors for {len(tensors)} tensors"
        )
    seeds = [autograd.seed_gradient(t, g, "autograd.backward") for t, g in zip(tensors, grad_tensors)]
    for leaf, leaf_grad in autograd._walk(tensors, seeds, bool(retain_graph)).values():
        autograd._finish_leaf(leaf, leaf_grad)
