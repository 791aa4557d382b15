"""``tg.autograd.grad`` and ``tg.autograd.backward``, PyTorch's functional forms of the backward pass."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg


def _graph(seed):
    rng = np.random.default_rng(seed)
    x = tg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w = tg.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    h = (x @ w).tanh()
    y = (h * h).sum() + (x.sum(0) ** 2).mean()
    return x, w, h, y


@given(seed=st.integers(0, 10_000))
def test_grad_of_leaves_equals_backward_and_leaves_dot_grad_untouched(seed):
    x, w, _, y = _graph(seed)
    gx, gw = tg.autograd.grad(y, [x, w], retain_graph=True)
    assert x.grad is None and w.grad is None
    y.backward()
    np.testing.assert_allclose(gx.numpy(), x.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gw.numpy(), w.grad.numpy(), rtol=1e-12)
    assert not gx.requires_grad


def test_grad_of_an_interior_tensor_is_what_arrives_there():
    _, _, h, y = _graph(0)
    (gh,) = tg.autograd.grad(y, h)
    np.testing.assert_allclose(gh.numpy(), 2 * h.detach().numpy(), rtol=1e-12)


def test_grad_sums_over_outputs_weighted_by_grad_outputs():
    x = tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, requires_grad=True)
    a, b = x * x, x.sin()
    weights = tg.tensor([1.0, -2.0, 0.5], dtype=tg.float64)
    (g,) = tg.autograd.grad([a, b.sum()], x, grad_outputs=[weights, None])
    expected = 2 * x.detach().numpy() * weights.numpy() + np.cos(x.detach().numpy())
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12)


def test_unused_inputs_raise_unless_allowed():
    x, _, _, y = _graph(1)
    unused = tg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="not have been used in the graph"):
        tg.autograd.grad(y, unused, retain_graph=True)
    assert tg.autograd.grad(y, [x, unused], allow_unused=True, retain_graph=True)[1] is None
    zeros = tg.autograd.grad(y, unused, materialize_grads=True)[0]
    np.testing.assert_array_equal(zeros.numpy(), [0.0])


def test_grad_refuses_what_it_cannot_do():
    x, _, h, y = _graph(2)
    with pytest.raises(NotImplementedError, match="create_graph"):
        tg.autograd.grad(y, x, create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.autograd.grad(y, tg.ones(3))
    with pytest.raises(RuntimeError, match="scalar"):
        tg.autograd.grad(h, x)
    with pytest.raises(ValueError, match="2 grad_outputs for 1 outputs"):
        tg.autograd.grad(y, x, grad_outputs=[None, None])


def test_functional_backward_accumulates_like_calling_backward_on_each():
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    tg.autograd.backward([(x * x).sum(), x * 3], [None, tg.tensor([1.0, 2.0], dtype=tg.float64)])
    np.testing.assert_allclose(x.grad.numpy(), [2.0 + 3.0, 4.0 + 6.0])
