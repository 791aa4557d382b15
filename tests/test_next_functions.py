"""``grad_fn.next_functions`` as in PyTorch: ``(node, output_index)`` per input, ``AccumulateGrad``
(with ``.variable``) for a leaf that requires grad, ``(None, 0)`` for an input that needs none."""

import itertools

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import autograd, ops
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


def test_three_input_nodes_record_what_the_general_recording_records():
    # Function.apply records three-input nodes (the fused recurrent steps) by an unrolled path; it must
    # set every field as the general _link_parents does, for each requires_grad pattern, with an
    # interior input, a broadcast operand, and an input that is one output of a multi-output op.
    rng = np.random.default_rng(0)
    for pattern in itertools.product((False, True), repeat=3):
        if not any(pattern):
            continue
        for broadcast, from_unbind in itertools.product((False, True), repeat=2):
            a = tg.tensor(rng.standard_normal((2, 3)), requires_grad=pattern[0])
            a = a * 1.0 if pattern[0] else a
            b = tg.tensor(rng.standard_normal((3, 4)), requires_grad=pattern[1])
            c_shape = (4,) if broadcast else (2, 4)
            steps = tg.tensor(rng.standard_normal((3, *c_shape)), requires_grad=pattern[2])
            c = tg.unbind(steps, 0)[1] if from_unbind else steps.detach()[1].requires_grad_(pattern[2])
            inputs = (a, b, c)
            node = ops.AddMatMul.apply(*inputs).grad_fn
            general = object.__new__(ops.AddMatMul)
            autograd._link_parents(general, inputs, [t._data for t in inputs], (2, 4))
            case = (pattern, broadcast, from_unbind)
            assert node.first is general.first and node.second is general.second, case
            assert all(x is y for x, y in zip(node.more_parents, general.more_parents, strict=True)), case
            for field in ("needs_input_grad", "parent_indices", "input_shapes"):
                assert getattr(node, field) == getattr(general, field), (case, field)
            assert node.needs_input_grad == pattern, case
