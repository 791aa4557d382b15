"""Optimizers with PyTorch's names, defaults, update rules and state-dict layout.

Every optimizer holds ``param_groups`` (a list of dicts: the group's ``params`` and its own options,
missing options taken from ``defaults``) and ``state`` (per parameter: ``step`` and its buffers, created
on the parameter's device on the first step). ``step()`` runs under ``no_grad`` and changes parameters
in place, bumping their version counters, so a graph that saved a parameter before the step refuses
to backpropagate through the stale value.

``state_dict()`` is ``{"state": {index: {name: array or number}}, "param_groups": [{..., "params":
[index, ...]}]}`` with parameters numbered in group order, as PyTorch lays it out; arrays are NumPy
copies, so the dict can be saved with ``tg.save`` and loaded into a fresh optimizer that then continues
exactly where this one stopped.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

from .. import backend
from ..autograd import enable_grad, mark_optimizer_step, no_grad
from ..tensor import Tensor
from . import multi_tensor

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop"]


def _number(
    name: str, value: Any, low: float = 0.0, high: float | None = None, open_high: bool = False
) -> None:
    """Check an option: a real number in [low, high] (or [low, high) with ``open_high``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"invalid {name}: expected a number, got {value!r}")
    above = high is not None and (value >= high if open_high else value > high)
    if value < low or above:
        interval = f"[{low}, ∞)" if high is None else f"[{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"invalid {name}: {value} (expected a value in {interval})")


class Optimizer:
    """Base class: parameter groups, lazily created per-parameter state, ``zero_grad``, ``step``,
    ``state_dict``/``load_state_dict`` and ``add_param_group``.

    Subclasses set their options in ``defaults``, check a group in :meth:`_check_group`, create a
    parameter's buffers in :meth:`_init_state` and apply one update to raw arrays in :meth:`_update`.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors or of dicts, got a single "
                "Tensor; pass [tensor]"
            )
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {key}: {value}" for key, value in sorted(group.items()) if key != "params")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (those not given come from ``defaults``)."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}: a parameter group needs a 'params' entry")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{name}: a parameter group has an empty 'params' list")
        seen: set[int] = set()
        for position, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {position} is a {type(p).__name__}, expected a Tensor")
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (parameter {position})")
            if p.dtype.kind != "f":
                raise TypeError(f"{name}: parameter {position} has dtype {p.dtype}; only floating tensors")
            if id(p) in seen:
                raise ValueError(f"{name}: parameter {position} appears twice in one parameter group")
            seen.add(id(p))
        for i, group in enumerate(self.param_groups):
            if any(id(p) in seen for p in group["params"]):
                raise ValueError(
                    f"{name}: some parameters appear in more than one parameter group (group {i})"
                )
        group = {key: value for key, value in param_group.items() if key != "params"}
        unknown = set(group) - set(self.defaults)
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in a parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)

    def _check_group(self, group: dict[str, Any]) -> None:
        _number("learning rate", group["lr"])
        if "weight_decay" in group:
            _number("weight_decay value", group["weight_decay"])
        if "eps" in group:
            _number("epsilon value", group["eps"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none``) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad._data[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; ``closure`` (re-evaluating the loss) runs first
        with gradients enabled and its result is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for index, group in enumerate(self.param_groups):
                self._step_group(index, group)
        # Lets a later backward pass notice a graph recorded before this update (an undetached hidden state).
        mark_optimizer_step()
        return loss

    def _step_group(self, index: int, group: dict[str, Any]) -> None:
        """Apply :meth:`_update` to every parameter of the group that has a gradient."""
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = p.grad._data
            if grad.shape != p._data.shape:
                raise RuntimeError(
                    f"{type(self).__name__}: a gradient of shape {grad.shape} does not match its "
                    f"parameter of shape {p.shape}"
                )
            if p.grad.device != p.device:
                raise RuntimeError(
                    f"{type(self).__name__}: a gradient on {p.grad.device} for a parameter on "
                    f"{p.device}; move the gradient with .to(device)"
                )
            if group.get("maximize"):
                grad = -grad
            # CuPy allocates on the current GPU: make the parameter's GPU current for its update.
            with _device_of(p):
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {"step": 0, **self._init_state(p, group)}
                state["step"] += 1
                self._update(p._data, grad, state, group)
            p._bump_version()

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- state dicts ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}`` (PyTorch's
        layout); buffers are NumPy copies and parameters are numbered in group order."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            options = {key: copy.deepcopy(value) for key, value in group.items() if key != "params"}
            options["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                options["params"].append(index[id(p)])
            groups.append(options)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {key: _export(value) for key, value in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and buffers saved by :meth:`state_dict` (from this or another optimizer of the
        same type over parameters of the same shapes). Buffers are copied onto each parameter's device
        and dtype, so neither the dict nor another optimizer loaded from it shares memory with this one;
        nothing changes when the dict does not fit."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{name}.load_state_dict: expected a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{name}.load_state_dict: the state dict has {len(saved_groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index: dict[int, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"{name}.load_state_dict: parameter group {i} has {len(saved['params'])} parameter(s) in "
                    f"the state dict and {len(group['params'])} here"
                )
            by_index.update(zip((int(k) for k in saved["params"]), group["params"]))
        new_state: dict[Tensor, dict[str, Any]] = {}
        for key, buffers in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key}, which no group lists")
            new_state[p] = {k: self._restore(p, k, v) for k, v in buffers.items()}
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            options = {key: copy.deepcopy(value) for key, value in saved.items() if key != "params"}
            if isinstance(options.get("betas"), list):
                options["betas"] = tuple(options["betas"])
            options["params"] = group["params"]
            new_groups.append(options)
        self.state = new_state
        self.param_groups = new_groups

    def _restore(self, p: Tensor, key: str, value: Any) -> Any:
        if isinstance(value, Tensor):
            value = value._data
        if not backend.is_array(value) or value.ndim == 0:
            return value.item() if backend.is_array(value) else copy.deepcopy(value)
        if tuple(value.shape) != p.shape:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: buffer {key!r} has shape {tuple(value.shape)}, "
                f"its parameter has shape {p.shape}"
            )
        array = backend.to_device(value, p.device).astype(p.dtype, copy=True)
        return Tensor._make(array, False, None, 0)


def _export(value: Any) -> Any:
    """A state entry as it goes into a state dict: Tensors as NumPy copies, containers copied deeply."""
    if isinstance(value, Tensor):
        return backend.to_numpy(value._data).copy()
    if isinstance(value, list | tuple):
        return type(value)(_export(item) for item in value)
    return copy.deepcopy(value)


def _device_of(p: Tensor) -> Any:
    """A context that makes the parameter's GPU current (a no-op for the CPU and the current GPU)."""
    return backend.device_guard(p._data) or contextlib.nullcontext()


def _zeros_like(p: Tensor, fill: float = 0.0) -> Tensor:
    """A state buffer on the parameter's device, of its dtype."""
    with _device_of(p):
        array = p._xp.zeros_like(p._data)
        if fill:
            array[...] = fill
    return Tensor._make(array, False, None, 0)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (PyTorch's rule). For each step t:

    g ← ∇ (negated if ``maximize``) + λ θ;  with momentum μ: b ← g at t = 1, else b ← μ b + (1 - τ) g;
    g ← g + μ b if ``nesterov`` else b;  θ ← θ - γ g   (γ = lr, λ = weight_decay, τ = dampening).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _number("momentum value", group["momentum"])
        _number("dampening value", group["dampening"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        momentum = group["momentum"]
        if momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                state["momentum_buffer"] = buffer = Tensor._make(grad.copy(), False, None, 0)
            else:
                buffer._data *= momentum
                buffer._data += (1 - group["dampening"]) * grad
            grad = grad + momentum * buffer._data if group["nesterov"] else buffer._data
        param -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (PyTorch's rule). For each step t, with g ← ∇ (negated if ``maximize``) + λ θ:

    m ← β₁ m + (1 - β₁) g;  v ← β₂ v + (1 - β₂) g²;  with ``amsgrad``: v_max ← max(v_max, v), v ← v_max;
    θ ← θ - γ (m / (1 - β₁ᵗ)) / (√v / √(1 - β₂ᵗ) + ε).
    """

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize
        )
        # group index -> that group's flat moment buffers (optim/multi_tensor.py)
        self._flat_states: dict[int, multi_tensor.FlatAdamState] = {}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        betas = group["betas"]
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ValueError(f"{type(self).__name__}: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(betas)
        _number("beta parameter at index 0", betas[0], 0.0, 1.0, open_high=True)
        _number("beta parameter at index 1", betas[1], 0.0, 1.0, open_high=True)

    def _step_group(self, index: int, group: dict[str, Any]) -> None:
        # The flat multi-tensor update gives the same bits as the per-parameter rule below; relatives
        # that change the rule (Adamax, NAdam, RAdam override _update) keep the per-parameter path.
        fused = type(self)._update is Adam._update
        if not (fused and multi_tensor.adam_step(self, index, group, self._flat_states)):
            super()._step_group(index, group)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = {"exp_avg": _zeros_like(p), "exp_avg_sq": _zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = _zeros_like(p)
        return state

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, weight_decay = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        if weight_decay:
            if self._decoupled:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"]._data, state["exp_avg_sq"]._data
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]._data
            max_exp_avg_sq[...] = backend.get_array_module(param).maximum(max_exp_avg_sq, exp_avg_sq)
            second = max_exp_avg_sq
        else:
            second = exp_avg_sq
        xp = backend.get_array_module(param)
        denominator = xp.sqrt(second) / math.sqrt(1 - beta2**step) + eps
        param -= (lr / (1 - beta1**step)) * exp_avg / denominator


class AdamW(Adam):
    """Adam with decoupled weight decay (PyTorch's rule): θ ← θ (1 - γ λ) first, then the Adam step on
    the plain gradient. ``weight_decay`` defaults to 1e-2."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)


class RMSprop(Optimizer):
    """RMSprop (PyTorch's rule). For each step, with g ← ∇ (negated if ``maximize``) + λ θ:

    v ← α v + (1 - α) g²;  with ``centered``: ḡ ← α ḡ + (1 - α) g, ṽ = v - ḡ², else ṽ = v;
    with momentum μ > 0: b ← μ b + g / (√ṽ + ε), θ ← θ - γ b;  else θ ← θ - γ g / (√ṽ + ε).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _number("alpha value", group["alpha"])
        _number("momentum value", group["momentum"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = {"square_avg": _zeros_like(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = _zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = _zeros_like(p)
        return state

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = backend.get_array_module(param)
        alpha, eps, lr = group["alpha"], group["eps"], group["lr"]
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        square_avg = state["square_avg"]._data
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]._data
            grad_avg *= alpha
            grad_avg += (1 - alpha) * grad
            average = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            average = xp.sqrt(square_avg) + eps
        if group["momentum"] > 0:
            buffer = state["momentum_buffer"]._data
            buffer *= group["momentum"]
            buffer += grad / average
            param -= lr * buffer
        else:
            param -= lr * grad / average


class Adagrad(Optimizer):
    """Adagrad (PyTorch's rule). For each step t, with g ← ∇ (negated if ``maximize``) + λ θ:

    γ̃ = γ / (1 + (t - 1) η);  s ← s + g²  (s starts at ``initial_accumulator_value``);
    θ ← θ - γ̃ g / (√s + ε)   (η = lr_decay, ε defaults to 1e-10).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        # PyTorch creates Adagrad's accumulators at construction, so state_dict() has them before any step.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = {"step": 0, **self._init_state(p, group)}

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _number("lr_decay value", group["lr_decay"])
        _number("initial_accumulator_value", group["initial_accumulator_value"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"sum": _zeros_like(p, group["initial_accumulator_value"])}

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = backend.get_array_module(param)
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        total = state["sum"]._data
        total += grad * grad
        param -= lr * grad / (xp.sqrt(total) + group["eps"])
