"""Complete recurrent programs written for PyTorch run on tinygrad_rnn after changing only their imports.

``tests/ports/`` holds four programs written the way PyTorch's own tutorials and examples write them (a
word-level LSTM/Transformer language model with truncated BPTT and packed batches, a surname classifier fed
by a ``DataLoader``, an attention seq2seq model that writes encoder outputs into slices of a tensor, and an
LSTM-cell sine predictor trained with L-BFGS). Each imports tinygrad_rnn under PyTorch's names; the tests
check that this swap is the only difference from the PyTorch program, that each program runs to its end
and learns, and that from the same weights it computes PyTorch's losses and gradients, which
``tools/pytorch_ports.py`` stored once from PyTorch 2.13 in ``tests/data/port_reference.npz``.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pytorch_ports", ROOT / "tools" / "pytorch_ports.py")
ports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ports)

REFERENCE = np.load(ROOT / "tests" / "data" / "port_reference.npz")

# Three of the programs train in float32 (PyTorch's default dtype), where two correct implementations
# differ by rounding; the L-BFGS program trains in float64.
TOLERANCE = {
    "time_sequence_prediction": {"rtol": 1e-8, "atol": 1e-10},
    "char_rnn_classification": {"rtol": 2e-4, "atol": 2e-6},
    "seq2seq_attention": {"rtol": 2e-4, "atol": 2e-6},
    "word_language_model": {"rtol": 2e-4, "atol": 2e-6},
}


def stored(name: str, kind: str) -> dict:
    prefix = f"{name}/{kind}/"
    return {key[len(prefix) :]: REFERENCE[key] for key in REFERENCE.files if key.startswith(prefix)}


@pytest.mark.parametrize("name", ports.PROGRAMS)
def test_program_differs_from_its_pytorch_form_only_in_its_import_lines(name):
    source = (ports.PORTS / f"{name}.py").read_text()
    swapped = ports.to_pytorch(source)
    ours, theirs = source.splitlines(), swapped.splitlines()
    assert len(ours) == len(theirs)
    changed = [(a, b) for a, b in zip(ours, theirs) if a != b]
    assert changed, "the program should import tinygrad_rnn"
    for line, _ in changed:
        assert ports._IMPORT_LINE.match(line), f"a line other than an import was changed: {line!r}"
    assert "tinygrad_rnn" not in swapped
    compile(swapped, name, "exec")


@pytest.mark.parametrize("name", ports.PROGRAMS)
def test_program_computes_pytorchs_losses_and_gradients_from_the_same_weights(name):
    module = ports.load_program(name, pytorch=False)
    _, results = ports.CASES[name](module, stored(name, "weights"))
    expected = stored(name, "results")
    assert sorted(results) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(
            np.asarray(results[key], dtype=np.float64), value, err_msg=f"{name}: {key}", **TOLERANCE[name]
        )


def test_time_sequence_prediction_learns_with_lbfgs():
    program = ports.load_program("time_sequence_prediction", pytorch=False)
    result = program.main(steps=2, hidden=12, length=40, future=10, verbose=False)
    losses = result["losses"]
    assert losses[-1] < 0.05 * losses[0], f"L-BFGS went from {losses[0]:.4f} to {losses[-1]:.4f}"
    assert result["test_losses"][-1] < 0.05
    assert result["prediction"].shape == (3, 40 + 10)


def test_char_rnn_classification_learns_from_a_dataloader():
    program = ports.load_program("char_rnn_classification", pytorch=False)
    result = program.main(n_epoch=6, n_hidden=32, verbose=False)
    losses = result["losses"]
    assert losses[-1] < 0.6 * losses[0], f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"
    assert result["accuracy"] > 0.5, "four languages: chance is 0.25"


def test_seq2seq_with_slice_written_encoder_outputs_learns_to_translate():
    program = ports.load_program("seq2seq_attention", pytorch=False)
    result = program.main(n_iters=700, hidden_size=32, verbose=False)
    losses = result["losses"]
    first, last = np.mean(losses[:100]), np.mean(losses[-100:])
    assert last < 0.6 * first, f"loss went from {first:.3f} to {last:.3f}"


@pytest.mark.parametrize("model", ["LSTM", "Transformer"])
def test_word_language_model_learns_with_truncated_bptt(model):
    program = ports.load_program("word_language_model", pytorch=False)
    argv = ["--model", model, "--epochs", "2", "--nhid", "32", "--emsize", "16"]
    if model == "Transformer":
        argv += ["--lr", "1.0", "--nlayers", "1"]
    result = program.main(argv, verbose=False)
    uniform = np.log(result["ntokens"])
    assert result["train_losses"][0] > 0.8 * uniform
    assert result["val_losses"][-1] < 0.6 * uniform, result["val_losses"]
    if model == "LSTM":
        packed = result["packed_losses"]
        assert np.mean(packed[-3:]) < packed[0], packed
