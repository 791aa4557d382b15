"""Variable-length batches (``tinygrad_rnn.nn.utils.rnn``), as in ``torch.nn.utils.rnn``.

A batch of sequences of different lengths L_0, ..., L_{B-1} is *packed* by sorting the sequences by
length (longest first) and laying their elements out time step by time step: step t holds the
b_t = #{j : L_j > t} sequences still running, so ``data`` has Σ_j L_j rows and ``batch_sizes`` is
(b_0, b_1, ...), non-increasing. A recurrent layer given a ``PackedSequence`` runs each sequence only
to its own length (see ``nn/packed.py``).

Packing and padding are gathers with index arrays computed from the lengths: one ``GetItem`` op
each, so gradients flow back to the padded input (padding positions get zero gradient).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Sequence
from typing import Any

from ... import backend, functions
from ...tensor import Tensor

__all__ = [
    "PackedSequence",
    "invert_permutation",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
]

_np = backend.np

_PackedSequenceFields = namedtuple(
    "PackedSequence", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"]
)


def _int64_cpu(values: Any) -> Tensor:
    return Tensor(_np.asarray(values, dtype=_np.int64))


def invert_permutation(permutation: Tensor | None) -> Tensor | None:
    """The inverse permutation: ``out[permutation[i]] = i`` (None stays None)."""
    if permutation is None:
        return None
    values = _host(permutation)
    inverse = _np.empty_like(values)
    inverse[values] = _np.arange(values.shape[0], dtype=values.dtype)
    return Tensor(inverse).to(permutation.device)


def _host(t: Tensor) -> Any:
    """An integer tensor's values as a NumPy array on the host."""
    return _np.asarray(backend.to_device(t._data, backend.Device("cpu")), dtype=_np.int64)


class PackedSequence(_PackedSequenceFields):
    """A packed batch of variable-length sequences, a named tuple as in PyTorch.

    Fields: ``data`` (Σ_j L_j, *) the elements, step by step, each step's running sequences in sorted
    order; ``batch_sizes`` a 1-D int64 CPU tensor, b_t = number of sequences longer than t;
    ``sorted_indices`` (int64, on ``data``'s device) the original batch index of each sorted position,
    None when the batch was packed already sorted; ``unsorted_indices`` its inverse. Build one with
    ``pack_padded_sequence`` or ``pack_sequence``.
    """

    def __new__(
        cls,
        data: Tensor,
        batch_sizes: Tensor | None = None,
        sorted_indices: Tensor | None = None,
        unsorted_indices: Tensor | None = None,
    ) -> PackedSequence:
        if batch_sizes is None:
            # PyTorch also accepts the old form PackedSequence((data, batch_sizes)).
            if not isinstance(data, tuple | list) or len(data) != 2:
                raise TypeError("PackedSequence: expected data and batch_sizes")
            data, batch_sizes = data
        if not isinstance(data, Tensor) or data.ndim < 1:
            raise TypeError(f"PackedSequence: data must be a Tensor with at least 1 dim, got {data!r}")
        if not isinstance(batch_sizes, Tensor) or batch_sizes.ndim != 1 or batch_sizes.dtype.kind not in "iu":
            raise TypeError("PackedSequence: batch_sizes must be a 1-D integer tensor")
        if batch_sizes.device != "cpu":
            raise ValueError(f"PackedSequence: batch_sizes must be on the CPU, got {batch_sizes.device}")
        sizes = _host(batch_sizes)
        if sizes.size and (sizes.min() <= 0 or (_np.diff(sizes) > 0).any() or sizes.sum() != data.shape[0]):
            raise ValueError(
                f"PackedSequence: batch_sizes {sizes.tolist()} must be positive, non-increasing and sum to "
                f"data.shape[0] = {data.shape[0]}"
            )
        if unsorted_indices is None:
            unsorted_indices = invert_permutation(sorted_indices)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def to(self, *args: Any, **kwargs: Any) -> PackedSequence:
        """``data`` moved/converted by ``Tensor.to``; the indices follow ``data``'s device, ``batch_sizes``
        stays on the CPU. Returns ``self`` when nothing changes."""
        data = self.data.to(*args, **kwargs)
        if data is self.data:
            return self
        move = None if self.sorted_indices is None else self.sorted_indices.to(data.device)
        back = None if self.unsorted_indices is None else self.unsorted_indices.to(data.device)
        return type(self)(data, self.batch_sizes, move, back)

    def cpu(self) -> PackedSequence:
        """This packed batch on the CPU."""
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> PackedSequence:
        """This packed batch on a GPU."""
        return self.to(f"cuda:{device}" if isinstance(device, int) else device or "cuda")

    def double(self) -> PackedSequence:
        """``data`` converted to float64."""
        return self.to(backend.float64)

    def float(self) -> PackedSequence:
        """``data`` converted to float32."""
        return self.to(backend.float32)

    @property
    def is_cuda(self) -> bool:
        """True when ``data`` is on a GPU."""
        return self.data.device.type == "cuda"


# ---- index arrays --------------------------------------------------------------------------------------


def _lengths_of(batch_sizes: Any) -> Any:
    """Sorted lengths from batch sizes: L_j = #{t : b_t > j}."""
    if not batch_sizes.size:
        return _np.zeros(0, dtype=_np.int64)
    return (batch_sizes[None, :] > _np.arange(batch_sizes[0])[:, None]).sum(axis=1).astype(_np.int64)


def _check_lengths(lengths: Any) -> Any:
    """``lengths`` (list, tuple or CPU tensor) as a 1-D int64 NumPy array."""
    if isinstance(lengths, Tensor):
        if lengths.device != "cpu" or lengths.ndim != 1:
            raise RuntimeError(
                "'lengths' argument should be a 1D CPU int64 tensor, but got "
                f"{lengths.ndim}D {lengths.device} {lengths.dtype} tensor (move it with lengths.cpu())"
            )
        return lengths._data.astype(_np.int64)
    try:
        values = _np.asarray(lengths)
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or values.dtype.kind not in "iuf":
        raise TypeError(f"lengths must be a 1-D list or CPU tensor of ints, got {lengths!r}")
    return values.astype(_np.int64)


def pack_padded_sequence(
    input: Tensor, lengths: Tensor | Sequence[int], batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Pack a padded batch (T, B, *) (or (B, T, *) with ``batch_first``) whose sequence j has length
    ``lengths[j]`` into a ``PackedSequence``.

    With ``enforce_sorted`` the lengths must already be non-increasing (``sorted_indices`` is then None);
    otherwise the sequences are sorted by length, longest first (ties keep their order), and the
    permutation is kept in ``sorted_indices``. ``data[row] = input[t, sorted_indices[j]]`` for the row
    of step t, sorted position j < b_t; the gradient scatters back to those positions (zero elsewhere).
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"pack_padded_sequence: input must be a Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(
            f"pack_padded_sequence: input must have at least 2 dims (T, B, *), got {input.shape}"
        )
    if input.numel() == 0:
        raise RuntimeError(f"Cannot pack empty tensors (input shape {input.shape}).")
    values = _check_lengths(lengths)
    batch_dim, time_dim = (0, 1) if batch_first else (1, 0)
    batch, steps = input.shape[batch_dim], input.shape[time_dim]
    if values.shape[0] != batch:
        raise RuntimeError(
            "Expected `len(lengths)` to be equal to batch_size, but got "
            f"{values.shape[0]} (batch_size={batch})"
        )
    if values.min() <= 0:
        raise RuntimeError(
            "Length of all samples has to be greater than 0, but found an element in 'lengths' that is <= 0 "
            f"(lengths {values.tolist()})"
        )
    if enforce_sorted:
        if (_np.diff(values) > 0).any():
            raise RuntimeError(
                "`lengths` array must be sorted in decreasing order when `enforce_sorted` is True. You can "
                "pass `enforce_sorted=False` to pack_padded_sequence and/or pack_sequence to sidestep this "
                f"requirement if you do not need ONNX exportability. (lengths {values.tolist()})"
            )
        order = _np.arange(batch)
        sorted_indices = None
    else:
        order = _np.argsort(-values, kind="stable")
        sorted_indices = _int64_cpu(order).to(input.device)
    values = values[order]
    if values[0] > steps:
        raise RuntimeError(
            f"pack_padded_sequence: the longest length is {values[0]} but the input has only {steps} time "
            f"steps (input shape {input.shape}, batch_first={batch_first})"
        )
    batch_sizes = (values[None, :] > _np.arange(values[0])[:, None]).sum(axis=1)
    times, positions = _rows(batch_sizes)
    columns = order[positions]
    data = input[(columns, times) if batch_first else (times, columns)]
    return PackedSequence(data, _int64_cpu(batch_sizes), sorted_indices, None)


def _rows(batch_sizes: Any) -> tuple[Any, Any]:
    """For every packed row, its time step t and sorted position j."""
    times = _np.repeat(_np.arange(batch_sizes.shape[0]), batch_sizes)
    starts = _np.concatenate(([0], _np.cumsum(batch_sizes)[:-1]))
    return times, _np.arange(times.shape[0]) - _np.repeat(starts, batch_sizes)


def pad_packed_sequence(
    sequence: PackedSequence,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Inverse of ``pack_padded_sequence``: returns (padded, lengths).

    ``padded`` is (T, B, *) (or (B, T, *) with ``batch_first``) in the original batch order, with
    T = ``total_length`` or the longest length, ``padding_value`` past each sequence's end; ``lengths``
    is a 1-D int64 CPU tensor in the original order. Gradient: each padded position inside a sequence
    passes its gradient to its packed row; the padding gets none.
    """
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"pad_packed_sequence: expected a PackedSequence, got {type(sequence).__name__}")
    data = sequence.data
    batch_sizes = _host(sequence.batch_sizes)
    longest = batch_sizes.shape[0]
    steps = longest
    if total_length is not None:
        if total_length < longest:
            raise ValueError(
                "Expected total_length to be at least the length of the longest sequence in input, but got "
                f"total_length={total_length} and max sequence length being {longest}"
            )
        steps = int(total_length)
    lengths = _lengths_of(batch_sizes)
    batch = lengths.shape[0]
    position = (
        _np.arange(batch) if sequence.unsorted_indices is None else _host(sequence.unsorted_indices)
    )  # sorted position of each original column
    starts = _np.concatenate(([0], _np.cumsum(batch_sizes)))
    time = _np.arange(steps)[:, None]
    inside = time < lengths[position][None, :]
    row = _np.where(inside, starts[_np.minimum(time, max(longest - 1, 0))] + position[None, :], data.shape[0])
    padding = functions.full((1, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    padded = functions.cat([data, padding], dim=0)[row.T if batch_first else row]
    return padded, _int64_cpu(lengths[position])


def _sequence_list(name: str, sequences: Any) -> list[Tensor]:
    if isinstance(sequences, Tensor):
        sequences = sequences.unbind(0)
    if not isinstance(sequences, Iterable):
        raise TypeError(f"{name}: expected an iterable of Tensors, got {type(sequences).__name__}")
    items = list(sequences)
    if not items:
        raise RuntimeError(f"{name}: received an empty list of sequences")
    first = items[0]
    for k, s in enumerate(items):
        if not isinstance(s, Tensor):
            raise TypeError(f"{name}: sequence {k} is a {type(s).__name__}, expected a Tensor")
        if s.ndim < 1:
            raise ValueError(f"{name}: sequence {k} is 0-d; each sequence needs a time dim (L, *)")
        if s.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"{name}: sequences must agree past their first dim: sequence 0 has shape {first.shape}, "
                f"sequence {k} has shape {s.shape}"
            )
        if s.dtype != first.dtype or s.device != first.device:
            raise TypeError(
                f"{name}: sequence {k} is {s.dtype} on {s.device}, "
                f"sequence 0 is {first.dtype} on {first.device}"
            )
    return items


def pad_sequence(
    sequences: Sequence[Tensor] | Tensor,
    batch_first: bool = False,
    padding_value: float = 0.0,
    padding_side: str = "right",
) -> Tensor:
    """Stack sequences of shapes (L_j, *) into one (T, B, *) tensor (or (B, T, *) with ``batch_first``),
    T = max L_j, filling with ``padding_value`` after each sequence (``padding_side="right"``) or before
    it (``"left"``). Gradient: each sequence gets its own positions' gradient.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"Expected padding_side to be one of left or right, but got {padding_side}.")
    items = _sequence_list("pad_sequence", sequences)
    lengths = _np.asarray([s.shape[0] for s in items], dtype=_np.int64)
    steps = int(lengths.max())
    starts = _np.concatenate(([0], _np.cumsum(lengths)[:-1]))
    time = _np.arange(steps)[:, None]
    offset = time if padding_side == "right" else time - (steps - lengths)[None, :]
    inside = (offset >= 0) & (offset < lengths[None, :])
    row = _np.where(inside, starts[None, :] + offset, lengths.sum())
    first = items[0]
    padding = functions.full((1, *first.shape[1:]), padding_value, dtype=first.dtype, device=first.device)
    return functions.cat([*items, padding], dim=0)[row.T if batch_first else row]


def pack_sequence(sequences: Sequence[Tensor], enforce_sorted: bool = True) -> PackedSequence:
    """Pack a list of sequences (L_j, *): ``pack_padded_sequence(pad_sequence(sequences), lengths)``."""
    items = _sequence_list("pack_sequence", sequences)
    return pack_padded_sequence(
        pad_sequence(items), [s.shape[0] for s in items], enforce_sorted=enforce_sorted
    )


def unpad_sequence(
    padded_sequences: Tensor, lengths: Tensor | Sequence[int], batch_first: bool = False
) -> list:
    """The list of sequences ``padded[:L_j, j]`` (``padded[j, :L_j]`` with ``batch_first``)."""
    values = _check_lengths(lengths)
    if batch_first:
        return [padded_sequences[j, : int(n)] for j, n in enumerate(values)]
    return [padded_sequences[: int(n), j] for j, n in enumerate(values)]


def unpack_sequence(packed_sequences: PackedSequence) -> list:
    """The list of sequences a ``PackedSequence`` holds, in the original batch order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
