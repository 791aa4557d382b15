"""Regenerate ``tests/data/torch_packed_reference.npz``: PyTorch's recurrent layers run on packed batches.

Run by hand, in an environment with torch (the stored file was made with torch 2.13.0, CPU wheel):

    python tools/make_torch_packed_reference.py [output path]

Each case builds a padded float64 batch whose sequences have different lengths (the padding holds
random values too, so a leak from it would show), packs it with ``pack_padded_sequence`` (sorted
with ``enforce_sorted=True`` or unsorted with ``enforce_sorted=False``), runs an ``RNN``/``LSTM``/``GRU``
with PyTorch's default initialisation, pads the output back with ``pad_packed_sequence`` and
differentiates the fixed scalar
``L = Σ output ⊙ weight_output + Σ h_n ⊙ weight_h_n (+ Σ c_n ⊙ weight_c_n)``.
``tests/data/README.md`` lists the keys. The package never imports torch; only this script does.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

INPUT_SIZE, HIDDEN_SIZE, BATCH, STEPS = 3, 4, 4, 5

# (name, kind, options, lengths in batch order, enforce_sorted, initial state given)
CASES = [
    ("rnn_tanh_unsorted", "RNN", {}, [3, 5, 1, 4], False, False),
    (
        "rnn_relu_2layer_bidirectional_hx",
        "RNN",
        {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True},
        [5, 2, 4, 4],
        False,
        True,
    ),
    ("rnn_tanh_batch_first_sorted_hx", "RNN", {"batch_first": True}, [5, 4, 2, 1], True, True),
    (
        "rnn_tanh_2layer_batch_first_ties",
        "RNN",
        {"num_layers": 2, "batch_first": True},
        [3, 5, 3, 2],
        False,
        False,
    ),
    ("lstm_unsorted_hx", "LSTM", {}, [2, 5, 3, 1], False, True),
    (
        "lstm_2layer_bidirectional_batch_first",
        "LSTM",
        {"num_layers": 2, "bidirectional": True, "batch_first": True},
        [4, 1, 5, 3],
        False,
        False,
    ),
    ("lstm_bidirectional_sorted_hx", "LSTM", {"bidirectional": True}, [5, 5, 3, 2], True, True),
    ("lstm_2layer_nobias_hx", "LSTM", {"num_layers": 2, "bias": False}, [1, 4, 2, 5], False, True),
    ("gru_2layer_unsorted_hx", "GRU", {"num_layers": 2}, [1, 3, 5, 2], False, True),
    (
        "gru_bidirectional_batch_first_sorted",
        "GRU",
        {"bidirectional": True, "batch_first": True},
        [5, 3, 3, 1],
        True,
        False,
    ),
    (
        "gru_2layer_bidirectional_nobias_hx",
        "GRU",
        {"num_layers": 2, "bidirectional": True, "bias": False},
        [2, 4, 5, 3],
        False,
        True,
    ),
    ("gru_full_lengths_sorted", "GRU", {}, [5, 5, 5, 5], True, False),
]


def make_case(
    index: int, name: str, kind: str, options: dict, lengths: list, enforce_sorted: bool, hx: bool
) -> dict:
    rng = np.random.default_rng(index)
    torch.manual_seed(index)
    module = getattr(torch.nn, kind)(INPUT_SIZE, HIDDEN_SIZE, **options).double()
    batch_first = options.get("batch_first", False)
    shape = (BATCH, STEPS, INPUT_SIZE) if batch_first else (STEPS, BATCH, INPUT_SIZE)
    x = torch.tensor(rng.standard_normal(shape), requires_grad=True)
    directions = 2 if options.get("bidirectional") else 1
    hidden_shape = (options.get("num_layers", 1) * directions, BATCH, HIDDEN_SIZE)
    leaves = {"input": x}
    state = None
    if hx:
        leaves["h0"] = torch.tensor(0.5 * rng.standard_normal(hidden_shape), requires_grad=True)
        state = leaves["h0"]
        if kind == "LSTM":
            leaves["c0"] = torch.tensor(0.5 * rng.standard_normal(hidden_shape), requires_grad=True)
            state = (leaves["h0"], leaves["c0"])
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    packed_output, final = module(packed, state)
    h_n, c_n = final if kind == "LSTM" else (final, None)
    output, output_lengths = pad_packed_sequence(packed_output, batch_first=batch_first, total_length=STEPS)
    assert output_lengths.tolist() == lengths
    results = {"output": output, "h_n": h_n}
    if c_n is not None:
        results["c_n"] = c_n
    weights = {key: torch.tensor(rng.standard_normal(tuple(value.shape))) for key, value in results.items()}
    loss = sum((value * weights[key]).sum() for key, value in results.items())
    loss.backward()

    config = {
        "kind": kind,
        "input_size": INPUT_SIZE,
        "hidden_size": HIDDEN_SIZE,
        "options": options,
        "lengths": lengths,
        "enforce_sorted": enforce_sorted,
        "hx": hx,
    }
    arrays = {"config": np.array(json.dumps(config))}
    for key, value in module.state_dict().items():
        arrays[f"state/{key}"] = value.numpy()
    arrays["lengths"] = np.asarray(lengths, dtype=np.int64)
    for key, leaf in leaves.items():
        arrays[key] = leaf.detach().numpy()
        arrays[f"grad/{key}"] = leaf.grad.numpy()
    for key, value in results.items():
        arrays[key] = value.detach().numpy()
        arrays[f"weight_{key}"] = weights[key].numpy()
    for key, param in module.named_parameters():
        arrays[f"grad/{key}"] = param.grad.numpy()
    arrays["packed_data"] = packed.data.detach().numpy()
    arrays["batch_sizes"] = packed.batch_sizes.numpy()
    if packed.sorted_indices is not None:
        arrays["sorted_indices"] = packed.sorted_indices.numpy()
    arrays["output_packed_data"] = packed_output.data.detach().numpy()
    return {f"{name}/{key}": value for key, value in arrays.items()}


def main() -> None:
    default = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "torch_packed_reference.npz"
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else default
    torch.set_default_dtype(torch.float64)
    arrays = {"torch_version": np.array(torch.__version__)}
    for index, case in enumerate(CASES):
        arrays.update(make_case(index, *case))
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(CASES)} cases, {len(arrays)} arrays to {path}")


if __name__ == "__main__":
    main()
