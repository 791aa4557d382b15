"""Warm-up and cycle schedulers (re-exported by ``optim.lr_scheduler``), with PyTorch's semantics:

| scheduler | η(e) |
| --- | --- |
| ``LinearLR`` | η₀ · (s + (f - s) · min(e, T) / T), s = start_factor, f = end_factor, T = total_iters |
| ``ConstantLR`` | η₀ · factor for e < T, η₀ from e = T on |
| ``SequentialLR`` | the k-th scheduler's rates, restarted at epoch 0 at milestone k |
| ``OneCycleLR`` | η₀ = max_lr / div_factor → max_lr (``pct_start`` of the steps) → η₀ / final_div_factor |

``LinearLR`` and ``ConstantLR`` compute the next rate from the current one (so they compose with other
schedulers), as PyTorch; ``OneCycleLR`` is stepped once per batch and computes each rate in closed form.
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from typing import Any

from .lr_scheduler import LRScheduler, _check_optimizer
from .optimizer import Optimizer

__all__ = ["ConstantLR", "LinearLR", "OneCycleLR", "SequentialLR"]


def _positive_int(name: str, argument: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {argument} must be a positive int, got {value!r}")
    return value


class LinearLR(LRScheduler):
    """η(e) = η₀ (s + (f - s) min(e, T) / T): the rate scaled linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` epochs, then kept."""

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = _positive_int("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, groups = self.last_epoch, self.optimizer.param_groups
        if e == 0:
            return [group["lr"] * self.start_factor for group in groups]
        if e > self.total_iters:
            return [group["lr"] for group in groups]
        change = self.end_factor - self.start_factor
        ratio = 1 + change / (self.total_iters * self.start_factor + (e - 1) * change)
        return [group["lr"] * ratio for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """η(e) = η₀ · factor for e < ``total_iters``, η₀ afterwards (a constant warm-up)."""

    def __init__(
        self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1
    ) -> None:
        if not 0 < factor <= 1:
            raise ValueError(f"ConstantLR: factor must be in (0, 1], got {factor}")
        self.factor = factor
        self.total_iters = _positive_int("ConstantLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, groups = self.last_epoch, self.optimizer.param_groups
        if e == 0:
            return [group["lr"] * self.factor for group in groups]
        if e != self.total_iters:
            return [group["lr"] for group in groups]
        return [group["lr"] / self.factor for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        factor = 1.0 if self.last_epoch >= self.total_iters else self.factor
        return [base * factor for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Runs ``schedulers[0]`` until ``milestones[0]``, then ``schedulers[1]`` (restarted at its epoch 0)
    until ``milestones[1]``, and so on: ``SequentialLR(opt, [LinearLR(...), CosineAnnealingLR(...)],
    milestones=[5])`` is a linear warm-up followed by cosine annealing. All schedulers must be built on
    ``optimizer``; there is one milestone fewer than schedulers, in increasing order."""

    def __init__(
        self, optimizer: Optimizer, schedulers: list[LRScheduler], milestones: list[int], last_epoch: int = -1
    ) -> None:
        _check_optimizer("SequentialLR", optimizer)
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("SequentialLR: expects at least one scheduler")
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler) or not hasattr(scheduler, "get_lr"):
                raise TypeError(
                    f"SequentialLR: scheduler {i} is a {type(scheduler).__name__}, not a scheduler"
                )
            if type(scheduler).__name__ == "ReduceLROnPlateau":
                raise ValueError("SequentialLR: ReduceLROnPlateau needs a metric and cannot be sequenced")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: scheduler {i} is built on another optimizer")
        milestones = list(milestones)
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: {len(schedulers)} schedulers need {len(schedulers) - 1} milestones, got "
                f"{len(milestones)}"
            )
        if any(b <= a for a, b in itertools.pairwise(milestones)):
            raise ValueError(f"SequentialLR: milestones must increase, got {milestones}")
        self.optimizer = optimizer
        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        # Each scheduler's constructor already took its step 0: undo those, and start only the first.
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for scheduler in schedulers:
            scheduler.last_epoch -= 1
        schedulers[0]._initial_step()
        self._last_lr = schedulers[0].get_last_lr()

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch: step the scheduler in charge, restarting it at a milestone."""
        if epoch is not None:
            raise TypeError("SequentialLR.step() takes no epoch")
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                scheduler.step(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        """Its own attributes, with each scheduler's state dict under ``_schedulers``."""
        state = {
            key: value for key, value in self.__dict__.items() if key not in ("optimizer", "_schedulers")
        }
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes and each scheduler's state."""
        state = dict(state_dict)
        saved = state.pop("_schedulers", [])
        if len(saved) != len(self._schedulers):
            raise ValueError(
                f"SequentialLR.load_state_dict: {len(saved)} saved schedulers for {len(self._schedulers)}"
            )
        super().load_state_dict(state)
        for scheduler, scheduler_state in zip(self._schedulers, saved):
            scheduler.load_state_dict(scheduler_state)


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin 2018), stepped once per batch for ``total_steps`` (or ``epochs``
    × ``steps_per_epoch``) steps. Phases, each annealed (``"cos"``: end + (start - end)(1 + cos πp)/2,
    ``"linear"``: start + (end - start) p, p the fraction of the phase done):
    η₀ = max_lr / div_factor → max_lr over the first ``pct_start`` · T - 1 steps, then → η₀ /
    final_div_factor at step T - 1 (with ``three_phase``: back to η₀ by step 2 pct_start T - 2 first).
    With ``cycle_momentum`` the momentum (or Adam's β₁) goes max_momentum → base_momentum → max_momentum
    alongside. Stepping past T raises, as PyTorch."""

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        name = "OneCycleLR"
        _check_optimizer(name, optimizer)
        if total_steps is not None:
            self.total_steps = _positive_int(name, "total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = _positive_int(name, "epochs", epochs) * _positive_int(
                name, "steps_per_epoch", steps_per_epoch
            )
        else:
            raise ValueError(f"{name}: give total_steps, or both epochs and steps_per_epoch")
        if isinstance(pct_start, bool) or not isinstance(pct_start, int | float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be a number in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        steps = self.total_steps
        if three_phase:
            self._phases = [
                (float(pct_start * steps) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * steps) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (steps - 1.0, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (float(pct_start * steps) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (steps - 1.0, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        groups = optimizer.param_groups
        max_lrs = _per_group_values(name, "max_lr", max_lr, len(groups))
        if last_epoch == -1:
            for group, top in zip(groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(
                    f"{name}: optimizer must support momentum or betas with cycle_momentum enabled"
                )
            self.use_beta1 = "betas" in optimizer.defaults
            bases = _per_group_values(name, "base_momentum", base_momentum, len(groups))
            tops = _per_group_values(name, "max_momentum", max_momentum, len(groups))
            if last_epoch == -1:
                for group, low, high in zip(groups, bases, tops):
                    self._set_momentum(group, high)
                    group["base_momentum"], group["max_momentum"] = low, high
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict[str, Any], value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, fraction: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)
        return (end - start) * fraction + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {step} times; the specified number of total steps is "
                f"{self.total_steps}"
            )
        rates = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr_from, lr_to, momentum_from, momentum_to) in enumerate(self._phases):
                if step <= end_step or i == len(self._phases) - 1:
                    fraction = (step - start_step) / (end_step - start_step)
                    rate = self._anneal(group[lr_from], group[lr_to], fraction)
                    if self.cycle_momentum:
                        momentum = self._anneal(group[momentum_from], group[momentum_to], fraction)
                    break
                start_step = end_step
            rates.append(rate)
            if self.cycle_momentum:
                self._set_momentum(group, momentum)
        return rates


def _per_group_values(name: str, argument: str, value: Any, count: int) -> list[float]:
    if isinstance(value, list | tuple):
        if len(value) != count:
            raise ValueError(f"{name}: expected {count} values for {argument}, got {len(value)}")
        return list(value)
    return [value] * count
