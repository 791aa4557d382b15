"""The plain reference walk (``autograd.reference_walk``: creation order, a dict of gradients, ``+=``)
and the real walk give the same leaf gradients on random graphs: several ops, shared subexpressions,
broadcasting, a weight used many times (the deferred product), and multi-output ops (split, unbind)."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import autograd

ROWS, COLS = 3, 4


def _leaves(rng: np.random.Generator) -> list:
    """Leaves of several broadcast-compatible shapes, plus one that needs no gradient."""
    shapes = [(ROWS, COLS), (ROWS, COLS), (COLS,), (ROWS, 1), (1, COLS)]
    leaves = [tg.tensor(rng.standard_normal(shape), dtype=tg.float64, requires_grad=True) for shape in shapes]
    leaves.append(tg.tensor(rng.standard_normal((ROWS, COLS)), dtype=tg.float64))
    return leaves


def _binary(op: str, a, b):
    return {"add": lambda: a + b, "mul": lambda: a * b, "sub": lambda: a - b}[op]()


def _unary(op: str, a, weight):
    if op == "tanh":
        return [a.tanh()]
    if op == "sigmoid":
        return [a.sigmoid()]
    if op == "sum_rows":
        return [a.sum(dim=0, keepdim=True)]
    if op == "matmul" and a.ndim == 2 and a.shape[1] == COLS:
        return [a @ weight]  # the same (COLS, COLS) weight at every use: summed lazily
    if op == "split" and a.ndim == 2 and a.shape[1] == COLS:
        return list(a.split(2, dim=1))
    if op == "unbind" and a.ndim == 2:
        return list(a.unbind(0))
    return [a * 2.0]


OPS = st.sampled_from(["add", "mul", "sub", "tanh", "sigmoid", "sum_rows", "matmul", "split", "unbind"])


@given(
    seed=st.integers(0, 2**16),
    steps=st.lists(st.tuples(OPS, st.integers(0, 999), st.integers(0, 999)), min_size=1, max_size=14),
    picks=st.lists(st.integers(0, 999), min_size=1, max_size=4),
)
def test_reference_walk_gives_the_fast_walks_gradients_on_random_graphs(seed, steps, picks):
    rng = np.random.default_rng(seed)
    leaves = _leaves(rng)
    weight = tg.tensor(rng.standard_normal((COLS, COLS)) * 0.5, dtype=tg.float64, requires_grad=True)
    pool = list(leaves)
    for op, first, second in steps:
        a, b = pool[first % len(pool)], pool[second % len(pool)]
        if op in ("add", "mul", "sub"):
            try:
                np.broadcast_shapes(a.shape, b.shape)
            except ValueError:
                continue
            pool.append(_binary(op, a, b))
        else:
            pool.extend(_unary(op, a, weight))
    # Any made tensor may be picked twice (a shared subexpression).
    chosen = [
        pool[len(leaves) + p % (len(pool) - len(leaves))] if len(pool) > len(leaves) else pool[0]
        for p in picks
    ]
    loss = sum(((t * (k + 1.0)).sum() for k, t in enumerate(chosen)), tg.tensor(0.0, dtype=tg.float64))
    if not loss.requires_grad:
        return
    expected = autograd.reference_walk(loss, np.ones((), dtype=np.float64))
    loss.backward()
    for leaf in [*leaves, weight]:
        want = expected.get(id(leaf))
        if want is None:
            assert leaf.grad is None or not leaf.requires_grad
        else:
            np.testing.assert_allclose(leaf.grad.numpy(), want, rtol=1e-12, atol=1e-12)


def test_reference_walk_sums_a_shared_subexpression():
    x = tg.tensor(np.array([1.5, -2.0]), dtype=tg.float64, requires_grad=True)
    y = x * x
    loss = (y + y * 3.0).sum()
    grads = autograd.reference_walk(loss, np.ones((), dtype=np.float64))
    np.testing.assert_allclose(grads[id(x)], 8.0 * x.numpy())


def test_reference_walk_reduces_a_broadcast_gradient():
    bias = tg.tensor(np.array([1.0, 2.0]), dtype=tg.float64, requires_grad=True)
    x = tg.tensor(np.ones((5, 2)), dtype=tg.float64)
    loss = (x + bias).sum()
    grads = autograd.reference_walk(loss, np.ones((), dtype=np.float64))
    np.testing.assert_allclose(grads[id(bias)], [5.0, 5.0])
