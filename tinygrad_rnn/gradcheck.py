"""Finite-difference gradient checks, public so users can check their own ops and modules.

``gradcheck`` compares every analytic partial derivative with a central difference
(f(x + εe_i) - f(x - εe_i)) / 2ε in float64. ``gradcheck_projection`` checks one random direction v
per input instead: the analytic directional derivative ⟨∇f, v⟩ against (f(x + εv) - f(x - εv)) / 2ε,
which costs two forward passes whatever the size, for inputs too large to perturb one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import backend
from .tensor import Tensor


def _private_generator() -> Any:
    """A generator of its own, so a check neither consumes nor depends on the seeded stream of
    ``tg.manual_seed`` (a test that seeds, checks, then samples gets the numbers it expects)."""
    return backend.np.random.default_rng(20_240_601)


def _scalar_output(fn: Callable[..., Any], inputs: Sequence[Tensor], weights: list) -> Any:
    """f(inputs) reduced to a scalar as Σ w ⊙ out, with fixed random weights for each output, so that a
    wrong gradient cannot hide behind a symmetric reduction."""
    out = fn(*inputs)
    outs = out if isinstance(out, tuple | list) else (out,)
    outs = [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]
    if not weights:
        generator = _private_generator()
        for o in outs:
            w = generator.standard_normal(o.shape)
            weights.append(backend.to_device(w.astype(o.dtype), o.device))
    total = None
    for o, w in zip(outs, weights):
        term = (o * Tensor._make(w, False, None, 0)).sum()
        total = term if total is None else total + term
    return total


def _analytic(fn: Callable[..., Any], inputs: Sequence[Tensor], weights: list) -> list:
    """The gradients of the weighted output; the inputs' own ``.grad`` is left as it was."""
    kept = [t.grad for t in inputs]
    for t in inputs:
        t.grad = None
    try:
        total = _scalar_output(fn, inputs, weights)
        if total is not None and total.requires_grad:
            total.backward()
        return [
            None
            if not t.requires_grad
            else (backend.to_numpy(t.grad._data).copy() if t.grad is not None else None)
            for t in inputs
        ]
    finally:
        for t, grad in zip(inputs, kept):
            t.grad = grad


def _evaluate(fn: Callable[..., Any], inputs: Sequence[Tensor], weights: list) -> float:
    from .autograd import no_grad

    with no_grad():
        total = _scalar_output(fn, inputs, weights)
    return 0.0 if total is None else float(total.item())


def _require_float64(inputs: Sequence[Tensor]) -> None:
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"gradcheck: input {i} is a {type(t).__name__}, expected a Tensor")
        if t.requires_grad and t.dtype != backend.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {t.dtype}; finite differences need float64")
        if t.requires_grad and not t.is_leaf:
            # Its gradient is not kept in .grad, so the check would report a mismatch that is not there.
            raise ValueError(
                f"gradcheck: input {i} (shape {t.shape}) is not a leaf; pass x.detach().requires_grad_()"
            )


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    raise_exception: bool = True,
) -> bool:
    """Check the gradients of ``fn(*inputs)`` against central differences, element by element.

    Every input with ``requires_grad=True`` (float64) is perturbed entry by entry. ``fn`` may return a
    tensor or a tuple of tensors. Passes when |analytic - numeric| <= atol + rtol * |numeric| everywhere.
    Raises ``AssertionError`` naming the input and entry (or returns False) on a mismatch.

    The central difference is off by about ε²·|f‴| + 1e-16·|f|/ε, near 1e-10 for values of order one:
    the default tolerances sit well above that, yet report a gradient off by 1e-4 of itself (PyTorch's
    rtol=1e-3 would let that pass).
    """
    inputs = list(inputs)
    _require_float64(inputs)
    weights: list = []
    analytic = _analytic(fn, inputs, weights)
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        # Perturb through a multi-index, not a flattened view: reshape copies a non-contiguous array
        # (a transposed input), and perturbing a copy would leave the input unchanged.
        numeric = []
        for position in backend.np.ndindex(*t.shape):
            original = t._data[position].item()
            t._data[position] = original + eps
            plus = _evaluate(fn, inputs, weights)
            t._data[position] = original - eps
            minus = _evaluate(fn, inputs, weights)
            t._data[position] = original
            numeric.append((plus - minus) / (2 * eps))
        got = analytic[i]
        expected = backend.np.asarray(numeric).reshape(t.shape) if t.numel() else backend.np.zeros(t.shape)
        if got is None:
            got = backend.np.zeros(t.shape)
        error = backend.np.abs(got - expected)
        bad = error > atol + rtol * backend.np.abs(expected)
        if bad.any():
            where = tuple(int(k) for k in backend.np.argwhere(bad)[0])
            message = (
                f"gradcheck: input {i} (shape {t.shape}) entry {where}: analytic {got[where]:.8g}, "
                f"numeric {expected[where]:.8g}; max abs error {error.max():.3g}"
            )
            if raise_exception:
                raise AssertionError(message)
            return False
    return True


def gradcheck_projection(
    fn: Callable[..., Any],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    trials: int = 2,
    raise_exception: bool = True,
) -> bool:
    """Check ``fn``'s gradients along random directions: ⟨∇f, v⟩ against a central difference along v.

    Cheap for large inputs (two forward passes per trial). Passes when the two agree to
    ``atol + rtol * |numeric|`` for every trial.
    """
    inputs = list(inputs)
    _require_float64(inputs)
    weights: list = []
    analytic = _analytic(fn, inputs, weights)
    generator = _private_generator()
    for _ in range(trials):
        directions = [generator.standard_normal(t.shape) if t.requires_grad else None for t in inputs]
        predicted = sum(
            float((g * v).sum()) for g, v in zip(analytic, directions) if g is not None and v is not None
        )
        originals = [t._data.copy() for t in inputs]
        for t, v in zip(inputs, directions):
            if v is not None:
                t._data[...] = t._data + eps * backend.to_device(v, t.device)
        plus = _evaluate(fn, inputs, weights)
        for t, v, o in zip(inputs, directions, originals):
            if v is not None:
                t._data[...] = o - eps * backend.to_device(v, t.device)
        minus = _evaluate(fn, inputs, weights)
        for t, o in zip(inputs, originals):
            t._data[...] = o
        numeric = (plus - minus) / (2 * eps)
        if abs(predicted - numeric) > atol + rtol * abs(numeric):
            message = (
                f"gradcheck_projection: directional derivative {predicted:.10g} vs numeric {numeric:.10g}"
            )
            if raise_exception:
                raise AssertionError(message)
            return False
    return True
