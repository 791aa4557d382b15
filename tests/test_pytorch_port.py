"""Recurrent code written for PyTorch runs after changing only its imports.

``SCRIPT`` below is written the way a PyTorch user writes a truncated-BPTT language model (a Module
subclass, ``hidden.detach()`` between chunks, cross-entropy over reshaped outputs, clipping, Adam,
saving and loading the state dict, greedy decoding under ``no_grad``). The test runs it with the three
PyTorch imports replaced by tinygrad_rnn's and nothing else changed.
"""

import ast
import difflib
import types

import numpy as np

OUR_IMPORTS = """\
import tinygrad_rnn as torch
import tinygrad_rnn.nn as nn
import tinygrad_rnn.nn.functional as F
"""
# The three lines a PyTorch script starts with, derived from ours so that this file never spells an
# import of another autodiff library (the project does not depend on one; the test never imports it).
PYTORCH_IMPORTS = OUR_IMPORTS.replace("tinygrad_rnn as torch", "torch").replace("tinygrad_rnn", "torch")

SCRIPT = """
torch.manual_seed(0)
text = "the quick brown fox jumps over the lazy dog. " * 12
chars = sorted(set(text))
index = {c: i for i, c in enumerate(chars)}
data = torch.tensor([index[c] for c in text], dtype=torch.long)

batch, chunk = 4, 15
usable = (len(data) // batch) * batch
streams = data[:usable].view(batch, -1).t().contiguous()      # (L, batch)


class CharModel(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.lstm = nn.LSTM(16, hidden, num_layers=2, dropout=0.1)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, hidden=None):
        out, hidden = self.lstm(self.embed(x), hidden)
        return self.head(out), hidden


model = CharModel(len(chars), 48)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
losses = []
for epoch in range(12):
    model.train()
    hidden = None
    for start in range(0, streams.size(0) - 1, chunk):
        x = streams[start:start + chunk]
        y = streams[start + 1:start + 1 + chunk]
        x = x[: y.size(0)]
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        losses.append(loss.item())

torch.save(model.state_dict(), checkpoint_path)
restored = CharModel(len(chars), 48)
restored.load_state_dict(torch.load(checkpoint_path))
restored.eval()
with torch.no_grad():
    prompt = torch.tensor([[index[c]] for c in "the quick "], dtype=torch.long)
    logits, hidden = restored(prompt)
    token = logits[-1].argmax(dim=-1)
    generated = []
    for _ in range(20):
        generated.append(chars[int(token.item())])
        logits, hidden = restored(token.view(1, 1), hidden)
        token = logits[-1].argmax(dim=-1)
    continuation = "".join(generated)
"""


def port(source: str) -> str:
    """The port a user makes: each of PyTorch's three import lines replaced by ours, nothing else."""
    lines = source.splitlines(keepends=True)
    for theirs, ours in zip(PYTORCH_IMPORTS.splitlines(), OUR_IMPORTS.splitlines()):
        positions = [k for k, line in enumerate(lines) if line.rstrip("\n") == theirs]
        assert len(positions) == 1, f"{theirs!r} appears {len(positions)} times"
        lines[positions[0]] = ours + "\n"
    return "".join(lines)


def test_the_port_changes_exactly_the_three_import_lines():
    original = PYTORCH_IMPORTS + SCRIPT
    ported = port(original)
    diff = difflib.ndiff(original.splitlines(), ported.splitlines())
    changed = [line for line in diff if line.startswith(("- ", "+ "))]
    assert sorted(changed) == sorted(
        [f"- {line}" for line in PYTORCH_IMPORTS.splitlines()]
        + [f"+ {line}" for line in OUR_IMPORTS.splitlines()]
    )
    assert ported == OUR_IMPORTS + SCRIPT


def _dotted_names(source: str, roots: set) -> set:
    """Every attribute chain the script reads off ``roots``: "torch.optim.Adam", "F.cross_entropy", ..."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            parts, inner = [node.attr], node.value
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in roots:
                names.add(".".join([inner.id, *reversed(parts)]))
    return names


def test_every_name_the_ported_script_reaches_through_its_imports_is_tinygrad_rnn_s():
    namespace: dict = {}
    exec(compile(port(PYTORCH_IMPORTS), "ported_imports", "exec"), namespace)
    assert {namespace[k].__name__ for k in ("torch", "nn", "F")} == {
        "tinygrad_rnn",
        "tinygrad_rnn.nn",
        "tinygrad_rnn.nn.functional",
    }
    names = _dotted_names(SCRIPT, {"torch", "nn", "F"})
    assert {"torch.optim.Adam", "torch.nn.utils.clip_grad_norm_", "nn.LSTM", "F.cross_entropy"} <= names
    for name in sorted(names):
        root, *attributes = name.split(".")
        value = namespace[root]
        for attribute in attributes:
            assert hasattr(value, attribute), f"{name}: tinygrad_rnn has no {attribute!r} here"
            value = getattr(value, attribute)
        home = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if callable(value) or isinstance(value, types.ModuleType):
            assert home is not None and home.split(".")[0] == "tinygrad_rnn", f"{name} comes from {home}"


def test_pytorch_style_truncated_bptt_script_runs_after_changing_only_the_imports(tmp_path):
    namespace = {"checkpoint_path": str(tmp_path / "model.npz")}
    exec(compile(port(PYTORCH_IMPORTS + SCRIPT), "pytorch_style_script", "exec"), namespace)
    losses = namespace["losses"]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 2.0, f"the untrained loss should be near log(vocab), got {first:.3f}"
    assert last < 0.4 * first, f"loss went from {first:.3f} to {last:.3f}"
    assert namespace["continuation"].startswith("brown fox"), namespace["continuation"]
    saved, restored = namespace["model"].state_dict(), namespace["restored"].state_dict()
    assert saved.keys() == restored.keys()
    for key in saved:
        np.testing.assert_array_equal(restored[key], saved[key])
