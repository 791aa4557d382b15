"""Sequence tasks and corpora: the adding problem, the copy task, character text already on the machine,
and batching one long stream into ``B`` parallel streams cut into ``(T, B)`` chunks for truncated BPTT.

Everything is time-major, as the recurrent layers expect by default: a sequence of ``T`` steps for a batch
of ``B`` examples has shape ``(T, B, ...)``. Generators take a ``seed`` and draw from their own NumPy
generator, so a task is reproducible without touching the global seed (``tg.manual_seed``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

from . import backend
from .tensor import Tensor

IGNORE_INDEX = -100


def _numpy() -> Any:
    # The host array module, reached through the backend (the only module that imports NumPy).
    return backend.xp_for(backend.CPU)


def _rng(seed: int | None) -> Any:
    return _numpy().random.default_rng(seed)


def _to_tensor(array: Any, device: Any, dtype: Any = None) -> Tensor:
    return Tensor(array, dtype=dtype, device=device)


# ---- synthetic tasks ------------------------------------------------------------------------------------


def adding_problem(
    batch_size: int,
    length: int,
    seed: int | None = None,
    min_lag: int | None = None,
    max_lag: int | None = None,
    device: Any = None,
    dtype: Any = None,
) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber, 1997): add the two marked numbers of a long sequence.

    Each step carries two features: a value drawn uniformly from [0, 1) and a marker that is 1 at exactly
    two steps. The target is the sum of the two marked values, known only at the last step. The *lag*
    of a marker is its distance to the last step, ``length - 1 - position``. By default the first marker
    lies in the first half and the second in the second half, as in the original task; with ``min_lag``
    or ``max_lag`` given, both markers lie at distinct lags in ``[min_lag, max_lag]``, so a gradient that
    reaches back fewer than ``min_lag`` steps from the loss never sees either of them.

    A model that always predicts the mean 1.0 has a mean squared error of 1/6 ≈ 0.167.

    Returns:
        inputs of shape ``(length, batch_size, 2)`` and targets of shape ``(batch_size, 1)``.
    """
    if length < 2 or batch_size < 1:
        raise ValueError(f"adding_problem: need length >= 2 and batch_size >= 1, got {length}, {batch_size}")
    np = _numpy()
    rng = _rng(seed)
    columns = np.arange(batch_size)
    if min_lag is None and max_lag is None:
        half = length // 2
        first = rng.integers(0, half, size=batch_size)
        second = rng.integers(half, length, size=batch_size)
    else:
        min_lag = 0 if min_lag is None else min_lag
        max_lag = length - 1 if max_lag is None else max_lag
        if not 0 <= min_lag < max_lag <= length - 1:
            raise ValueError(
                f"adding_problem: lags must satisfy 0 <= min_lag < max_lag <= length - 1 = {length - 1}, "
                f"got min_lag={min_lag}, max_lag={max_lag}"
            )
        # Two distinct lags drawn uniformly from the range: the first, then the second among the rest.
        span = max_lag - min_lag + 1
        lag_a = rng.integers(0, span, size=batch_size)
        lag_b = rng.integers(0, span - 1, size=batch_size)
        lag_b = lag_b + (lag_b >= lag_a)
        first = length - 1 - min_lag - lag_a
        second = length - 1 - min_lag - lag_b
    values = rng.random((length, batch_size))
    markers = np.zeros((length, batch_size))
    markers[first, columns] = 1.0
    markers[second, columns] = 1.0
    inputs = np.stack([values, markers], axis=-1)
    targets = (values[first, columns] + values[second, columns])[:, None]
    return _to_tensor(inputs, device, dtype or backend.get_default_dtype()), _to_tensor(
        targets, device, dtype or backend.get_default_dtype()
    )


def copy_task(
    batch_size: int,
    num_symbols: int = 8,
    sequence_length: int = 5,
    delay: int = 20,
    seed: int | None = None,
    device: Any = None,
) -> tuple[Tensor, Tensor]:
    """The copy task: read ``sequence_length`` symbols, wait ``delay`` steps, then write them back in order.

    Tokens: 0 is the blank, ``1 … num_symbols`` are data symbols and ``num_symbols + 1`` is the delimiter
    that asks for the recall. The sequence has ``T = 2 * sequence_length + delay`` steps: the symbols at
    steps ``0 … S-1``, blanks, the delimiter at step ``S + delay - 1``, and the recall at steps
    ``S + delay … T-1``. Each symbol must be held for ``S + delay`` steps (the lag). Targets are the
    symbols at the recall steps and ``IGNORE_INDEX`` (-100) elsewhere, so a cross-entropy with
    ``ignore_index=-100`` scores the recall only; guessing gives ``log(num_symbols)`` nats per symbol.

    Returns:
        int64 inputs of shape ``(T, batch_size)`` and int64 targets of shape ``(T, batch_size)``.
    """
    if min(batch_size, num_symbols, sequence_length, delay) < 1:
        raise ValueError(
            "copy_task: batch_size, num_symbols, sequence_length and delay must be positive, got "
            f"{batch_size}, {num_symbols}, {sequence_length}, {delay}"
        )
    np = _numpy()
    rng = _rng(seed)
    length = 2 * sequence_length + delay
    symbols = rng.integers(1, num_symbols + 1, size=(sequence_length, batch_size))
    inputs = np.zeros((length, batch_size), dtype=np.int64)
    inputs[:sequence_length] = symbols
    inputs[sequence_length + delay - 1] = num_symbols + 1
    targets = np.full((length, batch_size), IGNORE_INDEX, dtype=np.int64)
    targets[sequence_length + delay :] = symbols
    return _to_tensor(inputs, device), _to_tensor(targets, device)


# ---- characters -----------------------------------------------------------------------------------------


class CharVocabulary:
    """A character vocabulary: ``encode`` text to ids in ``[0, len(vocab))`` and ``decode`` ids back.

    Built from a text (``CharVocabulary(text)``: its distinct characters, sorted) or from a list of
    characters. Characters not in the vocabulary encode to ``unknown`` (the first character unless
    given), so any text can be encoded. ``codes()`` and ``from_codes`` turn it into an int array and
    back, for saving it beside a model in an ``.npz`` file.
    """

    def __init__(self, text_or_chars: str | Sequence[str], unknown: str | None = None) -> None:
        chars = sorted(set(text_or_chars)) if isinstance(text_or_chars, str) else list(text_or_chars)
        if not chars:
            raise ValueError("CharVocabulary: needs at least one character")
        if len(set(chars)) != len(chars):
            raise ValueError("CharVocabulary: characters must be distinct")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        if unknown is not None and unknown not in self.index:
            raise ValueError(f"CharVocabulary: unknown character {unknown!r} is not in the vocabulary")
        self.unknown_id = self.index[unknown] if unknown is not None else 0

    def __len__(self) -> int:
        return len(self.chars)

    def __repr__(self) -> str:
        return f"CharVocabulary({len(self)} characters)"

    def encode(self, text: str) -> Any:
        """Text → int64 NumPy array of ids, one per character."""
        get, unknown = self.index.get, self.unknown_id
        return _numpy().fromiter((get(c, unknown) for c in text), dtype="int64", count=len(text))

    def decode(self, ids: Any) -> str:
        """Ids (a list, an array or an integer Tensor) → text."""
        if isinstance(ids, Tensor):
            ids = ids.numpy()
        ids = _numpy().asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(
                f"decode: ids must lie in [0, {len(self)}), got values in [{ids.min()}, {ids.max()}]"
            )
        return "".join(self.chars[i] for i in ids.tolist())

    def codes(self) -> Any:
        """The characters as an int64 array of code points (what ``from_codes`` reads back)."""
        return _numpy().array([ord(c) for c in self.chars], dtype="int64")

    @classmethod
    def from_codes(cls, codes: Any) -> CharVocabulary:
        """Rebuild a vocabulary saved with ``codes()``."""
        return cls([chr(int(c)) for c in _numpy().asarray(codes).reshape(-1)])


def load_corpus(name: str = "pydoc", max_chars: int | None = None) -> str:
    """Text that every Python installation already has.

    ``"pydoc"``: the documentation topics CPython ships in ``pydoc_data.topics`` (about 0.5 MB of English
    prose with code), falling back to the standard library's source when a distribution strips them.
    ``"stdlib"``: the standard library's own ``.py`` files, in sorted order. Any other name is read as a
    path to a UTF-8 text file. ``max_chars`` keeps the first characters only.
    """
    text = ""
    if name == "pydoc":
        try:
            from pydoc_data import topics

            text = "\n\n".join(topics.topics[key] for key in sorted(topics.topics))
        except ImportError:
            text = ""
        if not text:
            text = _stdlib_source(max_chars or 1_000_000)
    elif name == "stdlib":
        text = _stdlib_source(max_chars or 1_000_000)
    else:
        if not os.path.isfile(name):
            raise FileNotFoundError(f"load_corpus: no corpus named {name!r} and no such file")
        with open(name, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    if not text:
        raise ValueError(f"load_corpus: corpus {name!r} is empty")
    return text if max_chars is None else text[:max_chars]


def _stdlib_source(max_chars: int) -> str:
    directory = os.path.dirname(os.__file__)
    parts, total = [], 0
    for filename in sorted(os.listdir(directory)):
        if not filename.endswith(".py"):
            continue
        with open(os.path.join(directory, filename), encoding="utf-8", errors="replace") as handle:
            part = handle.read()
        parts.append(part)
        total += len(part)
        if total >= max_chars:
            break
    return "\n".join(parts)


def split_text(text: str, valid_fraction: float = 0.1) -> tuple[str, str]:
    """Split a text into a training part and a held-out tail of ``valid_fraction`` of its characters."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"split_text: valid_fraction must lie in (0, 1), got {valid_fraction}")
    cut = int(len(text) * (1.0 - valid_fraction))
    return text[:cut], text[cut:]


def unigram_bits_per_char(train_ids: Any, valid_ids: Any, vocab_size: int) -> float:
    """Bits per character on ``valid_ids`` of a unigram model fitted on ``train_ids`` (add-one smoothing).

    ``-mean(log2 p(c))`` with ``p(c) = (count(c) + 1) / (N + V)``: the baseline that a language model
    which looks at context has to beat.
    """
    np = _numpy()
    for label, ids in (("train_ids", train_ids), ("valid_ids", valid_ids)):
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(
                f"unigram_bits_per_char: {label} holds ids outside [0, {vocab_size - 1}] "
                f"(vocab_size={vocab_size}): {int(ids.min())} .. {int(ids.max())}"
            )
    counts = np.bincount(np.asarray(train_ids).reshape(-1), minlength=vocab_size) + 1.0
    probabilities = counts / counts.sum()
    return float(-np.log2(probabilities[np.asarray(valid_ids).reshape(-1)]).mean())


# ---- batching a stream for truncated BPTT -------------------------------------------------------------


def batchify(ids: Any, batch_size: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """Cut one long stream of ids into ``batch_size`` parallel streams, with next-id targets.

    The stream ``x_0 … x_{N-1}`` becomes ``B`` contiguous pieces of ``L = (N - 1) // B`` steps laid side by
    side: ``inputs[t, b] = x[b*L + t]`` and ``targets[t, b] = x[b*L + t + 1]``. Each column is a text read
    in order, so the hidden state carried from one chunk to the next continues the same text. The few
    ids that do not fill a column are dropped.

    Returns:
        int64 ``inputs`` and ``targets``, each of shape ``(L, batch_size)``.
    """
    np = _numpy()
    ids = np.asarray(ids.numpy() if isinstance(ids, Tensor) else ids).reshape(-1)
    steps = (ids.size - 1) // batch_size if batch_size > 0 else 0
    if batch_size < 1 or steps < 1:
        raise ValueError(
            f"batchify: a stream of {ids.size} ids is too short for batch_size={batch_size} "
            "(each of the parallel streams needs at least one input and its target)"
        )
    inputs = ids[: steps * batch_size].reshape(batch_size, steps).T
    targets = ids[1 : steps * batch_size + 1].reshape(batch_size, steps).T
    return _to_tensor(np.ascontiguousarray(inputs), device), _to_tensor(np.ascontiguousarray(targets), device)


def chunks(inputs: Tensor, targets: Tensor, length: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Consecutive ``(inputs[t:t+length], targets[t:t+length])`` pairs along the time axis (dim 0).

    The last chunk is shorter when ``length`` does not divide the stream.
    """
    if length < 1:
        raise ValueError(f"chunks: length must be positive, got {length}")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"chunks: inputs {inputs.shape} and targets {targets.shape} differ in length (dim 0)"
        )
    for start in range(0, inputs.shape[0], length):
        yield inputs[start : start + length], targets[start : start + length]


def num_chunks(steps: int, length: int) -> int:
    """How many chunks ``chunks`` yields for a stream of ``steps`` steps."""
    if length <= 0:
        raise ValueError(f"num_chunks: length must be positive, got {length}")
    return math.ceil(steps / length)
