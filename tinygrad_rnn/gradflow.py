"""Gradients through time, measured on the tape: per-step state gradients, the contribution ledger,
Jacobian products ∂h_t/∂h_k and their singular values, and the effective memory of a network.

Every measurement runs the model one step at a time, ``output, hidden = model(chunk_of_one_step,
hidden)``, so it works for any recurrent model with that calling convention (``nn.RNN``, ``nn.LSTM``,
``nn.GRU``, a cell wrapped in :class:`Unrolled`, a model with a read-out), and lets the engine's own
``backward()`` do the differentiating: nothing here knows a cell's formulas. A bidirectional layer
cannot be run one step at a time (its reverse direction needs the whole sequence), so it is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import backend
from .autograd import no_grad
from .functions import cat, stack, where
from .nn.module import Module, Parameter
from .tensor import Tensor

# ---- running a model one step at a time --------------------------------------------------------------


class Unrolled(Module):
    """A cell (``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell`` or any ``cell(x_t, state) -> state``)
    run over a sequence, with an optional read-out: ``output, hidden = Unrolled(cell, readout)(x, hidden)``.

    x is (T, B, I) (or (B, T, I) with ``batch_first``); the output at step t is ``readout(h_t)`` (h_t itself
    without a read-out; h_t is the first tensor of a tuple state), stacked along time.
    """

    def __init__(self, cell: Module, readout: Module | None = None, batch_first: bool = False) -> None:
        super().__init__()
        self.cell, self.readout, self.batch_first = cell, readout, batch_first

    def forward(self, input: Tensor, hidden: Any = None) -> tuple[Tensor, Any]:
        steps = input.unbind(1 if self.batch_first else 0)
        outputs = []
        for x in steps:
            hidden = self.cell(x, hidden)
            h = hidden[0] if isinstance(hidden, tuple | list) else hidden
            outputs.append(self.readout(h) if self.readout is not None else h)
        return stack(outputs, dim=1 if self.batch_first else 0), hidden


def _time_dim(model: Any, batch_first: bool | None) -> int:
    """The time dimension of the model's input; refuses a model that cannot be run one step at a time."""
    modules = model.modules() if isinstance(model, Module) else [model]
    if any(getattr(module, "bidirectional", False) for module in modules):
        # Run a step at a time, the reverse direction would see one step per call: another model.
        raise ValueError(
            "gradflow measures a model run one step at a time, which a bidirectional recurrent layer "
            "cannot be (its reverse direction needs the whole sequence); measure each direction separately"
        )
    return 1 if (getattr(model, "batch_first", False) if batch_first is None else batch_first) else 0


def _step_slice(t: Tensor, time_dim: int, step: int) -> Tensor:
    return t[:, step : step + 1] if time_dim == 1 else t[step : step + 1]


def _as_tuple(hidden: Any) -> tuple:
    return tuple(hidden) if isinstance(hidden, tuple | list) else (hidden,)


def _like(hidden: Any, parts: Sequence[Tensor]) -> Any:
    return type(hidden)(parts) if isinstance(hidden, tuple | list) else parts[0]


def _norm(array: Any) -> float:
    return math.sqrt(float((array * array).sum()))


def _loss_share(loss_fn: Callable, outputs: Tensor, targets: Tensor, time_dim: int, step: int) -> Tensor:
    """Step ``step``'s share of L = loss_fn(outputs, targets): the same value, with every other step's
    output held constant, so its gradient is ∂L/∂y_step · ∂y_step/∂θ. The shares' gradients sum to ∇L."""
    shape = [1] * outputs.ndim
    shape[time_dim] = outputs.shape[time_dim]
    mask = Tensor([t == step for t in range(shape[time_dim])], device=outputs.device).reshape(*shape)
    return loss_fn(where(mask, outputs, outputs.detach()), targets)


# ---- ‖∂L/∂h_t‖ for every t -----------------------------------------------------------------------------


@dataclass
class StateGradients:
    """Per-step gradient norms of one sequence's loss.

    Attributes:
        loss: L as a float.
        future: ‖∂L/∂h_t‖ through the steps after t only: the derivation's dh_next, the gradient of the
            state tensor(s) handed from step t to step t+1 (every tensor of a tuple state, jointly).
        output: ‖∂L/∂y_t‖, the gradient arriving at step t's output directly.
        total: ‖∂L/∂h_t‖ = ‖∂L/∂y_t + dh_next‖ when the output at t is the (top layer's) hidden state h_t,
            as for ``nn.RNN``/``nn.LSTM``/``nn.GRU``; None when a read-out sits between them.
    """

    loss: float
    future: list[float]
    output: list[float]
    total: list[float] | None


def state_gradients(
    model: Callable[..., Any],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    hidden: Any = None,
    batch_first: bool | None = None,
    output_is_state: bool | None = None,
) -> StateGradients:
    """‖∂L/∂h_t‖ for every t of ``inputs``, L = loss_fn(outputs, targets), at the current parameters.

    Zero "probe" tensors are added to each step's output and to the state passed on; their gradients are
    exactly ∂L/∂y_t and ∂L/∂h_t (through the future). ``output_is_state`` says whether y_t is the (top
    layer's) h_t, so that ``total`` can be formed; by default it is true for ``nn.RNN``/``nn.LSTM``/
    ``nn.GRU`` and for :class:`Unrolled` without a read-out. The parameters' ``.grad`` are left untouched.
    """
    if output_is_state is None:
        from .nn.rnn import _RNNBase

        output_is_state = isinstance(model, _RNNBase) or (
            isinstance(model, Unrolled) and model.readout is None
        )
    time_dim = _time_dim(model, batch_first)
    steps = inputs.shape[time_dim]
    output_probes, state_probes, outputs = [], [], []
    with _parameters_frozen(model):
        for step in range(steps):
            output, hidden = model(_step_slice(inputs, time_dim, step), hidden)
            probe = _zero_leaf(output)
            output_probes.append(probe)
            outputs.append(output + probe)
            parts = _as_tuple(hidden)
            probes = [_zero_leaf(p) for p in parts]
            state_probes.append(probes)
            hidden = _like(hidden, [p + q for p, q in zip(parts, probes)])
        loss = loss_fn(cat(outputs, dim=time_dim), targets)
        loss.backward()
    future = [math.sqrt(sum(_norm(_grad(p)) ** 2 for p in probes)) for probes in state_probes]
    direct = [_grad(p) for p in output_probes]
    total = None
    if output_is_state:
        top = [_top_layer(model, _grad(probes[0])) for probes in state_probes]
        total = [_norm(d.reshape(top_h.shape) + top_h) for d, top_h in zip(direct, top)]
    return StateGradients(float(loss.item()), future, [_norm(d) for d in direct], total)


def _zero_leaf(t: Tensor) -> Tensor:
    return Tensor._make(backend.get_array_module(t._data).zeros_like(t._data), True, None, 0)


def _grad(t: Tensor) -> Any:
    return t.grad._data if t.grad is not None else t._data * 0


def _top_layer(model: Any, h: Any) -> Any:
    """h_t of the top layer: the last layer of ``nn.RNN``/``nn.LSTM``/``nn.GRU``'s (layers, B, H) state,
    or (layers, H) for an unbatched input; another model's (layers, B, H) state's last layer; a (B, H)
    state as it is."""
    from .nn.rnn import _RNNBase

    return h[-1] if isinstance(model, _RNNBase) or h.ndim == 3 else h


class _parameters_frozen:
    """Within the block the model's parameters take no gradient (so a measurement leaves .grad alone)."""

    def __init__(self, model: Any) -> None:
        self.parameters = list(model.parameters()) if hasattr(model, "parameters") else []

    def __enter__(self) -> None:
        self.flags = [p.requires_grad for p in self.parameters]
        for p in self.parameters:
            p.requires_grad = False

    def __exit__(self, *exc: Any) -> None:
        for p, flag in zip(self.parameters, self.flags):
            p.requires_grad = flag


# ---- the contribution ledger ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Where each parameter's gradient comes from, step by step.

    Attributes:
        loss: L as a float.
        terms: name -> list over source steps k of the term step k contributes to ∂L/∂θ (arrays shaped like
            the parameter): Σ_t ∂L_t/∂h_t · ∂h_t/∂h_k · ∂⁺h_k/∂θ, the Σ_k of the derivation.
        grads: name -> Σ_k terms[name][k], which is the parameter's full BPTT gradient.
        step_norms: name -> ‖terms[name][k]‖ for every k.
        matrix: when asked for, matrix[t][k] = ‖the term source step k contributes to ∇_θ L_t‖ over all
            parameters jointly (zero for k > t): the accumulation table, measured.
    """

    loss: float
    terms: dict[str, list[Any]]
    grads: dict[str, Any]
    step_norms: dict[str, list[float]]
    matrix: list[list[float]] | None = field(default=None)


def contribution_ledger(
    model: Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    hidden: Any = None,
    batch_first: bool | None = None,
    by_loss_step: bool = False,
) -> Ledger:
    """Split every parameter's BPTT gradient into the terms contributed by each timestep.

    Each step runs with its own copy of every parameter (a new leaf sharing the parameter's storage), so
    the gradient reaching step k's copy is exactly step k's term; the terms sum to the ordinary gradient.
    With ``by_loss_step`` each step's loss share is also sent back alone (T backward passes over a
    retained graph, O(T²)) to fill the (t, k) matrix. The parameters' ``.grad`` are left untouched.
    """
    time_dim = _time_dim(model, batch_first)
    steps = inputs.shape[time_dim]
    owners = [
        (module, name, f"{prefix}.{name}" if prefix else name)
        for prefix, module in model.named_modules()
        for name, p in module._parameters.items()
        if p is not None
    ]
    names = [full_name for _, _, full_name in owners]
    originals = [module._parameters[name] for module, name, _ in owners]
    copies, outputs = [], []
    try:
        for step in range(steps):
            step_copies = [Parameter(p) for p in originals]
            for (module, name, _), copy in zip(owners, step_copies):
                module._parameters[name] = copy
            copies.append(step_copies)
            output, hidden = model(_step_slice(inputs, time_dim, step), hidden)
            outputs.append(output)
    finally:
        for (module, name, _), original in zip(owners, originals):
            module._parameters[name] = original
    sequence = cat(outputs, dim=time_dim)
    loss = loss_fn(sequence, targets)
    matrix = None
    if by_loss_step:
        matrix = []
        for t in range(steps):
            _loss_share(loss_fn, sequence, targets, time_dim, t).backward(retain_graph=True)
            row = []
            for step_copies in copies:
                row.append(math.sqrt(sum(_norm(_grad(c)) ** 2 for c in step_copies)))
                for c in step_copies:
                    c.grad = None
            matrix.append(row)
    loss.backward()
    terms = {name: [_grad(step_copies[i]) for step_copies in copies] for i, name in enumerate(names)}
    grads = {name: sum(values[1:], values[0].copy()) for name, values in terms.items()}
    norms = {name: [_norm(v) for v in values] for name, values in terms.items()}
    return Ledger(float(loss.item()), terms, grads, norms, matrix)


# ---- Jacobian products ∂h_t/∂h_k ------------------------------------------------------------------------


@dataclass
class JacobianProducts:
    """The step Jacobians J_t = ∂s_t/∂s_{t-1} of a trajectory, for each batch element.

    The state s_t is every tensor of the hidden state (h, or h and c for an LSTM, all layers) flattened
    into one vector of size D per batch element. ``steps[t - 1]`` holds J_t as a (B, D, D) array.
    """

    steps: list[Any]

    def product(self, t: int, k: int) -> Any:
        """∂s_t/∂s_k = J_t J_{t-1} ⋯ J_{k+1}, (B, D, D); the identity when t = k."""
        if not 0 <= k <= t <= len(self.steps):
            raise ValueError(f"product: need 0 <= k <= t <= {len(self.steps)}, got t={t}, k={k}")
        first = self.steps[0]
        xp = backend.get_array_module(first)
        result = xp.broadcast_to(xp.eye(first.shape[-1], dtype=first.dtype), first.shape).copy()
        for step in range(k + 1, t + 1):
            result = self.steps[step - 1] @ result
        return result

    def largest_singular_values(self, t: int | None = None) -> list[list[float]]:
        """σ_max(∂s_t/∂s_{t-lag}) for lag = 0 … t, per batch element (t defaults to the last step)."""
        t = len(self.steps) if t is None else t
        first = self.steps[0]
        xp = backend.get_array_module(first)
        product = xp.broadcast_to(xp.eye(first.shape[-1], dtype=first.dtype), first.shape).copy()
        values = []
        for lag in range(t + 1):
            if lag:
                product = product @ self.steps[t - lag]  # ∂s_t/∂s_{t-lag} = ∂s_t/∂s_{t-lag+1} J_{t-lag+1}
            values.append(
                [float(v) for v in backend.to_numpy(xp.linalg.svd(product, compute_uv=False)[:, 0])]
            )
        return values


def jacobian_products(
    model: Callable[..., Any], inputs: Tensor, hidden: Any = None, batch_first: bool | None = None
) -> JacobianProducts:
    """The step Jacobians ∂s_t/∂s_{t-1} along the trajectory of ``inputs``, computed by the engine.

    For each step the batch is replicated D times, replica i starting from the same state, and one backward
    pass sends the i-th unit vector into replica i's new state: the gradient reaching replica i's old
    state is row i of the Jacobian. One forward and one backward of a D-times larger batch per step,
    whatever the cell.
    """
    from .nn.rnn import _RNNBase

    time_dim = _time_dim(model, batch_first)
    if isinstance(model, _RNNBase) and inputs.ndim == 2:
        # The replicas are stacked along the batch axis, which an unbatched (T, I) input lacks.
        raise ValueError(
            f"jacobian_products: unbatched input of shape {inputs.shape}; give it a batch axis of size 1 "
            f"({'inputs.unsqueeze(0)' if time_dim == 1 else 'inputs.unsqueeze(1)'})"
        )
    steps = inputs.shape[time_dim]
    batch_dim = 1 - time_dim
    with no_grad():
        if hidden is None:
            _, shape_probe = model(_step_slice(inputs, time_dim, 0), None)
            hidden = _like(shape_probe, [p * 0 for p in _as_tuple(shape_probe)])
        hidden = _like(hidden, [p.detach() for p in _as_tuple(hidden)])
    jacobians = []
    with _parameters_frozen(model):
        for step in range(steps):
            parts = _as_tuple(hidden)
            batch = parts[0].shape[-2]
            sizes = [p.numel() // batch for p in parts]
            width = sum(sizes)
            leaves = [_repeated_leaf(p._data, width, p.ndim - 2) for p in parts]
            x = _step_slice(inputs, time_dim, step)._data
            xp = backend.get_array_module(x)
            x = Tensor._make(xp.concatenate([x] * width, axis=batch_dim), False, None, 0)
            _, new_hidden = model(x, _like(hidden, leaves))
            new_parts = _as_tuple(new_hidden)
            total, offset = None, 0
            for part, size in zip(new_parts, sizes):
                seed = _unit_vectors(part._data, width, batch, offset, size)
                term = (part * Tensor._make(seed, False, None, 0)).sum()
                total = term if total is None else total + term
                offset += size
            total.backward()
            rows = [_per_replica(_grad(leaf), width, batch) for leaf in leaves]
            jacobians.append(xp.concatenate(rows, axis=-1).transpose(1, 0, 2))  # (B, D rows, D columns)
            hidden = _like(hidden, [_first_replica(p._data, batch) for p in new_parts])
    return JacobianProducts(jacobians)


def _repeated_leaf(array: Any, width: int, batch_axis: int) -> Tensor:
    xp = backend.get_array_module(array)
    return Tensor._make(xp.concatenate([array] * width, axis=batch_axis), True, None, 0)


def _unit_vectors(array: Any, width: int, batch: int, offset: int, size: int) -> Any:
    """Gradient seed for one state tensor (…, width·B, H): replica i gets unit vector i of the joint state."""
    xp = backend.get_array_module(array)
    batch_axis = array.ndim - 2
    seed = xp.zeros((width, batch, size), array.dtype)
    for local in range(size):
        seed[offset + local, :, local] = 1
    seed = seed.reshape(width * batch, *[d for i, d in enumerate(array.shape) if i != batch_axis])
    return xp.moveaxis(seed, 0, batch_axis)


def _per_replica(grad: Any, width: int, batch: int) -> Any:
    """(…, width·B, H) -> (width, B, size): replica i's gradient flattened per batch element."""
    xp = backend.get_array_module(grad)
    moved = xp.moveaxis(grad, grad.ndim - 2, 0)
    return moved.reshape(width, batch, -1)


def _first_replica(array: Any, batch: int) -> Tensor:
    index = [slice(None)] * array.ndim
    index[array.ndim - 2] = slice(0, batch)
    return Tensor._make(array[tuple(index)].copy(), False, None, 0)


# ---- effective memory --------------------------------------------------------------------------------


def effective_memory(norms_by_lag: Sequence[float], fraction: float = 0.01) -> int:
    """The first lag at which a gradient norm falls below ``fraction`` of its value at lag 0.

    ``norms_by_lag[lag]`` is e.g. ‖∂L_T/∂h_{T-lag}‖ or σ_max(∂h_T/∂h_{T-lag}). Returns ``len(norms_by_lag)``
    when the norm never falls that low within the measured horizon (memory at least that long).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"effective_memory: fraction must lie in (0, 1), got {fraction}")
    if len(norms_by_lag) == 0:
        raise ValueError("effective_memory: no norms given")
    threshold = fraction * norms_by_lag[0]
    for lag, value in enumerate(norms_by_lag):
        if value < threshold:
            return lag
    return len(norms_by_lag)
