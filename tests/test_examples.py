"""Smoke tests of the examples: each runs with tiny settings, prints its table and writes its files.

The examples run in subprocesses, as a user runs them; the full-size runs stay out of the suite.
matplotlib, which the examples need for their figures, is part of the test extra.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import tinygrad_rnn as tg

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_CHAR_MODEL = [
    "--max-chars", "20000", "--hidden-size", "16", "--embedding-dim", "8", "--batch-size", "4",
    "--k1", "6", "--k2", "10", "--eval-every", "3", "--eval-chars", "400", "--sample-every", "3",
    "--sample-chars", "20", "--no-progress",
]  # fmt: skip


def run_example(name: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    environment = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    assert result.returncode == 0, (
        f"{name} failed with code {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def assert_png(path: Path) -> None:
    assert path.is_file(), f"missing figure {path}"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_autodiff_is_bptt_prints_relative_errors_at_rounding_level(tmp_path):
    result = run_example("autodiff_is_bptt.py", "--quick", "--out", str(tmp_path))
    assert "autodiff (tape) vs hand-derived BPTT" in result.stdout
    for cell in ("rnn", "lstm", "gru"):
        assert re.search(rf"^\s*{cell}\s+weight_hh_l0", result.stdout, re.MULTILINE)
    largest = float(re.search(r"largest relative error over \d+ gradients: (\S+)", result.stdout).group(1))
    assert largest < 1e-10
    assert_png(tmp_path / "relative_errors.png")
    assert list(tmp_path.glob("table_*.txt"))


def test_gradient_flow_prints_fitted_factors_and_saves_its_figures(tmp_path):
    result = run_example("gradient_flow.py", "--quick", "--out", str(tmp_path))
    rows = {
        match.group(1): float(match.group(2))
        for match in re.finditer(
            r"^\s*(linear RNN ρ=[\d.]+)\s+(?:\S+\s+){3}(\S+)", result.stdout, re.MULTILINE
        )
    }
    # Without the tanh the per-step factor is the spectral radius itself: the seed's claim, measured.
    assert rows["linear RNN ρ=0.5"] < 0.7 and rows["linear RNN ρ=1.5"] > 1.3
    assert "contribution ledger" in result.stdout
    # The last column is ‖∂L_T/∂x_(T−1)‖ / ‖∂L_T/∂x_1‖: attention reads every input in one step.
    block = result.stdout.split("through attention", 1)[1].split("figure:", 1)[0]
    ratios = {
        match.group(1): float(match.group(2))
        for match in re.finditer(r"^\s*(self-attention|LSTM)\s+\d.*\s(\S+)$", block, re.MULTILINE)
    }
    assert ratios["self-attention"] > 10 * ratios["LSTM"]
    for name in (
        "input_gradient_vs_lag.png",
        "gradient_norm_vs_lag.png",
        "gradient_norm_vs_lag_linear.png",
        "contribution_ledger_rnn.png",
        "contribution_ledger_lstm.png",
    ):
        assert_png(tmp_path / name)


def test_truncation_tradeoff_prints_one_row_per_task_and_setting(tmp_path):
    result = run_example("truncation_tradeoff.py", "--quick", "--out", str(tmp_path))
    assert "truncation trade-off" in result.stdout
    assert "cos @full" in result.stdout
    assert "note: copy: k=10 >= T=10 cuts nothing" in result.stdout
    for task in ("adding", "copy"):
        for setting in ("full", "k=10", "k=4"):
            assert re.search(rf"^\s*{task}\s+\d+\s+\S+\s+{setting}\s", result.stdout, re.MULTILINE), (
                f"no row for {task} {setting}:\n{result.stdout}"
            )
    assert_png(tmp_path / "adding_training.png")
    assert_png(tmp_path / "copy_training.png")


def test_memory_vs_length_recomputation_matches_full_bptt(tmp_path):
    result = run_example("memory_vs_length.py", "--quick", "--out", str(tmp_path))
    differences = re.findall(r"^\s*\d+\s+recomputed\s+\S+\s+\S+\s+\S+\s+(\S+)", result.stdout, re.MULTILINE)
    assert len(differences) == 2 and all(float(d) < 1e-4 for d in differences)
    assert "memory growth" in result.stdout
    assert_png(tmp_path / "memory_vs_length.png")
    assert_png(tmp_path / "time_vs_length.png")


def test_char_lstm_trains_saves_and_resumes(tmp_path):
    out = str(tmp_path)
    first = run_example("char_lstm.py", *TINY_CHAR_MODEL, "--steps", "6", "--out", out)
    match = re.search(r"held-out bits per character: model (\S+), unigram (\S+)", first.stdout)
    assert match, first.stdout
    assert "--- sample" in first.stdout
    assert_png(tmp_path / "loss_curve.png")
    saved = tg.load(tmp_path / "checkpoint.npz")
    assert saved["meta"]["step"] == 6 and set(saved) >= {"model", "optimizer", "vocab"}

    second = run_example("char_lstm.py", *TINY_CHAR_MODEL, "--steps", "9", "--out", out, "--resume")
    assert "resumed from" in second.stdout and "at update 6" in second.stdout
    assert "trained 9 updates" in second.stdout
    assert tg.load(tmp_path / "checkpoint.npz")["meta"]["step"] == 9


def test_char_lstm_gru_cell_runs(tmp_path):
    result = run_example(
        "char_lstm.py", *TINY_CHAR_MODEL, "--cell", "gru", "--steps", "3", "--out", str(tmp_path)
    )
    assert "model: GRU" in result.stdout


def test_char_lstm_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    environment = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    process = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "char_lstm.py"),
            *TINY_CHAR_MODEL,
            "--steps",
            "100000",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("training"):
                break
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    match = re.search(r"interrupted at update (\d+): checkpoint saved", output)
    assert match, output
    saved = tg.load(tmp_path / "checkpoint.npz")
    assert saved["meta"]["step"] == int(match.group(1))
    assert "Traceback" not in output


def test_char_lstm_killed_mid_run_keeps_its_last_periodic_checkpoint(tmp_path):
    environment = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    command = [
        sys.executable, str(EXAMPLES / "char_lstm.py"), *TINY_CHAR_MODEL,
        "--steps", "100000", "--checkpoint-every", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    checkpoint = tmp_path / "checkpoint.npz"
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert checkpoint.exists(), "no periodic checkpoint was written"
        time.sleep(0.5)  # let it train (and perhaps rewrite the checkpoint) a little longer
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    step = tg.load(checkpoint)["meta"]["step"]
    assert step > 0 and step % 2 == 0


def test_examples_on_cuda_run_there_or_say_what_is_missing(tmp_path):
    command = [
        sys.executable,
        str(EXAMPLES / "gradient_flow.py"),
        "--quick",
        "--device",
        "cuda",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    if tg.cuda.is_available():
        assert result.returncode == 0, result.stderr
        assert "contribution ledger" in result.stdout
    else:
        assert result.returncode != 0
        assert "--device cuda" in result.stderr and "Traceback" not in result.stderr
        assert "CuPy" in result.stderr or "GPU" in result.stderr
