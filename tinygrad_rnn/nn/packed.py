"""Recurrent layers run over a ``PackedSequence``: each sequence stops at its own length.

In the packed layout step t holds the b_t sequences still running, sorted longest first, so the
batch only shrinks: going forward, the state of step t is the previous state's first b_t rows, and
the rows dropped at step t are the final states of the sequences that ended at t - 1. Going in
reverse, the batch grows: step t starts the b_t - b_{t+1} sequences whose last element is at t from
their initial states, so each sequence's reverse pass begins at its own last element.

Everything is written with public Tensor ops on the layer's own parameters (one input projection per
layer and direction, then per step ``h W_hhᵀ`` plus the pointwise gate maths), so the tape
differentiates it like any other code and the layers' fused paths are not involved.
"""

from __future__ import annotations

from typing import Any

from .. import functions
from ..tensor import Tensor
from .utils.rnn import PackedSequence, _host


def _step(mode: str, x: Tensor, h: Tensor, c: Tensor | None, weight_hh_t: Tensor, bias_hh: Any) -> tuple:
    """One step on the running rows; ``x`` is W_ih x + b_ih (+ b_hh except for a GRU)."""
    if mode == "GRU":
        hidden = h @ weight_hh_t
        if bias_hh is not None:
            hidden = hidden + bias_hh
        x_r, x_z, x_n = x.chunk(3, dim=1)
        h_r, h_z, h_n = hidden.chunk(3, dim=1)
        reset, update = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        candidate = (x_n + reset * h_n).tanh()
        return candidate + update * (h - candidate), None
    gates = x + h @ weight_hh_t
    if mode == "LSTM":
        i, f, g, o = gates.chunk(4, dim=1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c
    return (gates.tanh() if mode == "RNN_TANH" else gates.relu()), None


def _direction(
    module: Any, data: Tensor, sizes: list[int], suffix: str, reverse: bool, h0: Tensor, c0: Any
) -> tuple:
    """One layer, one direction over packed rows ``data`` (N, I); returns (outputs (N, H), h_n, c_n),
    the final states in sorted batch order."""
    params = module._parameters
    bias_ih, bias_hh = params.get("bias_ih" + suffix), params.get("bias_hh" + suffix)
    projection = data @ params["weight_ih" + suffix].T
    if bias_ih is not None:
        # b_hh adds straight onto W_ih x for RNN and LSTM; a GRU's b_hn sits inside r ⊙ (·).
        projection = projection + (bias_ih if module.mode == "GRU" else bias_ih + bias_hh)
    inputs = projection.split(sizes, dim=0)
    weight_hh_t = params["weight_hh" + suffix].T
    step_bias = bias_hh if module.mode == "GRU" else None
    is_lstm = c0 is not None
    outputs: list[Tensor] = []
    if not reverse:
        h, c = h0, c0
        ended_h, ended_c = [], []
        for t, size in enumerate(sizes):
            if size < h.shape[0]:
                ended_h.append(h[size:])
                h = h[:size]
                if is_lstm:
                    ended_c.append(c[size:])
                    c = c[:size]
            h, c = _step(module.mode, inputs[t], h, c, weight_hh_t, step_bias)
            outputs.append(h)
        # The rows cut off last are the lowest sorted positions after the still-running ones.
        h_n = functions.cat([h, *reversed(ended_h)], dim=0) if ended_h else h
        c_n = (functions.cat([c, *reversed(ended_c)], dim=0) if ended_c else c) if is_lstm else None
    else:
        h = h0[: sizes[-1]]
        c = c0[: sizes[-1]] if is_lstm else None
        for t in range(len(sizes) - 1, -1, -1):
            running = h.shape[0]
            if sizes[t] > running:
                h = functions.cat([h, h0[running : sizes[t]]], dim=0)
                if is_lstm:
                    c = functions.cat([c, c0[running : sizes[t]]], dim=0)
            h, c = _step(module.mode, inputs[t], h, c, weight_hh_t, step_bias)
            outputs.append(h)
        outputs.reverse()
        h_n, c_n = h, c
    return functions.cat(outputs, dim=0), h_n, c_n


def _check(module: Any, packed: PackedSequence) -> None:
    name = type(module).__name__
    data = packed.data
    if data.ndim != 2 or data.shape[1] != module.input_size:
        raise ValueError(
            f"{name}: a PackedSequence's data must be (sum of lengths, input_size = {module.input_size}), "
            f"got {data.shape}"
        )
    weight = module.weight_ih_l0
    if data.dtype != weight.dtype:
        raise TypeError(
            f"{name}: input has dtype {data.dtype} but the parameters have dtype {weight.dtype}; convert one "
            f"of them (e.g. packed.to({str(weight.dtype)!r}))"
        )
    if data.device != weight.device:
        raise RuntimeError(
            f"{name}: input is on {data.device} but the parameters are on {weight.device}; "
            "move one with .to(device)"
        )


def packed_forward(module: Any, packed: PackedSequence, hx: Any) -> tuple[PackedSequence, Tensor, Any]:
    """Run an ``RNN``/``LSTM``/``GRU`` over a ``PackedSequence``; returns (output, h_n, c_n).

    ``output`` is a ``PackedSequence`` with the same batch sizes and indices whose data is (N, D*H),
    the top layer's states at every valid step. ``hx`` (and h_n, c_n) are (D*L, B, H) in the original
    batch order: they are reordered into sorted order on the way in (``hx[:, sorted_indices]``) and
    back on the way out. ``batch_first`` does not apply to packed input. Dropout acts between layers
    on the packed rows, in training mode.
    """
    _check(module, packed)
    sizes = _host(packed.batch_sizes).tolist()
    batch = sizes[0]
    data = packed.data
    directions = 2 if module.bidirectional else 1
    stacked = module.num_layers * directions
    is_lstm = module.mode == "LSTM"
    if hx is None:
        zeros = functions.zeros(batch, module.hidden_size, dtype=data.dtype, device=data.device)
        initial_h = [zeros] * stacked
        initial_c = [zeros] * stacked if is_lstm else [None] * stacked
    else:
        if is_lstm:
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError(f"{type(module).__name__}: hx must be a tuple (h_0, c_0) or None")
            states = [
                module._check_hidden(hx[0], "h_0", batch, True),
                module._check_hidden(hx[1], "c_0", batch, True),
            ]
        else:
            states = [module._check_hidden(hx, "hx", batch, True)]
        if packed.sorted_indices is not None:
            states = [s[:, packed.sorted_indices] for s in states]
        initial_h = states[0].unbind(0)
        initial_c = states[1].unbind(0) if is_lstm else [None] * stacked
    final_h, final_c = [], []
    layer_input = data
    for layer in range(module.num_layers):
        results = []
        for direction in range(directions):
            index = layer * directions + direction
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            output, h_last, c_last = _direction(
                module, layer_input, sizes, suffix, bool(direction), initial_h[index], initial_c[index]
            )
            results.append(output)
            final_h.append(h_last)
            final_c.append(c_last)
        layer_input = results[0] if directions == 1 else functions.cat(results, dim=1)
        if module.dropout and module.training and layer < module.num_layers - 1:
            layer_input = functions.dropout(layer_input, p=module.dropout, training=True)
    h_n = functions.stack(final_h, dim=0)
    c_n = functions.stack(final_c, dim=0) if is_lstm else None
    if packed.unsorted_indices is not None:
        h_n = h_n[:, packed.unsorted_indices]
        c_n = c_n[:, packed.unsorted_indices] if is_lstm else None
    output = PackedSequence(layer_input, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    return output, h_n, c_n
