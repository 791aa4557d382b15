"""``grad_fn.next_functions`` as in PyTorch: ``(node, output_index)`` per input, ``AccumulateGrad``
(with ``.variable``) for a leaf that requires grad, ``(None, 0)`` for an input that needs none."""

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn.autograd import AccumulateGrad


def test_next_functions_of_a_product_name_the_leaf_and_the_constant():
    w = tg.tensor(np.ones(3), requires_grad=True)
    x = tg.tensor(np.ones(3))
    y = w * x
    (first, first_index), (second, second_index) = y.grad_fn.next_functions
    assert isinstance(first, AccumulateGrad) and first.variable is w and first_index == 0
    assert first.name == "AccumulateGrad" and first.next_functions == ()
    assert (second, second_index) == (None, 0)


def test_next_functions_point_at_the_producing_node_and_its_output_index():
    x = tg.tensor(np.ones((3, 2)), requires_grad=True)
    a, _, c = x.unbind(0)
    y = c + a
    (left, left_index), (right, right_index) = y.grad_fn.next_functions
    assert left is c.grad_fn and left_index == 2
    assert right is a.grad_fn and right_index == 0
    assert left.name == "Unbind"


def test_walking_next_functions_from_the_loss_reaches_every_parameter():
    tg.manual_seed(0)
    layer = tg.nn.RNN(2, 3)
    output, _ = layer(tg.tensor(np.ones((4, 1, 2), dtype=np.float32)))
    stack, seen, found = [output.sum().grad_fn], set(), set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for child, _ in node.next_functions:
            if isinstance(child, AccumulateGrad):
                found.add(id(child.variable))
            elif child is not None:
                stack.append(child)
    assert found == {id(p) for p in layer.parameters()}


def test_the_same_leaf_gives_the_same_accumulate_grad_object():
    w = tg.tensor(np.ones(2), requires_grad=True)
    y = w * w
    (first, _), (second, _) = y.grad_fn.next_functions
    assert first is second
