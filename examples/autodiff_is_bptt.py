"""Autodiff on the unrolled graph *is* backpropagation through time: a side-by-side check.

For a vanilla RNN, an LSTM and a GRU (one layer, PyTorch's layouts) with a linear read-out and the
mean-squared error summed over every step, this computes dL/dθ twice, in float64:

* with ``loss.backward()`` on ``nn.RNN``/``nn.LSTM``/``nn.GRU`` + ``nn.Linear``: the engine walks the tape
  of the unrolled network; nobody wrote a backward pass for the recurrence;
* with ``tinygrad_rnn.reference``: BPTT written out by hand from the derivation (dh_next carried back
  through the recurrence, the weight gradients summed over steps).

It prints, parameter by parameter, the relative error ‖g_tape − g_hand‖ / ‖g_hand‖ (and for the initial
state), and saves a bar chart of them.

    python examples/autodiff_is_bptt.py [--steps 100] [--device cpu]
"""

from __future__ import annotations

import os
import sys

import _common
import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn, plot, reference

MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def compare(cell: str, sizes: dict, seed: int, device: str) -> list[list]:
    """Rows (cell, parameter, shape, ‖grad‖, relative error) for one cell."""
    inputs_size, hidden, outputs_size, batch, steps = (sizes[k] for k in ("I", "H", "O", "B", "T"))
    params = reference.init_params(cell, inputs_size, hidden, outputs_size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((steps, batch, inputs_size))
    y = rng.standard_normal((steps, batch, outputs_size))
    h0 = rng.standard_normal((batch, hidden)) * 0.5
    c0 = rng.standard_normal((batch, hidden)) * 0.5

    hand = reference.bptt(cell, params, x, y, h0=h0, c0=c0 if cell == "lstm" else None, loss="mse")

    recurrent = MODULES[cell](inputs_size, hidden).double().to(device)
    readout = nn.Linear(hidden, outputs_size).double().to(device)
    recurrent.load_state_dict({k: v for k, v in params.items() if not k.startswith("readout.")})
    readout.load_state_dict({"weight": params["readout.weight"], "bias": params["readout.bias"]})
    h0_t = tg.tensor(h0[None], device=device, requires_grad=True)
    c0_t = tg.tensor(c0[None], device=device, requires_grad=True)
    output, _ = recurrent(tg.tensor(x, device=device), (h0_t, c0_t) if cell == "lstm" else h0_t)
    loss = F.mse_loss(readout(output), tg.tensor(y, device=device))
    loss.backward()

    tape = {name: p.grad.numpy() for name, p in recurrent.named_parameters()}
    tape.update({f"readout.{name}": p.grad.numpy() for name, p in readout.named_parameters()})
    tape["h0"] = h0_t.grad.numpy()[0]
    if cell == "lstm":
        tape["c0"] = c0_t.grad.numpy()[0]
    rows = [
        [cell, "loss", "()", f"{loss.item():.6f}", f"{abs(loss.item() - hand.loss) / abs(hand.loss):.1e}"]
    ]
    for name in [*reference.parameter_names(cell), "h0", *(["c0"] if cell == "lstm" else [])]:
        g_hand = np.asarray(hand.grads[name])
        rows.append(
            [
                cell,
                name,
                str(tuple(g_hand.shape)),
                f"{np.linalg.norm(g_hand):.4e}",
                f"{relative_error(tape[name], g_hand):.1e}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = _common.base_parser(__doc__.split("\n\n")[0], "autodiff_is_bptt")
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    args = parser.parse_args(argv)
    _common.require_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    sizes = (
        {"I": 3, "H": 8, "O": 2, "B": 2, "T": 12}
        if args.quick
        else {"I": 10, "H": 32, "O": 5, "B": 4, "T": args.steps}
    )
    rows: list[list] = []
    for cell in MODULES:
        rows.extend(compare(cell, sizes, args.seed, args.device))
    title = (
        f"autodiff (tape) vs hand-derived BPTT, float64, T={sizes['T']} B={sizes['B']} "
        f"I={sizes['I']} H={sizes['H']} O={sizes['O']}"
    )
    _common.print_table(
        title, ["cell", "gradient of", "shape", "‖grad‖ (hand)", "rel. error"], rows, args.out
    )
    errors = [float(r[4]) for r in rows if r[1] != "loss"]
    print(f"largest relative error over {len(errors)} gradients: {max(errors):.1e}")

    labels = [f"{r[0]}:{r[1]}" for r in rows if r[1] != "loss"]
    figure = plot.bars(
        os.path.join(args.out, "relative_errors.png"),
        labels,
        errors,
        "‖g_tape − g_hand‖ / ‖g_hand‖",
        title="autodiff on the unrolled graph vs hand-derived BPTT (float64)",
        log_y=True,
    )
    print(f"figure: {figure}")
    return 0 if max(errors) < 1e-8 else 1


if __name__ == "__main__":
    sys.exit(main())
