"""Peak memory of one update against the sequence length T: full BPTT, truncated BPTT, recomputation.

The model is the "small" recurrent network of ``bench_rnn.py`` (a tanh RNN, input 16, hidden 64,
read-out 16, batch 8), float32, with the summed squared error over all steps. Each (variant, T) is
measured in a fresh process, so one measurement's freed-but-cached memory cannot hide another's.
Variants:

* ``numpy``: the hand-written NumPy BPTT (``tinygrad_rnn.reference.bptt``), the memory reference;
* ``full``: ``nn.RNN`` + ``nn.Linear`` on the tape, one ``backward()`` over all T steps;
* ``truncated``: the same over the stream in windows of k2 = 50 steps, the hidden state detached between
  windows and one ``backward()`` per window (the update of truncated BPTT over the whole stream);
* ``recompute``: ``checkpoint_sequence`` over ``nn.RNNCell`` steps, the read-out and the loss inside
  each step, segments of ⌈√T⌉ steps;
* ``recompute-layer``: ``checkpoint_segments``: ``nn.RNN`` + read-out + loss on each segment of ⌈√T⌉
  steps, the layer's hoisted loop inside each checkpoint.

Memory is the peak of ``tracemalloc`` during the update minus what was allocated before it (the
data and the parameters): NumPy reports its array buffers to tracemalloc, so this counts the arrays
and the Python objects the update creates. Time is measured in the same process, untraced, as the
process's CPU time on the CPU (other processes on a shared machine do not inflate it): one untimed
update, then the median of ``--repeat`` timed ones, with one BLAS thread (these matrices are small)
unless ``OPENBLAS_NUM_THREADS`` is set.

    python benchmarks/bench_memory.py [--lengths 500,1000,2000,8000] [--repeat 3] [--device cpu] [--quick]

On a GPU (``--device cuda``) every variant, the NumPy reference included (it runs on CuPy arrays), is
measured there: the peak is the growth of CuPy's memory pool during the update (emptied before it),
which bounds the peak from above (the pool keeps every block the update needed at once, plus its
rounding and blocks it could not reuse), and the times are synchronised.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

INPUT, HIDDEN, OUTPUT, BATCH = 16, 64, 16, 8
WINDOW = 50  # k2 of truncated BPTT
VARIANTS = ("numpy", "full", "truncated", "recompute", "recompute-layer")


def build(variant: str, steps: int, device: str = "cpu"):
    """Data, parameters and a no-argument callable that performs one update's gradient computation."""
    import tinygrad_rnn as tg
    import tinygrad_rnn.nn.functional as F
    from tinygrad_rnn import nn, reference
    from tinygrad_rnn.checkpoint import checkpoint_segments, checkpoint_sequence

    params = reference.init_params("rnn", INPUT, HIDDEN, OUTPUT, dtype="float32", seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, BATCH, INPUT)).astype(np.float32)
    targets = rng.standard_normal((steps, BATCH, OUTPUT)).astype(np.float32)
    if variant == "numpy":
        if device != "cpu":  # the reference is written on xp arrays: give it the device's
            params = {name: tg.tensor(value, device=device)._data for name, value in params.items()}
            x, targets = tg.tensor(x, device=device)._data, tg.tensor(targets, device=device)._data
        return lambda: reference.bptt("rnn", params, x, targets, loss="mse", reduction="sum").grads

    layer_params = {k: v for k, v in params.items() if not k.startswith("readout.")}
    readout = nn.Linear(HIDDEN, OUTPUT)
    readout.load_state_dict({"weight": params["readout.weight"], "bias": params["readout.bias"]})
    readout.to(device)
    x_t, targets_t = tg.tensor(x, device=device), tg.tensor(targets, device=device)
    h0 = tg.zeros(BATCH, HIDDEN, device=device)
    segment = math.ceil(math.sqrt(steps))

    if variant == "recompute":
        cell = nn.RNNCell(INPUT, HIDDEN)
        cell.load_state_dict({name.replace("_l0", ""): value for name, value in layer_params.items()})
        cell.to(device)

        def step(x_step, target_step, h):
            h = cell(x_step, h)
            error = readout(h) - target_step
            return (error * error).sum(), h

        def update():
            losses, _ = checkpoint_sequence(step, (x_t, targets_t), h0)
            losses.sum().backward()

        return update

    layer = nn.RNN(INPUT, HIDDEN)
    layer.load_state_dict(layer_params)
    layer.to(device)

    def window_loss(x_window, target_window, h):
        output, h_n = layer(x_window, h.unsqueeze(0))
        return F.mse_loss(readout(output), target_window, reduction="sum"), h_n.squeeze(0)

    if variant == "full":
        return lambda: window_loss(x_t, targets_t, h0)[0].backward()
    if variant == "truncated":

        def update():
            h = h0
            for x_window, target_window in zip(x_t.split(WINDOW), targets_t.split(WINDOW)):
                loss, h = window_loss(x_window, target_window, h)
                loss.backward()
                h = h.detach()

        return update

    def update_recompute_layer():
        losses, _ = checkpoint_segments(window_loss, (x_t, targets_t), h0, segment)
        losses.sum().backward()

    return update_recompute_layer


def child(variant: str, steps: int, repeat: int, device: str = "cpu") -> None:
    import tinygrad_rnn as tg

    gpu = device != "cpu"
    update = build(variant, steps, device)
    update()  # warm-up (also allocates every lazily created buffer, such as the parameters' grads)
    # On the CPU, the process's CPU time: other processes on a shared machine do not inflate it.
    clock = time.perf_counter if gpu else time.process_time
    seconds = []
    for _ in range(repeat):
        if gpu:
            tg.cuda.synchronize(device)
        start = clock()
        update()
        if gpu:
            tg.cuda.synchronize(device)
        seconds.append(clock() - start)
    if gpu:
        tg.cuda.synchronize(device)
        tg.cuda.empty_cache()
        before = tg.cuda.memory_reserved(device)
        update()
        tg.cuda.synchronize(device)
        peak = tg.cuda.memory_reserved(device)
        print(json.dumps({"peak": peak - before, "seconds": statistics.median(seconds)}))
        return
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    update()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"peak": peak - before, "seconds": statistics.median(seconds)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="500,1000,2000,8000")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short sequences, one timed run: a smoke run")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.repeat, args.device)
        return

    lengths = [60, 120] if args.quick else [int(n) for n in args.lengths.split(",")]
    repeat = 1 if args.quick else args.repeat
    variants = args.variants.split(",")
    # The matrices are small: one BLAS thread per process, so that threads spinning on a shared
    # machine do not dominate the times (memory does not depend on it). Override by setting it.
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
    measure = "tracemalloc" if args.device == "cpu" else f"CuPy pool on {args.device}"
    clock = "CPU" if args.device == "cpu" else "wall"
    print(
        f"peak memory of one update ({measure}, MiB) and its {clock} time (ms, median of {repeat}); tanh RNN "
        f"I={INPUT} H={HIDDEN} O={OUTPUT} B={BATCH} float32; truncated k2={WINDOW}; "
        f"recompute every ceil(sqrt(T)) steps; BLAS threads {environment['OPENBLAS_NUM_THREADS']}"
    )
    print(f"{'T':>6} {'variant':16} {'peak MiB':>9} {'x numpy':>8} {'ms':>9} {'x full':>7}")
    for steps in lengths:
        results = {}
        for variant in variants:
            command = [sys.executable, __file__, "--child", variant, str(steps), "--repeat", str(repeat)]
            command += ["--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
            if done.returncode:
                raise SystemExit(f"{variant} T={steps} failed:\n{done.stderr}")
            results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        for variant, result in results.items():
            mib = result["peak"] / 2**20
            to_numpy = result["peak"] / results["numpy"]["peak"] if "numpy" in results else math.nan
            to_full = result["seconds"] / results["full"]["seconds"] if "full" in results else math.nan
            ms = result["seconds"] * 1e3
            print(f"{steps:6d} {variant:16} {mib:9.2f} {to_numpy:8.2f} {ms:9.1f} {to_full:7.2f}")


if __name__ == "__main__":
    main()
