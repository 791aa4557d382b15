"""Truncated backpropagation through time: the ``TBPTT`` driver, its two semantics, and a trainer.

Notation (``docs/bptt.md``): the stream has steps s = 1 … T; step s reads input x_s, produces output y_s
(and the loss L_s on it) and the state h_s; h_0 is the initial state. ``k1`` is the number of new steps
between parameter updates, ``k2`` how far back the backward pass reaches.

``semantics="window"`` (Williams & Peng; Sutskever): the stream is cut into blocks of k1 steps. The update
closing the block a+1 … a+k1 takes the gradient of the block's loss with every state up to h_{a+k1-k2}
held constant. The window is recomputed at the current parameters from the stored detached state
h_{a+k1-k2}, so the gradient is exact for the current weights. A shorter last block keeps its cut where
a full block would put it. k1 = k2 is the familiar loop that detaches the hidden state between chunks.
k2 < k1 would cut some of the block's losses off from their own outputs' states: refused.

``semantics="per_loss"``: each L_s reaches back exactly min(k2, s) steps (h_{s-k2} constant for L_s alone).
Losses whose cuts fall k2 apart share one graph (a detach at each of their cuts), which leaves at most
min(k1, k2) + 1 groups per block. By default the groups run side by side as replicas along the batch
axis, so a block is one forward and one backward pass over its k1 + k2 - 1 steps, with (groups + 1)·B
rows, instead of k1 replays of k2 steps; ``vectorize=False`` runs the groups one after another.

The block's loss is ``loss_fn(outputs of the block, targets of the block)``; under ``per_loss`` each step's
share of it, ∂loss/∂y_s, is sent back along that step's own truncated path.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import backend
from .autograd import no_grad
from .functions import cat, where
from .nn.utils import clip_grad_norm_
from .tensor import Tensor

SEMANTICS = ("window", "per_loss")


class Update:
    """What ``TBPTT.updates`` yields after each backward pass (the gradients are in ``.grad``).

    Attributes:
        index: 0 for the first update of the stream, then 1, 2, ...
        start, stop: the block's steps as a slice of the time axis, ``inputs[start:stop]`` (steps
            start+1 … stop in the 1-based notation of the docs).
        reach: the earliest time index the backward pass reached (the first cut of the update).
        loss: the block's loss, ``loss_fn(outputs[start:stop], targets[start:stop])``, as a float. It is
            read from the device when first asked for (on a GPU a read waits for the queued kernels, so
            a loop that never looks at it never waits); ``loss_tensor`` is the same value, detached.
        hidden: the state after step ``stop``, detached.
    """

    __slots__ = ("_loss", "hidden", "index", "loss_tensor", "reach", "start", "stop")

    def __init__(self, index: int, start: int, stop: int, reach: int, loss_tensor: Tensor, hidden: Any):
        self.index, self.start, self.stop, self.reach = index, start, stop, reach
        self.loss_tensor, self.hidden = loss_tensor, hidden
        self._loss: float | None = None

    @property
    def loss(self) -> float:
        if self._loss is None:
            self._loss = float(self.loss_tensor.item())
        return self._loss

    def __repr__(self) -> str:
        return f"Update(index={self.index}, start={self.start}, stop={self.stop}, reach={self.reach})"


def _as_floats(values: list) -> list[float]:
    """Floats for a list of floats and 0-d tensors, reading the tensors from the device in one transfer."""
    positions = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
    by_device: dict = {}
    for i in positions:
        by_device.setdefault(values[i].device, []).append(i)
    for indices in by_device.values():
        arrays = [values[i]._data.reshape(()) for i in indices]
        read = backend.to_numpy(backend.get_array_module(arrays[0]).stack(arrays))
        for i, value in zip(indices, read.tolist()):
            values[i] = float(value)
    return values


def detach_hidden(hidden: Any) -> Any:
    """Detach a hidden state: a tensor, a tuple/list of them (LSTM's (h, c)), nested, or None."""
    if hidden is None:
        return None
    if isinstance(hidden, Tensor):
        return hidden.detach()
    if isinstance(hidden, tuple | list):
        return type(hidden)(detach_hidden(h) for h in hidden)
    raise TypeError(
        f"detach_hidden: a hidden state must be a Tensor or a tuple of Tensors, got {type(hidden)}"
    )


class TBPTT:
    """Truncated BPTT over a stream, leaving the optimizer to the caller.

    ``for update in TBPTT(model, loss_fn, k1=20, k2=40).updates(inputs, targets): optimizer.step()``

    Args:
        model: called as ``output, hidden = model(chunk, hidden)`` with ``chunk`` a slice of ``inputs``
            along time and ``hidden`` None, a tensor or a tuple of tensors; ``output`` has the same time axis.
        loss_fn: ``loss_fn(output, target)`` -> a scalar tensor, for the outputs and targets of a block.
        k1: new steps between updates (>= 1). k2: steps the backward pass reaches back (>= 1).
        semantics: "window" or "per_loss" (module docstring).
        batch_first: time is axis 1 of inputs, outputs and targets (default: ``model.batch_first`` if the
            model has it, else False).
        zero_grad: set every parameter's ``.grad`` to None before each update's backward, so the yielded
            gradient is that update's alone (the model needs ``parameters()``).
        vectorize: under ``per_loss``, run the groups of losses side by side as replicas of the batch, in
            one forward and one backward pass of (groups + 1)·B rows; this needs a model whose batch rows
            are independent (any recurrent layer; not one that mixes the batch). False runs one pass per
            group, in turn.

    Memory is bounded by k1 and k2, not by the stream length: at most k2 + 1 detached states are kept,
    and each backward pass spans at most k1 + k2 steps.
    """

    def __init__(
        self,
        model: Callable[..., Any],
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        k1: int,
        k2: int,
        semantics: str = "window",
        batch_first: bool | None = None,
        zero_grad: bool = True,
        vectorize: bool = True,
    ) -> None:
        for name, value in (("k1", k1), ("k2", k2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TBPTT: {name} must be a positive integer, got {value!r}")
        if semantics not in SEMANTICS:
            raise ValueError(f"TBPTT: semantics must be one of {SEMANTICS}, got {semantics!r}")
        if semantics == "window" and k2 < k1:
            raise ValueError(
                f"TBPTT: window semantics needs k2 >= k1 (got k1={k1}, k2={k2}): a block's backward pass "
                f"must reach at least its own k1 steps. For losses that each reach back k2 < k1 steps, use "
                f"semantics='per_loss'"
            )
        self.model, self.loss_fn = model, loss_fn
        self.k1, self.k2, self.semantics = k1, k2, semantics
        self.batch_first = getattr(model, "batch_first", False) if batch_first is None else batch_first
        self.zero_grad, self.vectorize = zero_grad, vectorize
        self.hidden: Any = None
        self.stored_states: dict[int, Any] = {}  # the detached states kept for later updates, by position

    # ---- public ------------------------------------------------------------------------------------

    def updates(self, inputs: Tensor, targets: Tensor, hidden: Any = None) -> Iterator[Update]:
        """Walk the stream block by block, yielding an :class:`Update` after each backward pass.

        ``hidden`` is h_0 (detached first: it is a constant for every loss). After the loop
        ``self.hidden`` holds the detached final state, to carry into the next stream.
        """
        time_dim = 1 if self.batch_first else 0
        if inputs.ndim <= time_dim or targets.ndim <= time_dim:
            raise ValueError(
                f"TBPTT: inputs {inputs.shape} and targets {targets.shape} need a time axis {time_dim}"
            )
        steps = inputs.shape[time_dim]
        if targets.shape[time_dim] != steps:
            raise ValueError(
                f"TBPTT: inputs have {steps} steps on axis {time_dim} but targets {targets.shape[time_dim]}"
            )
        self._inputs, self._time_dim = inputs, time_dim
        states = self.stored_states = {0: detach_hidden(hidden)}  # position p -> detached h_p
        walk = self._window
        if self.semantics == "per_loss":
            walk = self._per_loss_vectorized if self.vectorize else self._per_loss
        index, start = 0, 0
        while start < steps:
            stop = min(start + self.k1, steps)
            block_targets = self._slice(targets, start, stop)
            if self.zero_grad and hasattr(self.model, "parameters"):
                for p in self.model.parameters():
                    p.grad = None
            loss, reach = walk(states, start, stop, steps, block_targets)
            self.hidden = states[stop]
            # Keep only the states a later update can start from: memory bounded by k2, not T.
            keep_from = self._earliest_start(stop)
            for position in [p for p in states if p < keep_from]:
                del states[position]
            yield Update(index, start, stop, reach, loss, self.hidden)
            index, start = index + 1, stop
        self._inputs = None

    # ---- the two semantics -------------------------------------------------------------------------

    def _earliest_start(self, start: int) -> int:
        """The first position a block beginning at ``start`` may need a stored state for."""
        if self.semantics == "window":
            return max(0, start + self.k1 - self.k2)
        return max(0, start + 1 - self.k2)

    def _window(self, states: dict, start: int, stop: int, steps: int, block_targets: Tensor) -> tuple:
        reach = max(0, start + self.k1 - self.k2)
        following = max(0, stop + self.k1 - self.k2)  # where the next block's window begins
        outputs, _ = self._run(states, reach, stop, cuts=(), record={following, stop}, keep_from=start)
        loss = self.loss_fn(outputs, block_targets)
        self._backward(loss)
        return loss.detach(), reach

    def _per_loss(self, states: dict, start: int, stop: int, steps: int, block_targets: Tensor) -> tuple:
        k2, time_dim = self.k2, self._time_dim
        groups = self._groups(start, stop)
        firsts = [max(0, owned[0] - k2) for owned in groups]
        # One pass without a graph gives the values of the block's outputs and the states that the graphs
        # below and later blocks start from: each group's first cut and every h_p with p > stop - k2.
        record = {*firsts, *range(max(start + 1, stop - k2 + 1), stop + 1)}
        with no_grad():
            reference, _ = self._run(states, start, stop, cuts=(), record=record, keep_from=start)
        loss = self.loss_fn(reference, block_targets)
        mask_shape = [1] * reference.ndim
        mask_shape[time_dim] = stop - start
        for owned, first in zip(groups, firsts):
            last = owned[-1]
            cuts = [s - k2 for s in owned[1:]]
            outputs, _ = self._run(states, first, last, cuts=cuts, record=(), keep_from=max(start, first))
            # Steps outside [first, last] carry none of this graph's losses: constants from the reference.
            pieces = [outputs]
            if first > start:
                pieces.insert(0, self._slice(reference, 0, first - start))
            if last < stop:
                pieces.append(self._slice(reference, last - start, stop - start))
            outputs = pieces[0] if len(pieces) == 1 else cat(pieces, dim=time_dim)
            owned_set = set(owned)
            mask = Tensor([s in owned_set for s in range(start + 1, stop + 1)], device=reference.device)
            self._backward(self.loss_fn(where(mask.reshape(*mask_shape), outputs, reference), block_targets))
        return loss.detach(), min(firsts)

    def _groups(self, start: int, stop: int) -> list[list[int]]:
        """The block's losses grouped so that one graph serves a group: L_s with s <= k2 reach h_0 and
        share one; beyond that, the losses with equal s mod k2 have cuts exactly k2 apart, each at the
        previous one's step, so a detach at each cut gives every one of them its own reach."""
        groups: dict[Any, list[int]] = {}
        for s in range(start + 1, stop + 1):
            groups.setdefault("uncut" if s <= self.k2 else s % self.k2, []).append(s)
        return list(groups.values())

    def _per_loss_vectorized(
        self, states: dict, start: int, stop: int, steps: int, block_targets: Tensor
    ) -> tuple:
        """``per_loss`` in one pass: replica r of the batch carries group r's graph (restarted from the
        stored state at its first cut, detached at its later cuts); the last replica carries the stream
        itself from h_start, to record the states later blocks start from. Each step's output is taken
        from the replica that owns its loss."""
        k2, time_dim = self.k2, self._time_dim
        groups = self._groups(start, stop)
        firsts = [max(0, owned[0] - k2) for owned in groups]
        reach = min(firsts)
        width = len(groups) + 1
        stream = width - 1
        restarts: dict[int, list[int]] = {}
        for replica, first in enumerate(firsts):
            if first > reach:
                restarts.setdefault(first, []).append(replica)
        if start > reach:
            restarts.setdefault(start, []).append(stream)
        detaches: dict[int, list[int]] = {}
        for replica, owned in enumerate(groups):
            for s in owned[1:]:
                if s - k2 > firsts[replica]:  # the losses of the "uncut" group all reach h_0
                    detaches.setdefault(s - k2, []).append(replica)
        record = {p for p in firsts if p > start} | set(range(max(start + 1, stop - k2 + 1), stop + 1))
        owner = {s: replica for replica, owned in enumerate(groups) for s in owned}
        bounds = sorted({reach, stop, *restarts, *detaches, *record})
        inputs = _tile(self._slice(self._inputs, reach, stop)._data, width, 1 - time_dim)
        hidden = _tile_hidden(states[reach], width)
        batch = self._inputs.shape[1 - time_dim]
        pieces = []
        for left, right in itertools.pairwise(bounds):
            if left in record:
                states[left] = _replica_rows(hidden, stream, batch, detach=True)
            if left in restarts:
                hidden = _replace_rows(hidden, restarts[left], _tile_hidden(states[left], width), batch)
            if left in detaches:
                hidden = _replace_rows(hidden, detaches[left], detach_hidden(hidden), batch)
            output, hidden = self.model(self._slice(inputs, left - reach, right - reach), hidden)
            for s in range(max(left, start) + 1, right + 1):
                step = self._slice(output, s - 1 - left, s - left)
                pieces.append(_rows(step, owner[s], batch, 1 - time_dim))
        states[stop] = _replica_rows(hidden, stream, batch, detach=True)
        outputs = pieces[0] if len(pieces) == 1 else cat(pieces, dim=time_dim)
        loss = self.loss_fn(outputs, block_targets)
        self._backward(loss)
        return loss.detach(), reach

    # ---- running the model -------------------------------------------------------------------------

    def _run(
        self, states: dict, begin: int, stop: int, cuts: Iterable[int], record: Iterable[int], keep_from: int
    ) -> tuple[Tensor, Any]:
        """Run the model from the stored h_begin to h_stop, chunked at every cut (detach there) and every
        recorded position (store the detached state there); return the outputs of steps keep_from+1 … stop
        concatenated along time, and the final state."""
        cuts = {p for p in cuts if begin < p < stop}
        record = {p for p in record if begin < p <= stop}
        bounds = sorted({begin, stop, *cuts, *record, *([keep_from] if begin < keep_from < stop else [])})
        hidden = states[begin]
        pieces = []
        for left, right in itertools.pairwise(bounds):
            if left in cuts:
                hidden = detach_hidden(hidden)
            output, hidden = self.model(self._slice(self._inputs, left, right), hidden)
            if right in record:
                states[right] = detach_hidden(hidden)
            if left >= keep_from:
                pieces.append(output)
        outputs = pieces[0] if len(pieces) == 1 else cat(pieces, dim=self._time_dim)
        return outputs, hidden

    def _slice(self, t: Tensor, start: int, stop: int) -> Tensor:
        return t[:, start:stop] if self._time_dim == 1 else t[start:stop]

    def _backward(self, loss: Tensor) -> None:
        if loss.requires_grad:
            loss.backward()


# ---- replicas along the batch axis (vectorized per_loss) ---------------------------------------------


def _tile(array: Any, width: int, axis: int) -> Tensor:
    """``width`` copies of ``array`` stacked along its batch ``axis``, as a constant tensor."""
    xp = backend.get_array_module(array)
    return Tensor._make(xp.concatenate([array] * width, axis=axis), False, None, 0)


def _tile_hidden(hidden: Any, width: int) -> Any:
    """Tile every tensor of a hidden state along its batch axis (the second to last: (B, H), (L, B, H))."""
    if hidden is None:
        return None
    if isinstance(hidden, Tensor):
        return _tile(hidden._data, width, hidden.ndim - 2)
    return type(hidden)(_tile_hidden(h, width) for h in hidden)


def _rows(t: Tensor, replica: int, batch: int, axis: int) -> Tensor:
    index = [slice(None)] * t.ndim
    index[axis] = slice(replica * batch, (replica + 1) * batch)
    return t[tuple(index)]


def _replica_rows(hidden: Any, replica: int, batch: int, detach: bool) -> Any:
    if isinstance(hidden, Tensor):
        rows = _rows(hidden, replica, batch, hidden.ndim - 2)
        return rows.detach() if detach else rows
    return type(hidden)(_replica_rows(h, replica, batch, detach) for h in hidden)


def _replace_rows(hidden: Any, replicas: list[int], source: Any, batch: int) -> Any:
    """``hidden`` with the rows of ``replicas`` taken from ``source`` (same structure and shapes)."""
    if isinstance(hidden, Tensor):
        axis = hidden.ndim - 2
        width = hidden.shape[axis] // batch
        shape = [1] * hidden.ndim
        shape[axis] = width * batch
        chosen = [r in replicas for r in range(width) for _ in range(batch)]
        mask = Tensor(chosen, device=hidden.device).reshape(*shape)
        return where(mask, source, hidden)
    return type(hidden)(_replace_rows(h, replicas, s, batch) for h, s in zip(hidden, source))


def _loss_cross_entropy(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over every step and batch entry: logits (..., C) against class indices (...)."""
    from .nn import functional

    return functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


class TBPTTTrainer:
    """The common truncated-BPTT training loop: for each update, clip, then ``optimizer.step()``.

    Args:
        model, k1, k2, semantics, batch_first: as for :class:`TBPTT`.
        optimizer: anything with ``step()`` over the model's parameters.
        clip_norm: clip the joint gradient norm to this before each step (None: no clipping).
        loss_fn: ``loss_fn(output, target)``; default: cross-entropy of the logits (..., C) against the class
            indices (...), over every step and batch entry.
        carry_hidden: start each batch from the previous batch's final state (a stream cut into batches)
            instead of from None.
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        k1: int,
        k2: int,
        clip_norm: float | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        semantics: str = "window",
        batch_first: bool | None = None,
        carry_hidden: bool = False,
    ) -> None:
        self.model, self.optimizer, self.clip_norm = model, optimizer, clip_norm
        self.driver = TBPTT(model, loss_fn or _loss_cross_entropy, k1, k2, semantics, batch_first)
        self.carry_hidden = carry_hidden
        # Floats, or 0-d tensors not read from the device yet: a GPU loop does not wait per update.
        self._losses: list = []
        self._grad_norms: list = []

    @property
    def losses(self) -> list[float]:
        """The loss of every update, across epochs (read from the device in one transfer when asked)."""
        return _as_floats(self._losses)

    @property
    def grad_norms(self) -> list[float]:
        """The gradient norm before clipping of every update, when clipping."""
        return _as_floats(self._grad_norms)

    def updates(self, inputs: Tensor, targets: Tensor, hidden: Any = None) -> Iterator[Update]:
        """Train on one stream, yielding after each optimizer step (clip, then ``optimizer.step()``).

        The loop between updates stays in the caller's hands (progress, validation, sampling, stopping
        early); ``self.grad_norms`` holds the norm before clipping of every update when clipping.
        """
        parameters = list(self.model.parameters())
        for update in self.driver.updates(inputs, targets, hidden):
            if self.clip_norm is not None:
                self._grad_norms.append(clip_grad_norm_(parameters, self.clip_norm))
            self.optimizer.step()
            self._losses.append(update.loss_tensor)
            yield update

    def train_epoch(self, batches: Iterable[tuple[Tensor, Tensor]]) -> float:
        """One pass over ``(inputs, targets)`` pairs; returns the mean of the updates' losses."""
        losses = []
        hidden = None
        for inputs, targets in batches:
            start = hidden if self.carry_hidden else None
            losses.extend(update.loss_tensor for update in self.updates(inputs, targets, start))
            hidden = self.driver.hidden
        if not losses:
            raise ValueError("TBPTTTrainer.train_epoch: no batches")
        losses = _as_floats(losses)  # one read for the epoch
        return sum(losses) / len(losses)


# ---- the truncation bias meter ---------------------------------------------------------------------------


@dataclass
class TruncationBias:
    """How far a truncated gradient g_k is from the full-BPTT gradient g of the same losses.

    Attributes:
        cosine: ⟨g_k, g⟩ / (‖g_k‖ ‖g‖) over all parameters jointly.
        relative_error: ‖g_k - g‖ / ‖g‖.
        truncated_norm, full_norm: ‖g_k‖ and ‖g‖.
    """

    cosine: float
    relative_error: float
    truncated_norm: float
    full_norm: float


def truncation_bias(
    model: Any,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    k2: int,
    k1: int | None = None,
    semantics: str = "per_loss",
    hidden: Any = None,
    batch_first: bool | None = None,
) -> TruncationBias:
    """Measure the truncation bias of ``k2`` on one sequence, at the current parameters.

    The truncated gradient is the sum, over the updates of ``TBPTT(k1, k2, semantics)`` along the
    sequence, of their gradients (parameters held fixed); the full gradient is the same sum with k2 equal
    to the sequence length, where nothing is cut. ``k1`` defaults to the whole sequence: one update whose
    losses each reach back k2 steps (``per_loss``). The parameters' ``.grad`` are left as they were.
    """
    time_dim = 1 if (getattr(model, "batch_first", False) if batch_first is None else batch_first) else 0
    steps = inputs.shape[time_dim]
    k1 = steps if k1 is None else k1
    parameters = list(model.parameters())
    kept = [p.grad for p in parameters]
    try:
        truncated = _summed_gradient(model, loss_fn, inputs, targets, k1, k2, semantics, hidden, batch_first)
        full = _summed_gradient(
            model, loss_fn, inputs, targets, k1, max(steps, k1), semantics, hidden, batch_first
        )
    finally:
        for p, grad in zip(parameters, kept):
            p.grad = grad
    dot = sum(float((a * b).sum()) for a, b in zip(truncated, full))
    truncated_norm = math.sqrt(sum(float((a * a).sum()) for a in truncated))
    full_norm = math.sqrt(sum(float((b * b).sum()) for b in full))
    difference = math.sqrt(sum(float(((a - b) * (a - b)).sum()) for a, b in zip(truncated, full)))
    return TruncationBias(
        cosine=dot / max(truncated_norm * full_norm, 1e-300),
        relative_error=difference / max(full_norm, 1e-300),
        truncated_norm=truncated_norm,
        full_norm=full_norm,
    )


def _summed_gradient(model, loss_fn, inputs, targets, k1, k2, semantics, hidden, batch_first) -> list:
    """Σ over the updates of the parameters' gradients, as raw arrays (zeros where none arrived)."""
    parameters = list(model.parameters())
    for p in parameters:
        p.grad = None
    driver = TBPTT(model, loss_fn, k1, k2, semantics, batch_first, zero_grad=False)
    for _ in driver.updates(inputs, targets, hidden):
        pass  # gradients accumulate over the updates
    return [p.grad._data.copy() if p.grad is not None else p._data * 0 for p in parameters]
