"""In-place writes on the tape: ``x[idx] = v``, ``index_put_``, ``masked_fill_``, ``copy_``, ``fill_``,
``zero_`` and the ``op_`` forms, gradient-checked in float64 against central differences, with the
version-counter, leaf and view rules PyTorch has."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

FLOATS = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False, width=64)


def leaf(array):
    return tg.tensor(np.asarray(array, dtype=np.float64), requires_grad=True)


@st.composite
def indexed_write(draw):
    """A shape, an index of one kind (int, slice, int array, bool mask) and a value shape that broadcasts
    to the indexed part, possibly with dims of size 1 or fewer dims."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    kind = draw(st.sampled_from(["int", "slice", "array", "mask", "mask-full", "tuple"]))
    n = shape[0]
    if kind == "int":
        index = draw(st.integers(-n, n - 1))
    elif kind == "slice":
        start = draw(st.integers(0, n - 1))
        index = slice(start, draw(st.integers(start + 1, n)), draw(st.integers(1, 2)))
    elif kind == "array":
        picks = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        index = tg.tensor(picks)
    elif kind == "mask":
        index = tg.tensor(draw(hnp.arrays(np.bool_, (n,))))
    elif kind == "mask-full":
        index = tg.tensor(draw(hnp.arrays(np.bool_, shape)))
    else:
        index = (slice(None), *(draw(st.integers(0, s - 1)) for s in shape[1:]))
    target = np.zeros(shape)[index.numpy() if isinstance(index, tg.Tensor) else index].shape
    # Broadcast: drop some leading dims, set some dims to 1.
    drop = draw(st.integers(0, len(target)))
    value_shape = tuple(1 if draw(st.booleans()) else s for s in target[drop:])
    return shape, index, value_shape


@given(case=indexed_write(), data=st.data())
def test_setitem_gradients_for_every_index_kind_with_broadcast_values(case, data):
    shape, index, value_shape = case
    x = leaf(data.draw(hnp.arrays(np.float64, shape, elements=FLOATS)))
    v = leaf(data.draw(hnp.arrays(np.float64, value_shape, elements=FLOATS)))

    def write(x, v):
        y = x * 1.5
        y[index] = v * 2
        return y.tanh()

    tg.gradcheck(write, [x, v])


@given(case=indexed_write(), data=st.data())
def test_setitem_into_a_tensor_that_does_not_require_grad_records_the_value(case, data):
    shape, index, value_shape = case
    v = leaf(data.draw(hnp.arrays(np.float64, value_shape, elements=FLOATS)))

    def write(v):
        out = tg.zeros(*shape, dtype=tg.float64)
        out[index] = v
        return out * out

    tg.gradcheck(write, [v])
    out = tg.zeros(*shape, dtype=tg.float64)
    out[index] = v
    expected = np.zeros(shape)
    expected[index.numpy() if isinstance(index, tg.Tensor) else index] = v.numpy()
    np.testing.assert_array_equal(out.numpy(), expected)
    assert out.requires_grad and out.grad_fn is not None


def test_outputs_written_slice_by_slice_get_the_gradient_of_a_stack():
    # The seq2seq pattern: encoder outputs assigned into a preallocated tensor.
    encoder = leaf(np.random.default_rng(0).standard_normal((5, 3)))
    weights = np.random.default_rng(1).standard_normal((5, 3))
    outputs = tg.zeros(5, 3, dtype=tg.float64)
    for i in range(5):
        outputs[i] = (encoder[i] * 2).tanh()
    (outputs * tg.tensor(weights)).sum().backward()
    expected = weights * 2 * (1 - np.tanh(2 * encoder.numpy()) ** 2)
    np.testing.assert_allclose(encoder.grad.numpy(), expected, rtol=1e-12)


@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3),
    data=st.data(),
    accumulate=st.booleans(),
)
def test_index_put_gradients_with_repeated_indices_when_accumulating(shape, data, accumulate):
    n = shape[0]
    picks = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4, unique=not accumulate))
    x = leaf(data.draw(hnp.arrays(np.float64, shape, elements=FLOATS)))
    v = leaf(data.draw(hnp.arrays(np.float64, (len(picks), *shape[1:]), elements=FLOATS)))

    def write(x, v):
        y = x * 1
        return y.index_put_((tg.tensor(picks),), v, accumulate=accumulate)

    tg.gradcheck(write, [x, v])
    expected = x.numpy().copy()
    if accumulate:
        np.add.at(expected, np.array(picks), v.numpy())
    else:
        expected[np.array(picks)] = v.numpy()
    np.testing.assert_allclose(write(x, v).numpy(), expected)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), data=st.data())
def test_masked_fill_copy_fill_and_zero_gradients(shape, data):
    x = leaf(data.draw(hnp.arrays(np.float64, shape, elements=FLOATS)))
    s = leaf(data.draw(FLOATS))
    mask = tg.tensor(data.draw(hnp.arrays(np.bool_, shape[-1:])))
    src_shape = data.draw(st.sampled_from([shape, shape[1:], (1,) * len(shape)]))
    src = leaf(data.draw(hnp.arrays(np.float64, src_shape, elements=FLOATS)))
    tg.gradcheck(lambda x, s: (x * 1).masked_fill_(mask, s * 3), [x, s])
    tg.gradcheck(lambda x, src: (x * 1).copy_(src * 2) * x, [x, src])
    tg.gradcheck(lambda x, s: (x * 1).fill_(s) + x, [x, s])
    tg.gradcheck(lambda x: (x * 1).zero_() + x * x, [x])
    filled = (x * 1).masked_fill_(mask, 7.0)
    np.testing.assert_array_equal(filled.numpy(), np.where(mask.numpy(), 7.0, x.numpy()))


IN_PLACE = {
    "add_": (lambda y, o: y.add_(o), FLOATS),
    "add_ alpha": (lambda y, o: y.add_(o, alpha=-0.5), FLOATS),
    "add_ legacy": (lambda y, o: y.add_(0.5, o), FLOATS),
    "sub_": (lambda y, o: y.sub_(o), FLOATS),
    "mul_": (lambda y, o: y.mul_(o), FLOATS),
    "div_": (lambda y, o: y.div_(o), st.floats(0.5, 2.0)),
    "pow_": (lambda y, o: (y * y).add_(0.5).pow_(o), FLOATS),
    "addcmul_": (lambda y, o: y.addcmul_(o, o, value=0.5), FLOATS),
    "lerp_": (lambda y, o: y.lerp_(o, 0.3), FLOATS),
}


@pytest.mark.parametrize("name", sorted(IN_PLACE))
@given(shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3), data=st.data())
def test_binary_in_place_ops_have_the_gradients_of_their_out_of_place_forms(name, shape, data):
    fn, elements = IN_PLACE[name]
    x = leaf(data.draw(hnp.arrays(np.float64, shape, elements=FLOATS)))
    other_shape = data.draw(st.sampled_from([shape, shape[1:]]))
    o = leaf(data.draw(hnp.arrays(np.float64, other_shape, elements=elements)))

    def run(x, o):
        y = x * 1.0
        result = fn(y, o)
        return y * 1.0 if result is y else result

    tg.gradcheck(run, [x, o])


UNARY = ["exp_", "tanh_", "sigmoid_", "neg_", "sin_", "cos_", "relu_", "clamp_"]


@pytest.mark.parametrize("name", UNARY)
@given(data=st.data())
def test_unary_in_place_ops_have_the_gradients_of_their_out_of_place_forms(name, data):
    elements = st.floats(0.1, 2.0) | st.floats(-2.0, -0.1)
    x = leaf(data.draw(hnp.arrays(np.float64, (2, 3), elements=elements)))

    def run(x):
        y = x * 1.0
        out = y.clamp_(-0.05, 0.05) if name == "clamp_" else getattr(y, name)()
        assert out is y
        return y * x

    tg.gradcheck(run, [x])


def test_an_operand_aliasing_the_written_tensor_reads_its_old_values():
    x = leaf([1.0, 2.0, 3.0])
    y = x * 1
    y.mul_(y)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])


VIEW_WRITES = {
    "row slice": lambda y, v: y[1].__setitem__(slice(0, 2), v[:2]),
    "reshape": lambda y, v: y.view(-1).__setitem__(tg.tensor([0, 5, 7]), v[:3]),
    "transpose": lambda y, v: y.t().__setitem__(0, v[:3]),
    "zero_ on a row": lambda y, v: y[0].zero_(),
    "mul_ on a column": lambda y, v: y[:, 1].mul_(v[:3]),
    "copy_ into a split piece": lambda y, v: y.split(2, dim=1)[1].copy_(v[:2]),
    "unbind piece add_": lambda y, v: y.unbind(0)[2].add_(v),
    "view of a view": lambda y, v: y[1:][0].__setitem__(slice(1, 3), v[1:3]),
}


@pytest.mark.parametrize("name", sorted(VIEW_WRITES))
@given(data=st.data())
def test_writes_through_a_view_reach_the_base_with_correct_gradients(name, data):
    x = leaf(data.draw(hnp.arrays(np.float64, (3, 4), elements=FLOATS)))
    v = leaf(data.draw(hnp.arrays(np.float64, (4,), elements=FLOATS)))

    def run(x, v):
        y = x * 1.5
        VIEW_WRITES[name](y, v)
        return y.tanh()

    tg.gradcheck(run, [x, v])


def test_a_view_used_after_the_base_was_written_sees_the_write():
    x, v = leaf([[1.0, 2.0], [3.0, 4.0]]), leaf([5.0, 6.0])
    y = x * 1
    row = y[0]
    before = (row + 3).sum()  # used before the write: its gradient goes to x
    y[0] = v
    after = (row * 2).sum()  # used after: the values and the gradient are v's
    assert after.item() == 22.0
    (before + after).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(v.grad.numpy(), [2.0, 2.0])


def test_a_view_taken_before_the_base_required_grad_is_rederived_after_a_write():
    h = leaf([1.0, 2.0])
    outputs = tg.zeros(2, 2, dtype=tg.float64)
    row = outputs[1]
    outputs[1] = h
    assert row.requires_grad
    row.fill_(5.0)  # overwrites h's values in outputs: h must get no gradient from outputs
    outputs.sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(outputs.numpy(), [[0.0, 0.0], [5.0, 5.0]])


def test_writing_over_values_a_node_saved_raises_at_backward():
    x = leaf([0.5, 1.0])
    y = x.tanh()  # Tanh saved its output
    y[0] = 2.0
    with pytest.raises(RuntimeError, match=r"Tanh saved .* modified in place"):
        y.sum().backward()
    z = x * 1
    w = z * z  # Mul saved z
    z.add_(1.0)
    with pytest.raises(RuntimeError, match=r"Mul saved .* modified in place"):
        w.sum().backward()


def test_a_write_bumps_the_version_shared_by_the_views():
    y = leaf([1.0, 2.0, 3.0]) * 1
    view = y[1:]
    before = y.version
    view[0] = 7.0
    assert y.version == view.version == before + 1
    assert y.numpy()[1] == 7.0


def test_writes_into_a_leaf_that_requires_grad_raise_pytorchs_error():
    w = leaf([1.0, 2.0])
    message = "a leaf Variable that requires grad is being used in an in-place operation"
    for write in (
        lambda: w.__setitem__(0, 1.0),
        lambda: w.add_(1.0),
        lambda: w.copy_(tg.ones(2)),
        lambda: w.zero_(),
        lambda: w.masked_fill_(tg.tensor([True, False]), 0.0),
    ):
        with pytest.raises(RuntimeError, match=message):
            write()
    with pytest.raises(RuntimeError, match="a view of a leaf Variable"):
        w[0:1].fill_(3.0)
    with tg.no_grad():
        w[0] = 9.0
        w.mul_(2)
    np.testing.assert_array_equal(w.numpy(), [18.0, 4.0])
    assert w.is_leaf and w.grad_fn is None


def test_a_value_that_requires_grad_cannot_be_written_into_a_detached_alias():
    y = leaf([1.0, 2.0]) * 1
    with pytest.raises(RuntimeError, match="detached alias"):
        y.detach()[0] = leaf(3.0)
    alias = y.detach()
    alias[0] = 5.0  # a constant: a plain write, seen by y
    assert y.numpy()[0] == 5.0


def test_an_expanded_tensor_cannot_be_written():
    y = leaf([1.0]) * 1
    with pytest.raises(ValueError, match="single memory location"):
        y.expand(3)[0] = leaf(2.0)


def test_a_float32_value_written_into_a_float64_tensor_is_converted_with_its_gradient():
    v = tg.tensor([1.0, 2.0], dtype=tg.float32, requires_grad=True)
    out = tg.zeros(3, dtype=tg.float64)
    out[1:] = v
    assert out.dtype == tg.float64
    (out * 3).sum().backward()
    assert v.grad.dtype == tg.float32
    np.testing.assert_array_equal(v.grad.numpy(), [3.0, 3.0])


def test_a_value_that_requires_grad_cannot_go_into_an_integer_tensor():
    with pytest.raises(RuntimeError, match="int64"):
        tg.zeros(3, dtype=tg.int64)[0] = leaf(1.0)


def test_in_place_ops_cannot_broadcast_the_tensor_they_write():
    y = leaf([1.0, 2.0]) * 1
    with pytest.raises(ValueError, match=r"add_: .*\(2, 2\)"):
        y.add_(leaf([[1.0, 2.0], [3.0, 4.0]]))


def test_unrecorded_writes_keep_working_on_plain_tensors():
    x = tg.zeros(2, 3)
    x[0] = 1.0
    x[:, 2] += 5.0
    x.masked_fill_(x > 3, -1.0)
    assert not x.requires_grad and x.is_leaf
    np.testing.assert_array_equal(x.numpy(), [[1, 1, -1], [0, 0, -1]])


def test_the_register_of_live_views_drops_dead_ones():
    base = tg.zeros(10, 3) * 1
    kept = [base[i % 10] for i in range(100)]
    for i in range(5000):
        base[i % 10]  # a view dropped at once
    assert len(base._view.views) < 2 * len(kept) + 64
