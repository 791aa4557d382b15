"""Time and peak memory of one gradient over a sequence of T steps: full BPTT, truncated BPTT, RTRL,
UORO and forward gradients, against T and the hidden size H.

The model is a tanh RNN (input 4, hidden H, a linear read-out to 2, batch 2, float64) with the summed
squared error over all steps (``tinygrad_rnn.online``'s contract). Variants:

* ``bptt``: the layer over all T steps, one ``backward()`` (exact);
* ``tbptt(k)``: windows of k steps, the state detached between them, one ``backward()`` each (biased);
* ``rtrl``: ``online.RTRL.accumulate``, forward mode with one tangent per parameter entry (exact);
* ``uoro``: ``online.UORO.accumulate`` (unbiased, rank-one influence);
* ``fwdgrad``: ``online.forward_gradient`` with one direction (unbiased).

Memory is the peak of ``tracemalloc`` during the gradient minus what was allocated before it (NumPy
reports its buffers to tracemalloc). Time is the process's CPU time of one gradient after an untimed
one, the median of ``--repeat``. "rel. error" is ‖g - g_bptt‖ / ‖g_bptt‖ for one draw.

    python benchmarks/bench_online.py [--lengths 25,100,400,1600] [--hidden 8,16] [--window 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import tracemalloc

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.online import RTRL, UORO, forward_gradient


class Model(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, hidden)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(x, hidden)
        return self.head(out), hidden


def loss_fn(output, target):
    return ((output - target) ** 2).sum()


def variants(window: int) -> dict:
    def bptt(model, x, y):
        output, _ = model(x)
        loss_fn(output, y).backward()

    def tbptt(model, x, y):
        hidden = None
        for start in range(0, x.shape[0], window):
            output, hidden = model(x[start : start + window], hidden)
            loss_fn(output, y[start : start + window]).backward()
            hidden = hidden.detach()

    generator = tg.Generator().manual_seed(0)
    return {
        "bptt": bptt,
        f"tbptt({window})": tbptt,
        "rtrl": lambda model, x, y: RTRL(model, loss_fn).accumulate(x, y),
        "uoro": lambda model, x, y: UORO(model, loss_fn, generator=generator).accumulate(x, y),
        "fwdgrad": lambda model, x, y: forward_gradient(model, loss_fn, x, y, generator=generator),
    }


def gradient(model, run, x, y) -> list:
    model.zero_grad()
    run(model, x, y)
    return [p.grad.numpy().reshape(-1) for p in model.parameters()]


def measure(model, run, x, y, repeat: int) -> tuple[float, float]:
    gradient(model, run, x, y)
    times = []
    for _ in range(repeat):
        model.zero_grad()
        start = time.process_time()
        run(model, x, y)
        times.append(time.process_time() - start)
    model.zero_grad()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    run(model, x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), (peak - before) / 1024


def norm(vectors: list) -> float:
    return math.sqrt(sum(float((v * v).sum()) for v in vectors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="25,100,400,1600")
    parser.add_argument("--hidden", default="8,16")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"tanh RNN 4 -> H -> 2, batch 2, float64, CPU time median of {args.repeat}, tracemalloc peak")
    print()
    print("| H | P | T | method | time (ms) | peak memory (KiB) | rel. error |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for hidden in [int(h) for h in args.hidden.split(",")]:
        tg.manual_seed(0)
        model = Model(hidden).double()
        parameters = sum(p.numel() for p in model.parameters())
        for length in [int(t) for t in args.lengths.split(",")]:
            x = tg.randn(length, 2, 4, dtype=tg.float64)
            y = tg.randn(length, 2, 2, dtype=tg.float64)
            runs = variants(args.window)
            exact = gradient(model, runs["bptt"], x, y)
            for name, run in runs.items():
                got = gradient(model, run, x, y)
                error = norm([a - b for a, b in zip(got, exact)]) / norm(exact)
                seconds, kib = measure(model, run, x, y, args.repeat)
                row = (hidden, parameters, length, name, f"{seconds * 1e3:.1f}", f"{kib:.0f}", f"{error:.1e}")
                print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
