"""``nn.unfused()``: recurrent layers and cells record their plain per-step ops, with the same
values and gradients as the fused tape."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn


def _node_names(tensor) -> set:
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or not isinstance(node, tg.autograd.Function):
            continue
        seen.add(id(node))
        names.add(node.name)
        stack.extend(parent for parent, _ in node.next_functions)
    return names


def _run(module, x, hx, fused: bool):
    for p in module.parameters():
        p.grad = None
    x.grad = None
    if fused:
        result = module(x, hx)
    else:
        with nn.unfused():
            result = module(x, hx)
    output = result[0] if isinstance(result, tuple) else result
    loss = (output * output).sum() + output.sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    grads["input"] = x.grad.numpy()
    return output.numpy(), grads, _node_names(loss)


LAYERS = {
    "rnn": (lambda: nn.RNN(3, 4, num_layers=2, dtype=tg.float64), None),
    "rnn_relu": (lambda: nn.RNN(3, 4, nonlinearity="relu", dtype=tg.float64), None),
    "lstm": (lambda: nn.LSTM(3, 4, bidirectional=True, dtype=tg.float64), None),
    "gru": (lambda: nn.GRU(3, 4, num_layers=2, dtype=tg.float64), None),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_fused_and_unfused_layers_give_the_same_outputs_and_gradients(kind):
    tg.manual_seed(0)
    module = LAYERS[kind][0]()
    x = tg.tensor(np.random.default_rng(1).standard_normal((6, 2, 3)), dtype=tg.float64, requires_grad=True)
    fused_out, fused_grads, fused_names = _run(module, x, None, fused=True)
    plain_out, plain_grads, plain_names = _run(module, x, None, fused=False)
    np.testing.assert_allclose(plain_out, fused_out, rtol=1e-12, atol=1e-12)
    for name, value in fused_grads.items():
        np.testing.assert_allclose(plain_grads[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    fused_only = {"TanhAddMatMul", "AddMatMul", "LSTMCellPointwise", "GRUCellPointwise"}
    assert not plain_names & fused_only
    assert fused_names & fused_only


@pytest.mark.parametrize("cell_class", [nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_fused_and_unfused_cells_give_the_same_gradients(cell_class):
    tg.manual_seed(0)
    cell = cell_class(3, 4, dtype=tg.float64)
    x = tg.tensor(np.random.default_rng(2).standard_normal((2, 3)), dtype=tg.float64, requires_grad=True)
    fused_out, fused_grads, _ = _run(cell, x, None, fused=True)
    plain_out, plain_grads, names = _run(cell, x, None, fused=False)
    np.testing.assert_allclose(plain_out, fused_out, rtol=1e-12, atol=1e-12)
    for name, value in fused_grads.items():
        np.testing.assert_allclose(plain_grads[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    assert not names & {"LSTMCellPointwise", "GRUCellPointwise"}


def test_unfused_lstm_step_records_the_gate_nodes():
    tg.manual_seed(0)
    layer = nn.LSTM(2, 3)
    with nn.unfused():
        output, _ = layer(tg.tensor(np.ones((2, 1, 2), dtype=np.float32)))
    assert {"Split", "Sigmoid", "Tanh", "Mul", "Add", "MatMul"} <= _node_names(output)


def test_unfused_is_restored_after_the_block_and_reachable_from_tg_nn():
    assert tg.nn.unfused is nn.unfused
    layer = nn.RNN(2, 3)
    with nn.unfused():
        pass
    output, _ = layer(tg.tensor(np.ones((2, 1, 2), dtype=np.float32)))
    assert output.grad_fn.next_functions[0][0].name == "TanhAddMatMul"
