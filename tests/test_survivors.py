"""Engine behaviours that once had no test: a tensor seeded more than once, and the dtype ``Cast``
hands back to hooks. Each test here fails on a bug that the rest of the suite let through."""

import numpy as np
import pytest

import tinygrad_rnn as tg


def _leaf(shape, seed, dtype=tg.float64):
    return tg.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype, requires_grad=True)


# ---- a root seeded twice: every seed arrives -------------------------------------------------------


def _roots(kind, x):
    """A root of each kind the walk treats apart: an op's only output, one output of several, a leaf."""
    if kind == "single_output":
        return (x * x).tanh()
    if kind == "one_of_several_outputs":
        return (x * x).split(1, dim=1)[1]
    return x


def _expected(kind, x, seed):
    """d(Σ seed ⊙ root)/dx by hand, for the roots of :func:`_roots`."""
    value = x.numpy()
    if kind == "single_output":
        return seed * (1 - np.tanh(value * value) ** 2) * 2 * value
    if kind == "one_of_several_outputs":
        grad = np.zeros_like(value)
        grad[:, 1:2] = seed * 2 * value[:, 1:2]
        return grad
    return seed


@pytest.mark.parametrize("kind", ["single_output", "one_of_several_outputs", "leaf"])
def test_a_root_seeded_twice_in_one_walk_gets_the_sum_of_both_seeds(kind):
    x = _leaf((2, 3), 0)
    root = _roots(kind, x)
    first, second = np.full(root.shape, 0.25), np.random.default_rng(1).standard_normal(root.shape)
    found = tg.autograd.leaf_gradients([root, root], [first, second])
    np.testing.assert_allclose(found[id(x)], _expected(kind, x, first + second), rtol=1e-12, atol=0)
    # The seeds themselves are the caller's: adding into them would change what the caller holds.
    np.testing.assert_array_equal(first, np.full(root.shape, 0.25))


def test_a_root_seeded_beside_another_root_of_the_same_node_gets_both():
    x = _leaf((2, 4), 2)
    left, right = (x * 3.0).split(2, dim=1)
    seeds = [np.ones((2, 2)), np.full((2, 2), 2.0), np.full((2, 2), -0.5)]
    found = tg.autograd.leaf_gradients([left, right, left], seeds)
    expected = 3.0 * np.concatenate([seeds[0] + seeds[2], seeds[1]], axis=1)
    np.testing.assert_allclose(found[id(x)], expected, rtol=1e-12, atol=0)


# ---- Cast hands each tensor a gradient of its own dtype -----------------------------------------------


@pytest.mark.parametrize(("source", "target"), [(tg.float32, tg.float64), (tg.float64, tg.float32)])
def test_hooks_before_a_cast_see_gradients_in_their_own_dtype(source, target):
    x = _leaf((3,), 3, dtype=source)
    inner = x * 2.0  # an interior tensor of the source dtype, just before the cast
    seen = {}
    x.register_hook(lambda g: seen.__setitem__("leaf", g.dtype))
    inner.register_hook(lambda g: seen.__setitem__("interior", g.dtype))
    inner.retain_grad()
    cast = inner.to(target)
    assert cast.dtype == target
    (cast * cast).sum().backward()
    assert seen == {"leaf": source, "interior": source}
    assert inner.grad.dtype == source and x.grad.dtype == source
    expected = 8.0 * x.numpy().astype(np.float64)  # d(Σ (2x)²)/dx
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_a_node_hook_on_the_cast_s_input_sees_its_dtype():
    x = _leaf((2, 2), 4, dtype=tg.float32)
    inner = x.tanh()
    seen = []
    inner.register_hook(lambda g: seen.append(g.dtype) or g * 2.0)  # a replacing hook keeps the dtype too
    inner.double().sum().backward()
    assert seen == [tg.float32]
    assert x.grad.dtype == tg.float32
    np.testing.assert_allclose(x.grad.numpy(), 2.0 * (1 - np.tanh(x.numpy()) ** 2), rtol=1e-6)
