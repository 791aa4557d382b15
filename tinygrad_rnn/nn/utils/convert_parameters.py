"""``parameters_to_vector`` and ``vector_to_parameters``, as ``torch.nn.utils``: a model's parameters as
one flat vector and back (for second-order methods, weight averaging, line searches)."""

from __future__ import annotations

from collections.abc import Iterable

from ... import functions
from ...autograd import no_grad
from ...tensor import Tensor


def _listed(name: str, parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        raise TypeError(f"{name}: expects an iterable of Tensors (e.g. model.parameters()), got a Tensor")
    listed = list(parameters)
    for position, p in enumerate(listed):
        if not isinstance(p, Tensor):
            raise TypeError(f"{name}: parameter {position} is a {type(p).__name__}, expected a Tensor")
    return listed


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and joined, in order, into one 1-D tensor (differentiable: it is
    ``cat([p.reshape(-1) for p in parameters])``). They must share one device."""
    listed = _listed("parameters_to_vector", parameters)
    if not listed:
        raise ValueError("parameters_to_vector: got no parameters")
    devices = {p.device for p in listed}
    if len(devices) > 1:
        raise RuntimeError(f"parameters_to_vector: parameters on several devices {sorted(map(str, devices))}")
    return functions.cat([p.reshape(-1) for p in listed])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters' data, in order (in place, not
    recorded on the tape, as PyTorch's ``param.data = ...``). Its length must be their total size."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: vec must be a Tensor, got {type(vec).__name__}")
    if vec.ndim != 1:
        raise ValueError(f"vector_to_parameters: vec must be 1-D, got shape {vec.shape}")
    listed = _listed("vector_to_parameters", parameters)
    total = sum(p.numel() for p in listed)
    if total != vec.shape[0]:
        raise ValueError(f"vector_to_parameters: vec has {vec.shape[0]} elements, the parameters {total}")
    offset = 0
    with no_grad():
        for p in listed:
            if p.device != vec.device:
                raise RuntimeError(f"vector_to_parameters: vec is on {vec.device}, a parameter on {p.device}")
            piece = vec._data[offset : offset + p.numel()].reshape(p.shape).astype(p.dtype)
            p.data = piece.copy()
            offset += p.numel()
