"""Tests for the figure helpers: each writes a PNG and accepts lists, arrays and Tensors."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == PNG_SIGNATURE


def test_lines_and_loss_curve_write_pngs_into_new_directories(tmp_path):
    path = plot.lines(
        str(tmp_path / "deep" / "lines.png"),
        {"a": ([1, 2, 3], tg.tensor([3.0, 2.0, 1.0])), "b": (np.arange(3), np.ones(3))},
        "x",
        "y",
        log_y=True,
        hlines={"one": 1.0},
        markers=True,
    )
    assert is_png(path)
    curve = plot.loss_curve(str(tmp_path / "loss.png"), ([1, 2], [4.0, 3.0]), ([], []), baseline=4.5)
    assert is_png(curve)
    assert not list(tmp_path.rglob("*.tmp.png")), "the temporary file of the atomic write was left behind"


def test_gradient_norms_vs_lag_plots_vanishing_and_exploding_curves_on_a_log_scale(tmp_path):
    lags = np.arange(30)
    path = plot.gradient_norms_vs_lag(str(tmp_path / "g.png"), {"0.5": 0.5**lags, "1.5": 1.5**lags})
    assert is_png(path)


def test_heatmap_leaves_zeros_blank_on_a_log_scale_and_bars_accept_exact_zeros(tmp_path):
    matrix = np.tril(np.arange(1.0, 17.0).reshape(4, 4))
    assert is_png(plot.heatmap(str(tmp_path / "h.png"), tg.tensor(matrix), "k", "t", title="ledger"))
    assert is_png(plot.heatmap(str(tmp_path / "h_linear.png"), matrix, "k", "t", log_scale=False))
    assert is_png(plot.bars(str(tmp_path / "b.png"), ["a", "b"], [0.0, 1e-16], "error", log_y=True))


@pytest.mark.parametrize("steps", [4, 20])
def test_heatmap_ticks_its_step_axes_at_integers_only(tmp_path, monkeypatch, steps):
    figures = []
    save = plot._save

    def keep_ticks(figure, path):
        axes = figure.axes[0]
        figure.canvas.draw()
        figures.append(([t.get_text() for t in axes.get_xticklabels()], list(axes.get_yticks())))
        return save(figure, path)

    monkeypatch.setattr(plot, "_save", keep_ticks)
    # Matplotlib's default locator ticks these sizes at 0.0, 0.5, 1.0, ... and 0.0, 2.5, 5.0, ...
    matrix = np.tril(np.ones((steps, steps)))
    plot.heatmap(str(tmp_path / "h.png"), matrix, "source step k", "loss step t")
    (x_labels, y_ticks) = figures[0]
    shown = [label for label in x_labels if label]
    assert shown and all(label.lstrip("−-").isdigit() for label in shown), x_labels
    assert all(float(tick).is_integer() for tick in y_ticks), y_ticks
