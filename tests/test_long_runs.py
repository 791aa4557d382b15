"""Long runs: nothing accumulates. Training with truncated BPTT keeps the number of live graph nodes and
the traced memory flat, and a 100,000-step unrolled chain backprops without recursion and frees its graph.

Graph nodes are counted as the live ``Function`` instances the garbage collector tracks. The cyclic
collector is switched off while a run is measured: the tape must be freed by reference counting alone,
the moment the last tensor of an iteration goes away, or memory would grow between collections.
"""

import gc
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn, optim
from tinygrad_rnn.autograd import Function
from tinygrad_rnn.bptt import TBPTT, detach_hidden

FIGURES: dict = {}


def live_nodes() -> int:
    """How many graph nodes (``Function`` instances) are alive right now."""
    return sum(1 for o in gc.get_objects() if isinstance(o, Function))


@contextmanager
def collector_off() -> Iterator[None]:
    """Only reference counting frees memory inside the block."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@pytest.fixture(scope="module", autouse=True)
def _print_figures():
    yield
    for name, value in FIGURES.items():
        print(f"\n{name}: {value}")


def test_chain_of_100000_steps_backprops_without_recursion_and_frees_its_graph():
    limit = sys.getrecursionlimit()
    with collector_off():
        before = live_nodes()
        sys.setrecursionlimit(150)  # a recursive walk (or a recursive free) would fail at this depth
        try:
            x = tg.tensor(np.full(3, 0.5), requires_grad=True)
            h = x
            for _ in range(100_000):
                h = h * 0.99999
            assert live_nodes() - before == 100_000
            h.sum().backward()
            graph = h.grad_fn
            del h  # the whole chain hangs off this one tensor
        finally:
            sys.setrecursionlimit(limit)
        assert graph.saved is None or graph.saved == ()
        del graph
        assert live_nodes() == before
    expected = 0.99999**100_000
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, expected), rtol=1e-9)


def test_backward_frees_saved_arrays_of_a_long_chain_while_the_output_is_still_alive():
    tracemalloc.start()
    try:
        x = tg.tensor(np.ones(1000), dtype=tg.float64, requires_grad=True)
        h = x
        for _ in range(2_000):
            h = (h * 0.999).tanh()  # Tanh saves its 8 kB output: 16 MB for the chain
        held = tracemalloc.get_traced_memory()[0]
        h.sum().backward()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    FIGURES["2,000-step tanh chain, traced memory before / after backward (bytes)"] = (held, after)
    assert held > 16_000_000
    assert after < held / 4  # the saved outputs are gone though h (and its nodes) are still alive


def _lstm_training_run(iterations: int, checkpoints: tuple) -> dict:
    """Train a small LSTM with truncated BPTT (detach between chunks), clipping and Adam: the loop people
    write for PyTorch.

    Returns {iteration: (live nodes, traced bytes)} measured at the end of the given iterations.
    """
    tg.manual_seed(0)
    seq_len, batch, features, hidden_size, classes = 5, 4, 3, 8, 5
    lstm = nn.LSTM(features, hidden_size)
    head = nn.Linear(hidden_size, classes)
    parameters = [*lstm.parameters(), *head.parameters()]
    optimizer = optim.Adam(parameters, lr=1e-2)
    stream = np.random.default_rng(0).standard_normal((seq_len * 16, batch, features)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, classes, (seq_len * 16, batch))
    hidden = None
    figures = {}
    for iteration in range(1, iterations + 1):
        start = (iteration * seq_len) % len(stream)
        x = tg.tensor(stream[start : start + seq_len])
        y = tg.tensor(labels[start : start + seq_len])
        hidden = detach_hidden(hidden)
        optimizer.zero_grad()
        out, hidden = lstm(x, hidden)
        loss = F.cross_entropy(head(out).reshape(-1, classes), y.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, max_norm=1.0)
        optimizer.step()
        if iteration in checkpoints:
            nodes = live_nodes()  # counted before any collection: freed by reference counting alone
            gc.collect()  # a full collection also empties CPython's free lists of tuples, floats, ...
            figures[iteration] = (nodes, tracemalloc.get_traced_memory()[0])
    assert np.isfinite(loss.item())
    return figures


def test_500_iterations_of_lstm_truncated_bptt_keep_nodes_and_memory_flat():
    tracemalloc.start()
    try:
        with collector_off():
            figures = _lstm_training_run(500, (50, 500))
    finally:
        tracemalloc.stop()
    (nodes_50, memory_50), (nodes_500, memory_500) = figures[50], figures[500]
    FIGURES["LSTM TBPTT live nodes at iteration 50 / 500"] = (nodes_50, nodes_500)
    FIGURES["LSTM TBPTT traced memory at iteration 50 / 500 (bytes)"] = (memory_50, memory_500)
    assert nodes_500 == nodes_50  # only the last iteration's graph (still referenced by `loss`) is alive
    assert memory_500 - memory_50 < 64 * 1024, f"memory grew from {memory_50} to {memory_500} bytes"


class Tagger(nn.Module):
    """An LSTM with a linear read-out, called as ``model(chunk, hidden) -> (logits, hidden)``."""

    def __init__(self, features: int, hidden_size: int, classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden_size)
        self.head = nn.Linear(hidden_size, classes)

    def forward(self, chunk: tg.Tensor, hidden=None):
        out, hidden = self.lstm(chunk, hidden)
        return self.head(out), hidden


def test_the_tbptt_driver_keeps_nodes_and_memory_flat_over_a_long_stream():
    tg.manual_seed(0)
    steps, batch, features, classes = 200, 2, 3, 4
    model = Tagger(features, 6, classes)
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def loss_fn(logits, targets):
        return F.cross_entropy(logits.reshape(-1, classes), targets.reshape(-1))

    inputs = tg.tensor(np.random.default_rng(0).standard_normal((steps, batch, features)).astype(np.float32))
    targets = tg.tensor(np.random.default_rng(1).integers(0, classes, (steps, batch)))
    driver = TBPTT(model, loss_fn, k1=2, k2=5, semantics="per_loss")
    figures = {}
    tracemalloc.start()
    try:
        with collector_off():
            for update in driver.updates(inputs, targets):
                nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
                optimizer.step()
                if update.index + 1 in (10, 100):
                    nodes = live_nodes()
                    gc.collect()
                    figures[update.index + 1] = (nodes, tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert update.index + 1 == 100 and np.isfinite(update.loss)
    (nodes_10, memory_10), (nodes_100, memory_100) = figures[10], figures[100]
    FIGURES["TBPTT driver (per_loss, k1=2, k2=5) live nodes at update 10 / 100"] = (nodes_10, nodes_100)
    FIGURES["TBPTT driver traced memory at update 10 / 100 (bytes)"] = (memory_10, memory_100)
    assert nodes_100 == nodes_10
    assert memory_100 - memory_10 < 32 * 1024, f"memory grew from {memory_10} to {memory_100} bytes"
