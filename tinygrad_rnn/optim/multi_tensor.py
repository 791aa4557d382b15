"""Adam's update for a whole parameter group at once (PyTorch's "multi-tensor" idea, on flat buffers).

The per-parameter rule (:meth:`Adam._update`) does about ten array operations per parameter; a model
with a handful of small parameters pays for them in Python calls and temporaries. Here a group's
``exp_avg``/``exp_avg_sq`` (and ``max_exp_avg_sq``) live in one flat buffer each, every state entry
being a view into it, so the moments, the denominator and the step are computed by the same
operations, in the same order, on long slices of the concatenated group, into preallocated scratch
buffers. The slices (segments) hold at most ``SEGMENT`` values: small consecutive parameters share
one, a large one is cut into several, so that the passes over a segment find it in the cache (one
pass after another over a whole 3.4 MB group was 1.4x slower than the per-parameter rule).

Equivalent to :meth:`Adam._update` applied to each parameter in turn, bit for bit: every operation is
an elementwise IEEE operation (multiply, add, divide, square root, maximum) with the same operands
and scalars, so it rounds identically whether it runs on one parameter or on the concatenation.

Used only where that holds without extra care: a CPU group whose parameters share one floating dtype,
all have a gradient of their own shape and dtype, none requires grad, and all have taken the same
number of steps (or none); anything else takes the per-parameter path.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..tensor import Tensor

_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


# Values per segment. Measured against the per-parameter rule (Adam step of the main job's models):
# 8192 and 16384 lose at H = 128 (Python calls); one segment for a whole 3.4 MB group loses at
# H = 256 x 2 (1.4x: every pass streams from memory); 32768 to 131072 all win, 131072 the most at
# H = 128 (0.75-0.79x), as much as 65536 at H = 256 x 2 (0.86x) and H = 512 (0.61x).
SEGMENT = 131072


class FlatAdamState:
    """The flat buffers of one parameter group, the state entries that view them, and the segments the
    update walks: (start, end, pieces), each piece (parameter index, start and end within that
    parameter's flattened values, start within the segment)."""

    def __init__(self, params: list[Tensor], states: list[dict[str, Any]], amsgrad: bool) -> None:
        xp, dtype = params[0]._xp, params[0].dtype
        sizes = [p._data.size for p in params]
        total = sum(sizes)
        self.params = list(params)
        self.shapes = [p._data.shape for p in params]
        self.states = states
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        self.names = _MOMENTS if amsgrad else _MOMENTS[:2]
        self.flat: dict[str, Any] = {}
        self.views: dict[str, list[Any]] = {}
        for name in self.names:
            flat = xp.empty(total, dtype=dtype)
            views = []
            for p, state, start, end in zip(params, states, offsets, offsets[1:]):
                view = flat[start:end].reshape(p._data.shape)
                view[...] = state[name]._data
                state[name] = Tensor._make(view, False, None, 0)
                views.append(view)
            self.flat[name], self.views[name] = flat, views
        self.segments = _segments(sizes)
        longest = max((end - start for start, end, _ in self.segments), default=0)
        self.grad = xp.empty(longest, dtype=dtype)
        self.scratch = xp.empty(longest, dtype=dtype)
        self.step_buffer = xp.empty(longest, dtype=dtype)

    def holds(self, params: list[Tensor], states: list[Any], amsgrad: bool) -> bool:
        """Whether these are still the group's parameters and state entries this layout was made for."""
        if len(params) != len(self.params) or (len(self.names) == 3) != amsgrad:
            return False
        for i, (p, state) in enumerate(zip(params, states)):
            if p is not self.params[i] or state is not self.states[i] or p._data.shape != self.shapes[i]:
                return False
            for name in self.names:
                entry = state.get(name)
                if entry is None or entry._data is not self.views[name][i]:
                    return False
        return True


def _segments(sizes: list[int]) -> list[tuple[int, int, list[tuple[int, int, int, int]]]]:
    """Cut the concatenation of parameters of these sizes into runs of at most ``SEGMENT`` values."""
    segments, pieces, start, filled = [], [], 0, 0
    for index, size in enumerate(sizes):
        done = 0
        while done < size:
            take = min(size - done, SEGMENT - filled)
            pieces.append((index, done, done + take, filled))
            done, filled = done + take, filled + take
            if filled == SEGMENT:
                segments.append((start, start + filled, pieces))
                pieces, start, filled = [], start + filled, 0
    if filled:
        segments.append((start, start + filled, pieces))
    return segments


def eligible(params: list[Tensor], group: dict[str, Any]) -> bool:
    """Whether the group can take the flat update (see the module docstring)."""
    dtype = params[0].dtype
    if dtype.kind != "f":
        return False
    host, module_of = backend.xp_for(backend.CPU), backend.get_array_module
    for p in params:
        grad = p.grad
        if grad is None or grad.requires_grad:
            return False
        data, grad_data = p._data, grad._data
        if data.dtype != dtype or grad_data.dtype != dtype or grad_data.shape != data.shape:
            return False
        if module_of(data) is not host or module_of(grad_data) is not host:
            return False
        if not data.flags.c_contiguous:  # θ is updated through a flat view of its values
            return False
    return True


def adam_step(optimizer: Any, index: int, group: dict[str, Any], cache: dict[int, FlatAdamState]) -> bool:
    """One Adam/AdamW step for every parameter of ``group`` (the ``index``-th) on flat buffers kept in
    ``cache``; False (nothing done) when the group is not eligible, so that the caller runs the
    per-parameter rule instead."""
    params = group["params"]
    if not eligible(params, group):
        return False
    state_of = optimizer.state
    states = [state_of.get(p) for p in params]
    if all(state is None for state in states):
        states = [{"step": 0, **optimizer._init_state(p, group)} for p in params]
    elif any(state is None for state in states):
        return False
    steps = {state.get("step") for state in states}
    if len(steps) != 1:
        return False
    amsgrad = bool(group["amsgrad"])
    flat = cache.get(index)
    if flat is None or not flat.holds(params, states, amsgrad):
        if any(state.get(name) is None for state in states for name in _MOMENTS[: 3 if amsgrad else 2]):
            return False
        flat = cache[index] = FlatAdamState(params, states, amsgrad)
    for p, state in zip(params, states):
        state_of[p] = state
        state["step"] += 1
    _update(optimizer, group, flat, states[0]["step"])
    for p in params:
        p._bump_version()
    return True


def _update(optimizer: Any, group: dict[str, Any], flat: FlatAdamState, step: int) -> None:
    """:meth:`Adam._update`'s operations, in its order, segment by segment over the concatenated group."""
    xp = flat.params[0]._xp
    lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    maximize, amsgrad = group["maximize"], group["amsgrad"]
    decoupled = bool(weight_decay) and optimizer._decoupled
    coupled_decay = weight_decay if weight_decay and not decoupled else 0
    if decoupled:
        for p in flat.params:
            p._data *= 1 - lr * weight_decay
    values = [p._data.reshape(-1) for p in flat.params]  # views: eligible() checked contiguity
    grads = [p.grad._data.reshape(-1) for p in flat.params]
    first_correction, second_correction = lr / (1 - beta1**step), math.sqrt(1 - beta2**step)
    exp_avg_all, exp_avg_sq_all = flat.flat["exp_avg"], flat.flat["exp_avg_sq"]
    max_all = flat.flat["max_exp_avg_sq"] if amsgrad else None
    for start, end, pieces in flat.segments:
        size = end - start
        scratch, update = flat.scratch[:size], flat.step_buffer[:size]
        if len(pieces) == 1 and not (maximize or coupled_decay):
            index, low, high, _ = pieces[0]
            grad = grads[index][low:high]  # read only: no copy needed
        else:
            grad = flat.grad[:size]
            xp.concatenate([grads[index][low:high] for index, low, high, _ in pieces], out=grad)
        if maximize:
            xp.negative(grad, out=grad)
        if coupled_decay:
            # grad + λθ, as (λθ) + grad
            xp.concatenate([values[index][low:high] for index, low, high, _ in pieces], out=scratch)
            xp.multiply(scratch, coupled_decay, out=scratch)
            xp.add(grad, scratch, out=grad)
        exp_avg, exp_avg_sq = exp_avg_all[start:end], exp_avg_sq_all[start:end]
        exp_avg *= beta1
        xp.multiply(grad, 1 - beta1, out=scratch)
        exp_avg += scratch
        exp_avg_sq *= beta2
        xp.multiply(grad, 1 - beta2, out=scratch)
        xp.multiply(scratch, grad, out=scratch)
        exp_avg_sq += scratch
        second = exp_avg_sq
        if amsgrad:
            second = max_all[start:end]
            xp.maximum(second, exp_avg_sq, out=second)
        xp.sqrt(second, out=scratch)
        xp.divide(scratch, second_correction, out=scratch)
        xp.add(scratch, eps, out=scratch)
        xp.multiply(exp_avg, first_correction, out=update)
        xp.divide(update, scratch, out=update)
        for index, low, high, at in pieces:
            values[index][low:high] -= update[at : at + high - low]
