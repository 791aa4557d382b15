"""Gradients through time computed forward: RTRL, UORO and forward gradients.

Same model and loss contract as ``bptt.TBPTT``: ``output, hidden = model(chunk, hidden)`` with a chunk
of the time axis (axis 1 when ``model.batch_first``), ``loss_fn(output, target)`` a scalar. Every method
runs the model one step at a time and never keeps a tape across steps: the memory is constant in T.

With θ the parameters (P entries), h_t the state and L = Σ_t L_t:

- **RTRL** (Williams & Zipser, 1989) is forward mode on the unrolled graph with one tangent per
  parameter entry. It carries the influence M_t = dh_t/dθ (shape (P, *h)) with the state:
  M_t = ∂h_t/∂h_{t-1} M_{t-1} + ∂h_t/∂θ, and dL_t/dθ = ∂L_t/∂h_{t-1} M_{t-1} + ∂L_t/∂θ. Both are one
  step of the model run on dual tensors: θ with the identity as tangent (K = P), h_{t-1} with M_{t-1}.
  Exact (it equals BPTT's gradient), O(P) tangents per step.
- **UORO** (Tallec & Ollivier, 2017) keeps M_t ≈ s̃_t θ̃_tᵀ, rank one: per step one forward-mode
  tangent (∂h_t/∂h_{t-1} s̃ and ∂L_t/∂h_{t-1} s̃) and two reverse walks over the step's own graph
  (∂L_t/∂θ and νᵀ ∂h_t/∂θ for random signs ν). Unbiased: E[estimate] = RTRL's gradient.
- **Forward gradient** (Baydin et al., 2022): (∇L · v) v for v ~ N(0, I), one forward pass carrying
  ``num_directions`` random tangents of θ; unbiased, its variance falls as 1/num_directions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from . import autograd, backend, forward_ad
from .func import functional_call
from .functions import rand, randn
from .tensor import Tensor

__all__ = ["RTRL", "UORO", "forward_gradient"]


def _states(hidden: Any) -> tuple:
    """The state as a tuple of tensors (an LSTM's (h, c), or a single tensor), () for None."""
    if hidden is None:
        return ()
    return tuple(hidden) if isinstance(hidden, tuple | list) else (hidden,)


def _rebuild(like: Any, states: list) -> Any:
    if isinstance(like, tuple | list):
        return type(like)(states)
    return states[0]


def _detached(hidden: Any) -> Any:
    if hidden is None:
        return None
    return _rebuild(hidden, [s.detach() for s in _states(hidden)])


def _step_slices(inputs: Tensor, targets: Tensor, batch_first: bool, name: str) -> _Steps:
    axis = 1 if batch_first else 0
    for label, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor) or value.ndim <= axis:
            raise TypeError(f"{name}: {label} must be a Tensor with a time axis (axis {axis})")
    steps = inputs.shape[axis]
    if targets.shape[axis] != steps:
        raise ValueError(
            f"{name}: inputs have {steps} steps but targets have {targets.shape[axis]} (time axis {axis})"
        )
    if steps == 0:
        raise ValueError(f"{name}: the sequence has no steps")
    return _Steps(inputs, targets, batch_first, range(steps))


class _Steps:
    """The (input, target) chunks of single steps, sliced when used: holding all T slices at once would
    make the memory grow with T."""

    def __init__(self, inputs: Tensor, targets: Tensor, batch_first: bool, indices: range) -> None:
        self.inputs, self.targets, self.batch_first, self.indices = inputs, targets, batch_first, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: slice) -> _Steps:
        return _Steps(self.inputs, self.targets, self.batch_first, self.indices[key])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for t in self.indices:
            if self.batch_first:
                yield self.inputs[:, t : t + 1], self.targets[:, t : t + 1]
            else:
                yield self.inputs[t : t + 1], self.targets[t : t + 1]


def _parameters(model: Any, name: str) -> list:
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"{name}: the model must be an nn.Module (it needs named_parameters())")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{name}: the model has no parameter that requires grad")
    for n, p in named:
        if p.dtype.kind != "f":
            raise TypeError(f"{name}: parameter {n!r} is not floating ({p.dtype})")
    return named


def _add_grads(named: list, flat: Any) -> None:
    """Add a flat gradient vector (P,) into the parameters' ``.grad`` (created on first use)."""
    offset = 0
    for _, p in named:
        size = math.prod(p.shape)
        piece = flat[offset : offset + size].reshape(p.shape).astype(p.dtype)
        offset += size
        if p.grad is None:
            p.grad = Tensor._make(piece.copy(), False, None, 0)
        else:
            p.grad._data += piece


def _identity_tangents(named: list) -> list:
    """The tangent of each parameter when θ's P entries are the P directions: blocks of the identity."""
    total = sum(math.prod(p.shape) for _, p in named)
    xp = backend.get_array_module(named[0][1]._data)
    eye = xp.eye(total, dtype=named[0][1].dtype)
    tangents, offset = [], 0
    for _, p in named:
        size = math.prod(p.shape)
        tangents.append(eye[:, offset : offset + size].reshape((total, *p.shape)))
        offset += size
    return tangents


class RTRL:
    """Real-time recurrent learning: the exact gradient of Σ_t loss_fn(output_t, target_t), computed
    forward in time from the carried influence M_t = dh_t/dθ (see the module docstring).

    Args:
        model: ``output, hidden = model(chunk, hidden)`` (an ``nn.Module``: its parameters are θ).
        loss_fn: ``loss_fn(output, target)`` -> a scalar tensor, for one step's output and target.

    Cost per step: the model's forward pass on P tangents (P = number of parameter entries); memory
    O(P · |h| + P · |θ|), constant in the sequence length.
    """

    def __init__(self, model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.batch_first = bool(getattr(model, "batch_first", False))

    def accumulate(self, inputs: Tensor, targets: Tensor, hidden: Any = None) -> tuple[Tensor, Any]:
        """Run the whole sequence; add dL/dθ of L = Σ_t L_t into every parameter's ``.grad``.

        Returns ``(total_loss, hidden)``: L as a 0-d tensor without history, the final state detached.
        """
        return _exhaust(self.updates(inputs, targets, every=None, hidden=hidden))

    def updates(
        self, inputs: Tensor, targets: Tensor, every: int | None = 1, hidden: Any = None
    ) -> Iterator[tuple[Tensor, Any]]:
        """Online RTRL: after every ``every`` steps (and after the last) add the gradient of the losses
        of those steps into ``.grad`` and yield ``(their summed loss, hidden)``. The influence is
        carried on, so an optimizer step between yields gives true online RTRL (the influence then
        mixes old and new parameters, as RTRL does). ``every=None``: one yield at the end."""
        name = "RTRL"
        steps = _step_slices(inputs, targets, self.batch_first, name)
        if every is None:
            every = len(steps)
        if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"{name}.updates: every must be a positive int, got {every!r}")
        named = _parameters(self.model, name)
        hidden = _detached(hidden)
        influence: list | None = None  # one (P, *state.shape) array per state tensor
        for start in range(0, len(steps), every):
            loss, gradient, hidden, influence = self._span(
                named, steps[start : start + every], hidden, influence
            )
            _add_grads(named, gradient)
            yield loss, hidden

    def _span(self, named: list, steps: _Steps, hidden: Any, influence: list | None) -> tuple:
        """Steps of one span inside one dual level, from the parameters' current values."""
        total_loss, gradient = None, None
        with autograd.no_grad(), forward_ad.dual_level():
            duals = {
                n: forward_ad.make_dual(p.detach(), t, batched=True)
                for (n, p), t in zip(named, _identity_tangents(named))
            }
            if hidden is not None:
                states = _states(hidden)
                if influence is None:
                    influence = [None] * len(states)
                hidden = _rebuild(
                    hidden,
                    [
                        s if m is None else forward_ad.make_dual(s, m, batched=True)
                        for s, m in zip(states, influence)
                    ],
                )
            for x, y in steps:
                output, hidden = functional_call(self.model, duals, (x, hidden))
                loss = self.loss_fn(output, y)
                tangent = forward_ad.tangent_of(loss)
                if tangent is not None:
                    step_gradient = tangent.reshape(tangent.shape[0])
                    gradient = step_gradient if gradient is None else gradient + step_gradient
                value = loss.detach()
                total_loss = value if total_loss is None else total_loss + value
            states = _states(hidden)
            influence = [forward_ad.tangent_of(s) for s in states]
            hidden = _rebuild(hidden, [Tensor._make(s._data, False, None, 0) for s in states])
        if gradient is None:
            size = sum(math.prod(p.shape) for _, p in named)
            gradient = backend.get_array_module(named[0][1]._data).zeros(size, dtype=named[0][1].dtype)
        return Tensor._make(total_loss._data, False, None, 0), gradient, hidden, influence


class UORO:
    """Unbiased online recurrent optimization: RTRL's influence kept as a rank-one estimate s̃ θ̃ᵀ,
    so a step costs a small constant times the model's own forward and backward pass.

    Per step, with ν a vector of random signs of the state's size:
    ĝ_t = ∂L_t/∂θ + (∂L_t/∂h_{t-1} · s̃) θ̃ (the gradient estimate), then
    s̃ ← ρ₀ (∂h_t/∂h_{t-1}) s̃ + ρ₁ ν and θ̃ ← θ̃/ρ₀ + (νᵀ ∂h_t/∂θ)/ρ₁, with
    ρ₀ = √((‖θ̃‖ + ε)/(‖(∂h_t/∂h_{t-1}) s̃‖ + ε)) and ρ₁ = √((‖νᵀ ∂h_t/∂θ‖ + ε)/(‖ν‖ + ε)) balancing the norms.
    The cross terms are odd in ν, so E[s̃ θ̃ᵀ] = dh_t/dθ and E[ĝ] = dL/dθ.

    Args: as :class:`RTRL`, and ``generator`` (a ``tg.Generator``) for the signs.
    """

    epsilon = 1e-7

    def __init__(
        self, model: Any, loss_fn: Callable[[Tensor, Tensor], Tensor], generator: Any = None
    ) -> None:
        self.model, self.loss_fn, self.generator = model, loss_fn, generator
        self.batch_first = bool(getattr(model, "batch_first", False))

    def accumulate(self, inputs: Tensor, targets: Tensor, hidden: Any = None) -> tuple[Tensor, Any]:
        """As :meth:`RTRL.accumulate`, with the unbiased estimate in ``.grad``."""
        return _exhaust(self.updates(inputs, targets, every=None, hidden=hidden))

    def updates(
        self, inputs: Tensor, targets: Tensor, every: int | None = 1, hidden: Any = None
    ) -> Iterator[tuple[Tensor, Any]]:
        """As :meth:`RTRL.updates`, with the unbiased estimate in ``.grad``."""
        name = "UORO"
        steps = _step_slices(inputs, targets, self.batch_first, name)
        every = len(steps) if every is None else every
        if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
            raise ValueError(f"{name}.updates: every must be a positive int, got {every!r}")
        named = _parameters(self.model, name)
        parameters = [p for _, p in named]
        hidden = _detached(hidden)
        state_tangent: list | None = None  # s̃, one array per state tensor
        parameter_tangent: list | None = None  # θ̃, one array per parameter
        total_loss, estimate = None, [None] * len(parameters)
        for index, (x, y) in enumerate(steps):
            with forward_ad.dual_level(), autograd.enable_grad():
                previous = _states(hidden)
                if previous and state_tangent is not None:
                    hidden = _rebuild(
                        hidden,
                        [
                            forward_ad.make_dual(s, t[None], batched=True)
                            for s, t in zip(previous, state_tangent)
                        ],
                    )
                output, hidden = self.model(x, hidden)
                loss = self.loss_fn(output, y)
                states = _states(hidden)
                loss_along = forward_ad.tangent_of(loss)  # ∂L_t/∂h_{t-1} · s̃
                carried = [forward_ad.tangent_of(s) for s in states]  # (∂h_t/∂h_{t-1}) s̃
                signs = [self._signs(s) for s in states]
                xp = backend.get_array_module(loss._data)
                direct = self._leaf_grads(parameters, [loss], [xp.ones_like(loss._data)])
                pulled = self._leaf_grads(parameters, list(states), signs)
            value = Tensor._make(loss._data, False, None, 0)
            total_loss = value if total_loss is None else total_loss + value
            for k, g in enumerate(direct):
                if loss_along is not None and parameter_tangent is not None:
                    g = g + float(loss_along.reshape(())) * parameter_tangent[k]
                estimate[k] = g if estimate[k] is None else estimate[k] + g
            xp = backend.get_array_module(loss._data)
            carried = [xp.zeros_like(s._data) if c is None else c[0] for c, s in zip(carried, states)]
            theta_norm = 0.0 if parameter_tangent is None else _norm(parameter_tangent)
            rho0 = math.sqrt((theta_norm + self.epsilon) / (_norm(carried) + self.epsilon))
            rho1 = math.sqrt((_norm(pulled) + self.epsilon) / (_norm(signs) + self.epsilon))
            state_tangent = [rho0 * c + rho1 * v for c, v in zip(carried, signs)]
            parameter_tangent = [
                g / rho1 if parameter_tangent is None else parameter_tangent[k] / rho0 + g / rho1
                for k, g in enumerate(pulled)
            ]
            hidden = _rebuild(hidden, [Tensor._make(s._data, False, None, 0) for s in states])
            if (index + 1) % every == 0 or index + 1 == len(steps):
                for p, g in zip(parameters, estimate):
                    _add_grad(p, g)
                yield total_loss, hidden
                total_loss, estimate = None, [None] * len(parameters)

    def _signs(self, state: Tensor) -> Any:
        """ν: independent ±1 entries of the state's shape."""
        uniform = rand(*state.shape, generator=self.generator, dtype=state.dtype, device=state.device)._data
        return backend.get_array_module(uniform).where(uniform < 0.5, -1.0, 1.0).astype(state.dtype)

    @staticmethod
    def _leaf_grads(parameters: list, roots: list, seeds: list) -> list:
        found = autograd.leaf_gradients(roots, seeds, retain_graph=True)
        xp = backend.get_array_module(parameters[0]._data)
        return [found.get(id(p), xp.zeros_like(p._data)) for p in parameters]


def _exhaust(updates: Iterator[tuple[Tensor, Any]]) -> tuple[Tensor, Any]:
    """Run an ``updates`` generator to its end: (the summed loss, the last state)."""
    total, hidden = None, None
    for loss, state in updates:
        total, hidden = (loss if total is None else total + loss), state
    return total, hidden


def _norm(arrays: list) -> float:
    return math.sqrt(sum(float((a * a).sum()) for a in arrays))


def _add_grad(p: Tensor, g: Any) -> None:
    g = g.astype(p.dtype)
    if p.grad is None:
        p.grad = Tensor._make(g.copy(), False, None, 0)
    else:
        p.grad._data += g


def forward_gradient(
    model: Any,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    num_directions: int = 1,
    generator: Any = None,
    hidden: Any = None,
) -> tuple[Tensor, Any]:
    """The forward-gradient estimate ĝ = (1/n) Σ_k (∇L · v_k) v_k of L = Σ_t loss_fn(output_t, target_t),
    v_k ~ N(0, I) in parameter space (n = ``num_directions``), added into every parameter's ``.grad``.

    One forward pass over the sequence carries the n tangents at once (no backward pass, no tape):
    ∇L · v_k is the tangent of L. Unbiased (E[v vᵀ] = I); its variance falls as 1/n.
    Returns ``(total_loss, hidden)`` as :meth:`RTRL.accumulate`.
    """
    name = "forward_gradient"
    if not isinstance(num_directions, int) or isinstance(num_directions, bool) or num_directions <= 0:
        raise ValueError(f"{name}: num_directions must be a positive int, got {num_directions!r}")
    batch_first = bool(getattr(model, "batch_first", False))
    steps = _step_slices(inputs, targets, batch_first, name)
    named = _parameters(model, name)
    directions = [
        randn(num_directions, *p.shape, generator=generator, dtype=p.dtype, device=p.device)._data
        for _, p in named
    ]
    hidden = _detached(hidden)
    total_loss, along = None, None
    with autograd.no_grad(), forward_ad.dual_level():
        duals = {n: forward_ad.make_dual(p.detach(), v, batched=True) for (n, p), v in zip(named, directions)}
        for x, y in steps:
            output, hidden = functional_call(model, duals, (x, hidden))
            loss = loss_fn(output, y)
            tangent = forward_ad.tangent_of(loss)
            if tangent is not None:
                tangent = tangent.reshape(tangent.shape[0])
                along = tangent if along is None else along + tangent
            value = Tensor._make(loss._data, False, None, 0)
            total_loss = value if total_loss is None else total_loss + value
        hidden = _rebuild(hidden, [Tensor._make(s._data, False, None, 0) for s in _states(hidden)])
    for (_, p), v in zip(named, directions):
        if along is None:
            _add_grad(p, v[0] * 0)
            continue
        weights = along.reshape((num_directions,) + (1,) * p.ndim)
        _add_grad(p, (weights * v).sum(axis=0) / num_directions)
    return total_loss, hidden
