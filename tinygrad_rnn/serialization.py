"""``tg.save`` and ``tg.load``: state dicts as ``.npz`` files, never pickle, written atomically.

Both take a path or an open binary file object (``open(..., "wb")``/``"rb"``, ``io.BytesIO``), as
``torch.save``/``torch.load`` do; a file object is written at, or read from, its current position.

A saved object is a tree of dicts, lists and tuples whose leaves are arrays (or Tensors), numbers,
strings, booleans and None: a model's ``state_dict()`` (name -> array) or an optimizer's (nested dicts
and lists of numbers and arrays). Every array becomes one member of the archive (``a0``, ``a1``, ...);
the tree itself is JSON, stored as a uint8 array in the member ``__tinygrad_rnn__``, with tags that keep
what JSON would lose (integer dict keys, tuples, NaN and infinities, NumPy scalars).

Loading uses ``allow_pickle=False`` and reads only arrays and JSON, so a file cannot run code. A file
that needs pickle, is truncated or corrupted, or is an ``.npz`` written by something else is refused
with an error that names the path and the problem.

Writing to a path goes to a temporary file in the same directory, which is flushed, fsynced and then
renamed over the destination with ``os.replace`` (atomic on POSIX and Windows): a crash mid-write
leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import zipfile
from typing import Any

from . import backend
from .tensor import Tensor

__all__ = ["load", "save"]

STRUCTURE_MEMBER = "__tinygrad_rnn__"
FORMAT = "tinygrad_rnn.state"
VERSION = 1


# Deeper than any state a program saves; an explicit bound, so that how deep a corrupted file may nest
# does not depend on the interpreter's recursion limit or on how its comprehensions use frames.
MAX_DEPTH = 200


class _Encoder:
    """Turns a state tree into JSON-able data, collecting its arrays as numbered archive members."""

    def __init__(self) -> None:
        self.arrays: dict[str, Any] = {}

    def array(self, value: Any, where: str) -> str:
        host = backend.to_numpy(backend.ensure_array(value))
        if host.dtype.kind not in "biufc":
            raise TypeError(
                f"save: {where} is an array of dtype {host.dtype}, which cannot be saved without pickle"
            )
        name = f"a{len(self.arrays)}"
        self.arrays[name] = host
        return name

    def encode(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            # Refused before anything is written, since load would refuse the file.
            raise ValueError(f"save: the state nests over {MAX_DEPTH} levels deep (at {where[:80]}...)")
        if isinstance(value, Tensor):
            return {"$array": self.array(value._data, where)}
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": repr(value)}
        if backend.is_array(value):
            # A NumPy scalar (np.float32(1.5)) comes back as a scalar of its dtype, not a 0-d array.
            tag = "$scalar" if isinstance(value, backend.np.generic) else "$array"
            return {tag: self.array(value, where)}
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if not (key is None or isinstance(key, bool | int | float | str)):
                    raise TypeError(
                        f"save: {where} has a key of type {type(key).__name__}; "
                        "keys must be strings, numbers or None"
                    )
                items.append([self.encode(key, where), self.encode(item, f"{where}[{key!r}]", depth + 1)])
            return {"$dict": items}
        if isinstance(value, list | tuple):
            encoded = [self.encode(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
            return {"$tuple" if isinstance(value, tuple) else "$list": encoded}
        if callable(getattr(value, "state_dict", None)):
            # A module, optimizer or scheduler: saving the object would need pickle; its state dict does not.
            raise TypeError(
                f"save: {where} is a {type(value).__name__} object, which cannot be saved without pickle; "
                f"save its state_dict() instead: tg.save(obj.state_dict(), path), and rebuild the "
                f"{type(value).__name__} in code before calling load_state_dict(tg.load(path))"
            )
        raise TypeError(
            f"save: {where} is a {type(value).__name__}; only dicts, lists, tuples, arrays, Tensors, "
            "numbers, strings, booleans and None can be saved"
        )


def _decode(value: Any, arrays: dict[str, Any], path: str, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ValueError(f"load: {path!r} is corrupted: its structure nests over {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, content),) = value.items()
        if tag in ("$array", "$scalar"):
            if not isinstance(content, str) or content not in arrays:
                raise ValueError(
                    f"load: {path!r} is corrupted: it refers to a missing array member {content!r}"
                )
            array = arrays[content]
            return array[()] if tag == "$scalar" else array
        if tag == "$float" and content in ("nan", "inf", "-inf"):
            return float(content)
        if tag in ("$list", "$tuple") and isinstance(content, list):
            items = [_decode(item, arrays, path, depth + 1) for item in content]
            return tuple(items) if tag == "$tuple" else items
        if tag == "$dict" and isinstance(content, list):
            decoded = {}
            for pair in content:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError(f"load: {path!r} is corrupted: a dict entry is not a key-value pair")
                key = _decode(pair[0], arrays, path, depth + 1)
                if not (key is None or isinstance(key, bool | int | float | str)):
                    raise ValueError(f"load: {path!r} is corrupted: a dict key is not a string or number")
                decoded[key] = _decode(pair[1], arrays, path, depth + 1)
            return decoded
    raise ValueError(f"load: {path!r} is corrupted: unexpected entry {str(value)[:80]} in its structure")


def save(state: Any, f: str | os.PathLike | Any) -> None:
    """Write ``state`` (a state dict or checkpoint: nested dicts/lists/tuples of arrays, Tensors,
    numbers, strings) to ``f`` as an ``.npz`` archive without pickle: to a path atomically (see the
    module docstring), or into an open binary file object at its position (the object stays open).

    Tensors and CuPy arrays are saved as host NumPy arrays. Raises ``TypeError`` naming the entry
    that cannot be saved (before anything is written); a module or optimizer object itself is refused
    with a pointer to its ``state_dict()``.
    """
    encoder = _Encoder()
    root = encoder.encode(state, "state")
    text = json.dumps({"format": FORMAT, "version": VERSION, "root": root}, allow_nan=False)
    members = dict(encoder.arrays)
    members[STRUCTURE_MEMBER] = backend.np.frombuffer(text.encode("utf-8"), dtype=backend.np.uint8)

    if hasattr(f, "write"):
        _save_to_file_object(members, f)
        return
    if not isinstance(f, str | os.PathLike):
        raise TypeError(f"save: expected a path or a binary file object to write to, got {type(f).__name__}")
    path = os.fspath(f)
    if os.path.isdir(path):
        raise IsADirectoryError(f"save: {path!r} is a directory; give the path of a file to write")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"save: cannot write {path!r}: the directory {directory!r} does not exist")
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            backend.save_npz(file, members)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _file_mode(path))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_directory(directory)


def _save_to_file_object(members: dict[str, Any], file: Any) -> None:
    if isinstance(file, io.TextIOBase) or "b" not in getattr(file, "mode", "b"):
        raise TypeError("save: the file object is open in text mode; open it in binary mode ('wb')")
    buffer = io.BytesIO()
    backend.save_npz(buffer, members)
    # One write of the finished archive: an error while encoding never leaves half an archive behind.
    file.write(buffer.getvalue())
    flush = getattr(file, "flush", None)
    if flush is not None:
        flush()


def _file_mode(path: str) -> int:
    """Keep the mode of the file being replaced; a new file gets the usual 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable where the platform allows opening a directory."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load(f: str | os.PathLike | Any, map_location: Any = None, *, weights_only: bool | None = None) -> Any:
    """Read a file written by :func:`save` (a path, or a binary file object read from its position to
    its end) and return the same tree, with host NumPy arrays for arrays.

    ``map_location`` is accepted as in ``torch.load`` (a device or its name, a dict of names, or a
    function) and checked, but nothing is moved: arrays come back as NumPy arrays, and
    ``load_state_dict`` copies them onto each parameter's own device. ``weights_only`` is accepted for
    the same reason; this loader never unpickles, whatever its value.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for one that
    needs pickle, is truncated or corrupted, or was not written by :func:`save`. No code in the file is
    ever run.
    """
    _check_map_location(map_location)
    if weights_only is not None and not isinstance(weights_only, bool):
        raise TypeError(f"load: weights_only must be a bool or None, got {weights_only!r}")
    if hasattr(f, "read"):
        source: Any = _read_file_object(f)
        path = getattr(f, "name", None)
        path = path if isinstance(path, str) else f"<{type(f).__name__}>"
    else:
        if not isinstance(f, str | os.PathLike):
            raise TypeError(f"load: expected a path or a binary file object, got {type(f).__name__}")
        path = source = os.fspath(f)
        if not os.path.exists(path):
            raise FileNotFoundError(f"load: no such file {path!r}")
    try:
        members = backend.load_npz(source)
    except ValueError as error:
        if "pickle" in str(error):
            raise ValueError(
                f"load: {path!r} needs pickle to load ({error}); refusing, since unpickling can run code"
            ) from None
        raise ValueError(f"load: {path!r} is not a readable .npz file ({error})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, NotImplementedError) as error:
        if isinstance(error, KeyError) and "data.pkl" in str(error):
            # torch.save writes a zip archive whose tree is a pickle (data.pkl); it reaches here as a
            # member that is not an array.
            raise ValueError(
                f"load: {path!r} is a PyTorch checkpoint (a zip archive of pickled objects), which cannot "
                "be read without unpickling; convert it once where PyTorch is installed: "
                "tinygrad_rnn.save({k: v.numpy() for k, v in torch.load(f).items()}, path), then "
                "model.load_state_dict(tinygrad_rnn.load(path))"
            ) from None
        # NotImplementedError: zipfile's answer to a damaged version or compression field.
        raise ValueError(
            f"load: {path!r} is truncated or corrupted ({type(error).__name__}: {error})"
        ) from None
    if members is None:
        raise ValueError(f"load: {path!r} holds a single .npy array, not a state saved by tinygrad_rnn.save")
    if STRUCTURE_MEMBER not in members:
        raise ValueError(
            f"load: {path!r} is an .npz archive that was not written by tinygrad_rnn.save "
            f"(it has no {STRUCTURE_MEMBER!r} member; members: {sorted(members)[:8]})"
        )
    raw = members.pop(STRUCTURE_MEMBER)
    try:
        if raw.dtype != backend.np.uint8 or raw.ndim != 1:
            raise ValueError("the structure member is not a byte string")
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"load: {path!r} is corrupted: its structure cannot be read ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or "root" not in header:
        raise ValueError(f"load: {path!r} is corrupted: its structure has no {FORMAT!r} header")
    if header.get("version") != VERSION:
        raise ValueError(
            f"load: {path!r} has format version {header.get('version')!r}; this version reads {VERSION}"
        )
    try:
        return _decode(header["root"], members, path)
    except RecursionError:
        raise ValueError(f"load: {path!r} is corrupted: its structure is nested too deeply") from None


def _read_file_object(file: Any) -> io.BytesIO:
    """The rest of an open file as an in-memory binary file (NumPy needs to seek inside the archive)."""
    data = file.read()
    if isinstance(data, str):
        raise TypeError("load: the file object is open in text mode; open it in binary mode ('rb')")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"load: reading the file object gave {type(data).__name__}, expected bytes")
    return io.BytesIO(bytes(data))


def _check_map_location(map_location: Any) -> None:
    """Accept what torch.load accepts for ``map_location`` and refuse anything else by name."""
    if map_location is None or callable(map_location):
        return
    if isinstance(map_location, dict):
        for key, value in map_location.items():
            _check_map_location(key)
            _check_map_location(value)
        return
    if isinstance(map_location, str | backend.Device):
        try:
            backend.device(map_location)
        except (TypeError, ValueError) as error:
            raise ValueError(f"load: map_location {map_location!r} is not a device ({error})") from None
        return
    raise TypeError(
        "load: map_location must be a device, a device name, a dict or a function, "
        f"got {type(map_location).__name__}"
    )
