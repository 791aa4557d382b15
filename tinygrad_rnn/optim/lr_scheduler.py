"""Learning-rate schedulers with PyTorch's names, semantics and state dicts.

A scheduler is built on an optimizer after its parameter groups exist. Construction records each
group's ``initial_lr`` (the base rate η₀) and performs step 0, so ``last_epoch`` is 0 and the rates are
those of epoch 0. Call ``scheduler.step()`` once per epoch *after* ``optimizer.step()``; each call adds
one to ``last_epoch`` (e) and sets every group's ``lr``. The rates are computed recursively from the
current ones, as PyTorch does, so two schedulers on one optimizer compose; each class states its
closed form, which is what the recursion gives when it runs alone:

| scheduler | η(e) |
| --- | --- |
| ``LambdaLR`` | η₀ · λ(e) |
| ``MultiplicativeLR`` | η(e-1) · λ(e) |
| ``StepLR`` | η₀ · γ^⌊e / step_size⌋ |
| ``MultiStepLR`` | η₀ · γ^(number of milestones ≤ e) |
| ``ExponentialLR`` | η₀ · γ^e |
| ``CosineAnnealingLR`` | η_min + (η₀ - η_min)(1 + cos(π e / T_max)) / 2 |
| ``ReduceLROnPlateau`` | η ← max(η · factor, min_lr) after over ``patience`` epochs without improvement |

``get_last_lr()`` gives the rates the last step set; ``state_dict()`` holds everything but the optimizer
(and the functions of ``LambdaLR``), and ``load_state_dict`` restores it.
"""

from __future__ import annotations

import bisect
import functools
import math
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from .optimizer import Optimizer

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "ReduceLROnPlateau",
    "StepLR",
]


def _check_optimizer(scheduler: str, optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{scheduler}: expected an optimizer, got {type(optimizer).__name__}")


class LRScheduler:
    """Base class: ``base_lrs``, ``last_epoch``, ``step()``, ``get_last_lr()`` and state dicts.

    Subclasses compute the next rates in :meth:`get_lr` (recursive form, from the groups' current
    ``lr``) and may give :meth:`_get_closed_form_lr` for ``step(epoch)``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
            raise ValueError(f"{name}: last_epoch must be an int >= -1, got {last_epoch!r}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"{name}: param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        "an optimizer (last_epoch != -1); build the scheduler with last_epoch=-1 first"
                    )
        _track_steps(optimizer)
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        """The rates for ``last_epoch`` (already advanced), computed from the current ones."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The rates the last :meth:`step` set, one per parameter group."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (or, deprecated as in PyTorch, jump to ``epoch``) and set the rates."""
        self._step_count += 1
        if self._step_count == 2 and not getattr(self.optimizer, "_stepped", True):
            warnings.warn(
                "Detected call of `lr_scheduler.step()` before `optimizer.step()`: call `optimizer.step()` "
                "first, or the first value of the schedule is skipped (PyTorch's order)",
                UserWarning,
                stacklevel=2,
            )
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            warnings.warn(
                "passing an epoch to scheduler.step() is deprecated (as in PyTorch); call step() each epoch",
                DeprecationWarning,
                stacklevel=2,
            )
            self.last_epoch = epoch
            closed_form = getattr(self, "_get_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore attributes saved by :meth:`state_dict`."""
        if not isinstance(state_dict, dict):
            kind = type(state_dict).__name__
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict, got {kind}")
        self.__dict__.update({key: _as_list(value) for key, value in state_dict.items()})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self.get_last_lr()})"


def _track_steps(optimizer: Optimizer) -> None:
    """Wrap the optimizer's ``step`` (this instance only) to note that it ran, so that a scheduler
    stepped first can warn, as PyTorch does; works for subclasses that override ``step`` too."""
    if getattr(optimizer.step, "_notes_steps", False):
        return
    step = optimizer.step
    optimizer._stepped = False  # type: ignore[attr-defined]

    @functools.wraps(step)
    def noted_step(*args: Any, **kwargs: Any) -> Any:
        optimizer._stepped = True  # type: ignore[attr-defined]
        return step(*args, **kwargs)

    noted_step._notes_steps = True  # type: ignore[attr-defined]
    optimizer.step = noted_step  # type: ignore[method-assign]


def _as_list(value: Any) -> Any:
    # tg.load gives back lists as saved; a tuple would only come from a hand-made dict.
    return list(value) if isinstance(value, tuple) else value


def _per_group(name: str, what: str, value: Any, optimizer: Optimizer) -> list[Any]:
    if isinstance(value, list | tuple):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name}: expected {len(optimizer.param_groups)} {what}, but got {len(value)}")
        return list(value)
    return [value] * len(optimizer.param_groups)


class LambdaLR(LRScheduler):
    """η(e) = η₀ · λ(e), with one function for all groups or a list of one per group."""

    def __init__(
        self,
        optimizer: Optimizer,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(type(self).__name__, optimizer)
        self.lr_lambdas = _per_group(type(self).__name__, "lr_lambdas", lr_lambda, optimizer)
        for function in self.lr_lambdas:
            if not callable(function):
                raise TypeError(f"{type(self).__name__}: lr_lambda must be callable, got {function!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * function(self.last_epoch) for base, function in zip(self.base_lrs, self.lr_lambdas)]

    def state_dict(self) -> dict[str, Any]:
        """As PyTorch: functions are not saved (None); a callable object's attributes are."""
        state = {key: value for key, value in self.__dict__.items() if key not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [
            None if _is_function(function) else dict(function.__dict__) for function in self.lr_lambdas
        ]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes; saved attributes of callable objects go back into those objects."""
        state = dict(state_dict)
        saved = state.pop("lr_lambdas", None) or []
        super().load_state_dict(state)
        for function, attributes in zip(self.lr_lambdas, saved):
            if attributes is not None:
                function.__dict__.update(attributes)


def _is_function(value: Any) -> bool:
    return isinstance(value, types.FunctionType | types.MethodType) or not hasattr(value, "__dict__")


class MultiplicativeLR(LambdaLR):
    """η(e) = η(e-1) · λ(e) for e > 0."""

    def get_lr(self) -> list[float]:
        if self.last_epoch > 0:
            return [
                group["lr"] * function(self.last_epoch)
                for group, function in zip(self.optimizer.param_groups, self.lr_lambdas)
            ]
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """η(e) = η₀ · γ^⌊e / step_size⌋: multiply by ``gamma`` every ``step_size`` epochs."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """η(e) = η₀ · γ^(number of milestones ≤ e): multiply by ``gamma`` at each milestone epoch."""

    def __init__(
        self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return [group["lr"] for group in self.optimizer.param_groups]
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore attributes; the milestones come back as a counter (``tg.load`` gives a plain dict)."""
        super().load_state_dict(state_dict)
        self.milestones = Counter({int(epoch): int(count) for epoch, count in self.milestones.items()})

    def _get_closed_form_lr(self) -> list[float]:
        passed = bisect.bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return [base * self.gamma**passed for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """η(e) = η₀ · γ^e."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """η(e) = η_min + (η₀ - η_min)(1 + cos(π e / T_max)) / 2 (SGDR without restarts); past ``T_max``
    the rate follows the cosine back up, as in PyTorch."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, period, low = self.last_epoch, self.T_max, self.eta_min
        groups = self.optimizer.param_groups
        if e == 0:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and e > 0:  # resumed at last_epoch > 0: start from the closed form
            return self._get_closed_form_lr()
        if (e - 1 - period) % (2 * period) == 0:
            # The ratio below divides by zero at the bottom of the cosine: take the increment instead.
            return [
                group["lr"] + (base - low) * (1 - math.cos(math.pi / period)) / 2
                for base, group in zip(self.base_lrs, groups)
            ]
        ratio = (1 + math.cos(math.pi * e / period)) / (1 + math.cos(math.pi * (e - 1) / period))
        return [ratio * (group["lr"] - low) + low for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return [self.eta_min + (base - self.eta_min) * cosine for base in self.base_lrs]


class ReduceLROnPlateau(LRScheduler):
    """Multiply the rates by ``factor`` when a metric has not improved for more than ``patience`` epochs.

    ``step(metric)`` once per epoch. Improvement (mode ``"min"``): metric < best·(1 - threshold) in
    ``"rel"`` threshold mode, metric < best - threshold in ``"abs"``; mirrored for ``"max"``. After a
    reduction, ``cooldown`` epochs pass before bad epochs count again. A rate never goes below its
    ``min_lr``, and a change smaller than ``eps`` is skipped.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        if factor >= 1.0:
            raise ValueError(f"{name}: factor should be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode {mode!r} is unknown; expected 'min' or 'max'")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold mode {threshold_mode!r} is unknown; expected 'rel' or 'abs'")
        self.optimizer = optimizer
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.mode, self.threshold_mode = mode, threshold_mode
        self.cooldown, self.eps = cooldown, eps
        self.min_lrs = _per_group(name, "min_lrs", min_lr, optimizer)
        self.default_min_lr = None if isinstance(min_lr, list | tuple) else min_lr
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.best = self.mode_worse
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._step_count = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record one epoch's metric (a number or a one-element Tensor) and reduce the rates if due."""
        current = float(metrics.item() if hasattr(metrics, "item") else metrics)
        self._step_count += 1
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(
                "passing an epoch to scheduler.step() is deprecated (as in PyTorch)",
                DeprecationWarning,
                stacklevel=2,
            )
        self.last_epoch = epoch
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
            old = group["lr"]
            new = max(old * self.factor, floor)
            if old - new > self.eps:
                group["lr"] = new

    @property
    def in_cooldown(self) -> bool:
        """True while the epochs after a reduction are still being waited out."""
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than the threshold."""
        relative = self.threshold_mode == "rel"
        if self.mode == "min":
            return a < (best * (1 - self.threshold) if relative else best - self.threshold)
        return a > (best * (1 + self.threshold) if relative else best + self.threshold)


# The name older PyTorch code subclasses.
_LRScheduler = LRScheduler

# isort: split
# Warm-up and cycle schedulers (warmup_schedulers.py)
from .warmup_schedulers import ConstantLR, LinearLR, OneCycleLR, SequentialLR  # noqa: E402

__all__ += ["ConstantLR", "LinearLR", "OneCycleLR", "SequentialLR"]
