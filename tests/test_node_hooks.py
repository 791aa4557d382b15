"""Node hooks on ``grad_fn``: ``register_prehook(fn(grad_outputs))`` and
``register_hook(fn(grad_inputs, grad_outputs))`` watch dh_t arrive and dz_t leave each step of an RNN."""

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn


def _step_nodes(output):
    """The per-step nodes of a one-layer RNN, oldest first (the parents of the output Stack)."""
    return [parent for parent, _ in output.grad_fn.next_functions]


def test_hooks_on_each_step_see_dh_t_and_dz_t_of_the_derivation():
    tg.manual_seed(0)
    layer = nn.RNN(3, 4, dtype=tg.float64)
    x = tg.tensor(np.random.default_rng(0).standard_normal((5, 2, 3)), dtype=tg.float64)
    output, _ = layer(x)
    steps = _step_nodes(output)
    assert [node.name for node in steps] == ["TanhAddMatMul"] * 5
    seen = {}
    for t, node in enumerate(steps):
        node.register_hook(
            lambda grad_inputs, grad_outputs, t=t: seen.__setitem__(t, (grad_outputs, grad_inputs))
        )
    (output * output).sum().backward()
    states = output.numpy()
    dw_hh = np.zeros((4, 4))
    for t in range(5):
        (dh,), (dh_next, _, dz) = seen[t]
        # dz_t = dh_t ⊙ (1 − h_t²), and dW_hh = Σ_t dz_tᵀ h_{t−1} (h_0 = 0)
        np.testing.assert_allclose(dz.numpy(), dh.numpy() * (1 - states[t] ** 2), rtol=1e-12)
        if t == 0:
            assert dh_next is None  # h_0 is a constant zero state: no gradient to hand back
            continue
        dw_hh += dz.numpy().T @ states[t - 1]
        # dh_next = dz_t W_hh, what step t hands back to step t − 1
        np.testing.assert_allclose(dh_next.numpy(), dz.numpy() @ layer.weight_hh_l0.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.weight_hh_l0.grad.numpy(), dw_hh, rtol=1e-10)


def test_a_prehook_sees_the_complete_output_gradient_and_can_replace_it():
    x = tg.tensor(np.array([1.0, 2.0]), dtype=tg.float64, requires_grad=True)
    y = x * 3.0
    z = y.tanh()
    seen = []

    def double(grad_outputs):
        seen.append(grad_outputs[0].numpy())
        return (grad_outputs[0] * 2.0,)

    z.grad_fn.register_prehook(double)
    (z + z).sum().backward()
    np.testing.assert_allclose(seen[0], [2.0, 2.0])  # both uses of z summed before the node runs
    np.testing.assert_allclose(x.grad.numpy(), 4.0 * 3.0 * (1 - np.tanh(3.0 * x.numpy()) ** 2))


def test_a_removed_node_hook_is_not_called():
    x = tg.tensor(np.ones(2), dtype=tg.float64, requires_grad=True)
    y = x * 2.0
    calls = []
    remove = y.grad_fn.register_hook(lambda grad_inputs, grad_outputs: calls.append(1))
    remove()
    y.sum().backward()
    assert calls == []
