"""Draw the tape of short unrolled recurrent networks: what ``loss.backward()`` walks.

Writes, for each network, the Graphviz DOT text (always) and an SVG (when the ``graphviz`` package and
its ``dot`` program are installed: ``pip install "tinygrad_rnn[viz]"`` and e.g. ``apt-get install
graphviz``):

* ``rnn_tape``: ``nn.RNN`` over 3 steps with a read-out and an MSE loss, started from a hidden state
  detached from an earlier chunk: one fused ``TanhAddMatMul`` node per step, the cut drawn in red;
* ``rnn_plain_tape``: the same cell written with Tensor ops, h_t = tanh(W_hh h_{t-1} + a_t): the
  MatMul -> Add -> Tanh of each step that docs/bptt.md §2 differentiates by hand;
* ``lstm_tape``: ``nn.LSTM`` over 4 steps, with ``window=2`` marking the two newest steps, the part
  of this tape a backward pass truncated at depth k2 = 2 would reach.

Run ``python examples/draw_tape.py --out docs/figures`` to refresh the figures of docs/bptt.md.
"""

from __future__ import annotations

import os
import sys
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import base_parser

import tinygrad_rnn as tg
from tinygrad_rnn import nn, viz
from tinygrad_rnn.nn import functional as F


def rnn_tape(seed: int) -> tuple:
    """One truncated-BPTT chunk of nn.RNN: h from the previous chunk enters detached."""
    tg.manual_seed(seed)
    rnn, readout = nn.RNN(2, 3).double(), nn.Linear(3, 1).double()
    x = tg.randn(6, 1, 2, dtype=tg.float64)
    _, hidden = rnn(x[:3])  # the previous chunk
    output, _ = rnn(x[3:], hidden.detach())  # the chunk drawn: the tape ends at the detach
    loss = F.mse_loss(readout(output), tg.zeros(3, 1, 1, dtype=tg.float64))
    params = dict(rnn.named_parameters())
    params.update({"readout." + name: p for name, p in readout.named_parameters()})
    return loss, params, {}


def rnn_plain_tape(seed: int) -> tuple:
    """The tanh RNN of §1, h_t = tanh(W_hh h_{t-1} + (W_ih x_t + b)), one Tensor op at a time."""
    rng = np.random.default_rng(seed)
    w_ih = tg.tensor(rng.standard_normal((3, 2)) * 0.5, requires_grad=True)
    w_hh = tg.tensor(rng.standard_normal((3, 3)) * 0.5, requires_grad=True)
    bias = tg.tensor(np.zeros(3), requires_grad=True)
    h = tg.zeros(1, 3, dtype=tg.float64)  # h_0: a constant, so the tape starts at step 0
    projections = (tg.tensor(rng.standard_normal((3, 1, 2))) @ w_ih.T + bias).unbind(0)
    states = []
    for a in projections:
        h = (h @ w_hh.T + a).tanh()
        states.append(h)
    loss = (tg.stack(states) ** 2).sum()
    return loss, {"W_ih": w_ih, "W_hh": w_hh, "b": bias}, {}


def lstm_tape(seed: int) -> tuple:
    """nn.LSTM over 4 steps; the window marks the 2 newest steps."""
    tg.manual_seed(seed)
    lstm = nn.LSTM(2, 3).double()
    output, _ = lstm(tg.randn(4, 1, 2, dtype=tg.float64))
    return output.sum(), lstm, {"window": 2}


DRAWINGS = {"rnn_tape": rnn_tape, "rnn_plain_tape": rnn_plain_tape, "lstm_tape": lstm_tape}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], "draw_tape")
    parser.add_argument("--no-svg", action="store_true", help="write only the DOT text")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, build in DRAWINGS.items():
        loss, params, options = build(args.seed)
        drawn = viz.graph(loss, params=params, **options)
        per_step = Counter(node.step[1] for node in drawn.nodes.values() if node.kind == "op" and node.step)
        ops = sorted({node.label for node in drawn.nodes.values() if node.kind == "op" and node.step})
        cuts = sum(node.kind == "cut" for node in drawn.nodes.values())
        print(
            f"{name}: {len(drawn.nodes)} nodes, {len(drawn.edges)} edges; op nodes per step "
            f"{dict(sorted(per_step.items()))} ({', '.join(ops)}); {cuts} detach cut(s)"
        )
        dot_path = os.path.join(args.out, name + ".dot")
        with open(dot_path, "w") as handle:
            handle.write(viz.to_dot(loss, params=params, title=name, **options))
        print(f"  wrote {dot_path}")
        if args.no_svg:
            continue
        try:
            path = viz.render(loss, os.path.join(args.out, name), params=params, title=name, **options)
            print(f"  wrote {path}")
        except (ImportError, RuntimeError) as error:
            print(f"  no SVG: {error}")


if __name__ == "__main__":
    main()
