"""Figures for the examples: loss curves, gradient norms against lag, heatmaps, cost against length.

Matplotlib is imported lazily, inside each function, with the non-interactive Agg backend, so the core
never needs it and figures are written on machines without a display. Every function saves one PNG and
returns its path. Data may be lists, NumPy arrays or Tensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from . import backend
from .tensor import Tensor


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError('plotting needs matplotlib: pip install -e ".[examples]"') from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _values(data: Any) -> list[float]:
    if isinstance(data, Tensor):
        data = data.numpy()
    return [float(v) for v in (data.tolist() if hasattr(data, "tolist") else data)]


def _save(figure: Any, path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.tight_layout()
    # Write beside the target and rename, so a reader never sees a half-written figure.
    temporary = path + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    os.replace(temporary, path)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def lines(
    path: str,
    series: Mapping[str, tuple[Any, Any]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    log_y: bool = False,
    log_x: bool = False,
    hlines: Mapping[str, float] | None = None,
    markers: bool = False,
) -> str:
    """One line per entry of ``series`` (label → (x values, y values)); ``hlines`` adds labelled
    horizontal reference lines (a baseline, say)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, (x, y) in series.items():
        axes.plot(_values(x), _values(y), marker="o" if markers else None, markersize=3, label=label)
    for label, value in (hlines or {}).items():
        axes.axhline(value, linestyle="--", color="gray", linewidth=1)
        axes.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    if log_y:
        axes.set_yscale("log")
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    if series:
        axes.legend(fontsize=8)
    return _save(figure, path)


def loss_curve(
    path: str,
    train: tuple[Any, Any],
    valid: tuple[Any, Any] | None = None,
    baseline: float | None = None,
    ylabel: str = "bits per character",
    xlabel: str = "characters seen",
    train_label: str = "train",
) -> str:
    """Training loss (x, y), optional validation points and a dashed baseline (the unigram model)."""
    series = {train_label: train}
    if valid is not None and len(_values(valid[0])):
        series["validation"] = valid
    return lines(
        path,
        series,
        xlabel,
        ylabel,
        title="loss curve",
        hlines={"unigram": baseline} if baseline is not None else None,
    )


def gradient_norms_vs_lag(
    path: str, curves: Mapping[str, Sequence[float]], title: str = "‖∂L_T/∂h_k‖ against lag T−k"
) -> str:
    """Gradient norm against lag on a log scale, one curve per model (lag 0 is the last step)."""
    series = {label: (list(range(len(_values(v)))), v) for label, v in curves.items()}
    return lines(path, series, "lag T − k (steps)", "‖∂L_T / ∂h_k‖", title=title, log_y=True)


def heatmap(
    path: str,
    matrix: Any,
    xlabel: str,
    ylabel: str,
    title: str = "",
    log_scale: bool = True,
    colorbar_label: str = "",
) -> str:
    """A matrix as an image (row 0 at the top); ``log_scale`` colours log10 of the values, with zeros
    (no contribution, e.g. a source step after the loss step) left blank. Both axes index rows and
    columns (steps), so they are ticked at integers only."""
    plt = _pyplot()
    if isinstance(matrix, Tensor):
        matrix = matrix.numpy()
    np = backend.xp_for(backend.CPU)
    values = np.asarray(matrix, dtype=float)
    if log_scale:
        shown = np.full(values.shape, np.nan)
        positive = values > 0
        shown[positive] = np.log10(values[positive])
    else:
        shown = values
    figure, axes = plt.subplots(figsize=(5.6, 4.6))
    image = axes.imshow(shown, aspect="auto", cmap="viridis", interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes)
    colorbar.set_label(colorbar_label or ("log10 value" if log_scale else "value"))
    # Rows and columns are steps (integers): without this the locator may tick 0.0, 2.5, 5.0, ...
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    return _save(figure, path)


def bars(
    path: str, labels: Sequence[str], values: Any, ylabel: str, title: str = "", log_y: bool = False
) -> str:
    """One bar per label; on a log axis a value of 0 (an exact match, say) is drawn at 1e-18."""
    plt = _pyplot()
    heights = _values(values)
    if log_y:
        heights = [max(v, 1e-18) for v in heights]
    figure, axes = plt.subplots(figsize=(max(6.4, 0.3 * len(heights)), 4.2))
    axes.bar(range(len(heights)), heights, color="tab:blue")
    if log_y:
        axes.set_yscale("log")
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(list(labels), rotation=90, fontsize=7)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    axes.grid(True, axis="y", which="both", alpha=0.3)
    return _save(figure, path)
