"""Peak memory and time of one gradient against sequence length: full, truncated and recomputed BPTT.

An LSTM cell with a linear read-out and a mean-squared error at every step reads a sequence of T steps;
one gradient of the summed loss is computed three ways:

* full BPTT: the whole unrolled graph is kept until ``backward()``: memory grows like T;
* truncated BPTT (k1 = k2 = ``--k``): a backward pass every k steps, the state detached in between:
  memory stays flat, and the gradient is the truncated one (not the same number);
* recomputation (``checkpoint.checkpoint_sequence``): only the states at every ⌈√T⌉-th step are kept;
  each segment is run again during the backward pass: memory grows like √T for about one extra
  forward pass of compute, and the gradient equals full BPTT's (checked and printed).

Peak memory is what the allocator traced above the level before the call (``tracemalloc`` on the CPU;
tracing slows Python, so times come from separate untraced runs, the best of ``--repeats``).

    python examples/memory_vs_length.py [--lengths 250,500,1000,2000] [--device cpu]
"""

from __future__ import annotations

import math
import os
import sys

# Small matrices: BLAS threads cost more than they save (see examples/char_lstm.py).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import _common  # noqa: E402
import numpy as np  # noqa: E402

import tinygrad_rnn as tg  # noqa: E402
from tinygrad_rnn import checkpoint, nn, plot  # noqa: E402


class Problem:
    """The cell, the read-out and one random sequence; ``step`` is one time step returning its loss."""

    def __init__(self, steps: int, args: object) -> None:
        tg.manual_seed(args.seed)
        self.cell = nn.LSTMCell(args.input_size, args.hidden_size).to(args.device)
        self.readout = nn.Linear(args.hidden_size, args.input_size).to(args.device)
        rng = np.random.default_rng(args.seed)
        shape = (steps, args.batch_size, args.input_size)
        self.inputs = tg.tensor(rng.standard_normal(shape).astype(np.float32), device=args.device)
        self.targets = tg.tensor(rng.standard_normal(shape).astype(np.float32), device=args.device)
        self.parameters = list(self.cell.parameters()) + list(self.readout.parameters())
        self.state_shape = (args.batch_size, args.hidden_size)
        self.device = args.device

    def initial_state(self) -> tuple[tg.Tensor, tg.Tensor]:
        return tg.zeros(*self.state_shape, device=self.device), tg.zeros(
            *self.state_shape, device=self.device
        )

    def step(self, x: tg.Tensor, y: tg.Tensor, state: tuple) -> tuple[tg.Tensor, tuple]:
        h, c = self.cell(x, state)
        difference = self.readout(h) - y
        return (difference * difference).mean(), (h, c)

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    def gradients(self) -> list:
        return [p.grad.numpy().copy() for p in self.parameters]


def full_bptt(problem: Problem) -> float:
    problem.zero_grad()
    state, losses = problem.initial_state(), []
    for x, y in zip(problem.inputs.unbind(0), problem.targets.unbind(0)):
        loss, state = problem.step(x, y, state)
        losses.append(loss)
    total = tg.stack(losses).sum()
    total.backward()
    return float(total.item())


def truncated_bptt(problem: Problem, k: int) -> float:
    problem.zero_grad()
    state, value = problem.initial_state(), 0.0
    for start in range(0, problem.inputs.shape[0], k):
        state = tuple(s.detach() for s in state)
        losses = []
        for x, y in zip(
            problem.inputs[start : start + k].unbind(0), problem.targets[start : start + k].unbind(0)
        ):
            loss, state = problem.step(x, y, state)
            losses.append(loss)
        chunk = tg.stack(losses).sum()
        chunk.backward()
        value += float(chunk.item())
    return value


def recomputed_bptt(problem: Problem) -> float:
    problem.zero_grad()
    losses, _ = checkpoint.checkpoint_sequence(
        problem.step, (problem.inputs, problem.targets), problem.initial_state()
    )
    total = losses.sum()
    total.backward()
    return float(total.item())


def main(argv: list[str] | None = None) -> int:
    parser = _common.base_parser(__doc__.split("\n\n")[0], "memory_vs_length")
    parser.add_argument("--lengths", default="250,500,1000,2000")
    parser.add_argument("--k", type=int, default=50, help="truncation length k1 = k2")
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per cell of the table (best kept)")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.k, args.hidden_size, args.batch_size, args.repeats = "16,36", 4, 8, 2, 1
    _common.require_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    lengths = [int(n) for n in args.lengths.split(",")]
    methods = {
        "full": full_bptt,
        f"truncated k={args.k}": lambda p: truncated_bptt(p, args.k),
        "recomputed": recomputed_bptt,
    }
    rows, memory, seconds = [], {m: [] for m in methods}, {m: [] for m in methods}
    for steps in lengths:
        problem = Problem(steps, args)
        full_grads = None
        for name, method in methods.items():
            _, peak = _common.peak_memory(lambda method=method, problem=problem: method(problem), args.device)
            best = min(
                _common.timed(lambda method=method, problem=problem: method(problem), args.device)[1]
                for _ in range(args.repeats)
            )
            grads = problem.gradients()
            if name == "full":
                full_grads, full_time = grads, best
                check = "reference"
            else:
                difference = math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(grads, full_grads)))
                scale = math.sqrt(sum(float((b**2).sum()) for b in full_grads))
                check = f"{difference / scale:.1e}"
            memory[name].append(peak / 2**20)
            seconds[name].append(best)
            rows.append(
                [steps, name, _common.megabytes(peak), f"{best * 1e3:.0f}", f"{best / full_time:.2f}", check]
            )
            print(f"T={steps} {name}: {peak / 2**20:.2f} MB, {best * 1e3:.0f} ms", flush=True)
    title = (
        f"one gradient of an LSTM cell + read-out over T steps "
        f"(H={args.hidden_size}, batch {args.batch_size}, float32, {args.device})"
    )
    _common.print_table(
        title, ["T", "method", "peak MB", "ms", "time / full", "rel. diff to full grad"], rows, args.out
    )
    growth = []
    for name in methods:
        if len(lengths) > 1 and all(m > 0 for m in memory[name]):
            slope = np.polyfit(np.log(lengths), np.log(memory[name]), 1)[0]
            growth.append([name, f"{slope:.2f}"])
    _common.print_table("memory growth: exponent p in peak ∝ T^p (fitted)", ["method", "p"], growth, args.out)
    figure = plot.lines(
        os.path.join(args.out, "memory_vs_length.png"),
        {name: (lengths, values) for name, values in memory.items()},
        "sequence length T",
        "peak memory of one gradient (MB)",
        title="memory against sequence length",
        log_x=True,
        log_y=True,
        markers=True,
    )
    print(f"figure: {figure}")
    figure = plot.lines(
        os.path.join(args.out, "time_vs_length.png"),
        {name: (lengths, [s * 1e3 for s in values]) for name, values in seconds.items()},
        "sequence length T",
        "time of one gradient (ms)",
        title="time against sequence length",
        log_x=True,
        log_y=True,
        markers=True,
    )
    print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
