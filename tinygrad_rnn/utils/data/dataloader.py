"""``DataLoader``: batches of a dataset, with PyTorch's names and semantics.

A map-style :class:`Dataset` answers ``dataset[i]`` and ``len(dataset)``; an :class:`IterableDataset`
is iterated. A :class:`DataLoader` draws indices from a sampler (sequential, or a random permutation per
epoch with ``shuffle=True``, from ``generator`` or the default generator seeded by ``tg.manual_seed``),
groups them into batches of ``batch_size`` (the last one smaller unless ``drop_last``), fetches the
samples and merges each batch with ``collate_fn`` (:func:`default_collate` unless given).

Loading always runs in the calling process. ``num_workers > 0`` is accepted so that programs written for
PyTorch run unchanged; the batches are those of ``num_workers=0``, in the sampler's order (which
PyTorch's workers keep too). A dataset that draws random numbers in ``__getitem__`` draws them from
this process's streams rather than from per-worker ones. ``pin_memory``, ``timeout``,
``prefetch_factor``, ``persistent_workers`` and ``multiprocessing_context`` only tune worker processes
and change no data. ``worker_init_fn`` would
have to run inside a worker, so it is refused with an error. An ``IterableDataset`` is iterated once
(PyTorch iterates one copy per worker unless the dataset shards itself with ``get_worker_info()``,
which here returns None, as in PyTorch's main process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...random import Generator
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler, _positive_int

__all__ = ["DataLoader", "get_worker_info"]


class DataLoader:
    """Batches of a dataset, as PyTorch's ``DataLoader`` (see the module docstring for workers).

    Args:
        dataset: a map-style :class:`Dataset` (``__getitem__``/``__len__``) or an :class:`IterableDataset`.
        batch_size: samples per batch (default 1); ``None`` turns batching off (samples one by one,
            through :func:`default_convert`).
        shuffle: a new random order each epoch (``RandomSampler`` with ``generator``).
        sampler: the indices to load, in order (instead of ``shuffle``).
        batch_sampler: lists of indices, one per batch (instead of batch_size, shuffle, sampler, drop_last).
        num_workers: accepted for PyTorch programs; loading runs in this process whatever its value.
        collate_fn: merges a list of samples into a batch (default :func:`default_collate`).
        drop_last: drop the last batch when it is smaller than ``batch_size``.
        generator: the :class:`tg.Generator <tinygrad_rnn.Generator>` a shuffle draws from.

    ``len(loader)`` is the number of batches (or samples without batching).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Iterable[Any] | None = None,
        batch_sampler: Iterable[list[Any]] | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                "num_workers option should be non-negative; use num_workers=0 to disable multiprocessing "
                f"(got {num_workers!r})"
            )
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if worker_init_fn is not None:
            raise ValueError(
                "DataLoader: worker_init_fn is not supported: data is loaded in the calling process, so "
                "there is no worker to initialise; drop the argument (seed with tg.manual_seed instead)"
            )
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(
                f"DataLoader: generator must be a tinygrad_rnn.Generator, got {type(generator).__name__}"
            )
        if not hasattr(dataset, "__getitem__") and not isinstance(dataset, IterableDataset):
            raise TypeError(
                f"DataLoader: the dataset must be map-style (__getitem__ and __len__) or an IterableDataset, "
                f"got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory, self.timeout, self.prefetch_factor = pin_memory, timeout, prefetch_factor
        self.persistent_workers, self.multiprocessing_context = persistent_workers, multiprocessing_context
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified shuffle option, "
                    f"but got shuffle={shuffle}"
                )
            if sampler is not None:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified sampler option, but got {sampler}"
                )
            if batch_sampler is not None:
                raise ValueError(
                    "DataLoader with IterableDataset: expected unspecified batch_sampler option, "
                    f"but got {batch_sampler}"
                )
        else:
            if sampler is not None and shuffle:
                raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                    "and drop_last"
                )
            batch_size, drop_last = None, False
        elif batch_size is None:
            if drop_last:
                raise ValueError(
                    "batch_size=None option disables auto-batching and is mutually exclusive with drop_last"
                )
        else:
            _positive_int("batch_size", batch_size)
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last!r}")

        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)  # type: ignore[arg-type]
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self._auto_collation = batch_sampler is not None or (self._iterable and batch_size is not None)
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    def __iter__(self) -> Iterator[Any]:
        if self._iterable:
            return self._iterate_stream()
        if self.batch_sampler is not None:
            return (self.collate_fn(self._fetch(indices)) for indices in self.batch_sampler)
        return (self.collate_fn(self.dataset[index]) for index in self.sampler)  # type: ignore[union-attr]

    def _fetch(self, indices: list[Any]) -> list[Any]:
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            return list(getitems(indices))
        return [self.dataset[index] for index in indices]

    def _iterate_stream(self) -> Iterator[Any]:
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch: list[Any] = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self._iterable:
            if not hasattr(self.dataset, "__len__"):
                raise TypeError(
                    f"object of type '{type(self).__name__}' over an IterableDataset without __len__ "
                    "has no len()"
                )
            n = len(self.dataset)
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self.batch_sampler is not None:
            return len(self.batch_sampler)  # type: ignore[arg-type]
        return len(self.sampler)  # type: ignore[arg-type]


def get_worker_info() -> None:
    """None: data is always loaded in the calling process (PyTorch's answer in its main process)."""
    return None
