"""The same LSTM on the same long-lag task, trained with five gradients: full BPTT, truncated BPTT with a
window shorter than the lag, RTRL, UORO and forward gradients.

The task is the adding problem (``data.adding_problem``): T steps, two marked numbers at lags between
``--min-lag`` and ``--max-lag`` from the last step, their sum asked for at the last step (a loss on the
last step only; chance, always predicting 1, has an error of 1/6). The model is a small LSTM (so that
RTRL's P tangents fit the time) with a linear read-out, trained with Adam from the same initialisation
with each method. The table gives, per method:

* the cosine and the relative error of one gradient draw against the exact gradient (BPTT's) at the
  initial parameters, and the mean and spread of the cosine over ``--draws`` draws (bias and variance:
  RTRL is exact, truncation is biased, UORO and forward gradients are unbiased but noisy);
* the CPU time per update and the peak memory of one update (``tracemalloc``);
* the final error on fresh sequences, and whether the long dependency was learned (error below a tenth
  of chance's).

    python examples/online_learning.py [--updates 300] [--length 20] [--quick]
"""

from __future__ import annotations

import os
import sys

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import base_parser, format_table  # noqa: E402

import tinygrad_rnn as tg  # noqa: E402
from tinygrad_rnn import data, nn, optim  # noqa: E402
from tinygrad_rnn.online import RTRL, UORO, forward_gradient  # noqa: E402

CHANCE = 1 / 6


class Adder(nn.Module):
    """LSTM + read-out, ``model(chunk, hidden) -> (outputs, hidden)`` (the online contract)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, hidden)
        self.head = nn.Linear(hidden, 1)
        with tg.no_grad():  # forget-gate bias 1 so that the state can hold a value at all
            self.lstm.bias_ih_l0[hidden : 2 * hidden] = 1.0

    def forward(self, x, hidden=None):
        out, hidden = self.lstm(x, hidden)
        return self.head(out), hidden


def last_step_loss(output, target):
    """Σ weight · (output - value)²: ``target[..., 0]`` is the value, ``target[..., 1]`` the weight (1 at
    the last step, 0 elsewhere), so only the last step has a loss."""
    return (target[..., 1:] * (output - target[..., :1]) ** 2).sum() / target.shape[-2]


def batch(batch_size: int, length: int, min_lag: int, max_lag: int, seed: int):
    inputs, sums = data.adding_problem(
        batch_size, length, seed=seed, min_lag=min_lag, max_lag=max_lag, dtype=tg.float64
    )
    targets = tg.zeros(length, batch_size, 2, dtype=inputs.dtype)
    with tg.no_grad():
        targets[-1, :, 0] = sums[:, 0]
        targets[-1, :, 1] = 1.0
    return inputs, targets


def methods(window: int, generator) -> dict:
    def bptt(model, x, y):
        output, _ = model(x)
        last_step_loss(output, y).backward()

    def tbptt(model, x, y):
        # the states before the last ``window`` steps are computed without a graph: the cut
        with tg.no_grad():
            _, hidden = model(x[:-window])
        output, _ = model(x[-window:], tuple(h.detach() for h in hidden))
        last_step_loss(output, y[-window:]).backward()

    return {
        "full BPTT": bptt,
        f"TBPTT({window})": tbptt,
        "RTRL": lambda model, x, y: RTRL(model, last_step_loss).accumulate(x, y),
        "UORO": lambda model, x, y: UORO(model, last_step_loss, generator=generator).accumulate(x, y),
        "forward gradient": lambda model, x, y: forward_gradient(
            model, last_step_loss, x, y, generator=generator
        ),
    }


def flat_gradient(model, run, x, y) -> list:
    model.zero_grad()
    run(model, x, y)
    return [float(v) for p in model.parameters() for v in p.grad.numpy().reshape(-1)]


def cosine(a: list, b: list) -> float:
    dot = sum(u * v for u, v in zip(a, b))
    return dot / (math.sqrt(sum(u * u for u in a)) * math.sqrt(sum(v * v for v in b)) + 1e-30)


def relative_error(a: list, b: list) -> float:
    return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b))) / (math.sqrt(sum(v * v for v in b)) + 1e-30)


def evaluate(model, args) -> float:
    inputs, targets = batch(256, args.length, args.min_lag, args.max_lag, seed=10**6)
    with tg.no_grad():
        output, _ = model(inputs)
    return float(((output[-1] - targets[-1, :, :1]) ** 2).mean().item())


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], "online_learning")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--min-lag", type=int, default=8)
    parser.add_argument("--max-lag", type=int, default=15)
    parser.add_argument("--window", type=int, default=5, help="TBPTT window, shorter than the lag")
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--draws", type=int, default=20, help="gradient draws for bias and variance")
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()
    if args.quick:
        args.updates, args.length, args.min_lag, args.max_lag, args.window, args.draws = 3, 8, 4, 6, 2, 2
    tg.manual_seed(args.seed)
    initial = Adder(args.hidden).double().state_dict()
    x0, y0 = batch(args.batch_size, args.length, args.min_lag, args.max_lag, seed=args.seed)
    rows = []
    for name, run in methods(args.window, tg.Generator().manual_seed(args.seed)).items():
        model = Adder(args.hidden).double()
        model.load_state_dict(initial)
        exact = flat_gradient(model, methods(args.window, None)["full BPTT"], x0, y0)
        draws = [flat_gradient(model, run, x0, y0) for _ in range(args.draws)]
        cosines = [cosine(d, exact) for d in draws]
        model.zero_grad()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        run(model, x0, y0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        optimizer = optim.Adam(model.parameters(), lr=args.lr)
        times = []
        for update in range(args.updates):
            x, y = batch(
                args.batch_size, args.length, args.min_lag, args.max_lag, seed=args.seed + 1 + update
            )
            optimizer.zero_grad()
            start = time.process_time()
            run(model, x, y)
            times.append(time.process_time() - start)
            optimizer.step()
        error = evaluate(model, args)
        rows.append(
            [
                name,
                f"{cosines[0]:.3f}",
                f"{relative_error(draws[0], exact):.2e}",
                f"{statistics.mean(cosines):.3f}",
                f"{statistics.pstdev(cosines):.3f}",
                f"{statistics.median(times) * 1e3:.1f}",
                f"{(peak - before) / 1024:.0f}",
                f"{error:.4f}",
                "yes" if error < CHANCE / 10 else "no",
            ]
        )
    print(
        f"adding problem, T = {args.length}, lags {args.min_lag}-{args.max_lag}, LSTM hidden {args.hidden}, "
        f"batch {args.batch_size}, {args.updates} Adam updates (lr {args.lr}), chance error {CHANCE:.4f}"
    )
    headers = [
        "method",
        "cosine",
        "rel. error",
        f"mean cos ({args.draws})",
        "sd cos",
        "ms/update",
        "peak KiB",
        "final error",
        "learned",
    ]
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
