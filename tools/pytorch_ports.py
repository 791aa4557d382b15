"""Run the PyTorch-style programs of ``tests/ports/`` under real PyTorch, and store the reference numbers
that ``tests/test_ports.py`` pins tinygrad_rnn to.

Run by hand, in an environment that has PyTorch (``pip install torch numpy``)::

    python tools/pytorch_ports.py            # writes tests/data/port_reference.npz
    python tools/pytorch_ports.py --train    # also runs each program to its end under PyTorch

Each program in ``tests/ports/`` imports tinygrad_rnn under PyTorch's names (``import tinygrad_rnn as
torch``); :func:`to_pytorch` turns those import lines back into PyTorch's and changes nothing else, so the
program PyTorch runs here is the one tinygrad_rnn runs in the tests, less the swap. The tests never import
PyTorch; they read only the stored file.

For each program the reference is one piece of its own training code run from fixed weights (stored in the
file) on fixed data, where no random number is drawn: the loss and the gradient of every parameter (and,
for L-BFGS, the losses and weights after two ``optimizer.step(closure)`` calls).
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PORTS = ROOT / "tests" / "ports"
OUTPUT = ROOT / "tests" / "data" / "port_reference.npz"
PROGRAMS = ["time_sequence_prediction", "char_rnn_classification", "seq2seq_attention", "word_language_model"]

_IMPORT_LINE = re.compile(r"^\s*(import|from)\s+tinygrad_rnn\b")


def to_pytorch(source: str) -> str:
    """The program with its tinygrad_rnn import lines written as PyTorch's; every other line unchanged."""
    lines = []
    for line in source.splitlines(keepends=True):
        if _IMPORT_LINE.match(line):
            line = line.replace("import tinygrad_rnn as torch", "import torch")
            line = line.replace("tinygrad_rnn", "torch")
        lines.append(line)
    return "".join(lines)


def load_program(name: str, pytorch: bool) -> types.ModuleType:
    """Import ``tests/ports/<name>.py`` as a module, swapped to PyTorch's imports when ``pytorch``."""
    source = (PORTS / f"{name}.py").read_text()
    if pytorch:
        source = to_pytorch(source)
    module = types.ModuleType(f"port_{name}")
    module.__file__ = str(PORTS / f"{name}.py")
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


# ---- the fixed pieces of each program that the tests pin -------------------------------------------------
# Each ``case_*`` takes the program's module and a ``weights`` dict (name -> array, or None to draw them),
# runs one deterministic piece of the program's training code and returns (weights, results).


def _as_numpy(value) -> np.ndarray:
    # PyTorch's state_dict holds tensors; tinygrad_rnn's holds NumPy arrays (see docs/porting.md).
    return np.array(value.detach().cpu().numpy() if hasattr(value, "detach") else value)


def _numpy_state(module_obj) -> dict:
    return {k: _as_numpy(v) for k, v in module_obj.state_dict().items()}


def _load(model, weights: dict, prefix: str, torch_mod) -> None:
    state = {k[len(prefix) :]: torch_mod.tensor(v) for k, v in weights.items() if k.startswith(prefix)}
    model.load_state_dict(state)


def _grads(model, prefix: str) -> dict:
    return {f"{prefix}grad.{n}": p.grad.detach().cpu().numpy().copy() for n, p in model.named_parameters()}


def case_time_sequence_prediction(m, weights):
    torch = m.torch
    data = m.make_waves(n_waves=6, length=31)
    seq = m.Sequence(8)
    seq.double()
    if weights is None:
        torch.manual_seed(0)
        weights = {f"model.{k}": v for k, v in _numpy_state(seq).items()}
    _load(seq, weights, "model.", torch)
    input, target = torch.from_numpy(data[:, :-1]), torch.from_numpy(data[:, 1:])
    criterion = m.nn.MSELoss()
    optimizer = m.optim.LBFGS(seq.parameters(), lr=0.8)
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = criterion(seq(input), target)
        losses.append(loss.item())
        loss.backward()
        return loss

    for _ in range(2):
        optimizer.step(closure)
    out = {"losses": np.array(losses)}
    out.update({f"after.{k}": v for k, v in _numpy_state(seq).items()})
    with torch.no_grad():
        out["future"] = seq(input[:2], future=5).numpy()
    return weights, out


def case_char_rnn_classification(m, weights):
    torch = m.torch
    rnn = m.CharRNN(m.n_letters, 16, 4)
    if weights is None:
        torch.manual_seed(0)
        weights = {f"model.{k}": v for k, v in _numpy_state(rnn).items()}
    _load(rnn, weights, "model.", torch)
    criterion = m.nn.NLLLoss()
    batch_loss = 0
    for label, name in [(0, "Smith"), (2, "Tanaka"), (3, "Ivanov"), (1, "Rossi")]:
        output = rnn(m.lineToTensor(name))
        batch_loss += criterion(output, torch.tensor([label], dtype=torch.long))
    batch_loss.backward()
    out = {"loss": np.array(batch_loss.item())}
    out.update(_grads(rnn, ""))
    return weights, out


def case_seq2seq_attention(m, weights):
    torch = m.torch
    input_lang, output_lang, pairs = m.prepare_data()
    encoder = m.EncoderRNN(input_lang.n_words, 12)
    decoder = m.AttnDecoderRNN(12, output_lang.n_words, dropout_p=0.1)
    if weights is None:
        torch.manual_seed(0)
        weights = {f"encoder.{k}": v for k, v in _numpy_state(encoder).items()}
        weights.update({f"decoder.{k}": v for k, v in _numpy_state(decoder).items()})
    _load(encoder, weights, "encoder.", torch)
    _load(decoder, weights, "decoder.", torch)
    decoder.eval()  # no dropout: the piece is deterministic
    encoder_optimizer = m.optim.SGD(encoder.parameters(), lr=0.05)
    decoder_optimizer = m.optim.SGD(decoder.parameters(), lr=0.05)
    out = {}
    for k, pair in enumerate([pairs[0], pairs[5]]):
        input_tensor, target_tensor = m.tensorsFromPair(input_lang, output_lang, pair)
        loss = m.train(
            input_tensor,
            target_tensor,
            encoder,
            decoder,
            encoder_optimizer,
            decoder_optimizer,
            m.nn.NLLLoss(),
            use_teacher_forcing=(k == 0),
        )
        out[f"loss{k}"] = np.array(loss)
        out.update({f"grad{k}.encoder.{n}": p.grad.numpy().copy() for n, p in encoder.named_parameters()})
        out.update({f"grad{k}.decoder.{n}": p.grad.numpy().copy() for n, p in decoder.named_parameters()})
    return weights, out


def case_word_language_model(m, weights):
    torch = m.torch
    args = m.build_parser().parse_args(["--nhid", "16", "--emsize", "8", "--batch_size", "4", "--bptt", "6"])
    corpus = m.Corpus(n_train=40, n_valid=8)
    ntokens = len(corpus.dictionary)
    model = m.RNNModel("LSTM", ntokens, args.emsize, args.nhid, args.nlayers, args.dropout)
    if weights is None:
        torch.manual_seed(0)
        weights = {f"model.{k}": v for k, v in _numpy_state(model).items()}
    _load(model, weights, "model.", torch)
    model.eval()  # no dropout: the piece is deterministic
    criterion = m.nn.NLLLoss()
    train_data = m.batchify(corpus.train, args.batch_size)
    hidden = model.init_hidden(args.batch_size)
    out = {}
    for k, i in enumerate(range(0, 2 * args.bptt, args.bptt)):  # two TBPTT windows, state carried
        data, targets = m.get_batch(train_data, i, args.bptt)
        hidden = m.repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        out[f"window{k}.loss"] = np.array(loss.item())
        out.update(_grads(model, f"window{k}."))
    sentences = [corpus.tokenize([s]) for s in corpus.train_sentences[:5]]
    lengths = torch.tensor([len(s) - 1 for s in sentences])
    padded_inputs = m.pad_sequence([s[:-1] for s in sentences])
    padded_targets = m.pad_sequence([s[1:] for s in sentences])
    model.zero_grad()
    loss = m.nn.NLLLoss(ignore_index=0)(model.forward_packed(padded_inputs, lengths), padded_targets.view(-1))
    loss.backward()
    out["packed.loss"] = np.array(loss.item())
    out.update(_grads(model, "packed."))
    return weights, out


CASES = {name: globals()[f"case_{name}"] for name in PROGRAMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="also run each program's main() under PyTorch")
    args = parser.parse_args()
    import numpy as np
    import torch

    arrays = {}
    for name in PROGRAMS:
        module = load_program(name, pytorch=True)
        if args.train:
            argv = ([],) if name == "word_language_model" else ()
            result = module.main(*argv, verbose=False)
            print(name, {k: v for k, v in result.items() if not hasattr(v, "shape")})
        weights, results = CASES[name](module, None)
        arrays.update({f"{name}/weights/{k}": np.asarray(v) for k, v in weights.items()})
        arrays.update({f"{name}/results/{k}": np.asarray(v) for k, v in results.items()})
        print(f"{name}: {len(weights)} weights, {len(results)} results")
    arrays["torch_version"] = np.array(torch.__version__)
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(arrays)} arrays) with PyTorch {torch.__version__}")


if __name__ == "__main__":
    main()
