"""Custom ops written the PyTorch way, on Tensors, running on the engine's raw-array ``Function``.

A subclass of ``tg.autograd.Function`` whose ``forward`` is a ``@staticmethod`` is a PyTorch-style
function::

    class Cube(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale):          # Tensors and any other arguments
            ctx.save_for_backward(x)
            ctx.scale = scale
            return x**3 * scale

        @staticmethod
        def backward(ctx, grad_output):      # one gradient per output
            (x,) = ctx.saved_tensors
            return grad_output * 3 * x**2 * ctx.scale, None   # one per forward input

    y = Cube.apply(x, 2.0)

``apply`` records one engine node (:class:`CustomNode`, named ``<function>Backward``) whose raw-array
``forward``/``backward`` wrap the arrays in Tensors and call the user's methods with recording off, as
PyTorch runs them
(no double backward). Saved tensors go through the node's ``save_for_backward``: they are freed by
backward and checked against in-place changes like any op's.
"""

from __future__ import annotations

from typing import Any

from . import autograd
from .autograd import Function


class FunctionCtx:
    """The ``ctx`` a PyTorch-style ``forward``/``backward`` receives: ``save_for_backward``,
    ``saved_tensors``, ``needs_input_grad``, ``mark_non_differentiable``, and room for any attribute."""

    def __init__(self, node: CustomNode, needs_input_grad: tuple) -> None:
        self._node = node
        self.needs_input_grad = needs_input_grad
        self._to_save: tuple = ()
        self._non_differentiable: list = []

    def save_for_backward(self, *tensors: Any) -> None:
        """Keep input or output tensors (or None) for ``backward``; read them back as ``saved_tensors``."""
        for t in tensors:
            if t is not None and not isinstance(t, autograd.Tensor):
                raise TypeError(
                    f"save_for_backward can only save tensors (or None), got {type(t).__name__}; "
                    "keep other values as attributes of ctx"
                )
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to ``save_for_backward``, in order (raises once backward has freed them)."""
        saved = self._node.saved
        if saved is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time: the saved tensors were freed by "
                "the first backward. Pass retain_graph=True to the first backward() if you need to."
            )
        return tuple(None if a is None else autograd.Tensor._make(a, False, None, 0) for a in saved)

    def mark_non_differentiable(self, *outputs: Any) -> None:
        """Outputs that get no gradient: they do not require grad, and ``backward`` receives zeros
        for them."""
        self._non_differentiable.extend(outputs)


class CustomNode(Function):
    """The engine node of one call of a PyTorch-style function: its arrays in, its arrays out."""

    def forward(
        self, *arrays: Any, function: type, arguments: list, positions: tuple, ctx: FunctionCtx
    ) -> Any:
        args = list(arguments)
        for position, array in zip(positions, arrays):
            args[position] = autograd.Tensor._make(array, False, None, 0)
        with autograd.no_grad():
            result = function.forward(ctx, *args)
        single = not isinstance(result, tuple)
        outputs = (result,) if single else result
        for out in outputs:
            if not isinstance(out, autograd.Tensor):
                raise TypeError(
                    f"{function.__name__}.forward must return a Tensor or a tuple of Tensors, "
                    f"got {type(out).__name__}"
                )
        self.function, self.ctx, self.positions, self.n_args = function, ctx, positions, len(arguments)
        self.argument_shapes = tuple(a.shape for a in arrays)
        self.output_shapes = [(out.shape, out.dtype) for out in outputs]
        self.non_differentiable = [
            k for k, out in enumerate(outputs) if any(out is m for m in ctx._non_differentiable)
        ]
        self.save_for_backward(*[None if t is None else t._data for t in ctx._to_save])
        datas = [out._data for out in outputs]
        return datas[0] if single else tuple(datas)

    @property
    def name(self) -> str:
        """``<function>Backward``, as PyTorch names the node of a custom function."""
        return f"{self.function.__name__}Backward"

    def backward(self, *grad_outputs: Any) -> Any:
        xp = autograd.backend.get_array_module(next((g for g in grad_outputs if g is not None), self.saved))
        grads = []
        for k, g in enumerate(grad_outputs):
            if g is None:  # an output that got no gradient: zeros, as PyTorch's materialize_grads
                shape, dtype = self.output_shapes[k]
                g = xp.zeros(shape, dtype=dtype)
            grads.append(autograd.Tensor._make(g, False, None, 0))
        with autograd.no_grad():
            result = self.function.backward(self.ctx, *grads)
        result = result if isinstance(result, tuple) else (result,)
        name = self.function.__name__
        if len(result) < self.n_args or any(r is not None for r in result[self.n_args :]):
            raise RuntimeError(
                f"{name}.backward returned an incorrect number of gradients "
                f"(expected {self.n_args}, got {len(result)})"
            )
        input_grads = []
        for position, saved_position in enumerate(self.positions):
            g = result[saved_position]
            if g is None:
                input_grads.append(None)
                continue
            data = g._data if isinstance(g, autograd.Tensor) else g
            expected = self.argument_shapes[position]
            try:
                data = autograd.unbroadcast(data, expected) if data.shape != expected else data
            except ValueError:
                data = None
            if data is None or data.shape != expected:
                raise RuntimeError(
                    f"{name}.backward returned an invalid gradient at index {saved_position}: got shape "
                    f"{tuple(g.shape)} but expected shape compatible with {expected}"
                )
            input_grads.append(data)
        for position, g in enumerate(result[: self.n_args]):
            if g is not None and position not in self.positions:
                raise RuntimeError(
                    f"{name}.backward returned a gradient for input {position}, which is not a Tensor"
                )
        return tuple(input_grads)

    def jvp(self, primals, tangents, output, function, arguments, positions, ctx):
        """The user's ``jvp(ctx, *input_tangents)`` staticmethod (PyTorch's custom forward-mode rule),
        called with one Tensor ``(K, *shape)`` per Tensor input (zeros where it carries none; None for
        the other arguments); it returns one tangent per output."""
        if getattr(function, "jvp", Function.jvp) is Function.jvp:
            raise NotImplementedError(
                f"no forward-mode rule for {function.__name__}: "
                "define @staticmethod jvp(ctx, *input_tangents)"
            )
        if ctx._node is None:  # jvp runs inside apply, before apply links ctx to this node
            ctx._node = self
        xp = autograd.backend.get_array_module(primals[0])
        size = max(t.shape[0] for t in tangents if t is not None)
        args: list = [None] * self.n_args
        for position, array, tangent in zip(positions, primals, tangents):
            if tangent is None:
                tangent = xp.zeros((size, *array.shape), dtype=array.dtype)
            full = xp.broadcast_to(tangent, (size, *array.shape))
            args[position] = autograd.Tensor._make(full, False, None, 0)
        with autograd.no_grad():
            result = function.jvp(ctx, *args)
        results = result if isinstance(result, tuple) else (result,)
        arrays = tuple(r._data if isinstance(r, autograd.Tensor) else r for r in results)
        return arrays if isinstance(output, tuple) else arrays[0]


def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
    """Run ``cls.forward(ctx, *args)`` and record one node whose backward is ``cls.backward``."""
    if kwargs:
        raise TypeError(f"{cls.__name__}.apply takes positional arguments only, as PyTorch's")
    positions = tuple(k for k, a in enumerate(args) if isinstance(a, autograd.Tensor))
    tensors = [args[k] for k in positions]
    needs = tuple(isinstance(a, autograd.Tensor) and a.requires_grad and autograd._grad_enabled for a in args)
    arguments = [None if k in positions else a for k, a in enumerate(args)]
    ctx = FunctionCtx(None, needs)  # type: ignore[arg-type]
    if not tensors:
        with autograd.no_grad():
            return cls.forward(ctx, *args)
    result = CustomNode.apply(*tensors, function=cls, arguments=arguments, positions=positions, ctx=ctx)
    outputs = result if isinstance(result, tuple) else (result,)
    node = outputs[0]._ctx
    ctx._node = node if node is not None else _Finished(ctx)
    if node is not None:
        for k in node.non_differentiable:
            outputs[k].requires_grad = False
            outputs[k]._ctx = None
            outputs[k]._index = 0
    return result


class _Finished:
    """Stands in for the node when nothing was recorded (no input requires grad)."""

    def __init__(self, ctx: FunctionCtx) -> None:
        self.saved = ()
