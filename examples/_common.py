"""Helpers the study examples share: command-line basics, printed tables, peak memory and timing."""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import tinygrad_rnn as tg


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """``--device``, ``--seed``, ``--out`` and ``--quick`` (tiny sizes, for the smoke tests)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", default_out), help="where figures go")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for smoke tests")
    return parser


def require_device(device: str) -> None:
    """Exit with the backend's explanation (what is missing, how to install it) if ``device`` is unusable."""
    try:
        tg.backend.xp_for(tg.backend.device(device))
    except (RuntimeError, ValueError, TypeError) as error:
        raise SystemExit(f"--device {device}: {error}") from None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with a header rule, columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [
        [cell if isinstance(cell, str) else f"{cell}" for cell in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def print_table(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], out: str | None = None
) -> str:
    """Print a titled table and, with ``out``, also save it as ``<out>/<slug>.txt``."""
    text = f"{title}\n{format_table(headers, rows)}"
    print(text, flush=True)
    if out is not None:
        slug = "".join(c if c.isascii() and c.isalnum() else "_" for c in title.lower())
        slug = "_".join(part for part in slug.split("_") if part)[:60]
        with open(os.path.join(out, f"table_{slug}.txt"), "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    return text


def synchronize(device: str) -> None:
    """Wait for the work queued on the requested GPU (not CuPy's current one), so a timer measures it."""
    if tg.backend.device(device).type == "cuda":
        tg.cuda.synchronize(device)


def peak_memory(fn: Callable[[], Any], device: str) -> tuple[Any, int]:
    """Run ``fn`` once; return its result and the peak bytes allocated above the level when it started.

    On the CPU the peak comes from ``tracemalloc`` (NumPy reports its array buffers to it; tracing slows
    Python down, so time is measured in separate, untraced runs); on a GPU from CuPy's memory pool, whose
    growth during the call (emptied of cached blocks before it) bounds the peak from above: the pool
    holds every block the call needed at once, plus rounding and blocks it could not reuse.
    """
    dev = tg.backend.device(device)
    if dev.type == "cpu":
        tracemalloc.start()
        start_bytes = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - start_bytes
        tracemalloc.stop()
        return result, peak
    cupy = tg.backend.xp_for(dev)
    pool = cupy.get_default_memory_pool()
    synchronize(device)
    with cupy.cuda.Device(dev.index):  # the pool's byte counts are those of the current GPU
        pool.free_all_blocks()
        before = pool.total_bytes()
    result = fn()
    synchronize(device)
    with cupy.cuda.Device(dev.index):
        return result, max(pool.total_bytes() - before, 0)


def timed(fn: Callable[[], Any], device: str) -> tuple[Any, float]:
    """Run ``fn`` once; return its result and the wall-clock seconds it took (GPU work included)."""
    synchronize(device)
    tick = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - tick


def megabytes(count: int) -> str:
    return f"{count / 2**20:.2f}"
