"""L-BFGS with PyTorch's closure API, options, iteration and line search.

One ``step(closure)`` runs up to ``max_iter`` quasi-Newton iterations on the parameters seen as one
flat vector x (in the order given), re-evaluating the loss and its gradient through ``closure``:

1. The direction: at the first iteration d = -g; afterwards, with s = x_k - x_{k-1} and
   y = g_k - g_{k-1} stored when the curvature yᵀs > 1e-10 (the last ``history_size`` pairs),
   d = -H g from the two-loop recursion with H₀ = (yᵀs / yᵀy) I of the newest pair.
2. The step: t = lr · min(1, 1/‖g‖₁) at the very first iteration, else t = lr. Without a line search
   x ← x + t d and the closure is evaluated once; with ``line_search_fn="strong_wolfe"`` t is chosen
   (cubic interpolation, then zoom) so that
   f(x + t d) ≤ f(x) + c₁ t gᵀd  and  |∇f(x + t d)ᵀd| ≤ c₂ |gᵀd|   (c₁ = 1e-4, c₂ = 0.9).
3. Stop when ‖g‖_∞ ≤ ``tolerance_grad``, gᵀd > -``tolerance_change``, ‖t d‖_∞ ≤ ``tolerance_change``,
   |f_k - f_{k-1}| < ``tolerance_change``, or after ``max_iter`` iterations / ``max_eval`` evaluations.

The history (``old_dirs`` = y, ``old_stps`` = s, ``ro`` = 1/yᵀs, ``H_diag``, the last direction ``d`` and
step ``t``) persists between calls in the state of the first parameter, as in PyTorch, so repeated
``step(closure)`` calls continue one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .. import backend
from ..autograd import enable_grad, mark_optimizer_step, no_grad
from ..tensor import Tensor
from .optimizer import Optimizer, _number

__all__ = ["LBFGS"]

_FLAT_KEYS = ("d", "prev_flat_grad")
_FLAT_LIST_KEYS = ("old_dirs", "old_stps")


def _count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"LBFGS: {name} must be a positive int, got {value!r}")


class LBFGS(Optimizer):
    """L-BFGS (PyTorch's algorithm; see the module docstring for the iteration).

    Args:
        params: the parameters (a single group: per-group options are not supported, as in PyTorch).
        lr: the step length factor (default 1).
        max_iter: iterations per ``step`` (default 20).
        max_eval: closure evaluations per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad: stop when every gradient entry is at most this in size (default 1e-7).
        tolerance_change: stop on a smaller change of loss or parameters (default 1e-9).
        history_size: the number of (s, y) pairs kept (default 100).
        line_search_fn: ``None`` (fixed step) or ``"strong_wolfe"``.

    ``step(closure)`` needs a closure that zeroes the gradients, computes the loss, calls
    ``backward()`` and returns the loss; it returns the loss of the first evaluation.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        if max_eval is None:
            max_eval = max_iter * 5 // 4 if isinstance(max_iter, int) else max_iter
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )
        super().__init__(params, defaults)
        self._params: list[Tensor] = self.param_groups[0]["params"]
        devices = {p.device for p in self._params}
        if len(devices) > 1:
            raise ValueError(f"LBFGS: all parameters must be on one device, got {sorted(map(str, devices))}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Only the first group is accepted: L-BFGS treats all parameters as one vector."""
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any]) -> None:
        _number("learning rate", group["lr"])
        _count("max_iter", group["max_iter"])
        _count("max_eval", group["max_eval"])
        _count("history_size", group["history_size"])
        _number("tolerance_grad", group["tolerance_grad"])
        _number("tolerance_change", group["tolerance_change"])
        if group["line_search_fn"] not in (None, "strong_wolfe"):
            raise ValueError(
                f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {group['line_search_fn']!r}"
            )

    # ---- the parameters as one flat vector ----------------------------------------------------------

    def _flat_grad(self) -> Any:
        xp = self._params[0]._xp
        parts = []
        for p in self._params:
            if p.grad is None:
                parts.append(xp.zeros(p._data.size, dtype=p.dtype))
            else:
                parts.append(p.grad._data.reshape(-1))
        return xp.concatenate(parts)

    def _add(self, t: float, direction: Any) -> None:
        """x ← x + t d, in place on every parameter (bumping its version)."""
        offset = 0
        for p in self._params:
            size = p._data.size
            p._data += (t * direction[offset : offset + size]).reshape(p.shape).astype(p.dtype, copy=False)
            p._bump_version()
            offset += size

    def _set(self, saved: list[Any]) -> None:
        for p, array in zip(self._params, saved):
            p._data[...] = array
            p._bump_version()

    def _evaluate(self, closure: Callable[[], Any]) -> tuple[Any, float]:
        with enable_grad():
            loss = closure()
        if loss is None:
            raise RuntimeError("LBFGS: the closure must return the loss")
        return loss, float(loss.item() if isinstance(loss, Tensor) else loss)

    # ---- the iteration -----------------------------------------------------------------------------

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations; returns the loss the closure gave first."""
        if closure is None:
            raise RuntimeError(
                "LBFGS.step needs a closure that clears the gradients, computes the loss, calls "
                "backward() and returns the loss"
            )
        with no_grad():
            result = self._run(closure)
        mark_optimizer_step()
        return result

    def _run(self, closure: Callable[[], Any]) -> Any:
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]
        xp = self._params[0]._xp

        state = self.state.setdefault(self._params[0], {"func_evals": 0, "n_iter": 0})
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        first_loss, loss = self._evaluate(closure)
        evaluations = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if float(xp.abs(flat_grad).max()) <= tolerance_grad:
            return first_loss

        raw = _unwrap(state)
        direction, t = raw.get("d"), raw.get("t")
        old_dirs, old_stps, ro = raw.get("old_dirs", []), raw.get("old_stps", []), raw.get("ro", [])
        h_diag, prev_loss = raw.get("H_diag", 1.0), raw.get("prev_loss")
        prev_flat_grad = raw.get("prev_flat_grad")

        iterations = 0
        while iterations < max_iter:
            iterations += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                direction = -flat_grad
                old_dirs, old_stps, ro, h_diag = [], [], [], 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = direction * t
                ys = float(xp.dot(y, s))
                if ys > 1e-10:  # keep only pairs with positive curvature, so H stays positive definite
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(xp.dot(y, y))
                direction = _two_loop(xp, flat_grad, old_stps, old_dirs, ro, h_diag)
            prev_flat_grad = flat_grad.copy()
            prev_loss = loss

            t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr if state["n_iter"] == 1 else lr
            slope = float(xp.dot(flat_grad, direction))
            if slope > -tolerance_change:
                break

            used = 0
            if group["line_search_fn"] == "strong_wolfe":
                start = [p._data.copy() for p in self._params]

                def at(step: float, start: list = start, direction: Any = direction) -> tuple[float, Any]:
                    self._add(step, direction)
                    value = self._evaluate(closure)[1]
                    grad = self._flat_grad()
                    self._set(start)
                    return value, grad

                loss, flat_grad, t, used = _strong_wolfe(
                    at, xp, t, direction, loss, flat_grad, slope, tolerance_change=tolerance_change
                )
                self._add(t, direction)
                converged = float(xp.abs(flat_grad).max()) <= tolerance_grad
            else:
                self._add(t, direction)
                converged = False
                if iterations != max_iter:
                    loss = self._evaluate(closure)[1]
                    flat_grad = self._flat_grad()
                    converged = float(xp.abs(flat_grad).max()) <= tolerance_grad
                    used = 1
            evaluations += used
            state["func_evals"] += used

            if iterations == max_iter or evaluations >= max_eval or converged:
                break
            if float(xp.abs(direction * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        wrap = _wrap
        state.update(
            d=wrap(direction),
            t=t,
            old_dirs=[wrap(a) for a in old_dirs],
            old_stps=[wrap(a) for a in old_stps],
            ro=list(ro),
            H_diag=h_diag,
            prev_flat_grad=wrap(prev_flat_grad),
            prev_loss=prev_loss,
        )
        return first_loss

    # ---- state dicts: the flat buffers have the size of all parameters together ------------------------

    def _restore(self, p: Tensor, key: str, value: Any) -> Any:
        if key in _FLAT_LIST_KEYS and isinstance(value, list | tuple):
            return [self._restore(p, key, item) for item in value]
        if isinstance(value, Tensor):
            value = value._data
        if key in _FLAT_KEYS + _FLAT_LIST_KEYS and backend.is_array(value) and value.ndim > 0:
            size = sum(q._data.size for q in self._params)
            if tuple(value.shape) != (size,):
                raise ValueError(
                    f"LBFGS.load_state_dict: buffer {key!r} has shape {tuple(value.shape)}, the parameters "
                    f"hold {size} numbers in all"
                )
            array = backend.to_device(value, p.device).astype(p.dtype, copy=True)
            return Tensor._make(array, False, None, 0)
        if key == "ro" and isinstance(value, list | tuple):
            return [float(item) for item in value]
        return super()._restore(p, key, value)


def _wrap(array: Any) -> Any:
    return None if array is None else Tensor._make(array, False, None, 0)


def _unwrap(state: dict[str, Any]) -> dict[str, Any]:
    """The state's Tensors as raw arrays (copies, so the iteration never writes into saved buffers)."""
    raw: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            raw[key] = value._data.copy()
        elif isinstance(value, list):
            raw[key] = [item._data.copy() if isinstance(item, Tensor) else item for item in value]
        else:
            raw[key] = value
    return raw


def _two_loop(
    xp: Any, grad: Any, steps: list[Any], changes: list[Any], ro: list[float], h_diag: float
) -> Any:
    """d = -H g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4), H₀ = h_diag · I."""
    q = -grad
    alphas = [0.0] * len(steps)
    for i in range(len(steps) - 1, -1, -1):
        alphas[i] = float(xp.dot(steps[i], q)) * ro[i]
        q = q - alphas[i] * changes[i]
    r = q * h_diag
    for i in range(len(steps)):
        beta = float(xp.dot(changes[i], r)) * ro[i]
        r = r + (alphas[i] - beta) * steps[i]
    return r


def _cubic_minimum(
    x1: float,
    f1: float,
    g1: float,
    x2: float,
    f2: float,
    g2: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    """The minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clipped to
    ``bounds`` (default: the interval between x1 and x2); the midpoint when the cubic has no minimum."""
    low, high = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    square = d1 * d1 - g1 * g2
    if square < 0:
        return (low + high) / 2
    d2 = math.sqrt(square)
    if x1 <= x2:
        position = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        position = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(position, low), high)


def _strong_wolfe(
    at: Callable[[float], tuple[float, Any]],
    xp: Any,
    t: float,
    direction: Any,
    loss: float,
    grad: Any,
    slope: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple[float, Any, float, int]:
    """A step t along ``direction`` meeting the strong Wolfe conditions (Nocedal & Wright, Algorithms
    3.5 and 3.6): bracket a point by growing t with cubic interpolation, then zoom inside the bracket.

    ``at(t)`` returns (f, ∇f) at x + t d. Returns (f, ∇f, t, evaluations) of the step chosen.
    """
    direction_size = float(xp.abs(direction).max())
    new_loss, new_grad = at(t)
    evaluations = 1
    new_slope = float(xp.dot(new_grad, direction))
    t_prev, loss_prev, grad_prev, slope_prev = 0.0, loss, grad, slope
    done = False
    tries = 0
    bracket: list[list[Any]] = []  # entries [t, f, g, gᵀd]
    while tries < max_ls:
        if new_loss > loss + c1 * t * slope or (tries > 1 and new_loss >= loss_prev):
            bracket = [[t_prev, loss_prev, grad_prev, slope_prev], [t, new_loss, new_grad, new_slope]]
            break
        if abs(new_slope) <= -c2 * slope:
            bracket = [[t, new_loss, new_grad, new_slope]]
            done = True
            break
        if new_slope >= 0:
            bracket = [[t_prev, loss_prev, grad_prev, slope_prev], [t, new_loss, new_grad, new_slope]]
            break
        # Still descending with sufficient decrease: extrapolate to a longer step.
        grown = _cubic_minimum(
            t_prev, loss_prev, slope_prev, t, new_loss, new_slope, bounds=(t + 0.01 * (t - t_prev), t * 10)
        )
        t_prev, loss_prev, grad_prev, slope_prev = t, new_loss, new_grad, new_slope
        t = grown
        new_loss, new_grad = at(t)
        evaluations += 1
        new_slope = float(xp.dot(new_grad, direction))
        tries += 1
    if tries == max_ls:
        bracket = [[0.0, loss, grad, slope], [t, new_loss, new_grad, new_slope]]

    # Zoom: shrink the bracket [low, high] (low has the smaller loss) until a point satisfies both conditions.
    low, high = (0, 1) if len(bracket) == 1 or bracket[0][1] <= bracket[-1][1] else (1, 0)
    stalled = False
    while not done and tries < max_ls:
        if abs(bracket[1][0] - bracket[0][0]) * direction_size < tolerance_change:
            break
        a, b = bracket
        t = _cubic_minimum(a[0], a[1], a[3], b[0], b[1], b[3])
        left, right = min(a[0], b[0]), max(a[0], b[0])
        margin = 0.1 * (right - left)
        # A point too close to an end makes little progress: move it inside, unless the last one did well.
        if min(right - t, t - left) < margin:
            if stalled or t >= right or t <= left:
                t = right - margin if abs(t - right) < abs(t - left) else left + margin
                stalled = False
            else:
                stalled = True
        else:
            stalled = False
        new_loss, new_grad = at(t)
        evaluations += 1
        new_slope = float(xp.dot(new_grad, direction))
        tries += 1
        if new_loss > loss + c1 * t * slope or new_loss >= bracket[low][1]:
            bracket[high] = [t, new_loss, new_grad, new_slope]
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(new_slope) <= -c2 * slope:
                done = True
            elif new_slope * (bracket[high][0] - bracket[low][0]) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = [t, new_loss, new_grad, new_slope]
    t, new_loss, new_grad, _ = bracket[low]
    return new_loss, new_grad, t, evaluations
