"""How gradients flow back through time: vanishing below spectral radius 1, exploding above it.

Part 1. A vanilla tanh RNN whose recurrent matrix W_hh is a random matrix rescaled to spectral radius
ρ = 0.5, 0.9, 1.0, 1.1 and 1.5; the same RNN without its tanh (f′ = 1, so ∂h_T/∂h_k = W_hh^(T−k)
exactly); and an LSTM, with PyTorch's initialisation and with its forget gate opened by a bias of 3;
all reading the same random inputs. The loss is taken at the last step only, L_T, and the engine's
``backward()`` gives ‖∂L_T/∂h_k‖ for every earlier step k (``gradflow.state_gradients``; for the LSTM
the state is (h, c), measured jointly). The figure plots it against the lag T − k on a log scale; the
table prints the fitted per-step factor (the slope of log‖∂L_T/∂h_k‖ against lag, as a ratio per
step) and the effective memory (the lag at which the norm falls below 1% of its value at lag 0).

Part 2. The contribution ledger (``gradflow.contribution_ledger``): for a per-step loss L = Σ_t L_t, the
norm of the term that source step k contributes to ∇_θ L_t, for every loss step t and source step k:
the seed's "how gradients accumulate" table, measured, as a heatmap.

Part 3. Why attention changed the field: ‖∂L_T/∂x_(T−lag)‖, the gradient of the last step's loss with
respect to each input, through the RNN, the LSTM and one self-attention layer (a causal
``nn.TransformerEncoderLayer`` over the embedded inputs plus sinusoidal positions). A recurrent net
reaches x_(T−lag) only through a product of lag Jacobians; attention reads every input in one step.

    python examples/gradient_flow.py [--steps 100] [--device cpu]
"""

from __future__ import annotations

import math
import os
import sys

import _common
import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import gradflow, nn, plot

RADII = (0.5, 0.9, 1.0, 1.1, 1.5)


def last_step_loss(outputs: tg.Tensor, targets: tg.Tensor) -> tg.Tensor:
    """L_T = ½‖h_T − target_T‖², summed over the batch: a loss at the last step only."""
    difference = outputs[-1] - targets[-1]
    return (difference * difference).sum() * 0.5


def every_step_loss(outputs: tg.Tensor, targets: tg.Tensor) -> tg.Tensor:
    """L = Σ_t ½‖h_t − target_t‖²: a loss at every step."""
    difference = outputs - targets
    return (difference * difference).sum() * 0.5


def rnn_with_radius(radius: float, input_size: int, hidden_size: int, seed: int, device: str) -> nn.RNN:
    """``nn.RNN`` whose W_hh is a Gaussian matrix rescaled so that its largest |eigenvalue| is ``radius``."""
    rnn = nn.RNN(input_size, hidden_size).double()
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((hidden_size, hidden_size))
    matrix *= radius / np.abs(np.linalg.eigvals(matrix)).max()
    rnn.weight_hh_l0.data = tg.tensor(matrix)
    return rnn.to(device)


class LinearCell(nn.Module):
    """h_t = W_ih x_t + W_hh h_{t−1}: the tanh RNN with f′ = 1, whose Jacobian product ∂h_T/∂h_k is
    exactly W_hh^(T−k), the seed's product of Jacobians without the diag(f′) factors."""

    def __init__(self, rnn: nn.RNN) -> None:
        super().__init__()
        self.weight_ih = nn.Parameter(rnn.weight_ih_l0.detach())
        self.weight_hh = nn.Parameter(rnn.weight_hh_l0.detach())

    def forward(self, x: tg.Tensor, h: tg.Tensor | None = None) -> tg.Tensor:
        drive = x @ self.weight_ih.T
        return drive if h is None else drive + h @ self.weight_hh.T


def norms_by_lag(model: nn.Module, inputs: tg.Tensor, targets: tg.Tensor) -> list[float]:
    """‖∂L_T/∂h_{T−lag}‖ for lag = 0 … T−1."""
    measured = gradflow.state_gradients(model, last_step_loss, inputs, targets)
    steps = len(measured.future)
    # Lag 0 is the gradient arriving at the last output; lag j >= 1 is the state handed on from step T−1−j.
    return [measured.output[-1]] + [measured.future[steps - 1 - lag] for lag in range(1, steps)]


def fitted_factor(norms: list[float]) -> float:
    """exp of the least-squares slope of log‖g‖ against lag (lag ≥ 1, finite, non-zero norms only)."""
    lags = [lag for lag in range(1, len(norms)) if 0 < norms[lag] < math.inf]
    if len(lags) < 2:
        return float("nan")
    slope = np.polyfit(lags, [math.log(norms[lag]) for lag in lags], 1)[0]
    return float(math.exp(slope))


def sinusoidal_positions(steps: int, size: int) -> np.ndarray:
    """The Transformer's position code: sin/cos of position / 10000^(2i/size), shape (steps, 1, size)."""
    position = np.arange(steps)[:, None]
    frequency = np.exp(-np.log(10000.0) * np.arange(0, size, 2) / size)
    code = np.zeros((steps, size))
    code[:, 0::2] = np.sin(position * frequency)
    code[:, 1::2] = np.cos(position * frequency)[:, : size // 2]
    return code[:, None, :]


class CausalSelfAttention(nn.Module):
    """x_t -> W x_t + position_t -> one causal TransformerEncoderLayer: output t attends to inputs ≤ t."""

    def __init__(self, input_size: int, size: int) -> None:
        super().__init__()
        self.embed = nn.Linear(input_size, size)
        heads = 4 if size % 4 == 0 else 1
        self.layer = nn.TransformerEncoderLayer(size, heads, dim_feedforward=2 * size, dropout=0.0)

    def forward(self, inputs: tg.Tensor) -> tuple[tg.Tensor, None]:
        steps, size = inputs.shape[0], self.embed.out_features
        positions = tg.tensor(sinusoidal_positions(steps, size), dtype=inputs.dtype, device=inputs.device)
        mask = nn.Transformer.generate_square_subsequent_mask(steps, device=inputs.device, dtype=inputs.dtype)
        return self.layer(self.embed(inputs) + positions, src_mask=mask, is_causal=True), None


def input_gradient_norms(model: nn.Module, inputs: tg.Tensor, targets: tg.Tensor) -> list[float]:
    """‖∂L_T/∂x_(T−lag)‖ (over the batch and the input features) for lag = 0 … T−1."""
    x = inputs.detach().requires_grad_()
    outputs, _ = model(x)
    last_step_loss(outputs, targets).backward()
    grad = x.grad.numpy()
    norms = np.sqrt((grad * grad).sum(axis=(1, 2)))
    return [float(norms[len(norms) - 1 - lag]) for lag in range(len(norms))]


def main(argv: list[str] | None = None) -> int:
    parser = _common.base_parser(__doc__.split("\n\n")[0], "gradient_flow")
    parser.add_argument("--steps", type=int, default=100, help="sequence length T for part 1")
    parser.add_argument("--ledger-steps", type=int, default=30, help="sequence length for the ledger")
    parser.add_argument("--hidden-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.ledger_steps, args.hidden_size = 12, 6, 8
    _common.require_device(args.device)
    os.makedirs(args.out, exist_ok=True)
    tg.manual_seed(args.seed)
    input_size, batch = 4, 8
    rng = np.random.default_rng(args.seed)
    inputs = tg.tensor(rng.standard_normal((args.steps, batch, input_size)) * 0.5, device=args.device)
    targets = tg.tensor(rng.standard_normal((args.steps, batch, args.hidden_size)) * 0.5, device=args.device)

    curves: dict[str, list[float]] = {}
    linear_curves: dict[str, list[float]] = {}
    for radius in RADII:
        model = rnn_with_radius(radius, input_size, args.hidden_size, args.seed, args.device)
        curves[f"RNN ρ={radius}"] = norms_by_lag(model, inputs, targets)
        linear = gradflow.Unrolled(LinearCell(model))
        linear_curves[f"linear RNN ρ={radius}"] = norms_by_lag(linear, inputs, targets)
    lstm = nn.LSTM(input_size, args.hidden_size).double().to(args.device)
    curves["LSTM"] = norms_by_lag(lstm, inputs, targets)
    # The LSTM's cell path carries gradient when its forget gate is open; PyTorch's initialisation leaves
    # it near σ(0) = 0.5. A forget-gate bias of 3 (σ(3) ≈ 0.95) shows the path the gate can learn to open.
    open_lstm = nn.LSTM(input_size, args.hidden_size).double()
    bias = open_lstm.bias_ih_l0.numpy().copy()
    bias[args.hidden_size : 2 * args.hidden_size] = 3.0
    open_lstm.bias_ih_l0.data = tg.tensor(bias)
    curves["LSTM forget bias 3"] = norms_by_lag(open_lstm.to(args.device), inputs, targets)

    rows = []
    marks = [lag for lag in (0, 10, 50, args.steps - 1) if lag < args.steps]
    for label, norms in {**linear_curves, **curves}.items():
        factor = fitted_factor(norms)
        verdict = "vanishes" if factor < 0.98 else "explodes" if factor > 1.02 else "flat"
        rows.append(
            [label]
            + [f"{norms[lag]:.2e}" for lag in marks]
            + [f"{factor:.3f}", verdict, gradflow.effective_memory(norms, 0.01)]
        )
    headers = ["model"] + [f"lag {lag}" for lag in marks] + ["factor/step", "trend", "memory (1%)"]
    title = f"‖∂L_T/∂h_(T−lag)‖ by spectral radius of W_hh, and an LSTM, T={args.steps}, H={args.hidden_size}"
    _common.print_table(title, headers, rows, args.out)
    figure = plot.gradient_norms_vs_lag(
        os.path.join(args.out, "gradient_norm_vs_lag.png"),
        curves,
        title="tanh RNN by spectral radius, and LSTM",
    )
    print(f"figure: {figure}")
    figure = plot.gradient_norms_vs_lag(
        os.path.join(args.out, "gradient_norm_vs_lag_linear.png"),
        linear_curves,
        title="linear RNN (f′ = 1): ∂h_T/∂h_k = W_hh^(T−k)",
    )
    print(f"figure: {figure}")

    # Part 3: the same loss, differentiated with respect to the inputs, through recurrence and attention.
    tg.manual_seed(args.seed)
    attention = CausalSelfAttention(input_size, args.hidden_size).double().to(args.device)
    input_curves = {
        "RNN ρ=0.9": input_gradient_norms(
            rnn_with_radius(0.9, input_size, args.hidden_size, args.seed, args.device), inputs, targets
        ),
        "LSTM": input_gradient_norms(lstm, inputs, targets),
        "LSTM forget bias 3": input_gradient_norms(open_lstm, inputs, targets),
        "self-attention": input_gradient_norms(attention, inputs, targets),
    }
    lags = sorted({lag for lag in (0, 1, 10, 50, args.steps - 1) if lag < args.steps})
    _common.print_table(
        f"‖∂L_T/∂x_(T−lag)‖ through recurrence and through attention, T={args.steps}, H={args.hidden_size}",
        ["model"] + [f"lag {lag}" for lag in lags] + [f"lag {lags[-1]} / lag 1"],
        [
            [label] + [f"{norms[lag]:.2e}" for lag in lags] + [f"{norms[lags[-1]] / norms[1]:.1e}"]
            for label, norms in input_curves.items()
        ],
        args.out,
    )
    figure = plot.lines(
        os.path.join(args.out, "input_gradient_vs_lag.png"),
        {label: (list(range(len(norms))), norms) for label, norms in input_curves.items()},
        "lag T − k (steps)",
        "‖∂L_T / ∂x_k‖",
        title="gradient reaching each input: recurrence against one self-attention layer",
        log_y=True,
    )
    print(f"figure: {figure}")

    # Part 2: the contribution ledger of a per-step loss, for the RNN at radius 0.9 and the LSTM.
    ledger_inputs = inputs[: args.ledger_steps]
    ledger_targets = targets[: args.ledger_steps]
    summary = []
    for label, model in (
        ("RNN ρ=0.9", rnn_with_radius(0.9, input_size, args.hidden_size, args.seed, args.device)),
        ("LSTM", lstm),
    ):
        ledger = gradflow.contribution_ledger(
            model, every_step_loss, ledger_inputs, ledger_targets, by_loss_step=True
        )
        matrix = np.array(ledger.matrix)
        slug = label.split()[0].lower()
        path = plot.heatmap(
            os.path.join(args.out, f"contribution_ledger_{slug}.png"),
            matrix,
            "source step k",
            "loss step t",
            title=f"{label}: ‖term of step k in ∇θ L_t‖",
            colorbar_label="log10 norm",
        )
        print(f"figure: {path}")
        # The seed's table: how much each source step contributes, by its distance to the loss step.
        by_lag = [
            np.mean([matrix[t, t - lag] for t in range(lag, len(matrix))]) for lag in range(len(matrix))
        ]
        for lag in sorted({0, 1, 5, 10, len(matrix) - 1}):
            if lag < len(matrix):
                summary.append([label, lag, f"{by_lag[lag]:.3e}", f"{by_lag[lag] / by_lag[0]:.2e}"])
    _common.print_table(
        f"contribution ledger, T={args.ledger_steps}: mean ‖term of step t−lag in ∇θ L_t‖",
        ["model", "lag t−k", "mean norm", "relative to lag 0"],
        summary,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
