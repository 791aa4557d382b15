"""One training step of RNN/LSTM/GRU layers on a GPU (CuPy) against the NumPy path on the same machine.

A step is the forward pass of one ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layer over T steps, the mean
squared output as the loss, and ``loss.backward()`` (full BPTT), in float32. Variants:

* ``numpy``: the layer on ``"cpu"``;
* ``cupy``: the layer on the GPU, where LSTM and GRU use the fused cell kernels
  (``ops.LSTMCellPointwise``/``ops.GRUCellPointwise``: one kernel per step for the elementwise maths);
* ``cupy-unfused``: the same on the GPU with the cell's elementwise maths as primitive ops, to show
  what the fusion buys (RNN has nothing to fuse).

Before timing, the GPU's gradients are checked against the CPU's on the same parameters. GPU timings
synchronise the device before starting and before stopping the clock (kernels run asynchronously).
Each variant gets a warm-up call (which also compiles the kernels), then calls are repeated until
``--repeat`` calls or the time slice of that cell of the table is used; the median is reported. The
whole run stops starting new cells once ``--budget`` seconds are spent, and says which it skipped.

    python benchmarks/bench_gpu.py [--device cuda] [--models rnn,lstm,gru] [--sizes small,medium,large]
                                   [--repeat 5] [--budget 300] [--quick]

With ``--device cpu`` only the NumPy column is measured (useful to check the script without a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn.nn import rnn as rnn_module

# name -> (input_size, hidden_size, batch, T)
SIZES = {
    "small": (32, 128, 16, 50),
    "medium": (128, 512, 64, 100),
    "large": (256, 1024, 64, 100),
}
QUICK_SIZES = {"small": (8, 16, 4, 10), "medium": (16, 32, 8, 20), "large": (32, 64, 8, 20)}
LAYERS = {"rnn": tg.nn.RNN, "lstm": tg.nn.LSTM, "gru": tg.nn.GRU}


def _lstm_unfused(gates: tg.Tensor, c: tg.Tensor) -> tuple[tg.Tensor, tg.Tensor]:
    """The LSTM cell's elementwise maths as primitive ops (gate order i, f, g, o)."""
    i, f, g, o = gates.chunk(4, dim=1)
    c_next = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c_next.tanh(), c_next


def _gru_unfused(input_gates: tg.Tensor, hidden_gates: tg.Tensor, h: tg.Tensor) -> tg.Tensor:
    """The GRU cell's elementwise maths as primitive ops (gate order r, z, n)."""
    x_r, x_z, x_n = input_gates.chunk(3, dim=1)
    h_r, h_z, h_n = hidden_gates.chunk(3, dim=1)
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return n + z * (h - n)


@contextlib.contextmanager
def unfused_cells() -> Iterator[None]:
    """Make the recurrent layers compute the cell's elementwise maths as primitive ops on every device."""
    saved = rnn_module._lstm_pointwise, rnn_module._gru_pointwise
    rnn_module._lstm_pointwise, rnn_module._gru_pointwise = _lstm_unfused, _gru_unfused
    try:
        yield
    finally:
        rnn_module._lstm_pointwise, rnn_module._gru_pointwise = saved


def make_step(kind: str, size: tuple, device: str, state: dict) -> Callable[[], dict]:
    """A closure running one forward + backward step on ``device``; returns the gradients (host arrays)."""
    input_size, hidden_size, batch, steps = size
    layer = LAYERS[kind](input_size, hidden_size)
    layer.load_state_dict(state)
    layer.to(device)
    data = np.random.default_rng(1).standard_normal((steps, batch, input_size)).astype(np.float32)
    x = tg.tensor(data, device=device)

    def step() -> dict:
        for p in layer.parameters():
            p.grad = None
        out, _ = layer(x)
        (out * out).mean().backward()
        return {name: p.grad for name, p in layer.named_parameters()}

    return step


def synchronise(device: str) -> None:
    """Wait for the GPU's queued kernels (a no-op on the CPU)."""
    if device != "cpu":
        tg.cuda.synchronize(device)


def time_calls(step: Callable, device: str, repeat: int, seconds: float) -> tuple[float, int]:
    """Median wall time (ms) of ``step`` after one warm-up call; stops early when ``seconds`` run out."""
    step()
    synchronise(device)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < repeat and (not times or time.perf_counter() < deadline):
        synchronise(device)
        start = time.perf_counter()
        step()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), len(times)


def check_gradients(kind: str, size: tuple, device: str, state: dict) -> float:
    """Largest relative difference between the GPU's and the CPU's gradients (float32)."""
    cpu = make_step(kind, size, "cpu", state)()
    gpu = make_step(kind, size, device, state)()
    worst = 0.0
    for name, grad in cpu.items():
        expected = grad.numpy()
        got = gpu[name].numpy()
        worst = max(worst, float(np.abs(got - expected).max() / (np.abs(expected).max() + 1e-12)))
    return worst


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure every (model, size) within the budget, print the table; 0 when the
    GPU's gradients agree with the CPU's."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="GPU to compare with NumPy: cuda, cuda:N (or cpu)")
    parser.add_argument("--models", default="rnn,lstm,gru")
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per cell (fewer if slow)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script, not speed")
    args = parser.parse_args(argv)

    device = str(tg.device(args.device))
    gpu = device != "cpu"
    if gpu and not tg.cuda.is_available():
        tg.zeros(1, device=device)  # raises the error that says whether CuPy or the GPU is missing
    sizes = QUICK_SIZES if args.quick else SIZES
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    names = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for name in names:
        if name not in sizes:
            parser.error(f"unknown size {name!r}; choose from {sorted(sizes)}")
    for kind in models:
        if kind not in LAYERS:
            parser.error(f"unknown model {kind!r}; choose from {sorted(LAYERS)}")

    where = tg.cuda.get_device_name(device) if gpu else "no GPU: NumPy column only"
    print(f"bench_gpu: device {device} ({where}); float32; forward + backward of one layer", flush=True)
    started = time.perf_counter()
    cells = len(models) * len(names)
    rows, skipped = [], []
    for name in names:
        for kind in models:
            elapsed = time.perf_counter() - started
            if elapsed > args.budget:
                skipped.append(f"{kind}/{name}")
                continue
            remaining_cells = max(cells - len(rows) - len(skipped), 1)
            slice_seconds = max((args.budget - elapsed) / remaining_cells / 3, 1.0)
            size = sizes[name]
            tg.manual_seed(0)
            state = LAYERS[kind](size[0], size[1]).state_dict()
            row = {"model": kind, "size": name, "shape": size}
            if gpu:
                row["max_rel_grad_diff"] = check_gradients(kind, size, device, state)
                row["cupy"] = time_calls(
                    make_step(kind, size, device, state), device, args.repeat, slice_seconds
                )
                if kind != "rnn":
                    with unfused_cells():
                        step = make_step(kind, size, device, state)
                        row["cupy-unfused"] = time_calls(step, device, args.repeat, slice_seconds)
            row["numpy"] = time_calls(make_step(kind, size, "cpu", state), "cpu", args.repeat, slice_seconds)
            rows.append(row)
            print(f"  done {kind}/{name} after {time.perf_counter() - started:.0f} s", flush=True)

    print()
    print(f"bench_gpu results ({device}, {where}); median ms per forward+backward step (calls timed)")
    header = (
        f"{'model':<5} {'size':<7} {'I,H,B,T':<19} {'numpy':>14} {'cupy':>14} {'unfused':>14} "
        f"{'speedup':>8} {'grad diff':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:

        def cell(key: str, row: dict = row) -> str:
            return f"{row[key][0]:9.2f} ({row[key][1]})" if key in row else f"{'-':>14}"

        speedup = f"{row['numpy'][0] / row['cupy'][0]:7.1f}x" if "cupy" in row else f"{'-':>8}"
        diff = f"{row['max_rel_grad_diff']:9.1e}" if "max_rel_grad_diff" in row else f"{'-':>9}"
        shape = ",".join(str(n) for n in row["shape"])
        print(
            f"{row['model']:<5} {row['size']:<7} {shape:<19} {cell('numpy')} {cell('cupy')} "
            f"{cell('cupy-unfused')} {speedup} {diff}"
        )
    if skipped:
        print(f"skipped (budget of {args.budget:.0f} s spent): {', '.join(skipped)}")
    print(f"total {time.perf_counter() - started:.0f} s")
    bad = [r for r in rows if r.get("max_rel_grad_diff", 0.0) > 1e-3]
    if bad:
        print(
            "GPU gradients differ from the CPU's for: " + ", ".join(f"{r['model']}/{r['size']}" for r in bad)
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
