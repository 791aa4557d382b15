"""One training update of the main job's model (examples/char_lstm.py), side by side.

Model: Embedding(103, 32) -> recurrent layer(s) -> Linear(H, 103); batch 32, truncated BPTT with
k1 = k2 = 32 (each update runs 32 new steps from the detached state of the previous one and
backpropagates through all of them); mean cross-entropy; ``clip_grad_norm_(1.0)``; Adam(lr=4e-3);
float32, one thread. Rows: LSTM H=128 (the main job), LSTM H=256 x 2 layers, LSTM H=512, GRU H=128,
tanh RNN H=128.

Variants, all in one process on the same token stream:

* ``tinygrad``: tinygrad_rnn's modules, ``F.cross_entropy``, ``loss.backward()``,
  ``nn.utils.clip_grad_norm_`` and ``optim.Adam``;
* ``torch``: the same model in PyTorch, only when ``import torch`` succeeds (a comparison row,
  never a dependency), ``torch.set_num_threads(1)``;
* ``numpy``: the hand-written NumPy BPTT of ``tinygrad_rnn.reference`` (``reference.bptt``: one
  recurrent layer + linear read-out + mean cross-entropy, forward and hand-derived backward), plus the
  embedding lookup forward, the same clipping (global L2 norm, scale by min(1, 1/(norm + 1e-6))) and
  the same Adam arithmetic as ``optim.Adam`` on its parameters. reference.py returns no gradient for
  its inputs, so this row computes no embedding gradient (and updates no embedding); for the 2-layer
  LSTM it runs the top layer through ``reference.bptt`` and the bottom layer through reference.py's
  own forward and backward loops (``_lstm_forward``/``_lstm_backward``), with the top layer's dL/dh
  standing in for the gradient its input would get (the same arithmetic less the one (T·B, 4H) x
  (4H, H) input-gradient product). It is a floor the tape should come close to.

Process setting: as in the main job, freed memory is kept in the process
(``host_memory.retain_freed_memory``, for every variant alike); ``--no-retain-memory`` measures
without it, when each update's big NumPy arrays page-fault in fresh pages.

Timing: ``--rounds`` rounds; in each round every model runs every variant (in an order rotated by one
per round) as a block of one untimed and ``--block`` timed updates, timed with this process's CPU
clock (preemption by other work on a shared machine does not inflate it). Reported: the median time
per update over rounds with its spread (min-max), and the ratios tinygrad / torch and tinygrad /
numpy, each the median over rounds of that round's ratio, with its min-max.

    python benchmarks/bench_charlm.py [--rounds 7] [--block 3] [--models lstm128,...] [--quick]
"""

from __future__ import annotations

import os

# Before NumPy (and torch) load: one BLAS thread, as in the main job.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

import tinygrad_rnn as tg  # noqa: E402
import tinygrad_rnn.nn.functional as F  # noqa: E402
from tinygrad_rnn import nn, optim, reference  # noqa: E402
from tinygrad_rnn.host_memory import retain_freed_memory  # noqa: E402

try:  # a comparison row only
    import torch
except ImportError:
    torch = None

VOCAB, EMBED, BATCH, WINDOW, LR, CLIP = 103, 32, 32, 32, 4e-3, 1.0
# name -> (cell, hidden size, layers)
MODELS = {
    "lstm128": ("lstm", 128, 1),
    "lstm256x2": ("lstm", 256, 2),
    "lstm512": ("lstm", 512, 1),
    "gru128": ("gru", 128, 1),
    "rnn128": ("rnn", 128, 1),
}
LABELS = {
    "lstm128": "LSTM H=128 (main job)",
    "lstm256x2": "LSTM H=256 x 2",
    "lstm512": "LSTM H=512",
    "gru128": "GRU H=128",
    "rnn128": "tanh RNN H=128",
}


def token_stream(steps: int, seed: int = 0) -> np.ndarray:
    """(steps + 1, BATCH) int64 ids: inputs are rows 0..steps-1, targets rows 1..steps."""
    return np.random.default_rng(seed).integers(0, VOCAB, size=(steps + 1, BATCH))


class Windows:
    """Consecutive (inputs, targets) windows of WINDOW steps, cycling over the stream."""

    def __init__(self, stream: np.ndarray) -> None:
        self.stream, self.position = stream, 0

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self.position + WINDOW + 1 > self.stream.shape[0]:
            self.position = 0
        start, self.position = self.position, self.position + WINDOW
        return self.stream[start : start + WINDOW], self.stream[start + 1 : start + WINDOW + 1]


# ---- tinygrad_rnn ------------------------------------------------------------------------------------


def make_tinygrad(cell: str, hidden: int, layers: int, stream: np.ndarray) -> Callable[[], float]:
    recurrent = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    tg.manual_seed(0)
    embedding = nn.Embedding(VOCAB, EMBED)
    rnn = recurrent(EMBED, hidden, num_layers=layers)
    head = nn.Linear(hidden, VOCAB)
    params = [*embedding.parameters(), *rnn.parameters(), *head.parameters()]
    optimizer = optim.Adam(params, lr=LR)
    windows = Windows(stream)
    state: dict = {"hidden": None}

    def update() -> float:
        ids, targets = windows.next()
        optimizer.zero_grad()
        output, hidden_state = rnn(embedding(tg.tensor(ids)), state["hidden"])
        logits = head(output)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tg.tensor(targets).reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        if cell == "lstm":
            state["hidden"] = (hidden_state[0].detach(), hidden_state[1].detach())
        else:
            state["hidden"] = hidden_state.detach()
        return loss.item()

    return update


# ---- PyTorch (comparison only) -----------------------------------------------------------------------


def make_torch(cell: str, hidden: int, layers: int, stream: np.ndarray) -> Callable[[], float] | None:
    if torch is None:
        return None
    torch.manual_seed(0)
    recurrent = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    embedding = torch.nn.Embedding(VOCAB, EMBED)
    rnn = recurrent(EMBED, hidden, num_layers=layers)
    head = torch.nn.Linear(hidden, VOCAB)
    params = [*embedding.parameters(), *rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=LR)
    windows = Windows(stream)
    state: dict = {"hidden": None}

    def update() -> float:
        ids, targets = windows.next()
        optimizer.zero_grad()
        output, hidden_state = rnn(embedding(torch.from_numpy(ids)), state["hidden"])
        logits = head(output)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB), torch.from_numpy(targets).reshape(-1)
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        optimizer.step()
        if cell == "lstm":
            state["hidden"] = (hidden_state[0].detach(), hidden_state[1].detach())
        else:
            state["hidden"] = hidden_state.detach()
        return loss.item()

    return update


# ---- hand-written NumPy (reference.py) ---------------------------------------------------------------


def _layer_params(cell: str, input_size: int, hidden: int, seed: int) -> dict:
    return reference.init_params(cell, input_size, hidden, VOCAB, dtype="float32", seed=seed)


def make_numpy(cell: str, hidden: int, layers: int, stream: np.ndarray) -> Callable[[], float]:
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((VOCAB, EMBED)).astype(np.float32)
    top = _layer_params(cell, EMBED if layers == 1 else hidden, hidden, seed=1)
    bottom = _layer_params(cell, EMBED, hidden, seed=2) if layers == 2 else None
    if bottom is not None:
        for name in (reference.READOUT_WEIGHT, reference.READOUT_BIAS):
            del bottom[name]
    params = [top] if bottom is None else [bottom, top]
    moments = [{name: (np.zeros_like(a), np.zeros_like(a)) for name, a in p.items()} for p in params]
    windows = Windows(stream)
    zeros = np.zeros((BATCH, hidden), np.float32)
    state = {"h": [zeros] * layers, "c": [zeros] * layers, "step": 0}
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def update() -> float:
        ids, targets = windows.next()
        x = embedding[ids]
        steps = x.shape[0]
        all_grads = []
        if bottom is not None:
            cache_fn = {"lstm": reference._lstm_forward}[cell]
            hs, cache = cache_fn(
                bottom, x.reshape(steps * BATCH, -1), state["h"][0], state["c"][0], steps, BATCH, np
            )
            x = hs[1:]
            state["h"][0], state["c"][0] = hs[-1].copy(), cache["cs"][-1].copy()
        result = reference.bptt(
            cell,
            top,
            x,
            targets,
            state["h"][-1],
            state["c"][-1] if cell == "lstm" else None,
            loss="cross_entropy",
        )
        all_grads.append(result.grads)
        if bottom is not None:
            x2 = embedding[ids].reshape(steps * BATCH, -1)
            all_grads.insert(
                0, reference._lstm_backward(bottom, x2, hs, cache, result.state_grads.copy(), np)
            )
        state["h"][-1] = result.hidden
        if cell == "lstm":
            state["c"][-1] = result.cell
        # clip_grad_norm_: one global L2 norm, every gradient scaled by min(1, max / (norm + 1e-6))
        pairs = [(p, g, m) for p, g, m in zip(params, all_grads, moments)]
        total = math.sqrt(sum(float((g[name] * g[name]).sum()) for p, g, _ in pairs for name in p))
        scale = min(1.0, CLIP / (total + 1e-6))
        state["step"] += 1
        step = state["step"]
        for p, g, m in pairs:
            for name, param in p.items():
                grad = g[name] * scale
                exp_avg, exp_avg_sq = m[name]
                exp_avg *= beta1
                exp_avg += (1 - beta1) * grad
                exp_avg_sq *= beta2
                exp_avg_sq += (1 - beta2) * grad * grad
                denominator = np.sqrt(exp_avg_sq) / math.sqrt(1 - beta2**step) + eps
                param -= (LR / (1 - beta1**step)) * exp_avg / denominator
        return result.loss

    return update


# ---- timing ------------------------------------------------------------------------------------------


def spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=3, help="timed updates per block")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 update, H=128 models only")
    parser.add_argument(
        "--retain-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep freed memory in the process, as the main job does (host_memory.py); for every variant",
    )
    args = parser.parse_args()
    retained = retain_freed_memory() if args.retain_memory else False
    names = args.models.split(",")
    rounds, block = args.rounds, args.block
    if args.quick:
        names = [n for n in names if n.endswith("128")] or names[:1]
        rounds, block = 2, 1
    if torch is not None:
        torch.set_num_threads(1)
    stream = token_stream(400)
    runs: dict = {}
    for name in names:
        cell, hidden, layers = MODELS[name]
        variants = {"tinygrad": make_tinygrad(cell, hidden, layers, stream)}
        made = make_torch(cell, hidden, layers, stream)
        if made is not None:
            variants["torch"] = made
        variants["numpy"] = make_numpy(cell, hidden, layers, stream)
        for run in variants.values():
            run()  # warm-up: first allocations, optimizer state
        runs[name] = variants
    times: dict = {name: {label: [] for label in runs[name]} for name in names}
    for round_index in range(rounds):
        for name in names:
            labels = list(runs[name])
            shift = round_index % len(labels)
            for label in labels[shift:] + labels[:shift]:
                run = runs[name][label]
                run()
                start = time.process_time()
                for _ in range(block):
                    run()
                times[name][label].append((time.process_time() - start) / block)

    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    print(
        f"main-job update (batch {BATCH}, k1 = k2 = {WINDOW}, float32), BLAS threads {threads}, CPU clock, "
        f"{rounds} rounds x {block} updates; median (min-max)"
    )
    print(
        f"torch: {torch.__version__ if torch is not None else 'not installed'}; numpy {np.__version__}; "
        f"freed memory retained (host_memory.retain_freed_memory): {retained}"
    )
    header = "| model | tinygrad ms | torch ms | numpy ms | tinygrad / torch | tinygrad / numpy |"
    print(header)
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        t = times[name]
        ours = t["tinygrad"]
        row = [LABELS[name], spread([v * 1e3 for v in ours], "{:.1f}")]
        if "torch" in t:
            row.append(spread([v * 1e3 for v in t["torch"]], "{:.1f}"))
        else:
            row.append("-")
        row.append(spread([v * 1e3 for v in t["numpy"]], "{:.1f}"))
        if "torch" in t:
            row.append(spread([a / b for a, b in zip(ours, t["torch"])], "{:.2f}"))
        else:
            row.append("-")
        row.append(spread([a / b for a, b in zip(ours, t["numpy"])], "{:.2f}"))
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
