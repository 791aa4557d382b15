"""``MultiheadAttention`` with PyTorch's arguments, parameter names and layouts, masks and ``batch_first``.

Attention is a composite of existing ops (projections, batched matrix products, a stable softmax), so
its gradient is the tape's; masked positions are set to -inf before the softmax, which gives them a
weight of exactly 0 and, through the softmax's backward, a gradient of exactly 0.
"""

from __future__ import annotations

import math
from typing import Any

from .. import backend, functions
from ..tensor import Tensor
from . import functional as F
from . import init
from .layers import Linear
from .module import Module, Parameter


def _additive_mask(name: str, mask: Tensor | None, like: Tensor) -> Tensor | None:
    """A bool mask (True = may not attend) becomes 0 / -inf; a float mask is added as it is."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"MultiheadAttention: {name} must be a Tensor or None, got {type(mask).__name__}")
    if mask.device != like.device:
        raise RuntimeError(
            f"MultiheadAttention: {name} is on {mask.device} but the query is on {like.device}"
        )
    if mask.dtype.kind == "b":
        xp = backend.get_array_module(mask._data)
        return Tensor(xp.where(mask._data, -math.inf, 0.0).astype(like.dtype))
    if mask.dtype.kind == "f":
        return mask if mask.dtype == like.dtype else mask.to(like.dtype)
    raise TypeError(f"MultiheadAttention: only bool and floating {name} are supported, got {mask.dtype}")


def attention_mask(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    batch: int,
    heads: int,
    target_length: int,
    source_length: int,
    like: Tensor,
) -> Tensor | None:
    """The masks of ``MultiheadAttention.forward`` merged into one additive mask broadcastable to the
    scores (N, heads, L, S): attn_mask (L, S) or (N·heads, L, S), key_padding_mask (N, S)."""
    merged = None
    mask = _additive_mask("attn_mask", attn_mask, like)
    if mask is not None:
        if mask.ndim == 2:
            if mask.shape != (target_length, source_length):
                raise ValueError(
                    f"MultiheadAttention: the 2-D attn_mask has shape {mask.shape}, but should be "
                    f"{(target_length, source_length)} (L, S)"
                )
            merged = mask
        elif mask.ndim == 3:
            expected = (batch * heads, target_length, source_length)
            if mask.shape != expected:
                raise ValueError(
                    f"MultiheadAttention: the 3-D attn_mask has shape {mask.shape}, but should be {expected} "
                    "(N·num_heads, L, S)"
                )
            merged = mask.reshape(batch, heads, target_length, source_length)
        else:
            raise ValueError(f"MultiheadAttention: attn_mask must be 2-D or 3-D, got shape {mask.shape}")
    padding = _additive_mask("key_padding_mask", key_padding_mask, like)
    if padding is not None:
        if padding.shape != (batch, source_length):
            raise ValueError(
                f"MultiheadAttention: key_padding_mask has shape {padding.shape}, but should be "
                f"{(batch, source_length)} (N, S)"
            )
        padding = padding.reshape(batch, 1, 1, source_length)
        merged = padding if merged is None else merged + padding
    return merged


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention, as ``torch.nn.MultiheadAttention``.

    For each head h: Q_h = query W_qhᵀ + b_qh (likewise K_h, V_h), A_h = softmax(Q_h K_hᵀ / sqrt(d) + M),
    O_h = A_h V_h with d = embed_dim / num_heads; out = concat_h(O_h) W_oᵀ + b_o.

    Parameters (PyTorch's names and layouts): ``in_proj_weight`` (3E, E) holding W_q, W_k, W_v stacked
    (or ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim) when
    kdim/vdim differ from E), ``in_proj_bias`` (3E,), and ``out_proj`` a ``Linear(E, E)``.

    Shapes: query (L, N, E), key (S, N, kdim), value (S, N, vdim) — (N, L, E) etc. with ``batch_first``,
    or unbatched (L, E). Returns (out (L, N, E), weights (N, L, S) averaged over heads, or
    (N, heads, L, S) with ``average_attn_weights=False``, or None with ``need_weights=False``).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if (
            not isinstance(embed_dim, int)
            or embed_dim <= 0
            or not isinstance(num_heads, int)
            or num_heads <= 0
        ):
            raise ValueError(
                "MultiheadAttention: embed_dim and num_heads must be positive ints, got "
                f"{embed_dim}, {num_heads}"
            )
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first

        def parameter(*shape: int) -> Parameter:
            return Parameter(functions.empty(*shape, dtype=dtype, device=device))

        if self._qkv_same_embed_dim:
            self.in_proj_weight = parameter(3 * embed_dim, embed_dim)
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = parameter(embed_dim, embed_dim)
            self.k_proj_weight = parameter(embed_dim, self.kdim)
            self.v_proj_weight = parameter(embed_dim, self.vdim)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = parameter(3 * embed_dim)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's: Xavier-uniform projection weights, zero biases (out_proj.weight keeps Linear's init)."""
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _projections(self) -> tuple[list[Tensor], list[Tensor | None]]:
        size = self.embed_dim
        if self._qkv_same_embed_dim:
            weights = [self.in_proj_weight[i * size : (i + 1) * size] for i in range(3)]
        else:
            weights = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight]
        bias = self.in_proj_bias
        biases = [None] * 3 if bias is None else [bias[i * size : (i + 1) * size] for i in range(3)]
        return weights, biases

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        for name, tensor in (("query", query), ("key", key), ("value", value)):
            if not isinstance(tensor, Tensor):
                raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(tensor).__name__}")
        if is_causal and attn_mask is None:
            # PyTorch's contract: is_causal is a hint that attn_mask is the causal mask, never a mask itself.
            raise RuntimeError("MultiheadAttention: is_causal=True needs attn_mask (the causal mask) as well")
        batched = query.ndim == 3
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                "MultiheadAttention: query, key and value must all be 3-D (batched) or 2-D (unbatched), got "
                f"shapes {query.shape}, {key.shape}, {value.shape}"
            )
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None and key_padding_mask.ndim == 1:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        target_length, batch, width = query.shape
        source_length = key.shape[0]
        if width != self.embed_dim:
            raise ValueError(
                f"MultiheadAttention: query's feature size must be embed_dim={self.embed_dim}, got {width}"
            )
        if key.shape[:2] != (source_length, batch) or value.shape[:2] != (source_length, batch):
            raise ValueError(
                "MultiheadAttention: key and value must have the same length and the query's batch size, got "
                f"query {query.shape}, key {key.shape}, value {value.shape} (sequence-first)"
            )
        if key.shape[2] != self.kdim or value.shape[2] != self.vdim:
            raise ValueError(
                f"MultiheadAttention: key/value feature sizes must be kdim={self.kdim}, vdim={self.vdim}, "
                "got "
                f"{key.shape[2]}, {value.shape[2]}"
            )
        heads, head_dim = self.num_heads, self.head_dim
        weights, biases = self._projections()

        def split_heads(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
            # (T, N, E) -> (N, heads, T, head_dim): the batch-head index n·heads + h, as PyTorch's layout.
            projected = F.linear(x, weight, bias)
            return projected.reshape(x.shape[0], batch, heads, head_dim).permute(1, 2, 0, 3)

        q = split_heads(query, weights[0], biases[0]) * (1.0 / math.sqrt(head_dim))
        k = split_heads(key, weights[1], biases[1])
        v = split_heads(value, weights[2], biases[2])
        scores = q @ k.transpose(2, 3)
        mask = attention_mask(attn_mask, key_padding_mask, batch, heads, target_length, source_length, scores)
        if mask is not None:
            scores = scores + mask
        attention = scores.softmax(-1)
        if self.dropout > 0.0:
            attention = F.dropout(attention, self.dropout, self.training)
        out = (attention @ v).permute(2, 0, 1, 3).reshape(target_length, batch, self.embed_dim)
        out = self.out_proj(out)
        returned = None
        if need_weights:
            returned = attention.mean(1) if average_attn_weights else attention
            if not batched:
                returned = returned.squeeze(0)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, returned

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"
