"""What truncating the backward pass costs: the seed's truncation table, measured.

Two tasks whose dependency lag is longer than the short truncation:

* the adding problem (``data.adding_problem``): T = 120 steps, two marked numbers at lags between
  ``--min-lag`` and ``--max-lag`` (30 to 50) from the last step, their sum asked for at the last step;
  the sequence is longer than 100 steps and the lag lies between 20 and 100, so k = 100 cuts the first
  20 steps but still reaches both markers, and k = 20 reaches neither;
* the copy task (``data.copy_task``): S symbols, a delay, then the S symbols written back, so each
  symbol is held S + delay steps. It stays at its small size (T = 27, lag 25): a copy task longer than
  100 steps with a lag below 100 needs dozens of symbols, more than a 2-core CPU learns in minutes, so
  there k = 100 cuts nothing and its row repeats full BPTT's.

An LSTM (forget-gate bias 4, so that gradients can cross the lag at all) with a linear read-out is
trained on each with full BPTT and with the backward pass truncated to the last k = 100 and k = 20
steps: the states before step T − k are computed without a graph and held constant, so no gradient
reaches back further than k steps from the end (a cut shared by every loss of the sequence). For each
setting the table gives the peak memory of one update, the time per update, the final error on fresh
data (and the error of chance), the truncation bias (``bptt.truncation_bias``: cosine and relative error
between the truncated and the full gradient, each loss reaching back k steps), measured at the setting's
own trained parameters and at those trained with full BPTT, and whether the task was learned (error below
a tenth of chance's).

Truncation cuts the gradient, not the forward pass: the state after the cut still carries whatever the
network stored before it. A truncated model cannot *learn* to store what lies beyond k steps, but it can
learn to read what its untrained dynamics happen to keep, which is enough for a copy task with few
symbols and not for the adding problem's precise, marker-gated sums.

    python examples/truncation_tradeoff.py [--updates 1500] [--device cpu]
"""

from __future__ import annotations

import os
import sys
import time

# Small matrices: BLAS threads cost more than they save (see examples/char_lstm.py).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import _common  # noqa: E402
import numpy as np  # noqa: E402

import tinygrad_rnn as tg  # noqa: E402
import tinygrad_rnn.nn.functional as F  # noqa: E402
from tinygrad_rnn import bptt, data, nn, optim, plot  # noqa: E402


class SequenceModel(nn.Module):
    """(Embedding →) LSTM → Linear: outputs (T, B, O) for inputs (T, B, I) or token ids (T, B)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        vocabulary: int = 0,
        forget_bias: float = 3.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, input_size) if vocabulary else None
        self.rnn = nn.LSTM(input_size, hidden_size)
        self.head = nn.Linear(hidden_size, output_size)
        # Open the forget gate (σ(4) ≈ 0.98): with PyTorch's initialisation it sits near 0.5 and the gradient
        # shrinks about 0.6× per step (examples/gradient_flow.py), so nothing would reach lags of 25-50 within
        # this example's budget, truncated or not.
        with tg.no_grad():
            bias = self.rnn.bias_hh_l0.numpy().copy()
            gate = slice(hidden_size, 2 * hidden_size)
            bias[gate] = forget_bias - self.rnn.bias_ih_l0.numpy()[gate]
            self.rnn.bias_hh_l0.data = tg.tensor(bias)

    def forward(self, x: tg.Tensor, hidden: object = None) -> tuple[tg.Tensor, object]:
        if self.embedding is not None:
            x = self.embedding(x)
        output, hidden = self.rnn(x, hidden)
        return self.head(output), hidden


class AddingTask:
    name = "adding"

    def __init__(self, args: object) -> None:
        self.args = args
        self.steps = args.adding_steps

    def batch(self, size: int, seed: int) -> tuple[tg.Tensor, tg.Tensor]:
        a = self.args
        inputs, targets = data.adding_problem(size, self.steps, seed, a.min_lag, a.max_lag, device=a.device)
        # Targets along time, so one loss function serves every setting; only the last step is scored.
        full = tg.zeros(self.steps, size, 1, device=a.device)
        full[-1] = targets
        return inputs, full

    def model(self) -> SequenceModel:
        return SequenceModel(2, self.args.hidden_size, 1, forget_bias=self.args.forget_bias)

    def loss(self, outputs: tg.Tensor, targets: tg.Tensor) -> tg.Tensor:
        """Mean squared error of the prediction at the last step."""
        return F.mse_loss(outputs[-1], targets[-1])

    def error(self, outputs: tg.Tensor, targets: tg.Tensor) -> float:
        return float(self.loss(outputs, targets).item())

    error_name, chance = "test MSE", 1.0 / 6.0

    def learned(self, error: float) -> bool:
        return error < 0.1 * self.chance


class CopyTask:
    name = "copy"

    def __init__(self, args: object) -> None:
        self.args = args
        self.steps = 2 * args.copy_symbols + args.copy_delay

    def batch(self, size: int, seed: int) -> tuple[tg.Tensor, tg.Tensor]:
        a = self.args
        return data.copy_task(size, a.copy_alphabet, a.copy_symbols, a.copy_delay, seed, device=a.device)

    def model(self) -> SequenceModel:
        a = self.args
        return SequenceModel(16, a.hidden_size, a.copy_alphabet + 1, a.copy_alphabet + 2, a.forget_bias)

    def loss(self, outputs: tg.Tensor, targets: tg.Tensor) -> tg.Tensor:
        """Cross-entropy over the recall steps (the other steps' targets are ignored)."""
        return F.cross_entropy(
            outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), ignore_index=data.IGNORE_INDEX
        )

    def error(self, outputs: tg.Tensor, targets: tg.Tensor) -> float:
        """Fraction of recalled symbols that are wrong."""
        guesses = outputs.numpy().argmax(axis=-1)
        wanted = targets.numpy()
        scored = wanted != data.IGNORE_INDEX
        return float((guesses[scored] != wanted[scored]).mean())

    error_name = "recall error"

    @property
    def chance(self) -> float:
        return 1.0 - 1.0 / self.args.copy_alphabet

    def learned(self, error: float) -> bool:
        return error < 0.1


def gradient(
    model: SequenceModel, task: object, inputs: tg.Tensor, targets: tg.Tensor, k: int | None
) -> float:
    """Loss of one sequence batch, with ``.grad`` filled by BPTT truncated to the last ``k`` steps."""
    steps = inputs.shape[0]
    cut = 0 if k is None or k >= steps else steps - k
    hidden = None
    prefix = None
    if cut:
        # The states before the cut are constants for every loss: no graph is recorded for them.
        with tg.no_grad():
            prefix, hidden = model(inputs[:cut], None)
    outputs, _ = model(inputs[cut:], hidden)
    if prefix is not None:
        outputs = tg.cat([prefix, outputs], dim=0)
    loss = task.loss(outputs, targets)
    for p in model.parameters():
        p.grad = None
    loss.backward()
    return float(loss.item())


def label(k: int | None) -> str:
    return "full" if k is None else f"k={k}"


def bias(model: SequenceModel, task: object, k: int | None, args: object) -> tuple[float, float]:
    """Cosine and relative error of the k-truncated against the full gradient, at ``model``'s parameters."""
    if k is None or k >= task.steps:
        return 1.0, 0.0
    inputs, targets = task.batch(args.batch_size, seed=10**9 + 1 + args.seed)
    measured = bptt.truncation_bias(model, task.loss, inputs, targets, k2=k)
    return measured.cosine, measured.relative_error


def train(task: object, k: int | None, args: object) -> dict:
    tg.manual_seed(args.seed)
    model = task.model().to(args.device)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    losses, seconds = [], 0.0
    for update in range(args.updates):
        inputs, targets = task.batch(args.batch_size, seed=args.seed * 100_003 + update)
        _common.synchronize(args.device)
        tick = time.perf_counter()
        losses.append(gradient(model, task, inputs, targets, k))
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        _common.synchronize(args.device)
        seconds += time.perf_counter() - tick
        if args.log_every and (update + 1) % args.log_every == 0:
            recent = losses[-args.log_every :]
            print(
                f"  {task.name} {label(k)} update {update + 1}: loss {sum(recent) / len(recent):.4f}",
                flush=True,
            )
    inputs, targets = task.batch(args.batch_size, seed=args.seed * 100_003 + args.updates)
    _, peak = _common.peak_memory(lambda: gradient(model, task, inputs, targets, k), args.device)

    test_inputs, test_targets = task.batch(args.test_size, seed=10**9 + args.seed)
    with tg.no_grad():
        outputs, _ = model(test_inputs)
    error = task.error(outputs, test_targets)
    cosine, relative = bias(model, task, k, args)
    return {
        "model": model,
        "losses": losses,
        "ms": 1e3 * seconds / args.updates,
        "peak": peak,
        "error": error,
        "cosine": cosine,
        "relative": relative,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _common.base_parser(__doc__.split("\n\n")[0], "truncation_tradeoff")
    parser.add_argument("--updates", type=int, default=1500, help="Adam updates per setting")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--forget-bias", type=float, default=4.0, help="initial LSTM forget-gate bias")
    parser.add_argument("--adding-steps", type=int, default=120)
    parser.add_argument("--min-lag", type=int, default=30)
    parser.add_argument("--max-lag", type=int, default=50)
    parser.add_argument("--copy-symbols", type=int, default=2)
    parser.add_argument("--copy-delay", type=int, default=23)
    parser.add_argument("--copy-alphabet", type=int, default=4)
    parser.add_argument("--truncations", default="full,100,20", help="comma-separated k, 'full' for none")
    parser.add_argument("--tasks", default="adding,copy")
    parser.add_argument("--log-every", type=int, default=100, help="print the mean loss every N updates")
    args = parser.parse_args(argv)
    if args.quick:
        args.updates, args.batch_size, args.test_size, args.hidden_size = 3, 4, 8, 8
        args.adding_steps, args.min_lag, args.max_lag = 30, 8, 20
        args.copy_symbols, args.copy_delay = 2, 6
        args.truncations = "full,10,4"
    _common.require_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    settings = [None if k == "full" else int(k) for k in args.truncations.split(",")]
    tasks = {"adding": AddingTask, "copy": CopyTask}
    rows, curves, notes = [], {}, []
    for name in args.tasks.split(","):
        task = tasks[name](args)
        lag = (
            f"{args.min_lag}-{args.max_lag}" if name == "adding" else str(args.copy_symbols + args.copy_delay)
        )
        untruncated = None
        for k in settings:
            if k is not None and k >= task.steps and untruncated is not None:
                result = untruncated  # k >= T cuts nothing: the same training as full BPTT
            else:
                result = train(task, k, args)
            if k is None or k >= task.steps:
                untruncated = result
            if k is not None and k >= task.steps:
                notes.append(f"{name}: k={k} >= T={task.steps} cuts nothing; the row repeats full BPTT's")
            # The bias of this k at the parameters full BPTT trained: what the cut hides from a network
            # that does use the long dependency (at the setting's own parameters it may use none).
            at_full = bias(untruncated["model"], task, k, args) if untruncated is not None else (None, None)
            curves[f"{name} {label(k)}"] = result["losses"]
            reach = task.steps if k is None else min(k, task.steps)
            rows.append(
                [
                    name,
                    task.steps,
                    lag,
                    label(k),
                    reach,
                    _common.megabytes(result["peak"]),
                    f"{result['ms']:.1f}",
                    f"{result['error']:.3f} ({task.chance:.3f})",
                    f"{result['cosine']:.3f}",
                    f"{result['relative']:.3f}",
                    "-" if at_full[0] is None else f"{at_full[0]:.3f}",
                    "yes" if task.learned(result["error"]) else "no",
                ]
            )
            print(f"{name} {label(k)}: error {result['error']:.4f}, {result['ms']:.1f} ms/update", flush=True)
    headers = [
        "task",
        "T",
        "lag",
        "BPTT",
        "reach",
        "peak MB",
        "ms/update",
        "error (chance)",
        "cos(g_k, g)",
        "rel. err",
        "cos @full",
        "learned",
    ]
    title = (
        f"truncation trade-off: LSTM H={args.hidden_size}, batch {args.batch_size}, "
        f"{args.updates} Adam updates per setting"
    )
    _common.print_table(title, headers, rows, args.out)
    print(
        "cos(g_k, g), rel. err: truncation bias at the setting's own trained parameters; "
        "cos @full: at the parameters full BPTT trained"
    )
    for note in notes:
        print(f"note: {note}")
    for name in args.tasks.split(","):
        series = {
            label: (list(range(1, len(c) + 1)), _smooth(c))
            for label, c in curves.items()
            if label.startswith(name)
        }
        path = plot.lines(
            os.path.join(args.out, f"{name}_training.png"),
            series,
            "update",
            "training loss (smoothed)",
            title=f"{name} task: full BPTT vs truncated",
            log_y=True,
        )
        print(f"figure: {path}")
    return 0


def _smooth(values: list[float], width: int = 20) -> list[float]:
    width = max(1, min(width, len(values)))
    kernel = np.ones(width) / width
    smoothed = np.convolve(np.asarray(values), kernel, mode="valid")
    return [float("nan")] * (len(values) - len(smoothed)) + [float(v) for v in smoothed]


if __name__ == "__main__":
    sys.exit(main())
