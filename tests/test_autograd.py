"""The tape: iterative walk, accumulation, freeing, modes, hooks and in-place safety."""

import sys

import numpy as np
import pytest

import tinygrad_rnn as tg


def test_x_times_x_accumulates_both_paths():
    x = tg.tensor([3.0, -2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [6.0, -4.0])


def test_node_used_by_two_branches_gets_the_sum_of_both():
    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    shared = x.exp()
    (shared * 2 + shared.tanh()).sum().backward()
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), e * (2 + (1 - np.tanh(e) ** 2)))


def test_chain_of_100000_ops_backprops_without_recursion():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # any recursive walk would fail at this depth
    try:
        x = tg.tensor(1.0, dtype=tg.float64, requires_grad=True)
        y = x
        for _ in range(100_000):
            y = y * 1.00001
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    assert x.grad.item() == pytest.approx(1.00001**100_000, rel=1e-9)


def test_second_backward_raises_with_the_fix_in_the_message():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.tanh().sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward_and_accumulates():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_backward_frees_saved_arrays():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x.tanh()
    node = y.grad_fn
    assert node.saved
    y.sum().backward()
    assert node.saved is None


def test_leaf_grads_accumulate_until_zeroed():
    x = tg.tensor([1.0], requires_grad=True)
    for _ in range(3):
        (x * 2).sum().backward()
    assert x.grad.item() == 6.0
    x.grad = None
    (x * 2).sum().backward()
    assert x.grad.item() == 2.0


def test_no_grad_records_nothing_and_enable_grad_restores():
    x = tg.tensor([1.0], requires_grad=True)
    with tg.no_grad():
        y = x * 2
        with tg.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad
    assert tg.is_grad_enabled()

    @tg.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad


def test_graph_built_under_no_grad_does_not_reach_the_leaf():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with tg.no_grad():
        frozen = x * 5
    y = (frozen * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 10.0])  # only the recorded path


def test_detach_cuts_the_graph_and_shares_data():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    d = h.detach()
    assert not d.requires_grad and d.is_leaf
    assert np.shares_memory(d.numpy(), h.numpy())
    (d * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 6.0])


def test_hook_that_rescales_a_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.register_hook(lambda g: g * 0.5)
    h.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.5, 1.5])


def test_leaf_hook_sees_the_summed_gradient_and_can_replace_it():
    x = tg.tensor([1.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.item()) or g * 10)
    (x * 2 + x * 3).sum().backward()
    assert seen == [5.0]
    assert x.grad.item() == 50.0


def test_retain_grad_keeps_the_final_interior_gradient():
    x = tg.tensor([1.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    h.register_hook(lambda g: g * 10)
    h.sum().backward()
    assert h.grad.item() == 10.0
    assert x.grad.item() == 30.0


def test_removed_hook_no_longer_runs():
    x = tg.tensor([1.0], requires_grad=True)
    remove = x.register_hook(lambda g: g * 100)
    remove()
    (x * 1).sum().backward()
    assert x.grad.item() == 1.0


def test_in_place_change_of_a_saved_input_is_caught():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([3.0, 4.0])
    y = a * b
    b.add_(1)
    with pytest.raises(RuntimeError, match=r"Mul saved .* modified in place"):
        y.sum().backward()


def test_in_place_change_is_reported_with_the_changed_arrays_versions():
    # TanhAddMatMul saves three arrays; the first was already changed twice before it was saved (so
    # its snapshot is 2, not 0), and only the second changes afterwards: the message names that one.
    h = tg.tensor(np.ones((2, 3), np.float32))
    with tg.no_grad():
        h.add_(1)
        h.add_(1)
    w = tg.tensor(np.ones((3, 4), np.float32) * 0.1, requires_grad=True)
    c = tg.tensor(np.zeros((2, 4), np.float32))
    y = tg.ops.TanhAddMatMul.apply(h, w, c)
    with tg.no_grad():
        w.mul_(2)
    with pytest.raises(RuntimeError, match=r"TanhAddMatMul saved .* version is now 1, expected 0"):
        y.sum().backward()


def test_in_place_change_of_a_saved_output_through_an_alias_is_caught():
    x = tg.tensor([0.5], requires_grad=True)
    y = x.tanh()
    y.detach().mul_(2)
    with pytest.raises(RuntimeError, match="Tanh saved"):
        y.sum().backward()


def test_assigning_data_bumps_the_version():
    w = tg.tensor([1.0, 2.0], requires_grad=True)
    x = tg.tensor([1.0, 1.0], requires_grad=True)
    y = (x * w).sum()
    before = w.version
    w.data = np.array([5.0, 5.0], dtype=np.float32)
    assert w.version == before + 1
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()


def test_in_place_on_a_leaf_that_requires_grad_is_refused_while_recording():
    w = tg.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w.add_(1)
    with tg.no_grad():
        w.add_(1)
    assert w.item() == 2.0


def test_backward_errors_name_the_problem():
    with pytest.raises(RuntimeError, match="does not require grad"):
        tg.tensor([1.0]).sum().backward()
    with pytest.raises(RuntimeError, match=r"scalar.*\(2,\)"):
        (tg.tensor([1.0, 2.0], requires_grad=True) * 2).backward()
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\)"):
        (x * 2).backward(gradient=tg.ones(3))


def test_backward_with_explicit_gradient():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(gradient=tg.tensor([1.0, -1.0]))
    np.testing.assert_allclose(x.grad.numpy(), [3.0, -3.0])


def test_interior_gradients_are_not_kept():
    x = tg.tensor([1.0], requires_grad=True)
    h = x * 2
    (h * 3).sum().backward()
    assert h.grad is None


def test_unbroadcast_handles_any_ranks():
    g = np.ones((4, 2, 3))
    assert tg.autograd.unbroadcast(g, (3,)).shape == (3,)
    assert tg.autograd.unbroadcast(g, (2, 1)).shape == (2, 1)
    np.testing.assert_allclose(tg.autograd.unbroadcast(g, (1, 1, 3)), np.full((1, 1, 3), 8.0))
    assert tg.autograd.unbroadcast(g, ()).shape == ()


@pytest.mark.parametrize("order", ["dense_first", "deferred_first", "interleaved"])
def test_deferred_weight_gradients_mix_with_dense_ones_in_any_order(order):
    # A weight reached by matmuls (deferred aᵀg terms) and by elementwise ops (dense terms), for a
    # leaf and for an interior node (its transpose), in every order: the sum must be the same.
    rng = np.random.default_rng(0)
    a1, a2, a3 = (rng.standard_normal((2, 3)) for _ in range(3))
    w_data = rng.standard_normal((3, 3))
    w = tg.tensor(w_data, requires_grad=True)
    wt = w.T
    dense = [lambda: (w * w).sum(), lambda: (wt * 3.0).sum()]
    deferred = [lambda a=a: (tg.tensor(a) @ w).sum() + (tg.tensor(a) @ wt).sum() for a in (a1, a2, a3)]
    terms = {
        "dense_first": dense + deferred,
        "deferred_first": deferred + dense,
        "interleaved": [deferred[0], dense[0], deferred[1], dense[1], deferred[2]],
    }[order]
    total = terms[0]()
    for term in terms[1:]:
        total = total + term()
    total.backward()
    ones = np.ones((2, 3))
    expected = 2 * w_data + 3.0 + sum(a.T @ ones + (a.T @ ones).T for a in (a1, a2, a3))
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-12)
