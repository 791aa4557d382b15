"""Random generators with PyTorch's API: ``tg.Generator``, ``tg.default_generator``, ``tg.manual_seed``,
``tg.seed``, ``tg.initial_seed``, ``tg.get_rng_state``/``tg.set_rng_state``, and the samplers that take a
``generator=`` (``randperm``, ``multinomial``; ``randn``, ``rand`` and ``randint`` take one too).

A :class:`Generator` owns one random stream on one device (NumPy's PCG64 on the CPU, CuPy's generator
on a GPU). ``default_generator`` is the CPU's default stream itself, the one ``tg.randn`` draws from, so
``tg.manual_seed(s)`` reseeds it and a shuffling ``DataLoader`` without a generator draws from it,
as in PyTorch. Streams differ from PyTorch's bit for bit: the same seed gives reproducible numbers
here, not the numbers PyTorch would give.
"""

from __future__ import annotations

from typing import Any

from . import backend
from .tensor import Tensor

__all__ = [
    "Generator",
    "default_generator",
    "get_rng_state",
    "initial_seed",
    "manual_seed",
    "multinomial",
    "randperm",
    "seed",
    "set_rng_state",
]

# The seed of a fresh torch.Generator(), so that an unseeded Generator is deterministic there as here.
DEFAULT_GENERATOR_SEED = 67280421310721


class Generator:
    """A random stream on one device: ``Generator(device="cpu")``, seeded with PyTorch's fixed default
    seed until :meth:`manual_seed` or :meth:`seed` is called.

    Pass it as ``generator=`` to ``DataLoader``, ``random_split``, ``randperm``, ``randn``, ... to draw
    from it instead of the device's default stream.
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.device = backend.device(device)
        self._is_default = False
        self._seed = DEFAULT_GENERATOR_SEED
        self._stream = backend.new_stream(self.device, self._seed)

    @classmethod
    def _default_of(cls, device: backend.Device) -> Generator:
        """The generator that *is* a device's default stream (``backend.generator(device)``)."""
        generator = cls.__new__(cls)
        generator.device = device
        generator._is_default = True
        return generator

    @property
    def _rng(self) -> Any:
        return backend.generator(self.device) if self._is_default else self._stream

    def manual_seed(self, seed: int) -> Generator:
        """Restart the stream from ``seed`` (an int in [-2⁶³, 2⁶⁴)); returns the generator."""
        seed = backend.check_seed(seed, "Generator.manual_seed")
        if self._is_default:
            backend.reseed_default_stream(self.device, seed)
        else:
            self._seed, self._stream = seed, backend.new_stream(self.device, seed)
        return self

    def seed(self) -> int:
        """Restart the stream from a non-deterministic seed and return that seed."""
        fresh = backend.fresh_seed()
        self.manual_seed(fresh)
        return fresh

    def initial_seed(self) -> int:
        """The seed the stream was last started from."""
        return backend.default_stream_seed(self.device) if self._is_default else self._seed

    def get_state(self) -> Tensor:
        """The stream's state as a uint8 Tensor (CPU generators), for :meth:`set_state`."""
        return Tensor._make(backend.stream_state(self._rng), False, None, 0)

    def set_state(self, new_state: Any) -> Generator:
        """Restore a state from :meth:`get_state` (a Tensor or array, e.g. one read back by ``tg.load``)."""
        if isinstance(new_state, Tensor):
            new_state = new_state._data
        if not backend.is_array(new_state):
            raise TypeError(
                f"set_state: expected the uint8 Tensor get_state returns, got {type(new_state).__name__}"
            )
        backend.set_stream_state(self._rng, new_state)
        return self

    def __repr__(self) -> str:
        return f"<tinygrad_rnn.Generator device={self.device}>"


default_generator = Generator._default_of(backend.CPU)


def manual_seed(seed: int) -> Generator:
    """Seed every device's default stream (``default_generator`` included); returns ``default_generator``."""
    backend.manual_seed(backend.check_seed(seed, "manual_seed"))
    return default_generator


def seed() -> int:
    """Seed every device's default stream from a non-deterministic seed and return it."""
    fresh = backend.fresh_seed()
    manual_seed(fresh)
    return fresh


def initial_seed() -> int:
    """The seed of the CPU's default stream."""
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    """The CPU default stream's state (a uint8 Tensor)."""
    return default_generator.get_state()


def set_rng_state(new_state: Any) -> None:
    """Restore the CPU default stream's state from :func:`get_rng_state`."""
    default_generator.set_state(new_state)


def stream_for(generator: Generator | None, device: backend.Device, caller: str) -> Any:
    """The backend stream to draw from: the generator's, or the device's default one when None."""
    if generator is None:
        return backend.generator(device)
    if not isinstance(generator, Generator):
        raise TypeError(
            f"{caller}: generator must be a tinygrad_rnn.Generator, got {type(generator).__name__}"
        )
    if generator.device.type != device.type:
        raise RuntimeError(
            f"{caller}: expected a '{device.type}' device type for generator but found "
            f"'{generator.device.type}'"
        )
    return generator._rng


def randperm(
    n: int,
    *,
    generator: Generator | None = None,
    dtype: Any = None,
    device: Any = None,
    requires_grad: bool = False,
) -> Tensor:
    """A random permutation of 0 … n-1 (int64 unless ``dtype`` says otherwise)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    dev = backend.device(device)
    array = backend.permutation_from(stream_for(generator, dev, "randperm"), n, dev)
    if dtype is not None:
        array = array.astype(backend.as_dtype(dtype), copy=False)
    if requires_grad and array.dtype.kind != "f":
        raise RuntimeError("randperm: only floating tensors can require gradients")
    return Tensor._make(array, requires_grad, None, 0)


def multinomial(
    input: Tensor, num_samples: int, replacement: bool = False, *, generator: Generator | None = None
) -> Tensor:
    """Draw ``num_samples`` category indices from each row of non-negative weights ``input`` ((C,) or
    (N, C); rows need not sum to 1), with or without replacement, as ``torch.multinomial``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"multinomial: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (1, 2) or input.shape[-1] == 0:
        raise ValueError(
            f"multinomial: input must be 1-D or 2-D with at least one category, got {input.shape}"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"multinomial: input must be a floating tensor, got {input.dtype}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    weights = input._data
    xp = input._xp
    if not bool(xp.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("multinomial: weights must be finite and non-negative")
    rows = weights.reshape(-1, weights.shape[-1])
    if bool((rows.sum(axis=1) <= 0).any()):
        raise ValueError("multinomial: every row of weights must have a positive sum")
    if not replacement:
        if num_samples > rows.shape[1]:
            raise ValueError(
                f"multinomial: cannot draw {num_samples} samples from {rows.shape[1]} categories without "
                "replacement"
            )
        if int((rows > 0).sum(axis=1).min()) < num_samples:
            raise ValueError(
                f"multinomial: a row has fewer than {num_samples} categories of positive weight to draw "
                "without replacement"
            )
    dev = input.device
    picks = backend.multinomial_from(
        stream_for(generator, dev, "multinomial"), weights, num_samples, replacement, dev
    )
    return Tensor._make(picks, False, None, 0)
