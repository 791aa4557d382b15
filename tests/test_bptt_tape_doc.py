"""docs/bptt.md §3 lists the nodes of one recorded RNN step; this test reads those lines and compares
them with the tape ``nn.RNN`` records (fused, and under ``nn.unfused()``), so text and tape fail together."""

import pathlib
import re

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "bptt.md"


def _documented_step(variant: str) -> list:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 3.") : text.index("## 4.")]
    match = re.search(rf"^- Nodes of one step \({variant}\): (.+)$", section, flags=re.MULTILINE)
    assert match, f"docs/bptt.md §3 has no 'Nodes of one step ({variant})' line"
    return re.findall(r"`(\w+)`", match.group(1))


def _recorded_step(fused: bool) -> list:
    """The nodes step 2 of a 2-step RNN adds to the tape, in creation order: the ancestors of h_2
    created after h_1's node."""
    tg.manual_seed(0)
    layer = nn.RNN(3, 4)
    x = tg.tensor(np.ones((2, 1, 3), dtype=np.float32))
    if fused:
        output, _ = layer(x)
    else:
        with nn.unfused():
            output, _ = layer(x)
    (h1, _), (h2, _) = output.grad_fn.next_functions  # the output Stack's inputs: h_1, h_2
    nodes, stack = {}, [h2]
    while stack:
        node = stack.pop()
        if isinstance(node, tg.autograd.Function) and node.seq > h1.seq and id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(parent for parent, _ in node.next_functions)
    return [node.name for node in sorted(nodes.values(), key=lambda n: n.seq)]


@pytest.mark.parametrize(("variant", "fused"), [("fused", True), ("unfused", False)])
def test_bptt_doc_lists_the_nodes_nn_rnn_records_for_one_step(variant, fused):
    assert _documented_step(variant) == _recorded_step(fused)
