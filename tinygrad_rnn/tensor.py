"""``Tensor``: an array on a device, its gradient, and the node of the tape that produced it.

Every differentiable method calls one ``Function`` from ``ops.py``; the arguments are checked here,
at the public call, so a wrong shape or ``dim`` is reported with the op's name and the shapes,
never as a traceback from inside NumPy.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

from . import autograd, backend, inplace, ops
from .autograd import Function
from .inplace import InPlaceMethods
from .pointwise_methods import PointwiseMethods
from .structure_methods import StructureMethods
from .tensor_methods import TensorMethods

Number = int | float
MaxResult = namedtuple("MaxResult", ["values", "indices"])


class Tensor(InPlaceMethods, TensorMethods, PointwiseMethods, StructureMethods):
    """A multi-dimensional array that records the ops applied to it, for reverse-mode autodiff.

    ``Tensor(data, dtype=None, device=None, requires_grad=False)`` copies ``data`` (a number, a
    nested list, a NumPy or CuPy array, or a Tensor). Floating arrays keep their dtype; Python
    floats get the default dtype (float32); integers become int64. Only floating tensors can
    require gradients.
    """

    __slots__ = (
        "__weakref__",
        "_ctx",
        "_data",
        "_hooks",
        "_index",
        "_version",
        "_view",  # None, or the views of this storage and how this tensor views it (inplace.ViewInfo)
        "grad",
        "requires_grad",
    )
    # Make ``ndarray * tensor`` call Tensor.__rmul__ instead of NumPy's elementwise loop.
    __array_priority__ = 1000

    def __init__(self, data: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data._data
        if device is None:
            dev = backend.device_of(data) if backend.is_array(data) else backend.get_default_device()
        else:
            dev = backend.device(device)
        self._data = backend.as_array(data, dtype, dev, copy=True)
        self._ctx: Function | None = None
        self._index = 0
        self._version: Any = None  # in-place version counter, created when first needed
        self._hooks: list | None = None
        self._view: Any = None
        self.grad: Tensor | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _make(data: Any, requires_grad: bool, ctx: Function | None, index: int) -> Tensor:
        """Wrap a backend array without copying or checking (the ops' fast path)."""
        t = object.__new__(Tensor)
        t._data = data
        t.requires_grad = requires_grad
        t.grad = None
        t._ctx = ctx
        t._index = index
        t._version = None
        t._hooks = None
        t._view = None
        return t

    # ---- properties ---------------------------------------------------------------------------------

    @property
    def data(self) -> Tensor:
        """The same storage without history (as ``detach``); assigning replaces the array in place."""
        return self.detach()

    @data.setter
    def data(self, value: Any) -> None:
        array = value._data if isinstance(value, Tensor) else value
        if not backend.is_array(array):
            array = backend.as_array(array, self._data.dtype, self.device, copy=False)
        self._data = array
        self._bump_version()

    @property
    def shape(self) -> tuple[int, ...]:
        """The size of each dim, a tuple of ints."""
        return tuple(self._data.shape)

    @property
    def ndim(self) -> int:
        """The number of dims."""
        return self._data.ndim

    @property
    def dtype(self) -> Any:
        """The element type (a NumPy dtype: ``tg.float32``, ``tg.int64``, ...)."""
        return self._data.dtype

    @property
    def device(self) -> backend.Device:
        """Where the data lives: ``cpu`` or ``cuda:N``."""
        return backend.device_of(self._data)

    @property
    def is_leaf(self) -> bool:
        """True for a tensor not produced by a recorded op (its gradient lands in ``.grad``)."""
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        """The node of the tape that produced this tensor, or None for a leaf."""
        return self._ctx

    @property
    def T(self) -> Tensor:
        """The axes in reverse order (the matrix transpose for 2-D tensors)."""
        return self.permute(*reversed(range(self.ndim)))

    @property
    def version(self) -> int:
        """How many times the data was changed in place (saved tensors check it in backward)."""
        return autograd.version_number(self._version)

    def size(self, dim: int | None = None) -> Any:
        """The shape, or the size of one ``dim``."""
        return self.shape if dim is None else self.shape[_dim(dim, self.ndim, "size")]

    def dim(self) -> int:
        """The number of dims (as ``ndim``)."""
        return self._data.ndim

    def numel(self) -> int:
        """The number of elements."""
        return int(self._data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ---- conversion ---------------------------------------------------------------------------------

    def numpy(self) -> Any:
        """The data as a NumPy array (shares memory on the CPU, a host copy from a GPU)."""
        return backend.to_numpy(self._data)

    def item(self) -> Any:
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return backend.host_item(self._data)

    def tolist(self) -> Any:
        """The data as (nested) Python lists."""
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(f"the truth value of a tensor of shape {self.shape} is ambiguous")
        return bool(self.item())

    def __index__(self) -> int:
        if self.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only single-element integer tensors can be used as an index")
        return int(self.item())

    def __repr__(self) -> str:
        body = repr(self.numpy()).replace("array(", "tensor(", 1)
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self._ctx is not None:
            extras.append(f"grad_fn=<{self._ctx.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        if extras:
            body = body[:-1] + ", " + ", ".join(extras) + ")"
        return body

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __hash__(self) -> int:
        return id(self)

    # ---- autograd -----------------------------------------------------------------------------------

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) · ``gradient`` into ``leaf.grad`` for every leaf that requires grad.

        ``gradient`` defaults to 1 for a one-element tensor; any other shape needs it given.
        Without ``retain_graph`` the saved arrays of the walked graph are freed.
        """
        grad = autograd.seed_gradient(self, gradient, "backward()")
        autograd.run_backward(self, grad, retain_graph)

    def detach(self) -> Tensor:
        """The same data without history: gradients do not flow back through it (truncation)."""
        t = Tensor._make(self._data, False, None, 0)
        t._version = autograd._version_box(self)  # same storage, same version counter
        if self.requires_grad:
            inplace.mark_detached(self, t)
        return t

    def detach_(self) -> Tensor:
        """Cut this tensor from its history in place: it becomes a leaf that does not require grad."""
        self._ctx, self._index, self.requires_grad = None, 0, False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Turn gradient recording for this leaf on or off (only floating tensors can require grad)."""
        if requires_grad and self.dtype.kind != "f":
            raise ValueError(
                f"only floating-point tensors can require gradients, got dtype {self.dtype}; "
                "convert with .float() or .double()"
            )
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach() instead")
        self.requires_grad = bool(requires_grad)
        return self

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces it.

        Returns a function that removes the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._ctx is None:
            if self._hooks is None:
                self._hooks = []
            entry: Any = hook
            self._hooks.append(entry)
            hooks = self._hooks
        else:
            node = self._ctx
            if node.hooks is None:
                node.hooks = []
            entry = (self._index, hook)
            hooks = node.hooks
            # retain_grad's hook runs after the user's hooks, so .grad holds the final gradient.
            last = len(hooks)
            while last and getattr(hooks[last - 1][1], "retains_grad", False):
                last -= 1
            hooks.insert(len(hooks) if getattr(hook, "retains_grad", False) else last, entry)
        return lambda: hooks.remove(entry) if entry in hooks else None

    def retain_grad(self) -> None:
        """Keep the gradient of this interior tensor in ``.grad`` after backward (leaves always do)."""
        if self._ctx is None:
            return
        import weakref

        me = weakref.ref(self)

        def keep(grad: Tensor) -> None:
            t = me()
            if t is not None:
                if t.grad is None:
                    t.grad = Tensor._make(grad._data.copy(), False, None, 0)
                else:
                    t.grad._data = t.grad._data + grad._data

        keep.retains_grad = True  # type: ignore[attr-defined]
        self.register_hook(keep)

    # ---- devices and dtypes ---------------------------------------------------------------------------

    @property
    def _xp(self) -> Any:
        # The array module for raw array code on this tensor: on a GPU, make its GPU current first.
        backend.follow_device(self._data)
        return backend.get_array_module(self._data)

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``to(device)``, ``to(dtype)`` or ``to(device, dtype)``; differentiable; a no-op when
        nothing changes."""
        dev, dtype = to_arguments("to", args, kwargs)
        out = self
        if dev is not None and dev != self.device:
            out = ops.ToDevice.apply(out, device=dev)
        if dtype is not None and dtype != out.dtype:
            out = out.type(dtype)
        return out

    def cpu(self) -> Tensor:
        """This tensor on the CPU (differentiable; itself when already there)."""
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> Tensor:
        """This tensor on a GPU (``cuda``, ``cuda:N`` or an index)."""
        if isinstance(device, int):
            device = f"cuda:{device}"
        return self.to(device or "cuda")

    def type(self, dtype: Any = None) -> Any:
        """This tensor converted to ``dtype`` (a dtype or a legacy type such as ``tg.LongTensor``);
        differentiable between floating dtypes. Without an argument, the legacy type's name."""
        if dtype is None:
            names = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int", "bool": "Bool"}
            return f"tinygrad_rnn.{names.get(self.dtype.name, self.dtype.name)}Tensor"
        if isinstance(dtype, type) and "dtype" in vars(dtype):  # tg.FloatTensor and the like
            dtype = dtype.dtype
        dtype = backend.as_dtype(dtype)
        if dtype == self.dtype:
            return self
        if not self.requires_grad or dtype.kind != "f":
            return Tensor._make(self._data.astype(dtype), False, None, 0)
        return ops.Cast.apply(self, dtype=dtype)

    def float(self) -> Tensor:
        """Converted to float32."""
        return self.type(backend.float32)

    def double(self) -> Tensor:
        """Converted to float64."""
        return self.type(backend.float64)

    def long(self) -> Tensor:
        """Converted to int64 (not differentiable)."""
        return self.type(backend.int64)

    def int(self) -> Tensor:
        """Converted to int32 (not differentiable)."""
        return self.type(backend.int32)

    def bool(self) -> Tensor:
        """Converted to bool (not differentiable)."""
        return self.type(backend.bool_)

    def type_as(self, other: Tensor) -> Tensor:
        """Converted to ``other``'s dtype."""
        return self.type(other.dtype)

    def clone(self) -> Tensor:
        """A copy with its own storage;  gradient passes through unchanged."""
        return ops.Copy.apply(self)

    def contiguous(self) -> Tensor:
        """Itself: backend arrays need no explicit layout here."""
        return self

    # ---- arithmetic ---------------------------------------------------------------------------------

    def _operand(self, other: Any) -> Tensor:
        """Turn a Python number or array into a constant tensor; numbers take this tensor's dtype so
        that a float32 tensor stays float32."""
        if isinstance(other, Tensor):
            if other._data.dtype.kind in "iub" and self._data.dtype.kind == "f":
                # As in PyTorch a float tensor keeps its dtype against an integer one (NumPy: float64).
                return Tensor._make(other._data.astype(self._data.dtype), False, None, 0)
            return other
        if isinstance(other, int | float | bool):
            dtype = self._data.dtype
            if dtype.kind != "f":
                if isinstance(other, float):
                    dtype = backend.get_default_dtype()
                elif dtype.kind == "b" and not isinstance(other, bool):
                    dtype = backend.int64  # bool tensor + 2 is 3, not True
            return Tensor._make(backend.scalar_like(other, dtype, self._data), False, None, 0)
        return Tensor(other, device=self.device)

    def __add__(self, other: Any) -> Tensor:
        return ops.Add.apply(self, self._operand(other))

    def __radd__(self, other: Any) -> Tensor:
        return ops.Add.apply(self._operand(other), self)

    def __sub__(self, other: Any) -> Tensor:
        return ops.Sub.apply(self, self._operand(other))

    def __rsub__(self, other: Any) -> Tensor:
        return ops.Sub.apply(self._operand(other), self)

    def __mul__(self, other: Any) -> Tensor:
        return ops.Mul.apply(self, self._operand(other))

    def __rmul__(self, other: Any) -> Tensor:
        return ops.Mul.apply(self._operand(other), self)

    def __truediv__(self, other: Any) -> Tensor:
        return ops.Div.apply(self, self._operand(other))

    def __rtruediv__(self, other: Any) -> Tensor:
        return ops.Div.apply(self._operand(other), self)

    def __pow__(self, exponent: Any) -> Tensor:
        if isinstance(exponent, int | float) and not isinstance(exponent, bool):
            return ops.PowConstant.apply(self, exponent=exponent)
        return ops.Pow.apply(self, self._operand(exponent))

    def __rpow__(self, base: Any) -> Tensor:
        return ops.Pow.apply(self._operand(base), self)

    def __neg__(self) -> Tensor:
        return ops.Neg.apply(self)

    def __matmul__(self, other: Any) -> Tensor:
        other = self._operand(other)
        _check_matmul(self.shape, other.shape)
        return ops.MatMul.apply(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        other = self._operand(other)
        _check_matmul(other.shape, self.shape)
        return ops.MatMul.apply(other, self)

    def matmul(self, other: Any) -> Tensor:
        """``self @ other`` (see ``__matmul__``)."""
        return self @ other

    mul, pow = __mul__, __pow__

    # Comparisons give boolean tensors and are not differentiable.
    def _compare(self, other: Any, name: str) -> Tensor:
        backend.follow_device(self._data)  # a raw array op: run it on this tensor's GPU
        other_data = other._data if isinstance(other, Tensor) else other
        try:
            result = getattr(self._data, name)(other_data)
        except ValueError as error:
            raise ValueError(
                f"{name.strip('_')}: {error} (shapes {self.shape} and {getattr(other, 'shape', ())})"
            ) from None
        return Tensor._make(backend.ensure_array(result), False, None, 0)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, "__lt__")

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, "__le__")

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, "__gt__")

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, "__ge__")

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "__eq__")

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, "__ne__")

    def __invert__(self) -> Tensor:
        return Tensor._make(~self._data, False, None, 0)

    def __and__(self, other: Any) -> Tensor:
        return self._compare(other, "__and__")

    def __or__(self, other: Any) -> Tensor:
        return self._compare(other, "__or__")

    # ---- elementwise functions ------------------------------------------------------------------------

    def exp(self) -> Tensor:
        """e^x elementwise;  gradient g·e^x."""
        return ops.Exp.apply(self)

    def log(self) -> Tensor:
        """Natural log elementwise;  gradient g / x."""
        return ops.Log.apply(self)

    def tanh(self) -> Tensor:
        """tanh(x) elementwise;  gradient g·(1 - tanh²x)."""
        return ops.Tanh.apply(self)

    def sigmoid(self) -> Tensor:
        """σ(x) = 1 / (1 + e^-x) without overflow;  gradient g·σ(1 - σ)."""
        return ops.Sigmoid.apply(self)

    def relu(self) -> Tensor:
        """max(x, 0);  gradient g where x > 0, else 0."""
        return ops.Relu.apply(self)

    def sqrt(self) -> Tensor:
        """√x elementwise;  gradient g / (2√x)."""
        return ops.Sqrt.apply(self)

    def abs(self) -> Tensor:
        """|x| elementwise;  gradient g·sign(x)."""
        return ops.Abs.apply(self)

    def neg(self) -> Tensor:
        """-x;  gradient -g."""
        return ops.Neg.apply(self)

    def clamp(self, min: Number | None = None, max: Number | None = None) -> Tensor:
        """min(max(x, min), max);  gradient g where min <= x <= max, else 0."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return ops.Clamp.apply(self, low=min, high=max)

    clip = clamp

    def maximum(self, other: Any) -> Tensor:
        """Elementwise max with broadcasting;  gradient to the larger operand, half each on a tie."""
        return ops.Maximum.apply(self, self._operand(other))

    def minimum(self, other: Any) -> Tensor:
        """Elementwise min with broadcasting;  gradient to the smaller operand, half each on a tie."""
        return ops.Minimum.apply(self, self._operand(other))

    def where(self, condition: Any, other: Any) -> Tensor:
        """``self`` where ``condition`` is true, else ``other`` (``Tensor.where`` as in PyTorch);
        gradient ``g`` where the condition holds, 0 elsewhere."""
        condition = condition if isinstance(condition, Tensor) else Tensor(condition, device=self.device)
        if condition.dtype.kind != "b":
            condition = condition != 0
        return ops.Where.apply(condition, self, self._operand(other))

    def masked_fill(self, mask: Any, value: Number) -> Tensor:
        """``value`` where ``mask`` is true, else ``self``;  gradient g where the mask is false."""
        mask = mask if isinstance(mask, Tensor) else Tensor(mask, device=self.device)
        if mask.dtype.kind != "b":
            mask = mask != 0
        return ops.Where.apply(mask, self._operand(value), self)

    # ---- reductions ----------------------------------------------------------------------------------

    def _dims(self, dim: Any, name: str) -> tuple[int, ...]:
        if dim is None:
            return tuple(range(self.ndim))
        dims = dim if isinstance(dim, tuple | list) else (dim,)
        normal = tuple(sorted({_dim(d, self.ndim, name, self.shape) for d in dims}))
        if len(normal) != len(dims):
            raise ValueError(f"{name}: dim {dim} names an axis twice")
        # A 0-d tensor accepts dim 0 or -1 (as in PyTorch) but has no axis to reduce.
        return normal if self.ndim else ()

    def sum(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Σ over ``dim`` (all axes by default)."""
        return ops.Sum.apply(self, dims=self._dims(dim, "sum"), keepdim=keepdim)

    def mean(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Average over ``dim`` (all axes by default)."""
        if self.dtype.kind != "f":
            raise TypeError(f"mean: needs a floating tensor, got dtype {self.dtype}")
        return ops.Mean.apply(self, dims=self._dims(dim, "mean"), keepdim=keepdim)

    def amax(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Maximum over ``dim``; the gradient is shared evenly between tied maxima."""
        if self.numel() == 0:
            raise ValueError(f"amax: cannot reduce an empty tensor of shape {self.shape}")
        return ops.Amax.apply(self, dims=self._dims(dim, "amax"), keepdim=keepdim)

    def amin(self, dim: Any = None, keepdim: bool = False) -> Tensor:
        """Minimum over ``dim``; the gradient is shared evenly between tied minima."""
        return -((-self).amax(dim, keepdim))

    def max(self, dim: Any = None, keepdim: bool = False) -> Any:
        """``max()`` → the largest element; ``max(dim)`` → ``(values, indices)`` as in PyTorch;
        ``max(other_tensor)`` → elementwise maximum."""
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        axis = _dim(dim, self.ndim, "max", self.shape)
        if self.ndim == 0:
            return MaxResult(self, Tensor._make(self._xp.zeros((), dtype=backend.int64), False, None, 0))
        indices = self.argmax(axis, keepdim=True)
        values = self.gather(axis, indices)
        if not keepdim:
            values, indices = values.squeeze(axis), indices.squeeze(axis)
        return MaxResult(values, indices)

    def min(self, dim: Any = None, keepdim: bool = False) -> Any:
        """As :meth:`max`, for the smallest element."""
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        result = (-self).max(dim, keepdim)
        return MaxResult(-result.values, result.indices)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index of the largest element (of the flattened tensor when ``dim`` is None)."""
        if dim is None:
            return Tensor._make(self._xp.asarray(self._data.argmax()), False, None, 0)
        axis = _dim(dim, self.ndim, "argmax", self.shape)
        if self.ndim == 0:
            return Tensor._make(self._xp.zeros((), dtype=backend.int64), False, None, 0)
        out = self._data.argmax(axis=axis)
        if keepdim:
            out = self._xp.expand_dims(out, axis)
        return Tensor._make(backend.ensure_array(out.astype(backend.int64)), False, None, 0)

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        """Index of the smallest element (of the flattened tensor when ``dim`` is None)."""
        return (-self.detach()).argmax(dim, keepdim)

    def logsumexp(self, dim: Any, keepdim: bool = False) -> Tensor:
        """log Σ exp over ``dim``, exact and finite for large logits."""
        return ops.LogSumExp.apply(self, dims=self._dims(dim, "logsumexp"), keepdim=keepdim)

    def softmax(self, dim: int) -> Tensor:
        """exp(x - max) / Σ exp(x - max) along ``dim``;  gradient s·(g - Σ g·s)."""
        return ops.Softmax.apply(self, dim=_dim(dim, self.ndim, "softmax", self.shape))

    def log_softmax(self, dim: int) -> Tensor:
        """x - logsumexp(x) along ``dim``, finite for any logits;  gradient g - softmax·Σ g."""
        return ops.LogSoftmax.apply(self, dim=_dim(dim, self.ndim, "log_softmax", self.shape))

    def var(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> Tensor:
        """Variance over ``dim`` (divided by n - 1 when ``unbiased``)."""
        dims = self._dims(dim, "var")
        count = math.prod(self.shape[d] for d in dims)
        centered = self - self.mean(dims, keepdim=True)
        return (centered * centered).sum(dims, keepdim=keepdim) / max(count - (1 if unbiased else 0), 1)

    def std(self, dim: Any = None, unbiased: bool = True, keepdim: bool = False) -> Tensor:
        """Standard deviation over ``dim``: sqrt of :meth:`var`."""
        return self.var(dim, unbiased, keepdim).sqrt()

    # ---- movement ------------------------------------------------------------------------------------

    def reshape(self, *shape: Any) -> Tensor:
        """The same elements in a new shape (one size may be -1);  gradient g reshaped back."""
        shape = _shape_arg(shape)
        new = _infer_shape(shape, self.numel(), self.shape, "reshape")
        if new == self.shape:
            return self._unchanged()
        return self._alias(ops.Reshape.apply(self, shape=new), lambda a: a.reshape(new))

    view = reshape

    def view_as(self, other: Tensor) -> Tensor:
        """Reshaped to ``other``'s shape."""
        return self.reshape(other.shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Dims ``start_dim`` .. ``end_dim`` merged into one."""
        if self.ndim == 0:
            return self.reshape(1)
        start = _dim(start_dim, self.ndim, "flatten", self.shape)
        end = _dim(end_dim, self.ndim, "flatten", self.shape)
        shape = self.shape
        return self.reshape(*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])

    def permute(self, *dims: Any) -> Tensor:
        """The dims reordered;  gradient g with the inverse order."""
        dims = _shape_arg(dims)
        normal = tuple(_dim(d, self.ndim, "permute", self.shape) for d in dims)
        if sorted(normal) != list(range(self.ndim)):
            raise ValueError(
                f"permute: dims {dims} are not a permutation of the {self.ndim} axes of {self.shape}"
            )
        if normal == tuple(range(self.ndim)):
            return self._unchanged()
        return self._alias(ops.Permute.apply(self, dims=normal), lambda a: a.transpose(normal))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        """Two dims swapped."""
        d0 = _dim(dim0, self.ndim, "transpose", self.shape)
        d1 = _dim(dim1, self.ndim, "transpose", self.shape)
        order = list(range(self.ndim))
        order[d0], order[d1] = order[d1], order[d0]
        return self.permute(*order)

    def t(self) -> Tensor:
        """The transpose of a tensor of at most 2 dims."""
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with at most 2 dims, got shape {self.shape}")
        return self.T

    def unsqueeze(self, dim: int) -> Tensor:
        """A size-1 dim inserted at ``dim``."""
        axis = _dim(dim, self.ndim + 1, "unsqueeze", self.shape)
        return self.reshape(*self.shape[:axis], 1, *self.shape[axis:])

    def squeeze(self, dim: int | None = None) -> Tensor:
        """``dim`` removed if its size is 1, or every size-1 dim when ``dim`` is None."""
        if dim is None:
            return self.reshape(*(n for n in self.shape if n != 1))
        axis = _dim(dim, self.ndim, "squeeze", self.shape)
        if self.shape[axis] != 1:
            return self._unchanged()
        return self.reshape(*self.shape[:axis], *self.shape[axis + 1 :])

    def expand(self, *sizes: Any) -> Tensor:
        """Size-1 dims stretched (and new leading dims added) without copying;  gradient summed back."""
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise ValueError(f"expand: {sizes} has fewer dims than the tensor's shape {self.shape}")
        offset = len(sizes) - self.ndim
        target = []
        for i, n in enumerate(sizes):
            own = self.shape[i - offset] if i >= offset else None
            if n == -1:
                if own is None:
                    raise ValueError(f"expand: -1 is not allowed for a new leading dim ({sizes})")
                n = own
            if own is not None and own != 1 and own != n:
                raise ValueError(f"expand: cannot expand shape {self.shape} to {tuple(sizes)}")
            target.append(n)
        target = tuple(target)
        if target == self.shape:
            return self._unchanged()
        return self._alias(ops.Expand.apply(self, shape=target), None)

    def _unchanged(self) -> Tensor:
        """The result of a movement that changes nothing. For a tensor that requires grad it is a new
        alias, as PyTorch's view is: inside ``no_grad`` a detached one (no gradient flows back through
        it), otherwise an identity node, so that a hook or ``retain_grad`` on the result sees only the
        gradient flowing through it, not the input's whole gradient."""
        if not self.requires_grad:
            return self
        if not autograd._grad_enabled:
            return self.detach()
        return self._alias(ops.Reshape.apply(self, shape=self.shape), _whole)

    def _alias(self, out: Tensor, view_fn: Callable[[Any], Any] | None) -> Tensor:
        """Give ``out`` this tensor's in-place version counter when its data is a view of this storage.

        Views share one counter, as in PyTorch: an in-place change through a slice, a reshape or a
        transpose then reaches every node that saved another view of the storage, which raises in
        backward instead of returning a silently wrong gradient.
        """
        if self._xp.may_share_memory(out._data, self._data):
            out._version = autograd._version_box(self)
            # ``view_fn`` maps this tensor's array to out's (None for a broadcast view): a write into
            # either is then recorded against the right base (inplace.py).
            inplace.register_view(self, out, view_fn)
        return out

    def expand_as(self, other: Tensor) -> Tensor:
        """Expanded to ``other``'s shape."""
        return self.expand(*other.shape)

    def __getitem__(self, index: Any) -> Tensor:
        index = _index_arg(index, self)
        return self._alias(ops.GetItem.apply(self, index=index), lambda a: a[index])

    def gather(self, dim: int, index: Tensor) -> Tensor:
        """``out[i][j] = self[i][index[i][j]]`` along ``dim`` (as ``torch.gather``)."""
        axis = _dim(dim, self.ndim, "gather", self.shape)
        if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
            raise TypeError("gather: index must be an integer tensor")
        if index.ndim != self.ndim:
            raise ValueError(f"gather: index has {index.ndim} dims, input has {self.ndim} ({self.shape})")
        size = self.shape[axis]

        def error(bad: int) -> IndexError:
            return IndexError(f"gather: index {bad} is out of range for dim {dim} of size {size}")

        backend.check_index_range(index._data, -size, size, error)  # on a GPU: no host read per call
        return ops.Gather.apply(self, index, dim=axis)

    def split(self, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
        """Pieces of ``split_size`` (the last may be smaller) or of the given sizes along ``dim``."""
        axis = _dim(dim, self.ndim, "split", self.shape)
        length = self.shape[axis]
        if isinstance(split_size_or_sections, int):
            step = split_size_or_sections
            if step <= 0:
                raise ValueError(f"split: split_size must be positive, got {step}")
            sizes = [min(step, length - start) for start in range(0, length, step)] or [0]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != length or any(s < 0 for s in sizes):
                raise ValueError(f"split: sections {sizes} do not add up to the size {length} of dim {dim}")
        pieces = ops.Split.apply(self, sizes=sizes, dim=axis)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return tuple(
            self._alias(piece, _slice_fn(axis, start, start + size))
            for piece, start, size in zip(pieces, starts, sizes)
        )

    def chunk(self, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
        """``chunks`` pieces (or fewer) of size ceil(n / chunks) along ``dim``, as PyTorch."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        axis = _dim(dim, self.ndim, "chunk", self.shape)
        return self.split(max(math.ceil(self.shape[axis] / chunks), 1), axis)

    def unbind(self, dim: int = 0) -> tuple[Tensor, ...]:
        """The slices along ``dim``, that dim removed."""
        axis = _dim(dim, self.ndim, "unbind", self.shape)
        pieces = ops.Unbind.apply(self, dim=axis)
        return tuple(self._alias(piece, _slice_fn(axis, i)) for i, piece in enumerate(pieces))


autograd.Tensor = Tensor
autograd._make = Tensor._make  # the tape's fast path calls it once per op


# ---- argument checks -------------------------------------------------------------------------------


def to_arguments(name: str, args: tuple, kwargs: dict) -> tuple[backend.Device | None, Any]:
    """Parse PyTorch's ``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other_tensor)`` forms
    (and ``device=``/``dtype=`` keywords) into a checked device and dtype, either of them None."""
    target_device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    # Accepted for PyTorch code: copies here are synchronous, and a move always makes new storage.
    kwargs.pop("non_blocking", None)
    kwargs.pop("copy", None)
    if kwargs:
        raise TypeError(f"{name}() got unexpected arguments {sorted(kwargs)}")
    for arg in args:
        if isinstance(arg, str | backend.Device):
            target_device = arg
        elif isinstance(arg, Tensor):
            target_device, dtype = arg.device, arg.dtype
        else:
            dtype = arg
    dev = None if target_device is None else backend.device(target_device)
    if dev is not None:
        backend.xp_for(dev)  # the clear error when CUDA is missing, before anything moves
    return dev, None if dtype is None else backend.as_dtype(dtype)


def _dim(dim: Any, ndim: int, name: str, shape: tuple | None = None) -> int:
    """Normalise a possibly negative ``dim``; raise IndexError naming the op when it is out of range."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{name}: dim must be an int, got {type(dim).__name__}")
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        where = f" with shape {shape}" if shape is not None else ""
        raise IndexError(
            f"{name}: dim {dim} is out of range for a tensor of {ndim} dims{where} "
            f"(expected a value in [{-rank}, {rank - 1}])"
        )
    return dim % rank


def _shape_arg(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        return tuple(shape[0])
    return tuple(shape)


def _infer_shape(shape: tuple, count: int, old: tuple, name: str) -> tuple[int, ...]:
    if any(not isinstance(n, int) for n in shape):
        raise TypeError(f"{name}: sizes must be ints, got {shape}")
    if shape.count(-1) > 1:
        raise ValueError(f"{name}: only one dimension can be -1, got {shape}")
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape:
        if known == 0 or count % known:
            raise ValueError(f"{name}: cannot reshape a tensor of shape {old} ({count} elements) to {shape}")
        shape = tuple(count // known if n == -1 else n for n in shape)
    if any(n < 0 for n in shape) or math.prod(shape) != count:
        raise ValueError(f"{name}: cannot reshape a tensor of shape {old} ({count} elements) to {shape}")
    return shape


def _check_matmul(a: tuple, b: tuple) -> None:
    if not a or not b:
        raise ValueError(f"matmul: both operands need at least 1 dim, got shapes {a} and {b}")
    inner_b = b[0] if len(b) == 1 else b[-2]
    if a[-1] != inner_b:
        raise ValueError(
            f"matmul: inner sizes differ: shapes {a} and {b} (the last dim of the first, {a[-1]}, must "
            f"equal the {'only' if len(b) == 1 else 'second-to-last'} dim of the second, {inner_b})"
        )
    for n, m in zip(reversed(a[:-2]), reversed(b[:-2])):
        if n != m and n != 1 and m != 1:
            raise ValueError(
                f"matmul: batch dims {a[:-2]} and {b[:-2]} do not broadcast (shapes {a} and {b})"
            )


def _index_arg(index: Any, t: Tensor) -> Any:
    """Turn tensors inside an index into backend arrays, and check integer indices are in range.

    Host index arrays (lists, NumPy arrays) are checked on the host before they are uploaded to a GPU
    tensor's device; indices already on a GPU are checked there without a host read (see
    ``backend.check_index_range``).
    """
    items = index if isinstance(index, tuple) else (index,)
    converted = []
    for item in items:
        if isinstance(item, Tensor):
            item = item._data
        elif isinstance(item, list):
            item = backend.as_array(item, None, backend.CPU, copy=False)
        converted.append(item)
    _check_index_range(converted, t.shape)
    if type(t._data) is not backend.NUMPY_ARRAY:
        # As in PyTorch, a GPU tensor takes index arrays from the host (CuPy would refuse them).
        converted = [backend.to_device(i, t.device) if backend.is_array(i) else i for i in converted]
    return tuple(converted) if isinstance(index, tuple) else converted[0]


def _check_index_range(items: list, shape: tuple) -> None:
    axis = 0
    explicit = sum(
        1
        for i in items
        if i is not None and i is not Ellipsis and not (backend.is_array(i) and i.dtype.kind == "b")
    )
    for item in items:
        if item is Ellipsis:
            axis += len(shape) - explicit
            continue
        if item is None:
            continue
        if axis >= len(shape):
            raise IndexError(f"too many indices for a tensor of shape {shape}")
        size = shape[axis]
        if isinstance(item, int) and not isinstance(item, bool):
            if not -size <= item < size:
                raise IndexError(
                    f"index {item} is out of range for dim {axis} of size {size} (shape {shape})"
                )
        elif backend.is_array(item) and item.dtype.kind in "iu":

            def error(bad: int, axis: int = axis, size: int = size) -> IndexError:
                message = f"index {bad} is out of range for dim {axis} of size {size} (shape {shape})"
                return IndexError(message)

            backend.check_index_range(item, -size, size, error)
        elif backend.is_array(item) and item.dtype.kind == "b":
            axis += item.ndim
            continue
        axis += 1


def _whole(array: Any) -> Any:
    """The recipe of a view of all of an array."""
    return array[...]


def _slice_fn(axis: int, start: int, stop: int | None = None) -> Callable[[Any], Any]:
    """The recipe of piece [start, stop) along ``axis`` (or of slice ``start``, the axis dropped, when
    ``stop`` is None)."""
    item = start if stop is None else slice(start, stop)
    key = (slice(None),) * axis + (item,)
    return lambda array: array[key]
