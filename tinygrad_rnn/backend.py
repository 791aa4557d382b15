"""Array backends: the only module that imports NumPy or CuPy.

Every op reaches its arrays through ``xp``, the array module of the device the data lives on, so no
op is written twice. CuPy is imported lazily and guarded: a machine without it (or without a GPU)
runs everything on NumPy and gets a clear error only when it asks for ``"cuda"``.

Devices are spelled as in PyTorch: ``"cpu"``, ``"cuda"`` (GPU 0) and ``"cuda:N"``.

CuPy runs kernels and allocates on its *current* GPU. So that a tensor on ``cuda:N`` is computed on
N, every op makes its operands' GPU current before running (:func:`follow_device`), and so do
factories and moves for their target (:func:`use_device`); the switch is left in place, so array
code that follows (an optimizer's update) runs on the same GPU.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_cupy: Any = None
_cupyx: Any = None  # CuPy's extras (scatter_add lives there), imported with CuPy
_cupy_error: str | None = None
_cupy_tried = False
_cuda_usable: tuple[bool, str] | None = None  # (usable, why not): the cached result of a trial run
TRIAL_KERNEL = "tinygrad_rnn_cuda_trial"  # the kernel of that trial run: (inputs, outputs, body, name)
TRIAL_KERNEL_DEFINITION = ("T x", "T y", "y = x * x + 1;", TRIAL_KERNEL)

NUMPY_ARRAY = np.ndarray
CUDA_INSTALL_HINT = (
    'install CuPy for CUDA 12 with its CUDA libraries: pip install -e ".[cuda]" (or ".[cuda13]" for CUDA 13)'
)


def _load_cupy() -> Any:
    """Import CuPy once; remember why it failed so the error can say what is missing."""
    global _cupy, _cupyx, _cupy_error, _cupy_tried
    if not _cupy_tried:
        _cupy_tried = True
        try:
            import cupy
            import cupyx

            _cupy, _cupyx = cupy, cupyx
        except Exception as error:  # ImportError, or a broken CUDA installation
            _cupy_error = f"{type(error).__name__}: {error}"
    return _cupy


def _loaded_cupy() -> Any:
    """CuPy when it is imported, by us or by the user; ``None`` otherwise, without importing it.

    A CuPy array can exist only once ``cupy`` is in ``sys.modules``, so asking whether a value is a
    CuPy array never needs an import, but must not miss an array the user made before any of our
    code imported CuPy (a fresh process calling ``tg.tensor(cupy_array)``).
    """
    if _cupy is None and not _cupy_tried and "cupy" in sys.modules:
        _load_cupy()
    return _cupy


def cuda_device_count() -> int:
    """Number of CUDA devices CuPy can see; 0 without CuPy or without a GPU."""
    cupy = _load_cupy()
    if cupy is None:
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


def cuda_is_available() -> bool:
    """True when CuPy imports, sees a GPU, and an elementwise kernel and a matrix product run on it.

    CuPy imports and counts GPUs without the CUDA libraries it needs to compute (NVRTC compiles the
    elementwise kernels, cuBLAS runs matmul), so only a trial run shows that ``"cuda"`` works. It runs
    once per process, on GPU 0; the reason for a failure is kept for :func:`require_cuda`'s error.
    """
    return _cuda_trial()[0]


def _cuda_trial() -> tuple[bool, str]:
    global _cuda_usable
    if _cuda_usable is None:
        cupy = _load_cupy()
        if cupy is None:
            _cuda_usable = (False, f"CuPy is not installed or failed to import ({_cupy_error})")
        elif cuda_device_count() == 0:
            _cuda_usable = (False, "CuPy is installed and found no CUDA GPU on this machine")
        else:
            try:
                with cupy.cuda.Device(0):
                    a = cupy.arange(4, dtype=cupy.float32).reshape(2, 2)
                    kernel = cupy.ElementwiseKernel(*TRIAL_KERNEL_DEFINITION)
                    # One host read, once per process: the kernels must have run, not just queued.
                    ok = float((kernel(a) @ a).sum()) == 66.0
                wrong = "a trial kernel on GPU 0 computed a wrong result"
                _cuda_usable = (True, "") if ok else (False, wrong)
            except Exception as error:  # a missing libnvrtc/libcublas, a driver too old, ...
                _cuda_usable = (
                    False,
                    f"CuPy found a GPU but could not compute on it ({type(error).__name__}: {error})",
                )
    return _cuda_usable


class Device:
    """A place where arrays live: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``,
    ``Device("cuda", 1)`` or ``Device(1)``; public as ``tg.device``, like ``torch.device``.

    Compares equal to its string spelling, so ``tensor.device == "cpu"`` works as in PyTorch.
    """

    __slots__ = ("index", "type")

    def __init__(self, spec: str | int | Device = "cpu", index: int | None = None) -> None:
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if isinstance(spec, int) and not isinstance(spec, bool):
            # As torch.device(1): a bare index names a GPU.
            if spec < 0:
                raise ValueError(f"device index must be non-negative, got {spec}")
            self.type, self.index = "cuda", spec
            return
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(spec).__name__}")
        kind, _, number = spec.strip().lower().partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if number:
            if not number.isdigit():
                raise ValueError(f"unknown device {spec!r}: the index after ':' must be a number")
            if index is not None and index != int(number):
                raise ValueError(f"device {spec!r} contradicts index={index}")
            index = int(number)
        if kind == "cpu":
            if index not in (None, 0):
                raise ValueError(f"device 'cpu' has no index {index}")
            index = None
        elif index is None:
            index = 0
        self.type, self.index = kind, index

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (TypeError, ValueError):
                return False
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = Device("cpu")


def device(spec: str | int | Device | None, index: int | None = None) -> Device:
    """A device object from PyTorch's spellings: ``device("cuda:0")``, ``device("cuda", 1)``,
    ``device(0)`` (the GPU of that index), or a :class:`Device`; ``None`` gives the default device."""
    if spec is None:
        return get_default_device()
    if isinstance(spec, Device):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0:
            raise ValueError(f"device index must be non-negative, got {spec}")
        return Device("cuda", spec)
    return Device(spec, index)


def require_cuda(dev: Device) -> Any:
    """Return CuPy for a CUDA device, or raise an error that says exactly what is missing."""
    cupy = _load_cupy()
    if cupy is None:
        raise RuntimeError(
            f"device {dev} was requested but CuPy is not installed or failed to import "
            f"({_cupy_error}); {CUDA_INSTALL_HINT}"
        )
    count = cuda_device_count()
    if count == 0:
        raise RuntimeError(
            f"device {dev} was requested but CuPy is installed and found no CUDA GPU on this machine "
            "(check that a GPU and its driver are visible, e.g. with nvidia-smi, and that the CuPy wheel "
            f"matches the CUDA version); {CUDA_INSTALL_HINT}"
        )
    if dev.index is not None and dev.index >= count:
        raise RuntimeError(f"device {dev} was requested but only {count} CUDA device(s) exist")
    usable, reason = _cuda_trial()
    if not usable:
        raise RuntimeError(f"device {dev} was requested but {reason}; {CUDA_INSTALL_HINT}")
    return cupy


def xp_for(dev: Device) -> Any:
    """The array module (``numpy`` or ``cupy``) that holds arrays on ``dev``."""
    if dev.type == "cpu":
        return np
    return require_cuda(dev)


def get_array_module(array: Any) -> Any:
    """The array module of an existing array, without importing CuPy for NumPy data."""
    if type(array) is np.ndarray:  # the common case first: every op calls this
        return np
    if isinstance(array, np.ndarray | np.generic):
        return np
    cupy = _loaded_cupy()
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy
    return np


def device_of(array: Any) -> Device:
    """The device an array lives on."""
    if isinstance(array, np.ndarray | np.generic):
        return CPU
    return Device("cuda", int(array.device.id))


def is_array(value: Any) -> bool:
    """True for NumPy arrays and NumPy scalars, and for CuPy arrays (CuPy is imported when they exist)."""
    if isinstance(value, np.ndarray | np.generic):
        return True
    cupy = _loaded_cupy()
    return cupy is not None and isinstance(value, cupy.ndarray)


def ensure_array(value: Any) -> Any:
    """Turn a NumPy scalar (what NumPy returns for 0-d results) into a 0-d array; arrays pass through."""
    if isinstance(value, np.generic):
        return np.asarray(value)
    return value


def to_device(array: Any, dev: Device) -> Any:
    """Move (or keep) an array on ``dev``; a no-op when it is already there."""
    if dev.type == "cpu":
        if isinstance(array, np.ndarray):
            return array
        cupy = _loaded_cupy()
        if cupy is not None and isinstance(array, cupy.ndarray):
            check_deferred()  # data read on the host must not come from an unchecked bad index
            return cupy.asnumpy(array)
        return np.asarray(array)
    cupy = use_device(dev)
    if isinstance(array, cupy.ndarray):
        if array.device.id == dev.index:
            return array
        # cupy.asarray would hand back the array on its own GPU; copy it to this one.
        return cupy.array(array, copy=True)
    return cupy.asarray(array)


def use_device(dev: Device) -> Any:
    """Make a GPU CuPy's current device and leave it so (see :func:`follow_device`); returns CuPy."""
    cupy = require_cuda(dev)
    if dev.index != cupy.cuda.runtime.getDevice():
        cupy.cuda.Device(dev.index).use()
    return cupy


def follow_device(array: Any) -> None:
    """Make the GPU of a CuPy array CuPy's current device, and leave it so.

    CuPy runs kernels and allocates on its current device, not on the operands' one. Ops call this
    before running, so that a model on ``cuda:1`` computes and allocates there (as in PyTorch) and the
    array code that follows an op (an optimizer's update, buffers made with ``zeros_like``) lands on
    the same GPU. A no-op for NumPy arrays and when the GPU is already current.
    """
    if isinstance(array, np.ndarray | np.generic) or _loaded_cupy() is None:
        return
    index = array.device.id
    if index != _cupy.cuda.runtime.getDevice():
        _cupy.cuda.Device(index).use()


def device_guard(array: Any) -> Any:
    """For a CuPy array on a GPU other than CuPy's current one, a context that makes its GPU current
    for a block (CuPy allocates results there); ``None`` otherwise."""
    if isinstance(array, np.ndarray | np.generic) or _loaded_cupy() is None:
        return None
    index = array.device.id
    if index == _cupy.cuda.runtime.getDevice():
        return None
    return _cupy.cuda.Device(index)


_constants: dict[tuple, Any] = {}
_MAX_CONSTANTS = 512


def scalar_like(value: Any, dtype: Any, array: Any) -> Any:
    """A 0-d array holding ``value`` on the device of ``array`` (an operand such as the 2 in ``x * 2``).

    Read-only: on a GPU the array is shared between calls with the same value, dtype and device, so
    ``x * 2`` in a loop allocates and fills a device scalar once rather than at every step (on NumPy a
    0-d array costs less than the lookup). Ops never write into their inputs, so sharing is safe.
    """
    if isinstance(array, np.ndarray | np.generic):
        return np.asarray(value, dtype=dtype)
    follow_device(array)
    dtype = np.dtype(dtype)
    # type(value) is part of the key: True == 1 == 1.0 must not share one cached array
    key = (type(value), value, dtype, array.device.id)
    constant = _constants.get(key)
    if constant is None:
        if len(_constants) >= _MAX_CONSTANTS:
            _constants.clear()
        constant = _constants[key] = _cupy.asarray(value, dtype=dtype)
    return constant


def to_numpy(array: Any) -> Any:
    """A host (NumPy) copy or view of any backend array."""
    return to_device(array, CPU)


def scatter_add(target: Any, indices: Any, values: Any) -> None:
    """``target[indices] += values`` with repeated indices accumulated (unbuffered), in place."""
    if isinstance(target, np.ndarray):
        np.add.at(target, indices, values)
    else:
        _cupyx.scatter_add(target, indices, values)


def row_sums(indices: Any, values: Any, rows: int) -> Any:
    """A fresh (rows, *values.shape[indices.ndim:]) array ``out`` with out[r] = Σ values[k] over the
    positions k where indices[k] == r (zero for rows never named): ``scatter_add`` into zeros.

    ``indices`` must lie in [0, rows). On NumPy the positions are sorted (stably) by row and each run
    is summed by ``add.reduceat``, about 4x faster than ``add.at``'s unbuffered per-element loop for an
    embedding's backward pass; the terms are the same, their summation order within a row may differ
    (``reduceat`` sums in blocks), so a row's sum can differ from the sequential one by rounding.
    """
    if not isinstance(values, np.ndarray):
        out = _cupy.zeros((rows, *values.shape[indices.ndim :]), dtype=values.dtype)
        _cupyx.scatter_add(out, indices, values)
        return out
    flat = indices.reshape(-1)
    out = np.zeros((rows, *values.shape[indices.ndim :]), dtype=values.dtype)
    if flat.size == 0:
        return out
    order = np.argsort(flat, kind="stable")
    sorted_rows = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_rows[1:] != sorted_rows[:-1])))
    grouped = values.reshape(flat.size, -1).take(order, axis=0)
    # "+=" into zeros, not "=": a lone -0.0 becomes +0.0 there, as add.at into zeros gives.
    out.reshape(rows, -1)[sorted_rows[starts]] += np.add.reduceat(grouped, starts, axis=0)
    return out


# ---- index checks without a host read on a GPU ----------------------------------------------------------
#
# Checking that device-resident indices are in range takes a reduction and a read of its result on the
# host, which waits for every kernel queued before it. Done per call (an embedding lookup, a loss), that
# serialises the GPU with Python. So indices that live on a GPU are checked *later*, as PyTorch's CUDA
# kernels do with device-side asserts: the reductions are queued now, and their results are read, all in
# one transfer, at the next point where data reaches the host anyway (``Tensor.item``, ``.numpy()``,
# ``to("cpu")``, ``tg.cuda.synchronize``), or once ``_MAX_DEFERRED`` checks have piled up. CuPy wraps
# out-of-range indices around rather than faulting, so nothing crashes in between, and no value computed
# from a bad index reaches the host without the error. Host indices are checked at once, on the host.

_deferred: list[tuple[Any, Any, Callable[[int], BaseException]]] = []
_MAX_DEFERRED = 64


def check_index_range(
    indices: Any, low: int, high: int, error: Callable[[int], BaseException], ignore: int | None = None
) -> None:
    """Raise ``error(bad)`` for an index outside ``[low, high)`` (entries equal to ``ignore`` exempt).

    Host (NumPy) indices are checked now; GPU indices later, without a host read per call (see above).
    """
    if not indices.size:
        return
    xp = get_array_module(indices)
    if ignore is not None:
        # In-range stand-in for the exempt entries, so min and max see only the checked ones.
        indices = xp.where(indices == ignore, low, indices)
    if xp is np:
        smallest, largest = int(indices.min()), int(indices.max())
        if smallest < low or largest >= high:
            raise error(smallest if smallest < low else largest)
        return
    with device_guard(indices) or contextlib.nullcontext():
        extremes = xp.stack([indices.min(), indices.max()]).astype(np.int64)
    _deferred.append((extremes, (low, high), error))
    if len(_deferred) >= _MAX_DEFERRED:
        check_deferred()


def check_deferred() -> None:
    """Read the results of the queued GPU index checks (one transfer per GPU) and raise the first failure."""
    if not _deferred:
        return
    pending = list(_deferred)
    _deferred.clear()
    by_device: dict[int, list] = {}
    for entry in pending:
        by_device.setdefault(entry[0].device.id, []).append(entry)
    for index, entries in by_device.items():
        with _cupy.cuda.Device(index):
            values = _cupy.asnumpy(_cupy.stack([extremes for extremes, _, _ in entries]))
        for (smallest, largest), (_, (low, high), error) in zip(values.tolist(), entries):
            if smallest < low or largest >= high:
                raise error(smallest if smallest < low else largest)


def host_item(array: Any) -> Any:
    """The Python number held by a one-element array (a host read on a GPU, after the deferred checks)."""
    if type(array) is not np.ndarray:
        check_deferred()
    return array.reshape(()).item()


# ---- .npz files (for serialization.py; never pickle) -----------------------------------------------


def save_npz(file: Any, arrays: dict[str, Any]) -> None:
    """Write host arrays as members of an uncompressed ``.npz`` archive to an open binary file."""
    np.savez(file, **arrays)


def load_npz(path: Any) -> dict[str, Any] | None:
    """Read every member of an ``.npz`` archive (a path, or a seekable binary file object read from its
    current position) with pickle disabled; None when the file is a plain ``.npy`` array rather than an
    archive. Errors from reading a damaged file propagate; a member whose header claims more data than
    the member holds raises ``ValueError`` before anything is allocated."""
    if hasattr(path, "read"):
        start = path.tell()
        magic = path.read(6)
        path.seek(start)
    else:
        with open(path, "rb") as file:
            magic = file.read(6)
    if magic == b"\x93NUMPY":
        return None
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return None
    with loaded:
        arrays = {}
        for name in loaded.files:
            _check_npz_member(loaded.zip, name)
            arrays[name] = loaded[name]
        return arrays


def _check_npz_member(archive: Any, name: str) -> None:
    """Refuse a member whose .npy header asks for more bytes than it stores: a damaged or hostile
    header (shape (2**40,)) would otherwise make NumPy try to allocate terabytes."""
    info = archive.getinfo(name + ".npy")
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        stored = info.file_size - member.tell()
    if dtype.hasobject:
        return  # stored as a pickle, which np.load refuses with its own clear message
    claimed = dtype.itemsize * int(np.prod(shape, dtype=object))
    if claimed > stored:
        raise ValueError(f"member {name!r} claims {claimed} bytes of data but stores {stored}")


# ---- dtypes ---------------------------------------------------------------------------------------

float16, float32, float64 = np.dtype("float16"), np.dtype("float32"), np.dtype("float64")
int32, int64, bool_ = np.dtype("int32"), np.dtype("int64"), np.dtype("bool")
_default_dtype = float32


def as_dtype(dtype: Any) -> Any:
    """Normalise a dtype spelling (``"float32"``, ``np.float64``, ``tg.float64``) to a NumPy dtype."""
    try:
        return np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"not a dtype: {dtype!r}") from error


def finfo(dtype: Any) -> Any:
    """Machine limits of a floating dtype (NumPy's ``finfo``: eps, max, min, tiny, bits, resolution)."""
    return np.finfo(dtype)


def iinfo(dtype: Any) -> Any:
    """Limits of an integer dtype (NumPy's ``iinfo``: max, min, bits); bool counts as 0..1."""
    return np.iinfo(np.uint8 if np.dtype(dtype).kind == "b" else dtype)


def get_default_dtype() -> Any:
    return _default_dtype


def set_default_dtype(dtype: Any) -> None:
    """Set the dtype given to Python numbers, lists and factories (float32 unless changed)."""
    global _default_dtype
    dtype = as_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"the default dtype must be a floating dtype, got {dtype}")
    _default_dtype = dtype


def _default_device_from_environment() -> Device:
    spec = os.environ.get("TINYGRAD_RNN_DEVICE", "cpu")
    try:
        return Device(spec)
    except (TypeError, ValueError) as error:
        raise ValueError(f"TINYGRAD_RNN_DEVICE={spec!r} is not a device: {error}") from None


_default_device: Device | None = None


def get_default_device() -> Device:
    """The device factories use when none is given: ``TINYGRAD_RNN_DEVICE`` or ``"cpu"``."""
    global _default_device
    if _default_device is None:
        _default_device = _default_device_from_environment()
    return _default_device


def set_default_device(spec: str | Device) -> None:
    global _default_device
    _default_device = Device(spec)


def as_array(data: Any, dtype: Any, dev: Device, copy: bool) -> Any:
    """Build a backend array on ``dev`` from Python data or any array, applying the default-dtype rule.

    Floating arrays keep their dtype; Python floats and lists of them get the default dtype; integers
    become int64 and booleans bool, as in PyTorch.
    """
    xp = xp_for(dev)
    if is_array(data):
        array = data
        if dtype is None and array.dtype.kind not in "fiub":
            raise TypeError(f"unsupported array dtype {array.dtype}")
    else:
        try:
            array = np.asarray(data)
        except ValueError as error:  # nested sequences of different lengths
            raise ValueError(f"cannot build a tensor from ragged nested sequences ({error})") from None
        if array.dtype.kind not in "biufc":
            raise TypeError(f"cannot build a tensor from {type(data).__name__} holding non-numbers")
        if dtype is None:
            if array.dtype.kind == "f" or array.dtype.kind == "c":
                dtype = _default_dtype
            elif array.dtype.kind in "iu":
                dtype = int64
        copy = False if dtype is not None else copy
    if dtype is not None:
        dtype = as_dtype(dtype)
    if dev.type == "cpu":
        array = to_device(array, CPU)
        return np.array(array, dtype=dtype, copy=True) if copy else np.asarray(array, dtype=dtype)
    use_device(dev)
    return xp.array(array, dtype=dtype, copy=True) if copy else xp.asarray(array, dtype=dtype)


# ---- random numbers --------------------------------------------------------------------------------

_seed: int | None = None
_generators: dict[Device, Any] = {}


def manual_seed(seed: int) -> None:
    """Seed the generators of every device, so runs are reproducible."""
    global _seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"manual_seed: seed must be an int, got {seed!r}")
    _seed = int(seed)
    _generators.clear()
    _fork_counts.clear()


def generator(dev: Device) -> Any:
    """The random generator for ``dev``: ``numpy.random.Generator`` or ``cupy.random.Generator``."""
    gen = _generators.get(dev)
    if gen is None:
        # Each device gets its own stream derived from the one seed, so moving a model
        # between devices does not shift the CPU's stream.
        seed = None if _seed is None else _seed + (0 if dev.type == "cpu" else 1 + (dev.index or 0))
        gen = np.random.default_rng(seed) if dev.type == "cpu" else use_device(dev).random.default_rng(seed)
        _generators[dev] = gen
    return gen


def _sampling_dtype(dtype: Any) -> Any:
    # Both libraries' generators draw float32 or float64 only; other dtypes are cast afterwards.
    return dtype if dtype in (float32, float64) else float64


def random_normal(shape: tuple[int, ...], dtype: Any, dev: Device) -> Any:
    """Standard normal numbers from the device's generator."""
    return normal_from(generator(dev), shape, dtype, dev)


def random_uniform(shape: tuple[int, ...], dtype: Any, dev: Device) -> Any:
    """Uniform numbers in [0, 1) from the device's generator."""
    return uniform_from(generator(dev), shape, dtype, dev)


def random_integers(low: int, high: int, shape: tuple[int, ...], dev: Device) -> Any:
    """Integers in [low, high) from the device's generator."""
    return integers_from(generator(dev), low, high, shape, dev)


def _use_if_gpu(dev: Device) -> None:
    # CuPy's generators draw on the current device.
    if dev.type != "cpu":
        use_device(dev)


_fork_counts: dict[Device, int] = {}


def generator_fork(dev: Device) -> Any:
    """A token from which :func:`generator_rewound` replays the draws ``dev``'s generator makes next.

    NumPy's generator state is a host value that can be read and set. CuPy's cannot be set (its
    ``bit_generator.state`` is a method returning a device pointer), so on a GPU the device gets a
    fresh generator here, seeded on the host from the manual seed and a counter (no host read of the
    device), and the token is that seed: the draws after a fork are reproducible from it, and after
    ``manual_seed`` the same sequence of forks gives the same streams.
    """
    gen = generator(dev)
    if dev.type == "cpu":
        return gen.bit_generator.state
    count = _fork_counts.get(dev, 0)
    _fork_counts[dev] = count + 1
    entropy = None if _seed is None else [_seed, 1 + (dev.index or 0), count]
    seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)  # fits an int64
    _generators[dev] = use_device(dev).random.default_rng(seed)
    return seed


@contextlib.contextmanager
def generator_rewound(dev: Device, token: Any) -> Iterator[None]:
    """Draws on ``dev`` inside the block repeat those made after :func:`generator_fork` gave ``token``;
    afterwards the device's generator is the one from before the block, where it was."""
    previous = generator(dev)
    if dev.type == "cpu":
        current = previous.bit_generator.state
        previous.bit_generator.state = token
        try:
            yield
        finally:
            previous.bit_generator.state = current
        return
    _generators[dev] = use_device(dev).random.default_rng(token)
    try:
        yield
    finally:
        _generators[dev] = previous


# ---- CUDA utilities: synchronisation, names, fused elementwise kernels --------------------------------


def cuda_synchronize(dev: Device) -> None:
    """Wait until every kernel queued on ``dev`` has finished (what a GPU timing must do); then raise
    the error of any deferred index check that failed, as PyTorch reports device-side asserts here."""
    require_cuda(dev).cuda.Device(dev.index).synchronize()
    check_deferred()


def cuda_current_device() -> int:
    """The index of CuPy's current GPU."""
    return int(require_cuda(Device("cuda")).cuda.Device().id)


def cuda_device_name(dev: Device) -> str:
    """The GPU's product name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    cupy = require_cuda(dev)
    name = cupy.cuda.runtime.getDeviceProperties(dev.index)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def cuda_memory_pool(dev: Device) -> Any:
    """CuPy's default memory pool; its byte counts are those of the current GPU, so ask with ``dev``
    current (``with require_cuda(dev).cuda.Device(dev.index): ...``)."""
    return require_cuda(dev).get_default_memory_pool()


_kernels: dict[tuple, Any] = {}


def fused_kernel(array: Any, in_params: str, out_params: str, operation: str, name: str) -> Any:
    """A compiled ``cupy.ElementwiseKernel`` for an array on a GPU, or ``None`` for a NumPy array.

    The kernel is built once per definition (CuPy compiles it on first call and caches the binary).
    ``operation`` is the C body applied to every element; the callers in ``fused_ops.py`` keep it to
    declarations and assignments of arithmetic, ``exp`` and ``tanh``.
    """
    if isinstance(array, np.ndarray | np.generic) or _loaded_cupy() is None:
        return None
    key = (in_params, out_params, operation, name)
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = _cupy.ElementwiseKernel(in_params, out_params, operation, name)
    return kernel


# ---- generators: the NumPy-backed core of tg.Generator (random.py holds the public class) --------------
#
# A generator owns one random stream (a ``numpy.random.Generator`` on the CPU, a CuPy one on a GPU).
# The *default* generator of a device is the stream above (``generator(dev)``), so ``tg.randn`` and a
# shuffling DataLoader draw from one sequence, as in PyTorch. Without ``manual_seed`` the streams derive
# from a seed drawn from the operating system once per process, so ``initial_seed()`` can report it.

SEED_BITS = 64
if _seed is None:
    # Unseeded runs still differ from process to process, but each knows its seed.
    _seed = int(np.random.SeedSequence().entropy) & (2**63 - 1)
_stream_seeds: dict[Device, tuple[int, Any]] = {}  # a device's default stream reseeded on its own


def fresh_seed() -> int:
    """A non-deterministic seed from the operating system's entropy (63 bits, fits an int64)."""
    return int(np.random.SeedSequence().entropy) & (2**63 - 1)


def check_seed(seed: Any, caller: str) -> int:
    """A seed as PyTorch takes it: an int in [-2⁶³, 2⁶⁴); a negative one wraps modulo 2⁶⁴."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{caller}: seed must be an int, got {seed!r}")
    seed = int(seed)
    if not -(2**63) <= seed < 2**SEED_BITS:
        raise ValueError(f"{caller}: seed {seed} is out of range [-2**63, 2**64)")
    return seed % 2**SEED_BITS


def new_stream(dev: Device, seed: int) -> Any:
    """A fresh random stream on ``dev`` started from ``seed``."""
    if dev.type == "cpu":
        return np.random.default_rng(seed)
    return use_device(dev).random.default_rng(seed)


def reseed_default_stream(dev: Device, seed: int) -> None:
    """Restart one device's default stream from ``seed`` (what ``default_generator.manual_seed`` does)."""
    stream = new_stream(dev, seed)
    _generators[dev] = stream
    _stream_seeds[dev] = (seed, stream)


def default_stream_seed(dev: Device) -> int:
    """The seed the default stream of ``dev`` started from."""
    own = _stream_seeds.get(dev)
    if own is not None and _generators.get(dev) is own[1]:
        return own[0]
    return _seed + (0 if dev.type == "cpu" else 1 + (dev.index or 0))


def stream_state(stream: Any) -> Any:
    """A CPU stream's full state as a uint8 array (PCG64's 128-bit state and increment, and the
    buffered half-word), which :func:`set_stream_state` restores exactly."""
    if not isinstance(stream, np.random.Generator):
        raise RuntimeError("the state of a CUDA generator cannot be read; use a CPU generator for get_state")
    state = stream.bit_generator.state
    if state["bit_generator"] != "PCG64":
        raise RuntimeError(f"unsupported bit generator {state['bit_generator']}")
    words = [state["state"]["state"], state["state"]["inc"], state["has_uint32"], state["uinteger"]]
    data = b"".join(int(word).to_bytes(size, "little") for word, size in zip(words, (16, 16, 1, 4)))
    return np.frombuffer(data, dtype=np.uint8).copy()


def set_stream_state(stream: Any, state: Any) -> None:
    """Restore a state from :func:`stream_state` into a CPU stream."""
    if not isinstance(stream, np.random.Generator):
        raise RuntimeError("the state of a CUDA generator cannot be set; use a CPU generator for set_state")
    data = np.asarray(to_numpy(state))
    if data.dtype != np.uint8 or data.shape != (37,):
        raise ValueError(
            f"set_state: expected the uint8 array of 37 bytes that get_state returns, got dtype {data.dtype} "
            f"and shape {data.shape}"
        )
    raw = data.tobytes()
    words = [int.from_bytes(raw[a:b], "little") for a, b in ((0, 16), (16, 32), (32, 33), (33, 37))]
    stream.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": words[0], "inc": words[1]},
        "has_uint32": words[2],
        "uinteger": words[3],
    }


def normal_from(stream: Any, shape: tuple[int, ...], dtype: Any, dev: Device) -> Any:
    """Standard normal numbers from a given stream (a generator's), on ``dev``."""
    _use_if_gpu(dev)
    return stream.standard_normal(shape, dtype=_sampling_dtype(dtype)).astype(dtype, copy=False)


def uniform_from(stream: Any, shape: tuple[int, ...], dtype: Any, dev: Device) -> Any:
    """Uniform numbers in [0, 1) from a given stream, on ``dev``."""
    _use_if_gpu(dev)
    return stream.random(shape, dtype=_sampling_dtype(dtype)).astype(dtype, copy=False)


def integers_from(stream: Any, low: int, high: int, shape: tuple[int, ...], dev: Device) -> Any:
    """Integers in [low, high) (int64) from a given stream, on ``dev``."""
    _use_if_gpu(dev)
    return stream.integers(low, high, size=shape, dtype=int64)


def permutation_from(stream: Any, n: int, dev: Device) -> Any:
    """A random permutation of 0 … n-1 (int64) from a given stream, on ``dev``: the order of ``n``
    uniform keys, so CPU and GPU streams need nothing beyond ``random``."""
    _use_if_gpu(dev)
    keys = stream.random((n,), dtype=float64)
    return get_array_module(keys).argsort(keys, kind="stable").astype(int64, copy=False)


def multinomial_from(
    stream: Any, probabilities: Any, num_samples: int, replacement: bool, dev: Device
) -> Any:
    """``num_samples`` category indices per row of non-negative weights (rows sum to anything > 0),
    with or without replacement, as ``torch.multinomial``; (rows, num_samples) int64 on ``dev``."""
    _use_if_gpu(dev)
    xp = get_array_module(probabilities)
    weights = xp.asarray(probabilities, dtype=float64)
    rows = weights.reshape(-1, weights.shape[-1])
    totals = rows.sum(axis=1, keepdims=True)
    if replacement:
        cumulative = xp.cumsum(rows / totals, axis=1)
        cumulative[:, -1] = 1.0  # rounding may leave the last edge just below 1
        draws = stream.random((rows.shape[0], num_samples), dtype=float64)
        picks = xp.stack(
            [xp.searchsorted(cumulative[i], draws[i], side="right") for i in range(rows.shape[0])]
        )
    else:
        # Gumbel-top-k: sorting log w - log(-log u) draws without replacement in proportion to w.
        u = stream.random(rows.shape, dtype=float64)
        with np.errstate(divide="ignore"):
            keys = xp.log(rows) - xp.log(-xp.log(u))
        picks = xp.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
    return picks.reshape((*weights.shape[:-1], num_samples)).astype(int64, copy=False)
