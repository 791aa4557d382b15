"""Module-level functions: tensor factories and the functional forms of Tensor methods
(``tg.zeros``, ``tg.randn``, ``tg.cat``, ``tg.where``, ``tg.exp``, ...), as PyTorch spells them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import backend, ops, random
from .tensor import Number, Tensor, _dim, _shape_arg


def tensor(data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (see :class:`Tensor`)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array: Any) -> Tensor:
    """A tensor that shares memory with a NumPy array."""
    return Tensor._make(array, False, None, 0)


def _factory(array: Any, requires_grad: bool) -> Tensor:
    t = Tensor._make(array, False, None, 0)
    return t.requires_grad_(True) if requires_grad else t


def _factory_args(size: tuple, dtype: Any, device: Any) -> tuple:
    shape = _shape_arg(size)
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"sizes must be non-negative ints, got {shape}")
    dtype = backend.get_default_dtype() if dtype is None else backend.as_dtype(dtype)
    dev = backend.device(device)
    return shape, dtype, dev, backend.xp_for(dev)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with 0 (default dtype unless ``dtype``; on ``device``)."""
    shape, dtype, dev, xp = _factory_args(size, dtype, device)
    return _factory(_on(dev, lambda: xp.zeros(shape, dtype=dtype)), requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` filled with 1."""
    shape, dtype, dev, xp = _factory_args(size, dtype, device)
    return _factory(_on(dev, lambda: xp.ones(shape, dtype=dtype)), requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``size`` (zeros here; PyTorch leaves it uninitialised)."""
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def full(
    size: Any, fill_value: Number, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """A tensor of ``size`` filled with ``fill_value`` (int64 for an int value, as in PyTorch)."""
    if dtype is None and isinstance(fill_value, int) and not isinstance(fill_value, bool):
        dtype = backend.int64
    shape, dtype, dev, xp = _factory_args((size,) if isinstance(size, int) else tuple(size), dtype, device)
    return _factory(_on(dev, lambda: xp.full(shape, fill_value, dtype=dtype)), requires_grad)


def randn(
    *size: Any, generator: Any = None, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """Standard normal samples from ``generator`` or the device's seeded one (``tg.manual_seed``)."""
    shape, dtype, dev, _ = _factory_args(size, dtype, device)
    stream = random.stream_for(generator, dev, "randn")
    return _factory(backend.normal_from(stream, shape, dtype, dev), requires_grad)


def rand(
    *size: Any, generator: Any = None, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """Uniform samples in [0, 1) from ``generator`` or the device's seeded one."""
    shape, dtype, dev, _ = _factory_args(size, dtype, device)
    stream = random.stream_for(generator, dev, "rand")
    return _factory(backend.uniform_from(stream, shape, dtype, dev), requires_grad)


def randint(
    low: int, high: int | None = None, size: Sequence[int] = (), device: Any = None, *, generator: Any = None
) -> Tensor:
    """Integers drawn uniformly from [low, high) (int64) from ``generator`` or the seeded one."""
    if high is None:
        low, high = 0, low
    if not low < high:
        raise ValueError(f"randint: high must be greater than low, got low={low}, high={high}")
    shape, _, dev, _ = _factory_args(tuple(size), None, device)
    stream = random.stream_for(generator, dev, "randint")
    return Tensor._make(backend.integers_from(stream, low, high, shape, dev), False, None, 0)


def arange(
    start: Number,
    end: Number | None = None,
    step: Number = 1,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """Values start, start + step, ... below ``end``: int64 for int arguments, else the default dtype."""
    if end is None:
        start, end = 0, start
    for label, value in (("start", start), ("end", end), ("step", step)):
        try:
            finite = math.isfinite(value)
        except TypeError:
            finite = False
        if not finite:
            raise ValueError(f"arange: {label} must be a finite number, got {value!r}")
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if dtype is None:
        dtype = backend.int64 if all(isinstance(v, int) for v in (start, end, step)) else None
    _, dtype, dev, xp = _factory_args((), dtype, device)
    return _factory(_on(dev, lambda: xp.arange(start, end, step, dtype=dtype)), requires_grad)


def eye(n: int, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """The n x n identity matrix."""
    _, dtype, dev, xp = _factory_args((n,), dtype, device)
    return _factory(_on(dev, lambda: xp.eye(n, dtype=dtype)), requires_grad)


def _require_tensor(name: str, t: Any) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: input must be a Tensor, got {type(t).__name__}")


def zeros_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``t``'s shape, dtype and device unless given."""
    _require_tensor("zeros_like", t)
    return zeros(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of ``t``'s shape, dtype and device unless given."""
    _require_tensor("ones_like", t)
    return ones(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(
    t: Tensor, fill_value: Number, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``fill_value`` in ``t``'s shape, dtype and device unless given."""
    _require_tensor("full_like", t)
    return full(
        t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad
    )


def randn_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples of ``t``'s shape, dtype and device unless given."""
    _require_tensor("randn_like", t)
    return randn(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def _on(dev: backend.Device, make: Callable[[], Any]) -> Any:
    """Create an array with the right GPU current (CuPy allocates on the current device)."""
    if dev.type != "cpu":
        backend.use_device(dev)
    return make()


def _tensors(name: str, tensors: Iterable[Tensor]) -> list[Tensor]:
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: element {i} is a {type(t).__name__}, not a Tensor")
    return tensors


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing axis ``dim``; all other sizes must match."""
    tensors = _tensors("cat", tensors)
    first = tensors[0].shape
    axis = _dim(dim, len(first), "cat", first)
    for t in tensors:
        if t.ndim != len(first) or any(a != b for i, (a, b) in enumerate(zip(t.shape, first)) if i != axis):
            shapes = [x.shape for x in tensors]
            raise ValueError(f"cat: sizes must match except in dim {dim}, got shapes {shapes}")
    return ops.Cat.apply(*tensors, dim=axis)


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis ``dim``."""
    tensors = _tensors("stack", tensors)
    first = tensors[0].shape
    for t in tensors:
        if t.shape != first:
            raise ValueError(f"stack: all tensors must have the same shape, got {[x.shape for x in tensors]}")
    axis = _dim(dim, len(first) + 1, "stack", first)
    return ops.Stack.apply(*tensors, dim=axis)


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` is true, else ``other`` (broadcasting)."""
    condition = condition if isinstance(condition, Tensor) else Tensor(condition)
    if condition.dtype.kind != "b":
        condition = condition != 0
    base = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else Tensor(input)
    return ops.Where.apply(condition, base._operand(input), base._operand(other))


def _unary(name: str) -> Callable[[Tensor], Tensor]:
    def function(t: Tensor) -> Tensor:
        return getattr(t, name)()

    function.__name__ = name
    function.__doc__ = f"``t.{name}()`` as a function."
    return function


exp, log, tanh, sigmoid, relu, sqrt, abs = (
    _unary(n) for n in ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs")
)


def maximum(a: Tensor, b: Any) -> Tensor:
    """Elementwise max(a, b) with broadcasting;  the gradient goes to the larger, half to each on a tie."""
    return a.maximum(b)


def minimum(a: Tensor, b: Any) -> Tensor:
    """Elementwise min(a, b) with broadcasting;  the gradient goes to the smaller, half to each on a tie."""
    return a.minimum(b)


def clamp(t: Tensor, min: Number | None = None, max: Number | None = None) -> Tensor:
    """min(max(t, min), max) elementwise;  gradient ``g`` where min <= t <= max, else 0."""
    return t.clamp(min, max)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 1-D, 2-D and batched (broadcasting) operands, as ``torch.matmul``."""
    return a @ b


def logsumexp(t: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """log Σ exp(t) over ``dim`` (int or tuple), finite for large logits;  gradient g·softmax(t)."""
    return t.logsumexp(dim, keepdim)


def softmax(t: Tensor, dim: int) -> Tensor:
    """exp(t) / Σ exp(t) along ``dim``, computed after subtracting the maximum."""
    return t.softmax(dim)


def log_softmax(t: Tensor, dim: int) -> Tensor:
    """t - logsumexp(t) along ``dim``, finite for logits of any size."""
    return t.log_softmax(dim)


def split(t: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Consecutive pieces of ``split_size`` (the last may be smaller) or of the given sizes along ``dim``."""
    return t.split(split_size_or_sections, dim)


def chunk(t: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """``chunks`` pieces (or fewer) of equal size ceil(n / chunks) along ``dim``, as PyTorch."""
    return t.chunk(chunks, dim)


def unbind(t: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    """The slices of ``t`` along ``dim``, that axis removed."""
    return t.unbind(dim)


def gather(t: Tensor, dim: int, index: Tensor) -> Tensor:
    """``out[i][j] = t[i][index[i][j]]`` along ``dim`` (``torch.gather``); repeats accumulate."""
    return t.gather(dim, index)


def dropout(t: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (identity when not training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return t
    if p == 1.0:
        return t * 0.0
    return ops.Dropout.apply(t, p=p)


def flatten(t: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim`` .. ``end_dim`` into one."""
    return t.flatten(start_dim, end_dim)


def reshape(t: Tensor, *shape: Any) -> Tensor:
    """The same elements in a new shape (one size may be -1)."""
    return t.reshape(*shape)


def transpose(t: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dims."""
    return t.transpose(dim0, dim1)


def permute(t: Tensor, *dims: Any) -> Tensor:
    """Reorder the dims."""
    return t.permute(*dims)


def squeeze(t: Tensor, dim: int | None = None) -> Tensor:
    """Remove ``dim`` if its size is 1, or every size-1 dim when ``dim`` is None."""
    return t.squeeze(dim)


def unsqueeze(t: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dim at ``dim`` (negative counts from the end of the new shape)."""
    return t.unsqueeze(dim)


def is_tensor(value: Any) -> bool:
    """True for a :class:`Tensor`."""
    return isinstance(value, Tensor)


# ---- functional forms of arithmetic and reductions (defined last: they shadow builtins) ---------------


def add(input: Any, other: Any, alpha: Number = 1) -> Tensor:
    """``input + alpha * other`` (``torch.add``); either side may be a Python number."""
    return _left(input, other) + (other if alpha == 1 else other * alpha)


def sub(input: Any, other: Any, alpha: Number = 1) -> Tensor:
    """``input - alpha * other`` (``torch.sub``)."""
    return _left(input, other) - (other if alpha == 1 else other * alpha)


def mul(input: Any, other: Any) -> Tensor:
    """``input * other`` elementwise with broadcasting (``torch.mul``)."""
    return _left(input, other) * other


def div(input: Any, other: Any) -> Tensor:
    """``input / other`` elementwise with broadcasting (``torch.div``, true division)."""
    return _left(input, other) / other


def pow(input: Any, exponent: Any) -> Tensor:
    """``input ** exponent`` (``torch.pow``): tensor**number, number**tensor or tensor**tensor."""
    if isinstance(input, Tensor):
        return input**exponent
    if not isinstance(exponent, Tensor):
        raise TypeError("pow: at least one of input and exponent must be a Tensor")
    return input**exponent


def _left(input: Any, other: Any) -> Tensor:
    """The left operand as a Tensor: a Python number on the left takes the right tensor's dtype."""
    if isinstance(input, Tensor):
        return input
    if not isinstance(other, Tensor):
        raise TypeError("expected at least one Tensor operand")
    return other._operand(input)


def neg(t: Tensor) -> Tensor:
    """``-t``;  gradient ``-g``."""
    return -t


def sum(t: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """``t.sum(dim, keepdim)`` as a function."""
    return t.sum(dim, keepdim)


def mean(t: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """``t.mean(dim, keepdim)`` as a function."""
    return t.mean(dim, keepdim)


def max(t: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``torch.max``: the largest element, ``(values, indices)`` along ``dim``, or with a tensor as
    second argument the elementwise maximum."""
    return t.max(dim, keepdim)


def min(t: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """``torch.min``: as :func:`max`, for the smallest."""
    return t.min(dim, keepdim)


def amax(t: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Maximum over ``dim`` (int or tuple); the gradient is shared between tied maxima."""
    return t.amax(dim, keepdim)


def amin(t: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """Minimum over ``dim`` (int or tuple); the gradient is shared between tied minima."""
    return t.amin(dim, keepdim)


def argmax(t: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (of the flattened tensor when ``dim`` is None); not differentiable."""
    return t.argmax(dim, keepdim)


def argmin(t: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element; not differentiable."""
    return t.argmin(dim, keepdim)


def t(input: Tensor) -> Tensor:
    """The transpose of a tensor of at most 2 dims."""
    return input.t()


def masked_fill(t: Tensor, mask: Any, value: Number) -> Tensor:
    """``t`` with ``value`` where ``mask`` is true;  gradient ``g`` where the mask is false, else 0."""
    return t.masked_fill(mask, value)


def numel(t: Tensor) -> int:
    """The number of elements of ``t``."""
    return t.numel()


clip = clamp


def rand_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) of ``t``'s shape (and dtype and device unless given)."""
    _require_tensor("rand_like", t)
    return rand(*t.shape, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)


def empty_like(t: Tensor, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``t``'s shape (zeros here; PyTorch leaves it uninitialised)."""
    return zeros_like(t, dtype=dtype, device=device, requires_grad=requires_grad)


concat = concatenate = cat


# ---- more factories, sampling and functional forms of the Tensor methods PyTorch code reaches ---------


def linspace(
    start: Number, end: Number, steps: int, dtype: Any = None, device: Any = None, requires_grad: bool = False
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end`` inclusive."""
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    _, dtype, dev, xp = _factory_args((), dtype, device)
    return _factory(_on(dev, lambda: xp.linspace(start, end, steps).astype(dtype)), requires_grad)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot vectors: shape ``tensor.shape + (num_classes,)`` (``num_classes=-1``: max + 1)."""
    _require_tensor("one_hot", tensor)
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expects an integer (class index) tensor, got dtype {tensor.dtype}")
    data = tensor._data
    if num_classes == -1:
        num_classes = int(data.max()) + 1 if data.size else 0
    if data.size and (int(data.min()) < 0 or int(data.max()) >= num_classes):
        raise ValueError(
            f"one_hot: class values must be in [0, {num_classes}), got {int(data.min())}..{int(data.max())}"
        )
    xp = tensor._xp
    return Tensor._make((data[..., None] == xp.arange(num_classes)).astype(backend.int64), False, None, 0)


def einsum(equation: str, *operands: Any) -> Tensor:
    """Sums of products named by an equation (``"bij,bjk->bik"``); explicit letters, no ``...`` and no
    letter twice in one operand. The operands may also be given as one list."""
    if len(operands) == 1 and isinstance(operands[0], list | tuple):
        operands = tuple(operands[0])
    tensors = _tensors("einsum", operands)
    equation = equation.replace(" ", "")
    if "." in equation:
        raise ValueError("einsum: '...' (ellipsis) is not supported; name every dim with a letter")
    inputs_part, arrow, output = equation.partition("->")
    inputs = inputs_part.split(",")
    if len(inputs) != len(tensors):
        raise ValueError(f"einsum: the equation names {len(inputs)} operands, got {len(tensors)}")
    if not arrow:
        letters = "".join(inputs)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    sizes: dict[str, int] = {}
    for sub, t in zip(inputs, tensors):
        if not sub.isalpha() and sub:
            raise ValueError(f"einsum: subscripts must be letters, got {sub!r}")
        if len(sub) != t.ndim:
            raise ValueError(f"einsum: operand {sub!r} names {len(sub)} dims but has shape {t.shape}")
        if len(set(sub)) != len(sub):
            raise ValueError(
                f"einsum: a letter repeated within one operand ({sub!r}, a diagonal) is not supported"
            )
        for letter, n in zip(sub, t.shape):
            if sizes.setdefault(letter, n) != n:
                raise ValueError(f"einsum: dim {letter!r} has sizes {sizes[letter]} and {n}")
    if len(set(output)) != len(output) or any(c not in sizes for c in output):
        raise ValueError(f"einsum: bad output subscripts {output!r}")
    base = tensors[0]
    operands_t = [base._operand(t) for t in tensors]
    return ops.Einsum.apply(*operands_t, inputs=tuple(inputs), output=output)


def _method(name: str) -> Callable[..., Any]:
    def function(input: Tensor, *args: Any, **kwargs: Any) -> Any:
        _require_tensor(name, input)
        return getattr(input, name)(*args, **kwargs)

    function.__name__ = name
    function.__doc__ = f"``input.{name}(...)`` as a function (see :meth:`Tensor.{name}`)."
    return function


(
    bmm,
    baddbmm,
    addmm,
    mm,
    topk,
    sort,
    argsort,
    narrow,
    flip,
    roll,
    tril,
    triu,
    cumsum,
    norm,
    sin,
    cos,
    index_select,
    scatter,
    scatter_add,
    masked_select,
    index_add,
    clamp_min,
    clamp_max,
    floor,
    round,
    sign,
) = (
    _method(n)
    for n in (
        "bmm",
        "baddbmm",
        "addmm",
        "mm",
        "topk",
        "sort",
        "argsort",
        "narrow",
        "flip",
        "roll",
        "tril",
        "triu",
        "cumsum",
        "norm",
        "sin",
        "cos",
        "index_select",
        "scatter",
        "scatter_add",
        "masked_select",
        "index_add",
        "clamp_min",
        "clamp_max",
        "floor",
        "round",
        "sign",
    )
)
