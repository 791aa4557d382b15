"""Tape overhead: forward and backward of a chain of tiny elementwise ops, ``y = y * w``.

Every op is on a 0-d float32 tensor, so the arithmetic is negligible and what is timed is the cost
of recording one node on the tape and of visiting it in the backward walk. The target is forward
plus backward of 100,000 ops in under 1 s on a 2-core machine. The result is checked first
(``dy/dw = n w^(n-1)`` with ``w = 1``, so ``w.grad == n``).

Python's cyclic garbage collector stays enabled (the default every user gets); ``--no-gc`` shows
what the collector costs by disabling it around the timed region.

    python benchmarks/bench_tape.py [--ops 100000] [--repeat 3] [--device cpu] [--no-gc] [--profile]
                                    [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import time

import tinygrad_rnn as tg


def chain(n_ops: int, device: str, clock=time.perf_counter) -> tuple[float, float, float]:
    """Build ``y = 1 * w * w * ... * w`` (``n_ops`` products) and backprop; (forward s, backward s, grad)."""
    w = tg.tensor(1.0, dtype=tg.float32, device=device, requires_grad=True)
    y = tg.tensor(1.0, dtype=tg.float32, device=device)
    start = clock()
    for _ in range(n_ops):
        y = y * w
    middle = clock()
    y.backward()
    end = clock()
    return middle - start, end - middle, float(w.grad.item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=100_000, help="length of the chain")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (the median is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC while timing")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run and exit")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (not inflated by other processes on a shared machine)",
    )
    args = parser.parse_args()

    forward, backward, grad = chain(1000, args.device)  # warm-up and correctness check
    if grad != 1000.0:
        raise SystemExit(f"wrong gradient: d(w^1000)/dw at w=1 is 1000, got {grad}")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        chain(args.ops, args.device)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return

    clock = time.perf_counter if args.clock == "wall" else time.process_time
    forwards, backwards = [], []
    for _ in range(args.repeat):
        gc.collect()
        if args.no_gc:
            gc.disable()
        try:
            forward, backward, grad = chain(args.ops, args.device, clock)
        finally:
            gc.enable()
        if grad != float(args.ops):
            raise SystemExit(f"wrong gradient: expected {args.ops}, got {grad}")
        forwards.append(forward)
        backwards.append(backward)
    forward, backward = statistics.median(forwards), statistics.median(backwards)
    total = forward + backward
    gc_state = "disabled" if args.no_gc else "enabled"
    print(f"chain of {args.ops} ops y = y * w (0-d float32) on {args.device}, GC {gc_state}, ", end="")
    print(f"{args.clock} clock, median of {args.repeat}")
    print(f"forward  {forward:.3f} s  ({forward / args.ops * 1e6:.2f} us/op)")
    print(f"backward {backward:.3f} s  ({backward / args.ops * 1e6:.2f} us/op)")
    verdict = "met" if total < 1 else "NOT met"
    print(f"total    {total:.3f} s  ({total / args.ops * 1e6:.2f} us/op)  target < 1 s: {verdict}")


if __name__ == "__main__":
    main()
