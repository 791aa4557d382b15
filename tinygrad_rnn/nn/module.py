"""``Module`` and ``Parameter``: the containers that hold a model's weights, with PyTorch's names.

A ``Module`` registers every ``Parameter``, buffer and submodule assigned to it as an attribute, so
``parameters()``, ``state_dict()``, ``to(device)`` and ``train()``/``eval()`` reach the whole tree.
The tree is walked iteratively (an explicit stack), like the tape.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor, to_arguments


class Parameter(Tensor):
    """A leaf ``Tensor`` that a ``Module`` registers as one of its weights (``requires_grad=True``).

    ``Parameter(tensor)`` shares the tensor's storage, as in PyTorch; any other data (an array, a list)
    is copied. Ops on a parameter return plain tensors.
    """

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = backend.as_array([], None, backend.get_default_device(), copy=False)
        if isinstance(data, Tensor):
            array = data._data
        else:
            dev = backend.device_of(data) if backend.is_array(data) else backend.get_default_device()
            array = backend.as_array(data, None, dev, copy=True)
        self._data = array
        self._ctx = None
        self._index = 0
        self._version = None
        self._hooks = None
        self.grad = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class RemovableHandle:
    """What ``register_forward_hook`` and ``register_forward_pre_hook`` return: ``remove()`` takes the
    hook off (once; later calls do nothing). Also a context manager that removes it on exit."""

    _next_id = 0

    def __init__(self, registry: OrderedDict, hook: Callable) -> None:
        RemovableHandle._next_id += 1
        self.id = RemovableHandle._next_id
        self._registry = registry
        registry[self.id] = hook

    def remove(self) -> None:
        """Take the hook off."""
        self._registry.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class Module:
    """Base class of every layer and model: subclass it, assign parameters and submodules as
    attributes in ``__init__``, and define ``forward``; call the module to run ``forward``.

    Attributes holding a ``Parameter`` are registered as parameters, a ``Module`` as a submodule, and
    tensors given to :meth:`register_buffer` as buffers (state that is saved but not trained).
    """

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        hooks = self.__dict__.get("_forward_hooks")
        if hooks:
            return self._call_with_hooks(hooks, args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, hooks: dict, args: tuple, kwargs: dict) -> Any:
        for hook in list(hooks["pre"].values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        output = self.forward(*args, **kwargs)
        for hook in list(hooks["post"].values()):
            changed = hook(self, args, output)
            if changed is not None:
                output = changed
        return output

    def _add_hook(self, kind: str, hook: Callable) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(f"a forward hook must be callable, got {type(hook).__name__}")
        hooks = self.__dict__.get("_forward_hooks")
        if hooks is None:
            hooks = {"pre": OrderedDict(), "post": OrderedDict()}
            object.__setattr__(self, "_forward_hooks", hooks)
        return RemovableHandle(hooks[kind], hook)

    def register_forward_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call ``hook(module, args)`` before every ``forward``; a non-None result replaces the positional
        arguments (a single value is wrapped in a tuple). Returns a handle whose ``remove()`` undoes it."""
        return self._add_hook("pre", hook)

    def register_forward_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every ``forward``; a non-None result replaces the
        output. Returns a handle whose ``remove()`` undoes it."""
        return self._add_hook("post", hook)

    # ---- registration ---------------------------------------------------------------------------------

    def _registries(self) -> tuple[OrderedDict, OrderedDict, OrderedDict]:
        try:
            return self.__dict__["_parameters"], self.__dict__["_buffers"], self.__dict__["_modules"]
        except KeyError:
            raise AttributeError(
                f"cannot assign to {type(self).__name__} before Module.__init__() is called; "
                "call super().__init__() first in your __init__"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        parameters, buffers, modules = self._registries()
        if isinstance(value, Parameter):
            self._forget(name, keep=parameters)
            parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=modules)
            modules[name] = value
        elif name in parameters:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to parameter '{name}' of "
                    f"{type(self).__name__}: expected an nn.Parameter or None"
                )
            parameters[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign a {type(value).__name__} to submodule '{name}'")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign a {type(value).__name__} to buffer '{name}'")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: OrderedDict | None = None) -> None:
        """Drop ``name`` from every other place it may live; ``keep`` holds its place in one registry,
        so that replacing an entry keeps its position (and the state-dict order)."""
        self.__dict__.pop(name, None)
        for registry in self._registries():
            if registry is not keep:
                registry.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: the registered entries live in the three registries.
        registries = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = registries.get(key)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        parameters, buffers, modules = self._registries()
        for registry in (parameters, buffers, modules):
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        parameters, buffers, modules = self._registries()
        return sorted(set(super().__dir__()) | set(parameters) | set(buffers) | set(modules))

    @staticmethod
    def _check_name(kind: str, name: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a string, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{kind} name must be non-empty and contain no '.', got {name!r}")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (a ``Parameter`` or None) under ``name``."""
        self._check_name("parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: '{name}' must be an nn.Parameter or None")
        parameters = self._registries()[0]
        self._forget(name, keep=parameters)
        parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a tensor that is state but not a parameter (moved by ``to``; saved in ``state_dict``
        unless ``persistent=False``)."""
        self._check_name("buffer", name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: '{name}' must be a Tensor or None, got {type(tensor).__name__}"
            )
        buffers = self._registries()[1]
        self._forget(name, keep=buffers)
        buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as a submodule called ``name``."""
        self._check_name("module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: '{name}' must be a Module or None, got {type(module).__name__}")
        modules = self._registries()[2]
        self._forget(name, keep=modules)
        modules[name] = module

    register_module = add_module

    # ---- traversal ------------------------------------------------------------------------------------

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted name, module)`` for this module and every submodule, depth first, in
        registration order (each module once unless ``remove_duplicate=False``)."""
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if remove_duplicate:
                if id(module) in seen:
                    continue
                seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module._modules.items()
                if child is not None
            ]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every submodule, depth first."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct submodules with their names."""
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        """The direct submodules."""
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool) -> Iterator:
        seen: set[int] = set()
        owners = self.named_modules(prefix, remove_duplicate) if recurse else [(prefix, self)]
        for owner_name, owner in owners:
            for name, value in getattr(owner, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{owner_name}.{name}" if owner_name else name), value

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted name, parameter)``; a parameter shared by two modules is yielded once."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter of the tree once, in registration order (what an optimizer is given)."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(dotted name, buffer)`` for every buffer of the tree."""
        return self._named_members("_buffers", prefix, recurse, True)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Every buffer of the tree once."""
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and then on this module; returns self."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self

    # ---- modes and gradients --------------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active) on this module and all submodules; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode (``train(False)``); returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradient recording for every parameter on or off (freezing); returns self."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to None (default) or to zeros in place."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad._data[...] = 0

    # ---- devices and dtypes ---------------------------------------------------------------------------

    def _apply_to_arrays(self, convert: Callable[[Any], Any]) -> Module:
        """Replace the data of every parameter, gradient and buffer by ``convert(data)`` in place, so
        that the Parameter objects (and any optimizer holding them) stay the same."""
        for param in self.parameters():
            param._data = convert(param._data)
            param._bump_version()
            if param.grad is not None:
                param.grad._data = convert(param.grad._data)
        for buffer in self.buffers():
            buffer._data = convert(buffer._data)
            buffer._bump_version()
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(device)``, ``to(dtype)`` or ``to(device, dtype)``: move or convert every parameter and
        buffer in place (floating dtypes only are converted); returns self."""
        dev, dtype = to_arguments("Module.to", args, kwargs)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to() only accepts floating dtypes, got {dtype}")

        def convert(array: Any) -> Any:
            if dev is not None:
                array = backend.to_device(array, dev)
            if dtype is not None and array.dtype.kind == "f" and array.dtype != dtype:
                array = array.astype(dtype)
            return array

        return self._apply_to_arrays(convert)

    def cpu(self) -> Module:
        """Move every parameter and buffer to the CPU in place."""
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> Module:
        """Move every parameter and buffer to a GPU in place."""
        if isinstance(device, int):
            device = f"cuda:{device}"
        return self.to(device or "cuda")

    def double(self) -> Module:
        """Convert floating parameters and buffers to float64 in place."""
        return self.to(backend.float64)

    def float(self) -> Module:
        """Convert floating parameters and buffers to float32 in place."""
        return self.to(backend.float32)

    def half(self) -> Module:
        """Convert floating parameters and buffers to float16 in place."""
        return self.to(backend.float16)

    # ---- state dicts ----------------------------------------------------------------------------------

    def _state_tensors(self) -> OrderedDict:
        """name -> tensor for every parameter and persistent buffer, under every name it has."""
        state: OrderedDict = OrderedDict()
        for owner_name, owner in self.named_modules(remove_duplicate=False):
            prefix = f"{owner_name}." if owner_name else ""
            for name, param in owner._parameters.items():
                if param is not None:
                    state[prefix + name] = param
            for name, buffer in owner._buffers.items():
                if buffer is not None and name not in owner._non_persistent:
                    state[prefix + name] = buffer
        return state

    def state_dict(self) -> OrderedDict:
        """name -> NumPy array (a copy) for every parameter and persistent buffer, with dotted names
        such as ``"rnn.weight_ih_l0"``; what ``tg.save`` writes and ``load_state_dict`` reads."""
        return OrderedDict(
            (name, backend.to_numpy(t._data).copy()) for name, t in self._state_tensors().items()
        )

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays from ``state_dict`` into the parameters and buffers in place.

        Every problem is collected first: missing keys and unexpected keys (when ``strict``) and shape
        mismatches or values that are not arrays (always) are reported together in one ``RuntimeError``,
        and then nothing has been changed. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a mapping of name -> array, got {type(state_dict)}")
        own = self._state_tensors()
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        problems, converted = [], {}
        for name, target in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            array = value._data if isinstance(value, Tensor) else value
            try:
                array = backend.as_array(array, target.dtype, target.device, copy=False)
            except (TypeError, ValueError) as error:
                problems.append(f"value for '{name}' is not a numeric array ({error})")
                continue
            if tuple(array.shape) != target.shape:
                problems.append(
                    f"size mismatch for '{name}': copying a value of shape {tuple(array.shape)}, "
                    f"the parameter in the model has shape {target.shape}"
                )
                continue
            converted[name] = array
        if strict:
            if missing:
                problems.insert(0, "missing keys: " + ", ".join(f"'{k}'" for k in missing))
            if unexpected:
                problems.insert(
                    int(bool(missing)), "unexpected keys: " + ", ".join(f"'{k}'" for k in unexpected)
                )
        if problems:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__} (nothing was changed):\n    "
                + "\n    ".join(problems)
            )
        with no_grad():
            for name, array in converted.items():
                own[name].copy_(array)
        return IncompatibleKeys(missing, unexpected)

    # ---- printing -------------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        """The arguments shown inside the parentheses of ``repr`` (one line); override in layers."""
        return ""

    def __repr__(self) -> str:
        # Built bottom-up over the module list, so a deep tree needs no recursion.
        order = list(self.named_modules())
        texts: dict[int, str] = {}
        for _, module in reversed(order):
            lines = []
            extra = module.extra_repr()
            if extra:
                lines.extend(extra.split("\n"))
            for name, child in module._modules.items():
                if child is None:
                    continue
                child_text = texts.get(id(child)) or f"{type(child).__name__}(...)"
                lines.append(f"({name}): " + child_text.replace("\n", "\n  "))
            head = type(module).__name__ + "("
            if not lines:
                texts[id(module)] = head + ")"
            elif len(lines) == 1 and not module._modules:
                texts[id(module)] = head + lines[0] + ")"
            else:
                texts[id(module)] = head + "\n  " + "\n  ".join(lines) + "\n)"
        return texts[id(self)]
