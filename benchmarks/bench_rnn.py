"""One training step's gradient of a recurrent network: the tape against hand-written NumPy BPTT.

The model is one recurrent layer (``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``) with an ``nn.Linear`` read-out
and the summed squared error over all steps, L = Σ_t Σ_b Σ_o (W_hy h_t + b_y - target_t)². One call
computes the forward pass over T steps and every parameter's gradient (full BPTT). Variants:

* ``tape``: tinygrad_rnn's modules and ``loss.backward()``;
* ``numpy-hoisted``: ``tinygrad_rnn.reference.bptt``, hand-derived BPTT with the known tricks (all input
  projections in one product before the loop, the read-out and its gradients in one product each,
  the weight gradients in one product each after the loop, buffers allocated once). The reference.
* ``numpy-per-step``: the same maths written step by step, the way BPTT is first written by hand
  (projection, read-out and weight-gradient products inside the loops);
* ``torch``: PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` + ``nn.Linear``, only when torch happens to be
  importable (it is never a dependency).

All variants run in one process, float32, on the same parameters and data; their gradients are
checked against each other before anything is timed. Timing: a warm-up call each, then ``--repeat``
rounds; each round runs every variant once in an order rotated by one per round, and before each
timed call there is a short busy-wait and one untimed call of the same variant (so that BLAS threads
still spinning from the previous library do not tax the next). The median is reported, with its ratio
to ``numpy-hoisted``.

    python benchmarks/bench_rnn.py [--models rnn,lstm,gru] [--sizes small,medium,large,long]
                                   [--repeat 5] [--device cpu] [--quick]

On a machine whose cores are shared with other work, OpenBLAS's spinning threads can slow every
variant by 10x at random, and other processes preempt the timed calls: ``OPENBLAS_NUM_THREADS=1``
with ``--clock cpu`` (this process's CPU time, which preemption does not inflate) gives stable,
single-core ratios. The thread setting and the clock are printed in the table's header.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn, reference

# (input, hidden, output, batch, T)
SIZES = {
    "small": (16, 64, 16, 8, 50),
    "medium": (64, 256, 64, 32, 100),
    "large": (256, 1024, 256, 64, 100),
    "long": (16, 64, 16, 8, 2000),
}
QUICK_SIZES = {"small": (8, 16, 8, 4, 10), "long": (8, 16, 8, 4, 100)}
LAYERS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
NAMES = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias"]


# ---- the tape ----------------------------------------------------------------------------------------


def make_tape(kind: str, params: dict, device: str) -> Callable:
    """A closure computing the gradients with tinygrad_rnn's modules; returns {name: numpy array}."""
    hidden_size = params["weight_hh_l0"].shape[1]
    input_size = params["weight_ih_l0"].shape[1]
    output_size = params["readout.weight"].shape[0]
    layer = LAYERS[kind](input_size, hidden_size).to(device)
    readout = nn.Linear(hidden_size, output_size).to(device)
    layer.load_state_dict({k: v for k, v in params.items() if not k.startswith("readout.")})
    readout.load_state_dict({"weight": params["readout.weight"], "bias": params["readout.bias"]})
    named = [(name, getattr(layer, name)) for name in NAMES[:4]]
    named += [("readout.weight", readout.weight), ("readout.bias", readout.bias)]

    def run(x: tg.Tensor, targets: tg.Tensor) -> dict:
        for _, p in named:
            p.grad = None
        output, _ = layer(x)
        loss = F.mse_loss(readout(output), targets, reduction="sum")
        loss.backward()
        return {name: p.grad._data for name, p in named}

    return run


# ---- hand-written NumPy BPTT, one step at a time ----------------------------------------------------------


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def per_step_rnn(p: dict, x: np.ndarray, targets: np.ndarray) -> dict:
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), y_t = W_hy h_t + b_y, L = Σ (y_t - target_t)²."""
    steps, batch, _ = x.shape
    w_ih, w_hh, w_hy, b_y = p["weight_ih_l0"], p["weight_hh_l0"], p["readout.weight"], p["readout.bias"]
    bias = p["bias_ih_l0"] + p["bias_hh_l0"]
    hs = [np.zeros((batch, w_hh.shape[1]), x.dtype)]
    dys = []
    for t in range(steps):
        hs.append(np.tanh(x[t] @ w_ih.T + hs[-1] @ w_hh.T + bias))
        dys.append(2.0 * (hs[-1] @ w_hy.T + b_y - targets[t]))
    g = {name: np.zeros_like(p[name]) for name in NAMES}
    dh_next = np.zeros_like(hs[0])
    for t in range(steps - 1, -1, -1):
        g["readout.weight"] += dys[t].T @ hs[t + 1]
        g["readout.bias"] += dys[t].sum(axis=0)
        da = (dys[t] @ w_hy + dh_next) * (1.0 - hs[t + 1] * hs[t + 1])
        g["weight_ih_l0"] += da.T @ x[t]
        g["weight_hh_l0"] += da.T @ hs[t]
        g["bias_ih_l0"] += da.sum(axis=0)
        dh_next = da @ w_hh
    g["bias_hh_l0"] = g["bias_ih_l0"].copy()
    return g


def per_step_lstm(p: dict, x: np.ndarray, targets: np.ndarray) -> dict:
    """(i, f, g, o) = W_ih x_t + b_ih + W_hh h + b_hh; c' = σ(f) c + σ(i) tanh(g); h' = σ(o) tanh(c')."""
    steps, batch, _ = x.shape
    w_ih, w_hh, w_hy, b_y = p["weight_ih_l0"], p["weight_hh_l0"], p["readout.weight"], p["readout.bias"]
    hidden = w_hh.shape[1]
    bias = p["bias_ih_l0"] + p["bias_hh_l0"]
    hs, cs = [np.zeros((batch, hidden), x.dtype)], [np.zeros((batch, hidden), x.dtype)]
    cache, dys = [], []
    for t in range(steps):
        a = x[t] @ w_ih.T + hs[-1] @ w_hh.T + bias
        i, f, o = sigmoid(a[:, :hidden]), sigmoid(a[:, hidden : 2 * hidden]), sigmoid(a[:, 3 * hidden :])
        g = np.tanh(a[:, 2 * hidden : 3 * hidden])
        cs.append(f * cs[-1] + i * g)
        tanh_c = np.tanh(cs[-1])
        hs.append(o * tanh_c)
        cache.append((i, f, g, o, tanh_c))
        dys.append(2.0 * (hs[-1] @ w_hy.T + b_y - targets[t]))
    grads = {name: np.zeros_like(p[name]) for name in NAMES}
    dh_next, dc_next = np.zeros_like(hs[0]), np.zeros_like(cs[0])
    for t in range(steps - 1, -1, -1):
        i, f, g, o, tanh_c = cache[t]
        grads["readout.weight"] += dys[t].T @ hs[t + 1]
        grads["readout.bias"] += dys[t].sum(axis=0)
        dh = dys[t] @ w_hy + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        da = np.concatenate(
            [dc * g * i * (1 - i), dc * cs[t] * f * (1 - f), dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)],
            axis=1,
        )
        grads["weight_ih_l0"] += da.T @ x[t]
        grads["weight_hh_l0"] += da.T @ hs[t]
        grads["bias_ih_l0"] += da.sum(axis=0)
        dh_next, dc_next = da @ w_hh, dc * f
    grads["bias_hh_l0"] = grads["bias_ih_l0"].copy()
    return grads


def per_step_gru(p: dict, x: np.ndarray, targets: np.ndarray) -> dict:
    """r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r h_n), h' = (1 - z) n + z h, with
    x_* = W_i* x + b_i* and h_* = W_h* h + b_h*."""
    steps, batch, _ = x.shape
    w_ih, w_hh, w_hy, b_y = p["weight_ih_l0"], p["weight_hh_l0"], p["readout.weight"], p["readout.bias"]
    b_ih, b_hh = p["bias_ih_l0"], p["bias_hh_l0"]
    hidden = w_hh.shape[1]
    hs = [np.zeros((batch, hidden), x.dtype)]
    cache, dys = [], []
    for t in range(steps):
        xg, hg = x[t] @ w_ih.T + b_ih, hs[-1] @ w_hh.T + b_hh
        r = sigmoid(xg[:, :hidden] + hg[:, :hidden])
        z = sigmoid(xg[:, hidden : 2 * hidden] + hg[:, hidden : 2 * hidden])
        h_n = hg[:, 2 * hidden :]
        n = np.tanh(xg[:, 2 * hidden :] + r * h_n)
        hs.append((1.0 - z) * n + z * hs[-1])
        cache.append((r, z, n, h_n))
        dys.append(2.0 * (hs[-1] @ w_hy.T + b_y - targets[t]))
    grads = {name: np.zeros_like(p[name]) for name in NAMES}
    dh_next = np.zeros_like(hs[0])
    for t in range(steps - 1, -1, -1):
        r, z, n, h_n = cache[t]
        grads["readout.weight"] += dys[t].T @ hs[t + 1]
        grads["readout.bias"] += dys[t].sum(axis=0)
        dh = dys[t] @ w_hy + dh_next
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dz = dh * (hs[t] - n) * z * (1.0 - z)
        dr = dn * h_n * r * (1.0 - r)
        d_x = np.concatenate([dr, dz, dn], axis=1)
        d_h = np.concatenate([dr, dz, dn * r], axis=1)
        grads["weight_ih_l0"] += d_x.T @ x[t]
        grads["weight_hh_l0"] += d_h.T @ hs[t]
        grads["bias_ih_l0"] += d_x.sum(axis=0)
        grads["bias_hh_l0"] += d_h.sum(axis=0)
        dh_next = dh * z + d_h @ w_hh
    return grads


PER_STEP = {"rnn": per_step_rnn, "lstm": per_step_lstm, "gru": per_step_gru}


# ---- PyTorch, when it happens to be installed ----------------------------------------------------------


def make_torch(kind: str, params: dict) -> Callable | None:
    try:
        import torch
    except ImportError:
        return None
    hidden_size = params["weight_hh_l0"].shape[1]
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](
        params["weight_ih_l0"].shape[1], hidden_size
    )
    readout = torch.nn.Linear(hidden_size, params["readout.weight"].shape[0])
    with torch.no_grad():
        for name in NAMES[:4]:
            getattr(layer, name).copy_(torch.from_numpy(params[name]))
        readout.weight.copy_(torch.from_numpy(params["readout.weight"]))
        readout.bias.copy_(torch.from_numpy(params["readout.bias"]))
    named = [(name, getattr(layer, name)) for name in NAMES[:4]]
    named += [("readout.weight", readout.weight), ("readout.bias", readout.bias)]

    def run(x: np.ndarray, targets: np.ndarray) -> dict:
        for _, p in named:
            p.grad = None
        output, _ = layer(torch.from_numpy(x))
        loss = ((readout(output) - torch.from_numpy(targets)) ** 2).sum()
        loss.backward()
        return {name: p.grad.numpy() for name, p in named}

    return run


# ---- running and timing ------------------------------------------------------------------------------------


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / max(np.linalg.norm(want), 1e-30))


def variants_for(kind: str, size: tuple, device: str, seed: int = 0) -> tuple[dict, dict]:
    """The callables to time (each takes no argument and returns the gradients) and the reference grads."""
    input_size, hidden_size, output_size, batch, steps = size
    params = reference.init_params(kind, input_size, hidden_size, output_size, dtype="float32", seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((steps, batch, input_size)).astype(np.float32)
    targets = rng.standard_normal((steps, batch, output_size)).astype(np.float32)
    x_tensor, targets_tensor = tg.tensor(x, device=device), tg.tensor(targets, device=device)
    tape = make_tape(kind, params, device)

    def hoisted() -> dict:
        return reference.bptt(kind, params, x, targets, loss="mse", reduction="sum").grads

    variants = {
        "tape": lambda: tape(x_tensor, targets_tensor),
        "numpy-hoisted": hoisted,
        "numpy-per-step": lambda: PER_STEP[kind](params, x, targets),
    }
    torch_run = make_torch(kind, params)
    if torch_run is not None:
        variants["torch"] = lambda: torch_run(x, targets)
    return variants, hoisted()


def check_gradients(kind: str, size_name: str, variants: dict, expected: dict, tolerance: float) -> None:
    """Every variant's gradients agree with the hoisted reference's, in relative norm, before timing."""
    for label, run in variants.items():
        grads = run()
        for name in NAMES:
            error = relative_error(tg.backend.to_numpy(grads[name]), np.asarray(expected[name], np.float64))
            if not error < tolerance:
                raise SystemExit(
                    f"{kind} {size_name}: {label}'s gradient of {name} differs from numpy-hoisted's "
                    f"by {error:.2e} (relative norm), more than {tolerance:.0e}: not timing"
                )


def time_variants(variants: dict, repeat: int, wait: float, synchronize: Callable, clock: Callable) -> dict:
    labels = list(variants)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for label in labels:  # warm-up
        variants[label]()
    for round_index in range(repeat):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            run = variants[label]
            busy_wait(wait)
            run()
            synchronize()
            start = clock()
            run()
            synchronize()
            times[label].append(clock() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="rnn,lstm,gru")
    parser.add_argument("--sizes", default="small,medium,large,long")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--wait", type=float, default=0.02, help="busy-wait before each timed call (s)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: a smoke run")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (steady on a shared machine with one BLAS thread)",
    )
    args = parser.parse_args()

    sizes = QUICK_SIZES if args.quick else {name: SIZES[name] for name in args.sizes.split(",")}
    repeat = 1 if args.quick else args.repeat
    synchronize = tg.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(
        f"one gradient of layer + linear read-out + summed MSE, float32, device {args.device}, "
        f"BLAS threads {threads}, {args.clock} clock, median of {repeat}, ratio to numpy-hoisted"
    )
    print(f"{'model':6} {'size':7} {'(I, H, O, B, T)':24} {'variant':15} {'ms':>10} {'ratio':>7}")
    for kind in args.models.split(","):
        for size_name, size in sizes.items():
            variants, expected = variants_for(kind, size, args.device)
            # float32 sums over T·B terms in different orders: agreement to ~1e-4 relative is exact maths.
            check_gradients(kind, size_name, variants, expected, tolerance=2e-3)
            clock = time.perf_counter if args.clock == "wall" else time.process_time
            medians = time_variants(variants, repeat, args.wait, synchronize, clock)
            base = medians["numpy-hoisted"]
            for label, seconds in medians.items():
                ratio = seconds / base
                print(f"{kind:6} {size_name:7} {size!s:24} {label:15} {seconds * 1e3:10.2f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
