"""Adam's relatives with PyTorch's names, defaults and update rules: ``Adamax`` (the infinity norm),
``NAdam`` (Nesterov momentum with a momentum schedule) and ``RAdam`` (a rectified adaptive rate).

Each shares Adam's checks of ``betas`` and keeps ``exp_avg``/``exp_avg_sq`` (or ``exp_inf``) per
parameter, as PyTorch's state dicts name them. In each rule g is the gradient (negated with
``maximize``), γ the learning rate, λ the weight decay and t the step count starting at 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .. import backend
from ..tensor import Tensor
from .optimizer import Adam, Optimizer, _number, _zeros_like

__all__ = ["Adamax", "NAdam", "RAdam"]


def _decay(param: Any, grad: Any, group: dict[str, Any]) -> Any:
    """L2 (g + λθ) or decoupled (θ ← θ(1 - γλ)) weight decay; returns the gradient to use."""
    weight_decay = group["weight_decay"]
    if not weight_decay:
        return grad
    if group.get("decoupled_weight_decay"):
        param *= 1 - group["lr"] * weight_decay
        return grad
    return grad + weight_decay * param


class Adamax(Adam):
    """Adamax (Adam with the infinity norm), PyTorch's rule. For each step t, with g ← g + λθ:

    m ← β₁ m + (1 - β₁) g;  u ← max(β₂ u, |g| + ε);  θ ← θ - γ m / ((1 - β₁ᵗ) u).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize)
        Optimizer.__init__(self, params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"exp_avg": _zeros_like(p), "exp_inf": _zeros_like(p)}

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        grad = _decay(param, grad, group)
        (beta1, beta2), eps, step = group["betas"], group["eps"], state["step"]
        exp_avg, exp_inf = state["exp_avg"]._data, state["exp_inf"]._data
        xp = backend.get_array_module(param)
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_inf[...] = xp.maximum(exp_inf * beta2, xp.abs(grad) + eps)
        param -= (group["lr"] / (1 - beta1**step)) * exp_avg / exp_inf


class NAdam(Adam):
    """NAdam (Dozat 2016), PyTorch's rule. For each step t, with g ← g + λθ (or θ ← θ(1 - γλ) with
    ``decoupled_weight_decay``) and ψ the ``momentum_decay``:

    μ_t = β₁ (1 - ½ · 0.96^(tψ));  μ_{t+1} likewise;  Π_t = μ_1 ⋯ μ_t;
    m ← β₁ m + (1 - β₁) g;  v ← β₂ v + (1 - β₂) g²;  v̂ = v / (1 - β₂ᵗ);
    θ ← θ - γ [μ_{t+1} m / (1 - Π_t μ_{t+1}) + (1 - μ_t) g / (1 - Π_t)] / (√v̂ + ε).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        Optimizer.__init__(self, params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        _number("momentum_decay value", group["momentum_decay"])

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"mu_product": 1.0, "exp_avg": _zeros_like(p), "exp_avg_sq": _zeros_like(p)}

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        grad = _decay(param, grad, group)
        (beta1, beta2), eps, step, lr = group["betas"], group["eps"], state["step"], group["lr"]
        psi = group["momentum_decay"]
        mu = beta1 * (1 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((step + 1) * psi))
        state["mu_product"] *= mu
        product = state["mu_product"]
        exp_avg, exp_avg_sq = state["exp_avg"]._data, state["exp_avg_sq"]._data
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        xp = backend.get_array_module(param)
        denominator = xp.sqrt(exp_avg_sq / (1 - beta2**step)) + eps
        param -= (lr * (1 - mu) / (1 - product)) * grad / denominator
        param -= (lr * mu_next / (1 - product * mu_next)) * exp_avg / denominator


class RAdam(Adam):
    """RAdam (Liu et al. 2019), PyTorch's rule. For each step t, with g ← g + λθ (or θ ← θ(1 - γλ) with
    ``decoupled_weight_decay``):

    m ← β₁ m + (1 - β₁) g;  v ← β₂ v + (1 - β₂) g²;  m̂ = m / (1 - β₁ᵗ);
    ρ_∞ = 2 / (1 - β₂) - 1;  ρ_t = ρ_∞ - 2t β₂ᵗ / (1 - β₂ᵗ);
    if ρ_t > 5:  θ ← θ - γ m̂ r_t √(1 - β₂ᵗ) / (√v + ε),
    r_t = √((ρ_t - 4)(ρ_t - 2) ρ_∞ / ((ρ_∞ - 4)(ρ_∞ - 2) ρ_t));  otherwise θ ← θ - γ m̂.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )
        Optimizer.__init__(self, params, defaults)

    def _init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"exp_avg": _zeros_like(p), "exp_avg_sq": _zeros_like(p)}

    def _update(self, param: Any, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        grad = _decay(param, grad, group)
        (beta1, beta2), eps, step, lr = group["betas"], group["eps"], state["step"], group["lr"]
        exp_avg, exp_avg_sq = state["exp_avg"]._data, state["exp_avg_sq"]._data
        exp_avg *= beta1
        exp_avg += (1 - beta1) * grad
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        corrected = exp_avg / (1 - beta1**step)
        rho_inf = 2 / (1 - beta2) - 1
        rho = rho_inf - 2 * step * beta2**step / (1 - beta2**step)
        if rho > 5:
            xp = backend.get_array_module(param)
            rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            adaptive = math.sqrt(1 - beta2**step) / (xp.sqrt(exp_avg_sq) + eps)
            param -= lr * rect * corrected * adaptive
        else:
            param -= lr * corrected
