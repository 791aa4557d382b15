"""One training step of RNN/LSTM/GRU layers on a GPU (CuPy) against NumPy and, when present, PyTorch's cuDNN.

A step is the forward pass of one ``nn.RNN``/``nn.LSTM``/``nn.GRU`` layer over T steps, the mean
squared output as the loss, and ``loss.backward()`` (full BPTT), in float32. Columns:

* ``numpy``: the layer on ``"cpu"``;
* ``cupy``: the layer on the GPU, where LSTM and GRU use the fused cell kernels
  (``fused_ops.LSTMCellPointwise``/``GRUCellPointwise``: one kernel per step for the elementwise maths);
* ``unfused``: the same on the GPU with the cell's elementwise maths as primitive ops (the plain path),
  to show what the fusion buys (RNN has nothing to fuse);
* ``torch``: PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` on the same GPU (cuDNN, TF32 off so both
  sides compute in float32), with the same weights and loss, only when ``torch`` imports and sees the
  GPU; ``cupy/torch`` is the ratio of the two times measured in this run (above 1: ours is slower).

Before timing, the GPU's gradients are checked against the CPU's on the same parameters, for the
fused path and for the plain path, and against PyTorch's when it is there. GPU timings synchronise
the device before starting and before stopping the clock. Each variant gets a warm-up call (which
also compiles the kernels), then calls are repeated until ``--repeat`` calls or the time slice of the
cell is used; the median is reported. Every number is printed (and flushed) as soon as it is measured,
so a run cut short by a timeout keeps what it measured; the run stops starting measurements once
``--budget`` seconds are spent and says what it skipped. The table is printed again at the end.

    python benchmarks/bench_gpu.py [--device cuda] [--models rnn,lstm,gru] [--sizes small,medium,large]
                                   [--repeat 5] [--budget 300] [--quick] [--no-torch]

With ``--device cpu`` only the NumPy column is measured (useful to check the script without a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

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
GRAD_TOLERANCE = 1e-3  # float32, relative to the largest gradient entry


def say(text: str) -> None:
    print(text, flush=True)


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


def _data(size: tuple) -> np.ndarray:
    input_size, _, batch, steps = size
    return np.random.default_rng(1).standard_normal((steps, batch, input_size)).astype(np.float32)


def make_step(kind: str, size: tuple, device: str, state: dict) -> Callable[[], dict]:
    """A closure running one forward + backward step on ``device``; returns the gradients (tensors)."""
    layer = LAYERS[kind](size[0], size[1])
    layer.load_state_dict(state)
    layer.to(device)
    x = tg.tensor(_data(size), device=device)

    def step() -> dict:
        for p in layer.parameters():
            p.grad = None
        out, _ = layer(x)
        (out * out).mean().backward()
        return {name: p.grad for name, p in layer.named_parameters()}

    return step


def make_torch_step(kind: str, size: tuple, device: str, state: dict) -> Callable[[], dict] | None:
    """The same step in PyTorch on the same GPU (cuDNN), or None when torch or its GPU is missing."""
    try:
        import torch
    except Exception:
        return None
    if not torch.cuda.is_available():
        return None
    # Full float32 on both sides: cuDNN would otherwise use TF32 tensor cores (10-bit mantissa) where
    # CuPy's cuBLAS calls do not, and neither the times nor the gradients would compare like for like.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    index = tg.device(device).index or 0
    target = torch.device("cuda", index)
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](size[0], size[1])
    layer.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in state.items()})
    layer.to(target)
    x = torch.from_numpy(_data(size)).to(target)

    def step() -> dict:
        layer.zero_grad(set_to_none=True)
        out, _ = layer(x)
        (out * out).mean().backward()
        return {name: p.grad for name, p in layer.named_parameters()}

    return step


def synchronise(device: str) -> None:
    """Wait for the GPU's queued kernels (a no-op on the CPU); the same for PyTorch's queue."""
    if device == "torch":
        import torch

        torch.cuda.synchronize()
    elif device != "cpu":
        tg.cuda.synchronize(device)


def time_calls(step: Callable, device: str, repeat: int, deadline: float) -> tuple[float, int]:
    """Median wall time (ms) of ``step`` after one warm-up call; stops at ``deadline`` (at least one call)."""
    step()
    synchronise(device)
    times: list[float] = []
    while len(times) < repeat and (not times or time.perf_counter() < deadline):
        synchronise(device)
        start = time.perf_counter()
        step()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), len(times)


def _host(grad: Any) -> np.ndarray:
    return grad.numpy() if isinstance(grad, tg.Tensor) else grad.detach().cpu().numpy()


def gradient_difference(expected: dict, got: dict) -> float:
    """Largest difference between two sets of gradients, relative to the largest expected entry."""
    worst = 0.0
    for name, grad in expected.items():
        reference, value = _host(grad), _host(got[name])
        worst = max(worst, float(np.abs(value - reference).max() / (np.abs(reference).max() + 1e-12)))
    return worst


class Row:
    """The measurements of one (model, size) cell, printed one by one as they come."""

    def __init__(self, kind: str, name: str, size: tuple) -> None:
        self.kind, self.name, self.size = kind, name, size
        self.values: dict[str, Any] = {}
        self.error: str | None = None

    def add(self, key: str, value: Any) -> None:
        self.values[key] = value
        shown = f"{value[0]:.2f} ms ({value[1]} calls)" if isinstance(value, tuple) else f"{value:.1e}"
        say(f"  {self.kind}/{self.name} {key}: {shown}")

    def line(self) -> str:
        def ms(key: str) -> str:
            value = self.values.get(key)
            return f"{value[0]:9.2f} ({value[1]})" if value else f"{'-':>14}"

        def ratio(top: str, bottom: str) -> str:
            a, b = self.values.get(top), self.values.get(bottom)
            return f"{a[0] / b[0]:9.2f}x" if a and b else f"{'-':>10}"

        def diff(key: str) -> str:
            value = self.values.get(key)
            return f"{value:10.1e}" if value is not None else f"{'-':>10}"

        shape = ",".join(str(n) for n in self.size)
        return (
            f"{self.kind:<5} {self.name:<7} {shape:<18} "
            f"{ms('numpy')} {ms('cupy')} {ms('unfused')} {ms('torch')} "
            f"{ratio('numpy', 'cupy')} {ratio('cupy', 'torch')} {diff('grad fused')} {diff('grad plain')} "
            f"{diff('grad torch')}"
        )


HEADER = (
    f"{'model':<5} {'size':<7} {'I,H,B,T':<18} {'numpy':>14} {'cupy':>14} {'unfused':>14} {'torch':>14} "
    f"{'np/cupy':>10} {'cupy/torch':>10} {'grad fused':>10} {'grad plain':>10} {'grad torch':>10}"
)


def measure(
    row: Row, gpu: bool, device: str, use_torch: bool, repeat: int, end: float, slice_s: float, skipped: list
) -> None:
    """Fill ``row``: gradient checks first (GPU only), then the timed columns, each printed when measured."""
    kind, name, size = row.kind, row.name, row.size
    state = _state(kind, size)
    if gpu:
        cpu_grads = make_step(kind, size, "cpu", state)()
        row.add("grad fused", gradient_difference(cpu_grads, make_step(kind, size, device, state)()))
        with unfused_cells():
            row.add("grad plain", gradient_difference(cpu_grads, make_step(kind, size, device, state)()))
        if use_torch:
            torch_step = make_torch_step(kind, size, device, state)
            row.add("grad torch", gradient_difference(torch_step(), make_step(kind, size, device, state)()))
    # (column, builder of the step, what to synchronise); fast columns first, NumPy (slowest) last
    plan: list[tuple[str, Callable[..., Any], str]] = []
    if gpu:
        plan.append(("cupy", make_step, device))
        if use_torch:
            plan.append(("torch", make_torch_step, "torch"))
        if kind != "rnn":
            plan.append(("unfused", make_step, device))
    plan.append(("numpy", make_step, "cpu"))
    for key, build, sync in plan:
        if time.perf_counter() > end:
            skipped.append(f"{kind}/{name} {key}")
            continue
        deadline = min(end, time.perf_counter() + slice_s)
        on = "cpu" if key == "numpy" else device
        with unfused_cells() if key == "unfused" else contextlib.nullcontext():
            row.add(key, time_calls(build(kind, size, on, state), sync, repeat, deadline))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure every (model, size) within the budget, printing as it goes; 0 when
    the GPU's gradients agree with the CPU's on both paths."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="GPU to compare with NumPy: cuda, cuda:N (or cpu)")
    parser.add_argument("--models", default="rnn,lstm,gru")
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per cell (fewer if slow)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script, not speed")
    parser.add_argument("--no-torch", action="store_true", help="leave out PyTorch even when it imports")
    args = parser.parse_args(argv)

    device = str(tg.device(args.device))
    gpu = device != "cpu"
    if gpu and not tg.cuda.is_available():
        tg.zeros(1, device=device)  # raises the error that says what is missing and why
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
    use_torch = gpu and not args.no_torch and _torch_usable(args.device)
    torch_column = "yes" if use_torch else "no (left out, or torch or its GPU missing)"
    say(
        f"bench_gpu: device {device} ({where}); float32; forward + backward of one layer; budget "
        f"{args.budget:.0f} s; PyTorch cuDNN column: {torch_column}"
    )
    started = time.perf_counter()
    end = started + args.budget
    rows: list[Row] = []
    skipped: list[str] = []
    cells = [(name, kind) for name in names for kind in models]
    for position, (name, kind) in enumerate(cells):
        now = time.perf_counter()
        if now > end:
            skipped.append(f"{kind}/{name}")
            continue
        # This cell's share of what is left, split over its timed columns.
        columns = 1 + (2 if gpu else 0) + (1 if use_torch else 0)
        share = (end - now) / (len(cells) - position)
        size = sizes[name]
        row = Row(kind, name, size)
        rows.append(row)
        try:
            measure(row, gpu, device, use_torch, args.repeat, end, share / columns, skipped)
        except Exception as error:  # one broken cell must not cost the others their numbers
            row.error = f"{type(error).__name__}: {error}"
            say(f"  {kind}/{name} ERROR {row.error}")
        say("ROW " + row.line())

    say("")
    say(f"bench_gpu results ({device}, {where}); median ms per forward+backward step (calls timed)")
    say(HEADER)
    say("-" * len(HEADER))
    for row in rows:
        say(row.line())
    if skipped:
        say(f"skipped (budget of {args.budget:.0f} s spent): {', '.join(skipped)}")
    bad = [
        f"{r.kind}/{r.name} ({key} {r.values[key]:.1e})"
        for r in rows
        for key in ("grad fused", "grad plain", "grad torch")
        if r.values.get(key, 0.0) > GRAD_TOLERANCE
    ]
    bad += [f"{r.kind}/{r.name} (error: {r.error})" for r in rows if r.error]
    verdict = "FAILED " + ", ".join(bad) if bad else "all agree"
    say(f"total {time.perf_counter() - started:.0f} s; gradient checks (fused, plain, torch): {verdict}")
    return 1 if bad else 0


def _torch_usable(device: str) -> bool:
    """torch imports and sees the GPU this run uses (the same index; a stand-in's GPU is not torch's)."""
    try:
        import torch

        return bool(torch.cuda.is_available()) and (tg.device(device).index or 0) < torch.cuda.device_count()
    except Exception:
        return False


def _state(kind: str, size: tuple) -> dict:
    tg.manual_seed(0)
    return LAYERS[kind](size[0], size[1]).state_dict()


if __name__ == "__main__":
    sys.exit(main())
