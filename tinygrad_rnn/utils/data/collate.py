"""Collation: how a ``DataLoader`` merges a list of samples into one batch (``default_collate``), and
converts single samples when batching is off (``default_convert``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ... import backend
from ...functions import stack, tensor
from ...tensor import Tensor

__all__ = ["default_collate", "default_convert"]


def _array_tensor(values: list[Any], where: str) -> Tensor:
    """Stack arrays or NumPy scalars of one shape into a Tensor of their dtype."""
    first = values[0]
    if first.dtype.kind not in "biuf":
        raise TypeError(
            f"default_collate: {where} holds arrays of dtype {first.dtype}; only numbers, booleans and "
            "tensors can be batched (pass a collate_fn to batch other data)"
        )
    shapes = {tuple(getattr(v, "shape", ())) for v in values}
    if len(shapes) != 1:
        raise RuntimeError(f"default_collate: {where} has arrays of different shapes {sorted(shapes)}")
    xp = backend.get_array_module(first)
    return Tensor._make(xp.stack([xp.asarray(v) for v in values]), False, None, 0)


def default_collate(batch: Sequence[Any]) -> Any:
    """Merge a list of samples into a batch, as PyTorch's ``default_collate``:

    Tensors → ``tg.stack`` (a new first dimension); NumPy arrays and scalars → a Tensor of their dtype;
    Python floats → float64, ints → int64 and bools → bool tensors of shape (B,); strings and bytes →
    the list unchanged; dicts → a dict of collated values per key; namedtuples → the same namedtuple of
    collated fields; tuples and lists (of equal length) → a list of collated positions. Anything else
    raises ``TypeError``.
    """
    return _collate(list(batch), "the batch")


def _collate(batch: list[Any], where: str) -> Any:
    if not batch:
        raise ValueError(f"default_collate: {where} is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        shapes = [t.shape for t in batch if isinstance(t, Tensor)]
        if len(shapes) != len(batch):
            raise TypeError(f"default_collate: {where} mixes Tensors with other types")
        if len(set(shapes)) != 1:
            first_other = next(i for i, s in enumerate(shapes) if s != shapes[0])
            raise RuntimeError(
                f"default_collate: stack expects each tensor to be equal size, but {where} has "
                f"{shapes[0]} at entry 0 and {shapes[first_other]} at entry {first_other} (pad the samples, "
                "e.g. with nn.utils.rnn.pad_sequence in a collate_fn)"
            )
        return stack(batch, 0)
    if isinstance(elem, str | bytes):
        return batch
    if backend.is_array(elem):
        return _array_tensor(batch, where)
    if isinstance(elem, bool):
        return tensor(batch)
    if isinstance(elem, int):
        return tensor(batch, dtype=backend.int64)
    if isinstance(elem, float):
        return tensor(batch, dtype=backend.float64)
    if isinstance(elem, Mapping):
        for i, sample in enumerate(batch):
            missing = [key for key in elem if key not in sample]
            if missing:
                raise KeyError(f"default_collate: sample {i} of {where} lacks the key(s) {missing}")
        merged = {key: _collate([sample[key] for sample in batch], f"{where}[{key!r}]") for key in elem}
        try:
            return type(elem)(merged)
        except TypeError:
            return merged
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(
            *(_collate(list(field), f"{where}.{name}") for name, field in zip(elem._fields, zip(*batch)))
        )
    if isinstance(elem, Sequence):
        size = len(elem)
        if any(len(sample) != size for sample in batch):
            raise RuntimeError(
                f"default_collate: each element in list of batch should be of equal size ({where})"
            )
        merged_list = [_collate(list(column), f"{where}[{i}]") for i, column in enumerate(zip(*batch))]
        if isinstance(elem, tuple):
            return merged_list  # PyTorch returns a list for tuples too
        try:
            return type(elem)(merged_list)
        except TypeError:
            return merged_list
    raise TypeError(
        f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
        f"{type(elem).__name__} in {where}"
    )


def default_convert(data: Any) -> Any:
    """What a DataLoader without batching (``batch_size=None``) applies to each sample: NumPy arrays and
    scalars become Tensors, containers are converted inside, everything else is left as it is."""
    if isinstance(data, Tensor | str | bytes):
        return data
    if backend.is_array(data):
        return _array_tensor([data], "the sample")[0] if data.dtype.kind in "biuf" else data
    if isinstance(data, Mapping):
        converted = {key: default_convert(value) for key, value in data.items()}
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(value) for value in data))
    if isinstance(data, tuple):
        return [default_convert(value) for value in data]
    if isinstance(data, list):
        return [default_convert(value) for value in data]
    return data
