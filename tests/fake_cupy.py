"""A test double for CuPy, so the CUDA code paths of the backend run on machines without a GPU.

``FakeCupy`` wraps NumPy behind its own array type (``FakeArray``, not a ``numpy.ndarray``), its own
devices (``cuda.Device``, ``cuda.runtime.getDeviceCount``) and the CuPy-only entry points the backend
uses (``asnumpy``, ``ElementwiseKernel``, ``cupyx.scatter_add``, ``random.default_rng``). Plugged into
``tinygrad_rnn.backend`` by monkeypatching (:func:`install`), it makes ``"cuda"`` tensors, device
moves, mismatch errors, ``Module.to("cuda")`` and optimizer state placement run in CPU CI.

It is also strict where CuPy is stricter than NumPy, so code that would break on a real GPU breaks
here: no implicit conversion to NumPy (``numpy.asarray(fake)`` raises, as CuPy's does), no NumPy
arrays mixed into its operations or indices, no arrays from two devices in one operation, no
module-level random state (``cupy.random.seed``, ``cupy.random.rand``), no ufunc ``.at`` (use
``cupyx.scatter_add``), no object dtypes, only the functions and methods listed below, and results
that are 0-d arrays where NumPy would return NumPy scalars. ``ndarray.tolist`` is refused too: host
data must leave the device through the backend (``backend.to_numpy``), explicitly.

It also models what makes a first run on a real GPU go wrong: ``install_unimported`` makes it
importable as ``cupy`` without the backend having imported it (a fresh process); ``missing=`` takes
away NVRTC or cuBLAS (CuPy installed without its CUDA library wheels); ``random.default_rng`` gives a
generator whose ``bit_generator.state`` is a method, as in CuPy; integer index arrays out of range
wrap around instead of raising, as CuPy's do; and every device-to-host read (``int()``, ``float()``,
``bool()``, ``.item()``, ``.get()``, ``asnumpy``) is counted in ``host_reads`` (with
``host_read_log``), so a test can assert that a hot path waits for no GPU.

What it does not check: the GPU. It compiles no CUDA, measures no speed, and shares NumPy's numerics;
``ElementwiseKernel`` evaluates the kernel's C body over NumPy arrays with C's arithmetic (a restricted
subset: typed declarations and assignments; ``1 / 2`` is 0), which checks the formula written in the
kernel but not its compilation: ``tools/check_kernels.py`` compiles it with the real NVRTC, and
``benchmarks/gpu_check.sh`` is the check on a real GPU.
"""

from __future__ import annotations

import copy as copy_module
import types
import weakref
from typing import Any

import numpy as np

# Functions of the ``cupy`` namespace this double offers (all exist in CuPy with NumPy's meaning).
FUNCTIONS = frozenset(
    """abs absolute add all allclose amax amin any arange argmax argmin argsort array_equal array_split
    ascontiguousarray broadcast_arrays broadcast_to ceil clip concatenate copyto cos
    count_nonzero cumprod cumsum diag diagonal divide dot einsum empty empty_like equal exp
    expand_dims expm1 eye flip floor fmod full full_like greater greater_equal isclose isfinite isinf
    isnan less less_equal linspace log log1p logaddexp logical_and logical_not logical_or matmul
    max maximum may_share_memory mean min minimum mod moveaxis multiply negative nonzero not_equal
    ones ones_like outer power prod ravel reciprocal repeat reshape round searchsorted sign sin sort split
    sqrt square squeeze stack std subtract sum swapaxes take take_along_axis tanh tensordot tile
    transpose tril triu true_divide trunc var where zeros zeros_like""".split()  # noqa: SIM905
)
# Constants and dtype helpers, passed through unchanged.
CONSTANTS = frozenset(
    """bool_ int8 int16 int32 int64 uint8 float16 float32 float64 dtype newaxis pi e inf nan finfo
    iinfo result_type promote_types can_cast issubdtype integer floating number generic""".split()  # noqa: SIM905
)
LINALG = frozenset(["norm", "svd", "qr", "eigh", "inv", "solve", "det", "cholesky"])
# ndarray methods this double offers (CuPy's ndarray has all of them).
METHODS = frozenset(
    """all any argmax argmin argsort astype clip conj copy cumsum diagonal dot fill flatten max
    mean min nonzero prod ravel repeat reshape round sort squeeze std sum swapaxes take trace
    transpose var view""".split()  # noqa: SIM905
)
# Methods that make a view, so CuPy runs them whatever the current device.
NO_KERNEL = frozenset(["reshape", "transpose", "swapaxes", "squeeze", "view", "diagonal"])
REFUSED = {
    "tolist": "host data leaves the device through backend.to_numpy (CuPy's tolist is a hidden copy)",
    "tobytes": "host data leaves the device through backend.to_numpy",
    "ctypes": "a GPU array has no host pointer",
}
INSTALL_HINT = "this fake models the part of CuPy the backend may use"


class FakeCudaError(RuntimeError):
    """What a CUDA runtime error from CuPy looks like here."""


class _DeviceRef:
    """``array.device``: CuPy's ``cupy.cuda.Device`` of the array (only ``.id`` is read)."""

    __slots__ = ("id",)

    def __init__(self, index: int) -> None:
        self.id = index

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


def _refuse_numpy(value: Any, where: str) -> None:
    raise TypeError(
        f"fake cupy: {where} got a numpy.ndarray (shape {value.shape}); CuPy refuses NumPy arrays "
        "here: move it to the device first (backend.to_device)"
    )


def _unwrap(value: Any, devices: set, where: str, allow_numpy: bool = False) -> Any:
    """Host arrays behind FakeArrays (recording their devices); NumPy arrays are refused."""
    if isinstance(value, FakeArray):
        devices.add(value._device)
        return value._host
    if isinstance(value, np.ndarray):
        if not allow_numpy:
            _refuse_numpy(value, where)
        if value.dtype.kind == "O":
            raise TypeError(f"fake cupy: {where}: CuPy has no object arrays")
        return value
    if isinstance(value, tuple):
        return tuple(_unwrap(v, devices, where, allow_numpy) for v in value)
    if isinstance(value, list):
        return [_unwrap(v, devices, where, allow_numpy) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v, devices, where, allow_numpy) for k, v in value.items()}
    return value


# The stand-in plugged in last; CuPy's "current device" is its state.
_ACTIVE: dict = {"fake": None}


def _host_read(what: str) -> None:
    """Count a device-to-host read: on a GPU each one waits for every kernel queued before it."""
    fake = _ACTIVE["fake"]
    if fake is not None:
        fake.host_reads += 1
        fake.host_read_log.append(what)


def _single_device(devices: set, default: int, where: str) -> int:
    """The GPU an operation runs on: CuPy's current one, which its operands must live on.

    CuPy launches every kernel on the current device and allocates results there; an operand on another
    GPU needs peer access, which this stand-in does not grant (not every machine has it), so code must
    make the operands' GPU current first (the engine does, see ``backend.follow_device``).
    """
    if len(devices) > 1:
        raise ValueError(
            f"fake cupy: {where} mixes arrays from devices {sorted(devices)}; CuPy needs them on one GPU"
        )
    current = _ACTIVE["fake"].current if _ACTIVE["fake"] is not None else default
    if devices and current not in devices:
        raise ValueError(
            f"fake cupy: {where}: the device where the array resides ({next(iter(devices))}) is different "
            f"from the current device ({current}); make it current first (no peer access here)"
        )
    return current


def _as_tuple(index: Any) -> tuple:
    return index if isinstance(index, tuple) else (index,)


def _wrap(value: Any, device: int) -> Any:
    """FakeArrays around NumPy results; NumPy scalars become 0-d arrays, as CuPy returns."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            raise TypeError("fake cupy: CuPy has no object arrays")
        return FakeArray(value, device)
    if isinstance(value, np.generic):
        return FakeArray(np.asarray(value), device)
    if isinstance(value, tuple):
        return tuple(_wrap(v, device) for v in value)
    if isinstance(value, list):
        return [_wrap(v, device) for v in value]
    return value


class _MemoryPool:
    """``cupy.get_default_memory_pool()``: bytes of live arrays that own their memory (``used_bytes``)
    and, like CuPy's pool, a reserve that only grows until ``free_all_blocks`` (``total_bytes``)."""

    def __init__(self) -> None:
        self.used = self.reserved = 0

    def allocate(self, array: FakeArray, nbytes: int) -> None:
        self.used += nbytes
        self.reserved = max(self.reserved, self.used)
        weakref.finalize(array, self.release, nbytes)

    def release(self, nbytes: int) -> None:
        self.used -= nbytes

    def used_bytes(self) -> int:
        return self.used

    def total_bytes(self) -> int:
        return self.reserved

    def free_all_blocks(self) -> None:
        self.reserved = self.used


POOL = _MemoryPool()


class FakeArray:
    """A "GPU" array: a NumPy array it does not let go of, and the index of the device it lives on."""

    __slots__ = ("__weakref__", "_device", "_host")
    __array_ufunc__ = None  # NumPy operators defer to ours, which refuse NumPy operands
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, host: np.ndarray, device: int) -> None:
        self._host = host
        self._device = device
        if host.base is None and host.nbytes:
            POOL.allocate(self, host.nbytes)

    # ---- attributes -----------------------------------------------------------------------------------
    shape = property(lambda self: self._host.shape)
    ndim = property(lambda self: self._host.ndim)
    dtype = property(lambda self: self._host.dtype)
    size = property(lambda self: self._host.size)
    nbytes = property(lambda self: self._host.nbytes)
    itemsize = property(lambda self: self._host.itemsize)
    strides = property(lambda self: self._host.strides)
    T = property(lambda self: FakeArray(self._host.T, self._device))
    device = property(lambda self: _DeviceRef(self._device))

    @property
    def base(self) -> FakeArray | None:
        """The array this one is a view of (``None`` when it owns its memory), as ``cupy.ndarray.base``."""
        base = self._host.base
        if base is None:
            return None
        view = object.__new__(FakeArray)  # not a new allocation: keep it out of the memory pool's count
        view._host, view._device = (base if isinstance(base, np.ndarray) else self._host), self._device
        return view

    def get(self) -> np.ndarray:
        """A host copy, as ``cupy.ndarray.get``."""
        _host_read("ndarray.get")
        return self._host.copy()

    def item(self) -> Any:
        """The Python number of a one-element array: a host read."""
        _host_read("ndarray.item")
        return self._host.item()

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
            "NumPy array explicitly. (fake cupy: go through backend.to_numpy)"
        )

    def __getattr__(self, name: str) -> Any:
        if name in METHODS:
            method = getattr(self._host, name)
            where = f"ndarray.{name}"

            def call(*args: Any, **kwargs: Any) -> Any:
                devices = {self._device}
                args = _unwrap(args, devices, where)
                kwargs = _unwrap(dict(kwargs), devices, where)
                # Views and copies to the host launch no kernel: CuPy does them from any current device.
                kernel = name not in NO_KERNEL
                device = _single_device(devices, self._device, where) if kernel else self._device
                with np.errstate(all="ignore"):
                    return _wrap(method(*args, **kwargs), device)

            return call
        if name in REFUSED:
            raise AttributeError(f"fake cupy: ndarray.{name} is refused: {REFUSED[name]}")
        raise AttributeError(f"fake cupy: ndarray has no attribute {name!r} ({INSTALL_HINT})")

    def __repr__(self) -> str:
        return f"fake_cupy.array({self._host!r}, device={self._device})"

    def __len__(self) -> int:
        return len(self._host)

    def __iter__(self) -> Any:
        return (_wrap(row, self._device) for row in self._host)

    def __float__(self) -> float:
        _host_read("float()")
        return float(self._host)

    def __int__(self) -> int:
        _host_read("int()")
        return int(self._host)

    def __bool__(self) -> bool:
        _host_read("bool()")
        return bool(self._host)

    def __index__(self) -> int:
        _host_read("index")
        return self._host.__index__()

    def __copy__(self) -> FakeArray:
        return FakeArray(self._host.copy(), self._device)

    def __deepcopy__(self, memo: dict) -> FakeArray:
        return FakeArray(copy_module.deepcopy(self._host, memo), self._device)

    def _wrapped(self, host_index: Any) -> Any:
        """Integer index arrays reduced modulo their axis, as CuPy does (it never raises IndexError
        for an out-of-range index array: they wrap around)."""
        items = list(_as_tuple(host_index))
        if not any(isinstance(i, np.ndarray) and i.dtype.kind in "iu" for i in items):
            return host_index
        explicit = sum(1 for i in items if i is not None and i is not Ellipsis)
        axis, wrapped = 0, []
        for i in items:
            if i is Ellipsis:
                axis += self._host.ndim - explicit
            elif isinstance(i, np.ndarray) and i.dtype.kind in "iu" and axis < self._host.ndim:
                size = self._host.shape[axis]
                i = np.mod(i, size) if size else i
            elif isinstance(i, np.ndarray) and i.dtype.kind == "b":
                axis += i.ndim - 1
            if i is not None and i is not Ellipsis:
                axis += 1
            wrapped.append(i)
        return tuple(wrapped) if isinstance(host_index, tuple) else wrapped[0]

    def __getitem__(self, index: Any) -> Any:
        devices = {self._device}
        host_index = self._wrapped(_unwrap(index, devices, "indexing"))
        basic = all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in _as_tuple(index))
        # Basic indexing makes a view (no kernel); index arrays gather on the current device.
        device = self._device if basic else _single_device(devices, self._device, "indexing")
        return _wrap(self._host[host_index], device)

    def __setitem__(self, index: Any, value: Any) -> None:
        devices = {self._device}
        host_index = self._wrapped(_unwrap(index, devices, "index assignment"))
        host_value = _unwrap(value, devices, "index assignment")
        _single_device(devices, self._device, "index assignment")
        self._host[host_index] = host_value


def _binary(name: str) -> Any:
    def operator(self: FakeArray, other: Any) -> Any:
        fake = _ACTIVE["fake"]
        if "matmul" in name and fake is not None and fake.missing == "cublas":
            raise FakeCudaError(
                "CuPy failed to load libcublasLt.so.12: OSError: cannot open shared object file"
            )
        devices = {self._device}
        other = _unwrap(other, devices, f"operator {name}")
        device = _single_device(devices, self._device, f"operator {name}")
        with np.errstate(all="ignore"):
            result = getattr(self._host, name)(other)
        if result is NotImplemented:
            return NotImplemented
        if name.startswith("__i"):
            return self  # in place: the host array was updated
        return _wrap(result, device)

    operator.__name__ = name
    return operator


def _unary(name: str) -> Any:
    def operator(self: FakeArray) -> Any:
        return _wrap(getattr(self._host, name)(), self._device)

    operator.__name__ = name
    return operator


_OPERATORS = "add sub mul truediv floordiv mod pow matmul and or xor lt le gt ge eq ne lshift rshift"
for _name in _OPERATORS.split():
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        if hasattr(np.ndarray, _form):
            setattr(FakeArray, _form, _binary(_form))
for _form in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(FakeArray, _form, _unary(_form))


def _wrapping(function: Any) -> Any:
    """``take``/``take_along_axis`` as CuPy runs them: out-of-range indices wrap around, never raise."""

    def call(array: np.ndarray, indices: Any, axis: Any = None, **kwargs: Any) -> Any:
        size = array.size if axis is None else array.shape[axis]
        if size:
            indices = np.mod(indices, size)
        return function(array, indices, axis=axis, **kwargs)

    return call


class _Function:
    """A CuPy function: unwraps FakeArrays, refuses NumPy arrays, wraps the result on the right GPU."""

    def __init__(self, fake: FakeCupy, name: str, function: Any) -> None:
        self.fake, self.name, self.function = fake, name, function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        where = f"cupy.{self.name}"
        if self.name == "indices" and "sparse" in kwargs:
            raise TypeError("fake cupy: cupy.indices() has no sparse= argument")
        devices: set = set()
        args = _unwrap(args, devices, where)
        kwargs = _unwrap(dict(kwargs), devices, where)
        if kwargs.get("dtype") is not None and np.dtype(kwargs["dtype"]).kind == "O":
            raise TypeError(f"fake cupy: {where}: CuPy has no object arrays")
        # Arrays are made on the GPU of their inputs, or on the current GPU (zeros, arange, ...).
        device = _single_device(devices, self.fake.current, where)
        with np.errstate(all="ignore"):
            result = self.function(*args, **kwargs)
        return _wrap(result, device)

    def __getattr__(self, attribute: str) -> Any:
        raise AttributeError(
            f"fake cupy: cupy.{self.name}.{attribute} is refused: ufunc methods such as .at are "
            "NumPy-specific here; use backend.scatter_add"
        )


class _BitGenerator:
    """``cupy.random.XORWOW``: its ``state`` is a *method* returning a device pointer, as in CuPy 14,
    not NumPy's settable property; assigning to it just hides the method (CuPy's state cannot be set)."""

    def __init__(self, numpy_generator: np.random.Generator) -> None:
        self._numpy_generator = numpy_generator

    def state(self) -> int:
        return id(self._numpy_generator)


class _Generator:
    """``cupy.random.Generator``: NumPy's generator underneath, FakeArrays out."""

    def __init__(self, fake: FakeCupy, seed: Any) -> None:
        self.fake, self.device = fake, fake.current
        self.numpy_generator = np.random.default_rng(seed)
        self.bit_generator = _BitGenerator(self.numpy_generator)

    def _draw(self, method: str, *args: Any, **kwargs: Any) -> FakeArray:
        if self.fake.current != self.device:
            raise FakeCudaError("fake cupy: a generator draws on the GPU it was created on")
        return FakeArray(np.asarray(getattr(self.numpy_generator, method)(*args, **kwargs)), self.device)

    def standard_normal(self, size: Any = None, dtype: Any = np.float64) -> FakeArray:
        return self._draw("standard_normal", size, dtype=dtype)

    def random(self, size: Any = None, dtype: Any = np.float64) -> FakeArray:
        return self._draw("random", size, dtype=dtype)

    def integers(self, low: int, high: Any = None, size: Any = None, dtype: Any = np.int64) -> FakeArray:
        return self._draw("integers", low, high, size=size, dtype=dtype)


class _Random(types.SimpleNamespace):
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"fake cupy: cupy.random.{name} is refused: module-level random state is shared and "
            "unseeded by tg.manual_seed; draw from backend.generator(device)"
        )


class FakeCupy:
    """The ``cupy`` module as seen by the backend; ``device_count=0`` models CuPy without a GPU.

    ``missing`` names a CUDA library the machine lacks, as on a driver-only machine with CuPy installed
    without its toolkit wheels: ``"nvrtc"`` (no elementwise kernel compiles) or ``"cublas"`` (no
    matrix product runs). Everything else still works there, as with the real CuPy.
    """

    def __init__(self, device_count: int = 1, missing: str | None = None) -> None:
        self.device_count = device_count
        self.missing = missing
        self._stack = [0]
        self.kernels: list = []
        fake = self
        self.ndarray = FakeArray

        class Device:
            """``cupy.cuda.Device``: a context manager that makes a GPU current."""

            def __init__(self, index: int | None = None) -> None:
                self.id = fake.current if index is None else int(index)
                if not 0 <= self.id < fake.device_count:
                    raise FakeCudaError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")

            def __enter__(self) -> Device:
                fake._stack.append(self.id)
                return self

            def __exit__(self, *exc: Any) -> None:
                fake._stack.pop()

            def use(self) -> None:
                fake._stack[-1] = self.id

            def synchronize(self) -> None:
                fake.synchronized += 1
                fake.synchronized_devices.append(self.id)

            compute_capability = "90"

        def get_device_count() -> int:
            if fake.device_count == 0:
                raise FakeCudaError("cudaErrorNoDevice: no CUDA-capable device is detected")
            return fake.device_count

        def get_device_properties(index: int) -> dict:
            return {"name": f"Fake GPU {index}".encode()}

        self.synchronized = 0
        self.synchronized_devices: list[int] = []
        self.host_reads = 0
        self.host_read_log: list[str] = []
        runtime = types.SimpleNamespace(
            getDeviceCount=get_device_count,
            getDeviceProperties=get_device_properties,
            getDevice=lambda: fake.current,
            runtimeGetVersion=lambda: 12090,
        )
        self.cuda = types.SimpleNamespace(Device=Device, runtime=runtime)
        self.random = _Random(default_rng=lambda seed=None: _Generator(fake, seed))
        self.linalg = types.SimpleNamespace(
            **{name: _Function(self, f"linalg.{name}", getattr(np.linalg, name)) for name in LINALG}
        )
        self.cupyx = types.SimpleNamespace(scatter_add=self._scatter_add)

    @property
    def current(self) -> int:
        return self._stack[-1]

    def __getattr__(self, name: str) -> Any:
        if name in ("take", "take_along_axis"):
            return _Function(self, name, _wrapping(getattr(np, name)))
        if name in FUNCTIONS or name == "indices":
            return _Function(self, name, getattr(np, name))
        if name in CONSTANTS:
            return getattr(np, name)
        raise AttributeError(f"fake cupy: cupy.{name} is not offered ({INSTALL_HINT})")

    def asarray(self, data: Any, dtype: Any = None) -> FakeArray:
        """``cupy.asarray``: device arrays pass through unless the dtype changes; host data is copied."""
        if isinstance(data, FakeArray):
            if dtype is None or np.dtype(dtype) == data.dtype:
                return data
            return FakeArray(data._host.astype(dtype), data._device)
        return self._from_host("asarray", data, dtype)

    def array(self, data: Any, dtype: Any = None, copy: bool = True) -> FakeArray:
        """``cupy.array``: a copy on the current GPU."""
        if isinstance(data, FakeArray):
            return FakeArray(np.array(data._host, dtype=dtype, copy=True), self.current)
        return self._from_host("array", data, dtype)

    def _from_host(self, name: str, data: Any, dtype: Any) -> FakeArray:
        if self.device_count == 0:
            raise FakeCudaError("cudaErrorNoDevice: no CUDA-capable device is detected")
        host = np.array(_unwrap(data, set(), f"cupy.{name}", allow_numpy=True), dtype=dtype, copy=True)
        if host.dtype.kind == "O":
            raise TypeError("fake cupy: CuPy has no object arrays")
        return FakeArray(host, self.current)

    @staticmethod
    def get_default_memory_pool() -> _MemoryPool:
        return POOL

    def asnumpy(self, array: Any) -> np.ndarray:
        """``cupy.asnumpy``: a host copy."""
        if isinstance(array, FakeArray):
            _host_read("asnumpy")
            return array._host.copy()
        return np.asarray(array)

    def matmul(self, *args: Any, **kwargs: Any) -> Any:
        if self.missing == "cublas":
            raise FakeCudaError(
                "CuPy failed to load libcublasLt.so.12: OSError: cannot open shared object file"
            )
        return _Function(self, "matmul", np.matmul)(*args, **kwargs)

    def ElementwiseKernel(self, in_params: str, out_params: str, operation: str, name: str) -> Any:
        from fake_cupy_kernel import ElementwiseKernel

        if self.missing == "nvrtc":
            raise FakeCudaError("CuPy failed to load libnvrtc.so.12: OSError: cannot open shared object file")
        kernel = ElementwiseKernel(self, in_params, out_params, operation, name)
        if name != "tinygrad_rnn_cuda_trial":  # `kernels`: those the ops built, not the availability trial
            self.kernels.append(kernel)
        return kernel

    @staticmethod
    def _scatter_add(target: FakeArray, indices: Any, values: Any) -> None:
        devices = {target._device}
        host_indices = target._wrapped(_unwrap(indices, devices, "cupyx.scatter_add"))
        host_values = _unwrap(values, devices, "cupyx.scatter_add")
        _single_device(devices, target._device, "cupyx.scatter_add")
        np.add.at(target._host, host_indices, host_values)


def install_unimported(monkeypatch: Any, device_count: int = 1, missing: str | None = None) -> FakeCupy:
    """Make a fresh ``FakeCupy`` importable as ``cupy`` (and ``cupyx``) while the backend has not
    imported it yet, as in a fresh process where the user imports CuPy before tinygrad_rnn does."""
    import sys

    from tinygrad_rnn import backend

    fake = FakeCupy(device_count, missing)
    monkeypatch.setitem(_ACTIVE, "fake", fake)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", fake.cupyx)
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cupyx", None)
    monkeypatch.setattr(backend, "_cupy_tried", False)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_cuda_usable", None)
    monkeypatch.setattr(backend, "_generators", {})
    monkeypatch.setattr(backend, "_kernels", {})
    monkeypatch.setattr(backend, "_constants", {})
    monkeypatch.setattr(backend, "_deferred", [])
    return fake


def install(monkeypatch: Any, device_count: int = 1, missing: str | None = None) -> FakeCupy:
    """Make ``tinygrad_rnn.backend`` use a fresh ``FakeCupy`` for the rest of a test."""
    from tinygrad_rnn import backend

    fake = FakeCupy(device_count, missing)
    monkeypatch.setitem(_ACTIVE, "fake", fake)
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_cupyx", fake.cupyx)
    monkeypatch.setattr(backend, "_cupy_tried", True)
    monkeypatch.setattr(backend, "_cupy_error", None)
    monkeypatch.setattr(backend, "_cuda_usable", None)
    monkeypatch.setattr(backend, "_generators", {})
    monkeypatch.setattr(backend, "_kernels", {})
    monkeypatch.setattr(backend, "_constants", {})
    monkeypatch.setattr(backend, "_deferred", [])
    return fake
