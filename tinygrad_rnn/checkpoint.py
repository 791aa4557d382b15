"""Recomputation (gradient checkpointing): trade compute for memory on long sequences.

``checkpoint(fn, *inputs)`` runs ``fn`` once, keeps only its inputs and outputs, and drops every
array its ops saved for the backward pass. When the backward pass reaches it, it runs ``fn`` again
with recording on, from the saved inputs, and backpropagates through that fresh graph. The values
and gradients are those of the plain graph; the arrays held between forward and backward are only
the inputs and outputs of ``fn``.

``checkpoint_sequence(step, inputs, state)`` applies this to a recurrent loop of steps, and
``checkpoint_segments(segment_fn, inputs, state)`` to a function that runs a whole segment (a
recurrent layer, its read-out and loss). Both cut T steps into segments of ⌈√T⌉ steps and checkpoint
each segment; between forward and backward they hold one state per segment boundary (√T states)
and, during the backward pass, the graph of one segment (√T steps): memory O(√T) instead of O(T),
for about one extra forward pass of compute.

Parameters that ``fn`` uses without receiving them as inputs (the weights of a module it closes over)
get their gradients as usual: the first run finds them (the leaves its graph reaches), and they
become inputs of the checkpoint's node, so the backward walk accumulates their gradients once, in
the same place as any other gradient. Random numbers drawn inside ``fn`` (dropout) are the same in
the recomputation: the generators of the inputs' devices are rewound to where they were.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

from . import autograd, backend, forward_ad, ops
from .autograd import Function
from .tensor import Tensor

__all__ = ["checkpoint", "checkpoint_segments", "checkpoint_sequence"]


class Checkpoint(Function):
    """The node of one checkpointed call: outputs = fn(*inputs), with θ the leaves fn closes over.

    Forward: the outputs computed by :func:`checkpoint` are passed through; only the arrays of the
    inputs and of θ are saved (θ's so that a change to a parameter before backward is caught by the
    version check, as in the plain graph; neither is a copy). Backward: fn is run again on the saved
    inputs with recording on, and the walk from its outputs, seeded with the incoming gradients g,
    gives d(g·outputs)/d(inputs) and d(g·outputs)/dθ, returned as this node's input gradients
    (inputs first, then the leaves θ).
    """

    def forward(ctx, *arrays, fn, n_inputs, closed_over, rebuild, outputs, rng_states):
        ctx.fn, ctx.n_inputs, ctx.closed_over = fn, n_inputs, closed_over
        ctx.rebuild, ctx.rng_states = rebuild, rng_states
        ctx.save_for_backward(*arrays)
        return outputs

    def backward(ctx, *grads):
        needs = ctx.needs_input_grad
        n_inputs = ctx.n_inputs
        leaves = [
            Tensor._make(array, bool(needs[i]), None, 0) for i, array in enumerate(ctx.saved[:n_inputs])
        ]
        closed_over = ctx.closed_over
        with _rewound(ctx.rng_states), autograd.enable_grad():
            outputs = _as_tuple(ctx.fn(*ctx.rebuild(leaves)))
        roots, seeds = [], []
        for out, g in zip(outputs, grads):
            if g is not None and out.requires_grad:
                roots.append(out)
                seeds.append(g)
        found = autograd.leaf_gradients(roots, seeds) if roots else {}
        input_grads = [found.get(id(leaf)) if needs[i] else None for i, leaf in enumerate(leaves)]
        input_grads += [
            found.get(id(leaf)) if needs[n_inputs + i] else None for i, leaf in enumerate(closed_over)
        ]
        return tuple(input_grads)

    def jvp(ctx, primals, tangents, output, fn, n_inputs, closed_over, rebuild, outputs, rng_states):
        """ṫ = the tangents of fn's outputs, fn run again (random generators rewound) on the inputs
        carrying their tangents; the leaves θ that fn closes over carry theirs by themselves."""
        leaves = [Tensor._make(array, False, None, 0) for array in primals[:n_inputs]]
        for leaf, tangent in zip(leaves, tangents[:n_inputs]):
            forward_ad.set_tangent(leaf, tangent)
        with _rewound(rng_states), autograd.no_grad():
            results = _as_tuple(fn(*rebuild(leaves)))
        size = forward_ad.batch_size(tangents)
        found = []
        for result in results:
            tangent = forward_ad.tangent_of(result)
            found.append(forward_ad.zeros_for(result._data, size) if tangent is None else tangent)
        return found[0] if not isinstance(output, tuple) else tuple(found)


def checkpoint(fn: Callable[..., Any], *inputs: Any, preserve_rng_state: bool = True) -> Any:
    """``fn(*inputs)``, computed without keeping its intermediate arrays; recomputed in backward.

    Args:
        fn: a function of ``inputs`` returning a Tensor or a tuple/list of Tensors. It may use
            parameters it closes over (their gradients accumulate as usual) and must compute the same
            thing when called again (the random generators are rewound for it).
        inputs: Tensors (passed to fn as new leaves that share the data) or any other values
            (passed as they are).
        preserve_rng_state: rewind the random generators of the inputs' devices before the
            recomputation, so that dropout masks repeat.

    Returns:
        What ``fn`` returns (a Tensor, or a tuple of Tensors), with a gradient path back to
        ``inputs`` and to the parameters fn used. Outside gradient recording it is plain ``fn(*inputs)``.

    Memory: between forward and backward only the inputs and outputs of fn are held (plus the
    graph of one call during its backward). Time: fn runs twice.
    """
    if not autograd.is_grad_enabled():
        return fn(*inputs)
    positions = [i for i, value in enumerate(inputs) if isinstance(value, Tensor)]
    tensors = [inputs[i] for i in positions]
    template = list(inputs)

    def rebuild(leaves: Sequence[Tensor]) -> list:
        args = list(template)
        for position, leaf in zip(positions, leaves):
            args[position] = leaf
        return args

    rng_states = _rng_snapshot(tensors) if preserve_rng_state else None
    # First run with recording on, from fresh leaves that share the inputs' data: its graph tells
    # which other leaves (closed-over parameters) fn depends on. The graph is dropped right after.
    first_leaves = [Tensor._make(t._data, t.requires_grad, None, 0) for t in tensors]
    outputs = fn(*rebuild(first_leaves))
    single = isinstance(outputs, Tensor)
    output_tuple = _as_tuple(outputs)
    closed_over = _closed_over_leaves(output_tuple, first_leaves)
    if not any(t.requires_grad for t in tensors) and not closed_over:
        return outputs  # nothing to differentiate: keep no node at all
    output_arrays = tuple(out._data for out in output_tuple)
    # Forward mode: tangents that reach the outputs only through tensors fn closes over (no input of
    # the node carries one, so its jvp does not run) are those of the first run.
    closure_tangents = [forward_ad.tangent_of(out) for out in output_tuple]
    del outputs, output_tuple, first_leaves
    result = Checkpoint.apply(
        *tensors,
        *closed_over,
        fn=fn,
        n_inputs=len(tensors),
        closed_over=closed_over,
        rebuild=rebuild,
        outputs=output_arrays[0] if single else output_arrays,
        rng_states=rng_states,
    )
    for out, tangent in zip((result,) if single else result, closure_tangents):
        if tangent is not None and forward_ad.tangent_of(out) is None:
            forward_ad.set_tangent(out, tangent)
    return result


def checkpoint_sequence(
    step: Callable[..., tuple[Any, Any]],
    inputs: Tensor | Sequence[Tensor],
    state: Any,
    segment_size: int | None = None,
) -> tuple[Tensor, Any]:
    """Run a recurrent loop ``y_t, state = step(*x_t, state)`` over T steps, checkpointing every
    ``segment_size`` steps (default ⌈√T⌉).

    Args:
        step: one step; gets the t-th slice of every tensor in ``inputs`` and the state (a Tensor or
            a tuple of Tensors, such as an LSTM's ``(h, c)``) and returns ``(y_t, new_state)``. It may
            close over the parameters of a cell (``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``)
            and of a read-out.
        inputs: a Tensor (T, ...) or a list/tuple of Tensors sharing the leading length T (say the
            inputs and the targets).
        state: the initial state.
        segment_size: steps per checkpointed segment.

    Returns:
        ``(ys, state)``: the y_t stacked along a new first axis (T, ...) and the final state.

    Memory: the segment boundaries' states and ``ys`` are kept; for memory to grow like √T, let
    ``step`` return a small y_t, such as the step's loss, rather than the hidden state. Time: every
    step is a few small ops, so for small layers Python's per-op cost dominates; running a whole
    recurrent layer per segment (:func:`checkpoint_segments`) is faster.
    """

    def segment(*tensors: Tensor) -> tuple:
        *pieces, current = tensors
        slices = [ops.Unbind.apply(piece, dim=0) for piece in pieces]
        ys = []
        for t in range(pieces[0].shape[0]):
            y, current = step(*(s[t] for s in slices), current)
            ys.append(y)
        return ops.Stack.apply(*ys, dim=0), current

    return _run_segments(segment, inputs, state, segment_size, "checkpoint_sequence")


def checkpoint_segments(
    segment_fn: Callable[..., tuple[Any, Any]],
    inputs: Tensor | Sequence[Tensor],
    state: Any,
    segment_size: int | None = None,
) -> tuple[Tensor, Any]:
    """Cut T steps into segments of ``segment_size`` steps (default ⌈√T⌉) and compute
    ``ys_k, state = segment_fn(*x_k, state)`` for each segment k under :func:`checkpoint`.

    Args:
        segment_fn: gets every tensor of ``inputs`` cut to the segment's steps (k, ...) and the
            state; returns ``(ys_k, new_state)``, ys_k either with a leading axis of the segment's
            length (per-step outputs) or 0-d (say the segment's summed loss). A whole recurrent layer
            fits: ``lambda x, target, h: (loss(readout(rnn(x, h)[0]), target), new h)``.
        inputs, state, segment_size: as in :func:`checkpoint_sequence`.

    Returns:
        ``(ys, state)``: the ys_k joined along the first axis ((T, ...) for per-step outputs,
        (number of segments,) for 0-d ones) and the final state.
    """
    return _run_segments(segment_fn, inputs, state, segment_size, "checkpoint_segments")


def _run_segments(segment_fn: Callable, inputs: Any, state: Any, segment_size: Any, name: str) -> tuple:
    sequences = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    if not sequences or not all(isinstance(s, Tensor) and s.ndim >= 1 for s in sequences):
        raise TypeError(f"{name}: inputs must be a Tensor (T, ...) or a sequence of such Tensors")
    steps = sequences[0].shape[0]
    if any(s.shape[0] != steps for s in sequences):
        shapes = ", ".join(str(s.shape) for s in sequences)
        raise ValueError(f"{name}: inputs must share their first (time) dim, got shapes {shapes}")
    if steps == 0:
        raise ValueError(f"{name}: inputs have no time steps (T = 0)")
    if segment_size is None:
        segment_size = math.ceil(math.sqrt(steps))
    if not isinstance(segment_size, int) or isinstance(segment_size, bool) or segment_size <= 0:
        raise ValueError(f"{name}: segment_size must be a positive int, got {segment_size!r}")
    is_tuple_state = isinstance(state, tuple | list)
    state_tensors = tuple(state) if is_tuple_state else (state,)
    n_sequences = len(sequences)
    sizes = [min(segment_size, steps - start) for start in range(0, steps, segment_size)]
    # One Split per sequence: its backward writes all segments' gradients into one buffer.
    pieces = [_split(s, sizes) for s in sequences]

    def segment(*tensors: Tensor) -> tuple:
        carried = tensors[n_sequences:]
        ys, current = segment_fn(*tensors[:n_sequences], tuple(carried) if is_tuple_state else carried[0])
        return (ys, *(tuple(current) if is_tuple_state else (current,)))

    outputs = []
    for index in range(len(sizes)):
        result = checkpoint(segment, *(p[index] for p in pieces), *state_tensors)
        outputs.append(result[0])
        state_tensors = tuple(result[1:])
    if len(outputs) == 1:
        ys = outputs[0] if outputs[0].ndim else ops.Reshape.apply(outputs[0], shape=(1,))
    elif outputs[0].ndim == 0:
        ys = ops.Stack.apply(*outputs, dim=0)
    else:
        ys = ops.Cat.apply(*outputs, dim=0)
    return ys, (state_tensors if is_tuple_state else state_tensors[0])


# ---- helpers --------------------------------------------------------------------------------------------


def _split(sequence: Tensor, sizes: list[int]) -> tuple[Tensor, ...]:
    if len(sizes) == 1:
        return (sequence,)
    return ops.Split.apply(sequence, sizes=sizes, dim=0)


def _as_tuple(outputs: Any) -> tuple:
    if isinstance(outputs, Tensor):
        return (outputs,)
    if isinstance(outputs, tuple | list) and outputs and all(isinstance(o, Tensor) for o in outputs):
        return tuple(outputs)
    raise TypeError(
        f"checkpoint: fn must return a Tensor or a tuple/list of Tensors, got {type(outputs).__name__}"
    )


def _closed_over_leaves(outputs: tuple, inputs: list) -> list:
    """The leaf tensors requiring grad that the graph of ``outputs`` reaches, other than ``inputs``,
    in the order first met (an iterative walk over the nodes)."""
    skip = {id(t) for t in inputs}
    found: list = []
    seen_leaves: set[int] = set()
    seen_nodes: set[int] = set()
    stack = [out._ctx for out in outputs if out._ctx is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        for parent in node.parents:
            if parent is None:
                continue
            if isinstance(parent, Tensor):
                if id(parent) not in skip and id(parent) not in seen_leaves:
                    seen_leaves.add(id(parent))
                    found.append(parent)
            else:
                stack.append(parent)
    for out in outputs:  # an output that is itself a closed-over leaf
        if out._ctx is None and out.requires_grad and id(out) not in skip and id(out) not in seen_leaves:
            seen_leaves.add(id(out))
            found.append(out)
    return found


def _rng_snapshot(tensors: list) -> list:
    """(device, token) for the random generator of every device the inputs live on (see
    ``backend.generator_fork``: on a GPU the generator's state cannot be read back, so it is forked)."""
    devices = {t.device for t in tensors} or {backend.get_default_device()}
    return [(dev, backend.generator_fork(dev)) for dev in devices]


class _rewound:
    """Replay the generators from a snapshot for the block, then put back the ones that were current."""

    def __init__(self, snapshot: list | None) -> None:
        self.stack = contextlib.ExitStack()
        self.snapshot = snapshot or []

    def __enter__(self) -> None:
        for dev, token in self.snapshot:
            self.stack.enter_context(backend.generator_rewound(dev, token))

    def __exit__(self, *exc: Any) -> None:
        self.stack.close()
