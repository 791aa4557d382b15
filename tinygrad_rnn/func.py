"""Function transforms with PyTorch's ``torch.func`` shapes: ``jvp``, ``vjp``, ``jacfwd``, ``jacrev`` and
``functional_call``, on the engine's two modes.

``jvp`` runs ``func`` once in forward mode (``autograd.forward_ad``: dual tensors, each op's ``jvp``
rule); ``vjp`` records ``func`` on the tape and walks it back (each op's ``backward``). ``jacfwd``
builds a Jacobian column block by column block from one batched forward pass (all N directions of
the input at once); ``jacrev`` row by row from reverse passes. ``functional_call`` runs a module
with other tensors in place of its parameters and buffers, so a model's parameters can be primals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from . import autograd, backend
from . import forward_ad as fwad

__all__ = [
    "cross_entropy_hessian_vp",
    "functional_call",
    "gnvp",
    "jacfwd",
    "jacrev",
    "jvp",
    "mse_hessian_vp",
    "vjp",
]


def _tensors(values: Any, name: str, caller: str) -> tuple:
    values = tuple(values) if isinstance(values, tuple | list) else (values,)
    for value in values:
        if not isinstance(value, autograd.Tensor):
            raise TypeError(f"{caller}: {name} must be Tensors, got {type(value).__name__}")
    return values


def _outputs(result: Any, caller: str) -> tuple[tuple, bool]:
    """(the outputs as a tuple, whether func returned a single Tensor)."""
    if isinstance(result, autograd.Tensor):
        return (result,), True
    if isinstance(result, tuple | list) and result and all(isinstance(r, autograd.Tensor) for r in result):
        return tuple(result), False
    raise TypeError(f"{caller}: func must return a Tensor or a tuple of Tensors, got {type(result).__name__}")


def batched_jvp(func: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple:
    """``jvp`` with K directions at once: ``tangents[i]`` is None or an array/Tensor
    ``(K, *primals[i].shape)``. Returns (outputs, output tangents ``(K, *output.shape)``, as arrays of
    zeros for an output that does not depend on the tangents), each a tuple."""
    with fwad.dual_level():
        duals = []
        for primal, tangent in zip(primals, tangents):
            if tangent is None:
                duals.append(primal)
            else:
                duals.append(fwad.make_dual(primal, tangent, batched=True))
        outputs, _ = _outputs(func(*duals), "jvp")
        size = next(t.shape[0] for t in tangents if t is not None)
        results, out_tangents = [], []
        for out in outputs:
            tangent = fwad.tangent_of(out)
            if tangent is None:
                tangent = fwad.zeros_for(out._data, size)
            xp = backend.get_array_module(tangent)
            out_tangents.append(xp.broadcast_to(tangent, (size, *out.shape)))
            results.append(autograd.Tensor._make(out._data, False, None, 0))
    return tuple(results), tuple(out_tangents)


def jvp(func: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple:
    """``(func(*primals), J_func(primals) @ tangents)`` by one forward-mode pass.

    Args:
        func: a function of Tensors returning a Tensor or a tuple of Tensors.
        primals: a tuple of Tensors, the point.
        tangents: a tuple of Tensors of the primals' shapes, the direction.

    Returns:
        ``(outputs, jvp_out)``: Tensors (or tuples of them, as func returns), without history.
    """
    primals = _tensors(primals, "primals", "jvp")
    tangents = _tensors(tangents, "tangents", "jvp")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: got {len(primals)} primals but {len(tangents)} tangents")
    for index, (p, t) in enumerate(zip(primals, tangents)):
        if p.shape != t.shape:
            raise ValueError(f"jvp: tangent {index} has shape {t.shape}, its primal {p.shape}")
    single = None
    with fwad.dual_level():
        duals = [fwad.make_dual(p, t) for p, t in zip(primals, tangents)]
        result = func(*duals)
        outputs, single = _outputs(result, "jvp")
        values, jvps = [], []
        for out in outputs:
            tangent = fwad.tangent_of(out)
            values.append(autograd.Tensor._make(out._data, False, None, 0))
            xp = backend.get_array_module(out._data)
            data = xp.zeros_like(out._data) if tangent is None else tangent[0]
            jvps.append(autograd.Tensor._make(data, False, None, 0))
    if single:
        return values[0], jvps[0]
    return tuple(values), tuple(jvps)


def vjp(func: Callable[..., Any], *primals: Any) -> tuple:
    """``(func(*primals), vjp_fn)`` where ``vjp_fn(*cotangents)`` returns ``J_func(primals)ᵀ @
    cotangents``, one Tensor per primal (zeros where an output does not depend on it), by the tape.

    ``cotangents``: one Tensor per output of func, of its shape. ``vjp_fn`` may be called many times.
    """
    primals = _tensors(primals, "primals", "vjp")
    leaves = []
    for p in primals:
        leaf = autograd.Tensor._make(p._data, False, None, 0)
        if p.dtype.kind == "f":
            leaf.requires_grad = True
        leaves.append(leaf)
    with autograd.enable_grad():
        outputs, single = _outputs(func(*leaves), "vjp")
    values = tuple(autograd.Tensor._make(out._data, False, None, 0) for out in outputs)

    def vjp_fn(*cotangents: Any) -> tuple:
        cotangents = _tensors(cotangents, "cotangents", "vjp_fn")
        if len(cotangents) != len(outputs):
            raise ValueError(
                f"vjp_fn: expected {len(outputs)} cotangents (one per output), got {len(cotangents)}"
            )
        roots, seeds = [], []
        for out, cotangent in zip(outputs, cotangents):
            if cotangent.shape != out.shape:
                raise ValueError(f"vjp_fn: a cotangent has shape {cotangent.shape}, its output {out.shape}")
            if out.requires_grad:
                roots.append(out)
                seeds.append(cotangent._data.astype(out.dtype, copy=False))
        found = autograd.leaf_gradients(roots, seeds, retain_graph=True) if roots else {}
        grads = []
        for leaf in leaves:
            grad = found.get(id(leaf))
            xp = backend.get_array_module(leaf._data)
            grads.append(
                autograd.Tensor._make(xp.zeros_like(leaf._data) if grad is None else grad, False, None, 0)
            )
        return tuple(grads)

    return (values[0] if single else values), vjp_fn


def _argnums(argnums: int | tuple, count: int, caller: str) -> tuple[int, ...]:
    numbers = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in numbers:
        if not isinstance(n, int) or not -count <= n < count:
            raise ValueError(f"{caller}: argnums {argnums!r} out of range for {count} arguments")
    return tuple(n % count for n in numbers)


def _arrange(blocks: list, single_out: bool, single_in: bool) -> Any:
    """Jacobian blocks ``[output][input]`` as torch.func returns them."""
    rows = [block[0] if single_in else tuple(block) for block in blocks]
    return rows[0] if single_out else tuple(rows)


def jacfwd(func: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """A function computing the Jacobian of ``func`` w.r.t. the arguments ``argnums`` by forward mode:
    one pass carrying N = numel(input) directions (the identity) at once per argument.

    The Jacobian of an output of shape S w.r.t. an input of shape R has shape ``(*S, *R)``; tuples of
    them for several outputs (outer) or arguments (inner), as ``torch.func.jacfwd``.
    """

    def jacobian(*args: Any) -> Any:
        args = _tensors(args, "arguments", "jacfwd")
        numbers = _argnums(argnums, len(args), "jacfwd")
        blocks: list = []
        single_out = True
        for n in numbers:
            x = args[n]
            xp = backend.get_array_module(x._data)
            size = math.prod(x.shape)
            eye = xp.eye(size, dtype=x.dtype).reshape((size, *x.shape))
            tangents = [eye if k == n else None for k in range(len(args))]
            outputs, out_tangents = batched_jvp(func, args, tangents)
            single_out = len(outputs) == 1 and isinstance(func(*args), autograd.Tensor)
            for k, (out, tangent) in enumerate(zip(outputs, out_tangents)):
                moved = xp.moveaxis(tangent.reshape((size, -1)), 0, -1).reshape((*out.shape, *x.shape))
                if len(blocks) <= k:
                    blocks.append([])
                blocks[k].append(autograd.Tensor._make(xp.ascontiguousarray(moved), False, None, 0))
        return _arrange(blocks, single_out, isinstance(argnums, int))

    return jacobian


def jacrev(func: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """A function computing the Jacobian of ``func`` w.r.t. ``argnums`` by reverse mode: one backward
    pass per output element (the tape recorded once). Same layout as :func:`jacfwd`."""

    def jacobian(*args: Any) -> Any:
        args = _tensors(args, "arguments", "jacrev")
        numbers = _argnums(argnums, len(args), "jacrev")
        result, vjp_fn = vjp(func, *args)
        outputs, single_out = _outputs(result, "jacrev")
        blocks = []
        for k, out in enumerate(outputs):
            xp = backend.get_array_module(out._data)
            size = math.prod(out.shape)
            rows = [[] for _ in numbers]
            for position in range(size):
                cotangents = []
                for j, other in enumerate(outputs):
                    seed = xp.zeros(other.shape, dtype=other.dtype)
                    if j == k:
                        seed.reshape(-1)[position] = 1
                    cotangents.append(autograd.Tensor._make(seed, False, None, 0))
                grads = vjp_fn(*cotangents)
                for row, n in zip(rows, numbers):
                    row.append(grads[n]._data)
            block = []
            for row, n in zip(rows, numbers):
                stacked = xp.stack(row) if row else xp.zeros((0, *args[n].shape), dtype=args[n].dtype)
                block.append(
                    autograd.Tensor._make(stacked.reshape((*out.shape, *args[n].shape)), False, None, 0)
                )
            blocks.append(block)
        return _arrange(blocks, single_out, isinstance(argnums, int))

    return jacobian


# ---- modules as functions of their parameters --------------------------------------------------------


@contextmanager
def _swapped(module: Any, replacements: Mapping[str, Any]) -> Iterator[None]:
    owners = {}
    for name, owner in module.named_modules():
        owners[name] = owner
    saved = []
    try:
        for full_name, value in replacements.items():
            owner_name, _, attribute = full_name.rpartition(".")
            owner = owners.get(owner_name)
            table = None
            if owner is not None:
                for key in ("_parameters", "_buffers"):
                    candidate = owner.__dict__[key]
                    if attribute in candidate:
                        table = candidate
                        break
            if table is None:
                raise KeyError(f"functional_call: the module has no parameter or buffer named {full_name!r}")
            if not isinstance(value, autograd.Tensor):
                raise TypeError(
                    f"functional_call: {full_name!r} must be a Tensor, got {type(value).__name__}"
                )
            if tuple(value.shape) != tuple(table[attribute].shape):
                raise ValueError(
                    f"functional_call: {full_name!r} has shape {tuple(value.shape)}, the module's "
                    f"{tuple(table[attribute].shape)}"
                )
            saved.append((table, attribute, table[attribute]))
            table[attribute] = value
        yield
    finally:
        for table, attribute, original in reversed(saved):
            table[attribute] = original


def functional_call(
    module: Any,
    parameters_and_buffers: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    args: Any = (),
    kwargs: Mapping[str, Any] | None = None,
) -> Any:
    """``module(*args, **kwargs)`` with the named parameters and buffers replaced by the given tensors
    (dual tensors, leaves of another tape, ...) for this call only; the module is unchanged after.

    Args:
        module: an ``nn.Module``.
        parameters_and_buffers: ``{"name": Tensor}`` using ``named_parameters()`` names (or a tuple of
            such dicts); names not given keep the module's own tensors.
        args: one argument or a tuple of them.
        kwargs: keyword arguments.
    """
    if isinstance(parameters_and_buffers, Mapping):
        replacements = dict(parameters_and_buffers)
    else:
        replacements = {}
        for mapping in parameters_and_buffers:
            for key in mapping:
                if key in replacements:
                    raise ValueError(f"functional_call: {key!r} is given in more than one dict")
            replacements.update(mapping)
    args = args if isinstance(args, tuple) else (args,)
    with _swapped(module, replacements):
        return module(*args, **(kwargs or {}))


# ---- Gauss-Newton vector products -----------------------------------------------------------------------


def gnvp(
    func: Callable[..., Any],
    primals: Sequence[Any],
    tangents: Sequence[Any],
    loss_hessian_vp: Callable[..., Any],
) -> tuple:
    """The Gauss-Newton product G v = Jᵀ H_L J v of ``func`` (outputs z = func(*primals), J = ∂z/∂primals)
    and a loss of z with Hessian H_L, by a JVP followed by a VJP (Martens & Sutskever, 2011).

    G is J's Gram matrix under H_L: positive semi-definite when H_L is (convex losses), unlike the
    Hessian of the composite, which is why Hessian-free training of RNNs uses it as its curvature.

    Args:
        func: a function of Tensors returning one Tensor z (the network's outputs).
        primals, tangents: the point and the direction v (tuples of Tensors of the same shapes).
        loss_hessian_vp: ``loss_hessian_vp(z, u) -> H_L u`` (Tensors of z's shape), e.g.
            :func:`mse_hessian_vp` or :func:`cross_entropy_hessian_vp`.

    Returns:
        One Tensor per primal: the blocks of G v.
    """
    outputs, jv = jvp(func, primals, tangents)
    if not isinstance(outputs, autograd.Tensor):
        raise TypeError("gnvp: func must return a single Tensor (the outputs the loss reads)")
    curvature = loss_hessian_vp(outputs, jv)
    if not isinstance(curvature, autograd.Tensor) or curvature.shape != outputs.shape:
        raise ValueError(f"gnvp: loss_hessian_vp must return a Tensor of the outputs' shape {outputs.shape}")
    _, vjp_fn = vjp(func, *_tensors(primals, "primals", "gnvp"))
    return vjp_fn(curvature)


def mse_hessian_vp(reduction: str = "mean") -> Callable[[Any, Any], Any]:
    """H_L u for L = Σ (z - y)² (``"sum"``: 2u) or its mean over all elements (``"mean"``: 2u / numel)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"mse_hessian_vp: reduction must be 'mean' or 'sum', got {reduction!r}")

    def product(outputs: Any, u: Any) -> Any:
        scale = 2.0 if reduction == "sum" else 2.0 / max(math.prod(outputs.shape), 1)
        return u * scale

    return product


def cross_entropy_hessian_vp(reduction: str = "mean") -> Callable[[Any, Any], Any]:
    """H_L u for the cross-entropy of logits z (rows of classes along the last axis) against any
    targets: per row (diag(p) - p pᵀ) u with p = softmax(z) (the targets do not enter), divided by the
    number of rows for ``"mean"``."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"cross_entropy_hessian_vp: reduction must be 'mean' or 'sum', got {reduction!r}")

    def product(outputs: Any, u: Any) -> Any:
        with autograd.no_grad():
            p = outputs.softmax(dim=-1)
            result = p * u - p * (p * u).sum(dim=-1, keepdim=True)
        rows = max(math.prod(outputs.shape[:-1]), 1)
        return result / rows if reduction == "mean" else result

    return product
