"""In-place initialisers (``tinygrad_rnn.nn.init``), named as ``torch.nn.init``.

They change a tensor's data without recording anything on the tape, draw from the tensor's device's
seeded generator (``tg.manual_seed``) and return the tensor.
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd import no_grad
from ..tensor import Tensor


def _fans(tensor: Tensor) -> tuple[int, int]:
    """fan_in, fan_out of a weight: (in, out) for a 2-D (out, in) matrix, times the receptive field."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dims, got shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with samples of U(a, b)."""
    with no_grad():
        return tensor.uniform_(a, b)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with samples of N(mean, std²)."""
    with no_grad():
        return tensor.normal_(mean, std)


def constant_(tensor: Tensor, value: float) -> Tensor:
    """Fill with ``value``."""
    with no_grad():
        return tensor.fill_(value)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Glorot: N(0, std²) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, nonlinearity: str = "leaky_relu") -> Tensor:
    """He: U(-b, b) with b = gain * sqrt(3 / fan_in); gain = sqrt(2 / (1 + a²)) for leaky_relu, sqrt(2)
    for relu, 1 for linear. ``a = sqrt(5)`` gives PyTorch's ``Linear`` default, b = 1/sqrt(fan_in)."""
    fan_in, _ = _fans(tensor)
    if nonlinearity == "leaky_relu":
        gain = math.sqrt(2.0 / (1 + a * a))
    elif nonlinearity == "relu":
        gain = math.sqrt(2.0)
    elif nonlinearity in ("linear", "sigmoid"):
        gain = 1.0
    elif nonlinearity == "tanh":
        gain = 5.0 / 3
    else:
        raise ValueError(f"kaiming_uniform_: unsupported nonlinearity {nonlinearity!r}")
    bound = gain * math.sqrt(3.0 / fan_in) if fan_in else 0.0
    return uniform_(tensor, -bound, bound)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, as ``torch.nn.init.calculate_gain``: 1 for linear, the
    convolutions and sigmoid, 5/3 for tanh, √2 for relu, √(2 / (1 + slope²)) for leaky_relu (slope
    ``param``, 0.01 by default) and 3/4 for selu."""
    if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith(
        ("conv", "conv_transpose")
    ):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, int | float):
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        else:
            slope = param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fan(tensor: Tensor, mode: str, name: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{name}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(tensor)
    return fan_in if mode == "fan_in" else fan_out


def kaiming_normal_(
    tensor: Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> Tensor:
    """He: N(0, std²) with std = gain / √fan, fan = fan_in (or fan_out with ``mode="fan_out"``) and
    gain = ``calculate_gain(nonlinearity, a)``."""
    fan = _fan(tensor, mode, "kaiming_normal_")
    gain = calculate_gain(nonlinearity, a)
    return normal_(tensor, 0.0, gain / math.sqrt(fan) if fan else 0.0)


def trunc_normal_(
    tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> Tensor:
    """Fill with samples of N(mean, std²) conditioned on [a, b] (drawn by rejection: values outside are
    drawn again, which gives exactly the truncated distribution)."""
    if not a < b:
        raise ValueError(f"trunc_normal_: needs a < b, got a={a}, b={b}")
    if std <= 0:
        raise ValueError(f"trunc_normal_: std must be positive, got {std}")
    dev = tensor.device
    xp = backend.get_array_module(tensor._data)
    values = mean + std * backend.random_normal(tensor.shape, backend.float64, dev)
    outside = (values < a) | (values > b)
    for _ in range(10_000):
        count = int(outside.sum())
        if count == 0:
            break
        values[outside] = mean + std * backend.random_normal((count,), backend.float64, dev)
        outside = (values < a) | (values > b)
    else:
        raise RuntimeError(
            f"trunc_normal_: [a, b] = [{a}, {b}] holds too little of N({mean}, {std}²) to sample by rejection"
        )
    with no_grad():
        return tensor.copy_(Tensor(xp.asarray(values).astype(tensor.dtype)))


def orthogonal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """Fill with a (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2013), as PyTorch: the tensor is
    viewed as (rows, rest), a Gaussian matrix of that shape (transposed when wider than tall) is
    QR-factored, Q's columns get the signs of R's diagonal (so Q is uniformly distributed), and Q (or
    Qᵀ) is the result. Rows (or columns, whichever are fewer) are then orthonormal."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: needs a tensor of at least 2 dims, got shape {tensor.shape}")
    rows = tensor.shape[0]
    columns = tensor.numel() // rows if rows else 0
    if rows == 0 or columns == 0:
        return tensor
    xp = backend.get_array_module(tensor._data)
    flat = backend.random_normal((rows, columns), backend.float64, tensor.device)
    if rows < columns:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diagonal(r))
    if rows < columns:
        q = q.T
    with no_grad():
        return tensor.copy_(Tensor((gain * q).reshape(tensor.shape).astype(tensor.dtype)))
