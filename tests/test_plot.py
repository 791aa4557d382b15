"""Tests for the figure helpers: each writes a PNG and accepts lists, arrays and Tensors."""

import numpy as np

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
