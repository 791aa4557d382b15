"""``Tensor``: construction and dtype rules, properties, movement, indexing, split/chunk/unbind, and the
errors raised at the public call."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

FLOATS = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False, width=64)


def leaf(shape) -> st.SearchStrategy:
    """A float64 leaf tensor of ``shape`` requiring grad, with values from hypothesis."""
    return hnp.arrays(np.float64, shape, elements=FLOATS).map(lambda a: tg.tensor(a, requires_grad=True))


def any_shape(min_dims: int = 0, max_dims: int = 4) -> st.SearchStrategy:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=3)


# ---- construction and dtypes ---------------------------------------------------------------------------


def test_floating_ndarrays_keep_their_dtype_and_python_data_gets_the_default():
    assert tg.tensor(np.zeros(2, dtype=np.float64)).dtype == tg.float64
    assert tg.tensor(np.zeros(2, dtype=np.float16)).dtype == tg.float16
    assert tg.tensor(np.zeros(2, dtype=np.float32)).dtype == tg.float32
    assert tg.tensor(1.5).dtype == tg.float32
    assert tg.tensor([1.0, 2.0]).dtype == tg.float32
    assert tg.tensor([[1, 2]]).dtype == tg.int64
    assert tg.tensor([True]).dtype == tg.bool_
    assert tg.Tensor([1.0]).dtype == tg.float32


def test_set_default_dtype_changes_what_python_numbers_become():
    previous = tg.get_default_dtype()
    try:
        tg.set_default_dtype(tg.float64)
        assert tg.tensor([1.0]).dtype == tg.float64
        assert tg.zeros(2).dtype == tg.float64
        assert tg.tensor(np.zeros(2, dtype=np.float32)).dtype == tg.float32
    finally:
        tg.set_default_dtype(previous)
    assert tg.tensor([1.0]).dtype == tg.float32


def test_tensor_copies_its_data():
    data = np.zeros(3)
    t = tg.tensor(data)
    data[0] = 5.0
    assert t.numpy()[0] == 0.0


def test_integer_tensors_refuse_requires_grad_with_a_clear_error():
    with pytest.raises(ValueError, match=r"only floating-point tensors can require gradients.*int64"):
        tg.tensor([1, 2], requires_grad=True)
    with pytest.raises(ValueError, match="floating-point"):
        tg.tensor([1, 2]).requires_grad_()


def test_properties_of_the_contract():
    x = tg.tensor(np.ones((2, 3)), requires_grad=True)
    assert x.shape == (2, 3) and x.ndim == 2 and x.dtype == tg.float64
    assert x.device == "cpu" and x.is_leaf and x.requires_grad and x.grad is None
    y = x * 2
    assert not y.is_leaf and y.requires_grad
    assert x.numel() == 6 and x.size() == (2, 3) and x.size(-1) == 3 and len(x) == 2
    assert tg.tensor([[2.5]]).item() == 2.5
    assert isinstance(x.numpy(), np.ndarray)
    d = y.detach()
    assert d.is_leaf and not d.requires_grad and np.shares_memory(d.numpy(), y.numpy())


def test_item_of_a_tensor_with_several_elements_names_the_shape():
    with pytest.raises(ValueError, match=r"item\(\).*\(2,\)"):
        tg.tensor([1.0, 2.0]).item()


def test_type_conversions_keep_values():
    x = tg.tensor([1.5, -2.5], dtype=tg.float64, requires_grad=True)
    assert x.float().dtype == tg.float32 and x.double() is x
    assert x.long().dtype == tg.int64 and x.long().tolist() == [1, -2]
    y = x.float()
    y.sum().backward()
    assert x.grad.dtype == tg.float64


# ---- movement ----------------------------------------------------------------------------------------


@given(data=st.data())
def test_reshape_and_view_gradients(data):
    x = data.draw(leaf(any_shape()))
    total = x.numel()
    target = data.draw(st.sampled_from([(total,), (1, total), (total, 1), (-1,), (1, -1, 1)]))
    expected = np.reshape(x.numpy(), target).shape
    assert x.reshape(target).shape == expected == x.view(*target).shape
    tg.gradcheck(lambda t: t.reshape(*target) * 1.0, [x])
    tg.gradcheck(lambda t: tg.reshape(t, target).view(-1), [x])


@given(data=st.data())
def test_transpose_permute_and_T_gradients(data):
    x = data.draw(leaf(any_shape(min_dims=1)))
    n = x.ndim
    d0, d1 = data.draw(st.integers(-n, n - 1)), data.draw(st.integers(-n, n - 1))
    order = data.draw(st.permutations(range(n)))
    np.testing.assert_array_equal(x.transpose(d0, d1).numpy(), np.swapaxes(x.numpy(), d0, d1))
    np.testing.assert_array_equal(x.permute(*order).numpy(), np.transpose(x.numpy(), order))
    np.testing.assert_array_equal(x.T.numpy(), x.numpy().T)
    tg.gradcheck(lambda t: tg.transpose(t, d0, d1), [x])
    tg.gradcheck(lambda t: t.permute(order), [x])
    tg.gradcheck(lambda t: tg.permute(t, *order), [x])
    tg.gradcheck(lambda t: t.T, [x])


@given(data=st.data())
def test_unsqueeze_squeeze_and_flatten_gradients(data):
    x = data.draw(leaf(any_shape(max_dims=3)))
    n = x.ndim
    where = data.draw(st.integers(-n - 1, n))
    assert x.unsqueeze(where).shape == np.expand_dims(x.numpy(), where).shape
    tg.gradcheck(lambda t: tg.unsqueeze(t, where).squeeze(where), [x])
    tg.gradcheck(lambda t: t.unsqueeze(where).squeeze(), [x])
    assert x.squeeze().shape == np.squeeze(x.numpy()).shape
    if n:
        start = data.draw(st.integers(-n, n - 1))
        end = data.draw(st.integers(start % n, n - 1))
        shape = x.shape
        expected = (*shape[: start % n], int(np.prod(shape[start % n : end + 1])), *shape[end + 1 :])
        assert x.flatten(start, end).shape == expected
        tg.gradcheck(lambda t: t.flatten(start, end), [x])
    tg.gradcheck(tg.flatten, [x])


def test_squeeze_of_a_dim_that_is_not_one_leaves_the_shape():
    assert tg.ones(2, 1, 3).squeeze(0).shape == (2, 1, 3)
    assert tg.ones(2, 1, 3).squeeze(1).shape == (2, 3)
    assert tg.ones(1, 1).squeeze().shape == ()


@given(data=st.data())
def test_expand_gradient_sums_over_the_stretched_and_new_axes(data):
    shape = data.draw(any_shape(max_dims=3))
    stretched = tuple(data.draw(st.integers(1, 3)) if n == 1 else n for n in shape)
    target = (*data.draw(st.lists(st.integers(1, 3), max_size=2)), *stretched)
    x = data.draw(leaf(shape))
    assert x.expand(*target).shape == target
    tg.gradcheck(lambda t: t.expand(target), [x])
    x.grad = None
    x.expand(*target).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(shape, np.prod(target) / max(x.numel(), 1)))


def test_expand_keeps_a_dim_given_as_minus_one_and_expand_as():
    x = tg.ones(3, 1)
    assert x.expand(2, -1, 4).shape == (2, 3, 4)
    assert x.expand_as(tg.zeros(3, 5)).shape == (3, 5)


# ---- indexing ----------------------------------------------------------------------------------------


@st.composite
def basic_index(draw, shape):
    """An index of ints (possibly negative), slices with steps (possibly negative), None and Ellipsis:
    items for the leading dims (optionally followed by ``...``), or ``...`` then items for the
    trailing dims."""
    count = draw(st.integers(0, len(shape)))
    trailing = draw(st.booleans())
    items = []
    for n in shape[len(shape) - count :] if trailing else shape[:count]:
        kind = draw(st.sampled_from(["int", "slice", "none"]))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            start = draw(st.none() | st.integers(-n, n))
            stop = draw(st.none() | st.integers(-n, n))
            items.append(slice(start, stop, draw(st.sampled_from([None, 1, 2, -1, -2]))))
        else:
            items.extend([None, draw(st.integers(-n, n - 1))])  # None adds an axis, the int uses dim n
    if trailing:
        return (Ellipsis, *items)
    return (*items, Ellipsis) if draw(st.booleans()) else tuple(items)


@given(data=st.data())
def test_indexing_with_ints_slices_steps_none_and_ellipsis(data):
    x = data.draw(leaf(any_shape(min_dims=1)))
    index = data.draw(basic_index(x.shape))
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    tg.gradcheck(lambda t: t[index], [x])


@given(data=st.data())
def test_integer_array_and_tensor_indices_accumulate_repeated_rows(data):
    x = data.draw(leaf(any_shape(min_dims=1, max_dims=3)))
    n = x.shape[0]
    rows = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5))
    for index in (rows, tg.tensor(rows), np.array(rows), (tg.tensor(rows), Ellipsis)):
        np.testing.assert_array_equal(x[index].numpy(), x.numpy()[np.array(rows)])
        tg.gradcheck(lambda t, index=index: t[index], [x])
    x.grad = None
    x[rows].sum().backward()
    counts = np.bincount(np.array(rows) % n, minlength=n).reshape((n,) + (1,) * (x.ndim - 1))
    np.testing.assert_array_equal(x.grad.numpy(), np.broadcast_to(counts, x.shape))


def test_advanced_index_mixed_with_a_slice_and_two_arrays():
    x = tg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    tg.gradcheck(lambda t: t[[0, 2, 0], 1:], [x.double().detach().requires_grad_()])
    out = x[tg.tensor([0, 0]), tg.tensor([3, 3])]
    np.testing.assert_array_equal(out.numpy(), [3.0, 3.0])
    out.sum().backward()
    assert x.grad.numpy()[0, 3] == 2.0 and x.grad.numpy().sum() == 2.0


@given(data=st.data())
def test_boolean_mask_indexing(data):
    x = data.draw(leaf(any_shape(min_dims=1, max_dims=3)))
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    np.testing.assert_array_equal(x[tg.tensor(mask)].numpy(), x.numpy()[mask])
    tg.gradcheck(lambda t: t[tg.tensor(mask)], [x])
    assume(np.abs(x.numpy() - 0.5).min() > 1e-3)  # a value at the threshold would flip under perturbation
    tg.gradcheck(lambda t: t[t > 0.5], [x])
    row_mask = mask.reshape(x.shape[0], -1)[:, 0]
    tg.gradcheck(lambda t: t[row_mask], [x])


def test_index_out_of_range_names_the_dim_and_shape():
    with pytest.raises(IndexError, match=r"index 5 is out of range for dim 0 of size 2 \(shape \(2, 3\)\)"):
        tg.ones(2, 3)[5]
    with pytest.raises(IndexError, match="out of range for dim 1"):
        tg.ones(2, 3)[:, tg.tensor([0, 3])]
    with pytest.raises(IndexError, match="too many indices"):
        tg.ones(2)[0, 0]


# ---- split, chunk, unbind ------------------------------------------------------------------------------


@given(data=st.data())
def test_split_chunk_and_unbind_gradients(data):
    x = data.draw(leaf(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    length = x.shape[dim]
    size = data.draw(st.integers(1, length))
    pieces = x.split(size, dim)
    assert [p.shape[dim] for p in pieces] == [min(size, length - s) for s in range(0, length, size)]
    sections = data.draw(st.lists(st.integers(0, length), min_size=1, max_size=3))
    sections = [*sections[:-1], length - sum(sections[:-1])] if sum(sections[:-1]) <= length else [length]
    chunks = data.draw(st.integers(1, 4))
    expected_chunks = np.array_split(
        x.numpy(), range(-(-length // chunks), length, -(-length // chunks)), dim
    )
    assert [c.shape for c in x.chunk(chunks, dim)] == [c.shape for c in expected_chunks]

    def weighted(parts):
        return tg.cat([p * (i + 1.0) for i, p in enumerate(parts)], dim)

    tg.gradcheck(lambda t: weighted(t.split(size, dim)), [x])
    tg.gradcheck(lambda t: weighted(tg.split(t, sections, dim)), [x])
    tg.gradcheck(lambda t: weighted(tg.chunk(t, chunks, dim)), [x])
    tg.gradcheck(lambda t: tg.stack([p * (i + 1.0) for i, p in enumerate(tg.unbind(t, dim))], dim), [x])


def test_unused_pieces_of_a_split_get_a_zero_gradient():
    x = tg.tensor(np.arange(6.0), requires_grad=True)
    first, _, third = x.split(2)
    (first.sum() + 2 * third.sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 0, 0, 2, 2])
    y = tg.tensor(np.ones((3, 2)), requires_grad=True)
    y.unbind(1)[1].sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [[0, 1]] * 3)


def test_split_sections_that_do_not_add_up_are_refused():
    with pytest.raises(ValueError, match=r"split: sections \[2, 2\] do not add up to the size 5"):
        tg.ones(5).split([2, 2])
    with pytest.raises(ValueError, match="chunk: chunks must be positive"):
        tg.ones(5).chunk(0)


# ---- errors at the public call ---------------------------------------------------------------------


def test_shapes_that_do_not_broadcast_name_the_op_and_the_shapes():
    a, b = tg.ones(2, 3), tg.ones(4)
    for op, name in (
        (lambda: a + b, "Add"),
        (lambda: a * b, "Mul"),
        (lambda: a - b, "Sub"),
        (lambda: a / b, "Div"),
    ):
        with pytest.raises(ValueError, match=rf"{name}: .*broadcast.*\(2, 3\), \(4,\)"):
            op()
    with pytest.raises(ValueError, match=r"Maximum: .*\(2, 3\), \(4,\)"):
        tg.maximum(a, b)
    with pytest.raises(ValueError, match=r"Where: .*\(2, 3\), \(4,\)"):
        tg.where(a > 0, a, b)


def test_matmul_inner_size_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"matmul: inner sizes differ: shapes \(2, 3\) and \(4, 5\)"):
        tg.ones(2, 3) @ tg.ones(4, 5)
    with pytest.raises(ValueError, match=r"matmul: inner sizes differ: shapes \(3,\) and \(2,\)"):
        tg.matmul(tg.ones(3), tg.ones(2))
    with pytest.raises(
        ValueError, match=r"matmul: batch dims \(2,\) and \(5,\) do not broadcast .*\(2, 2, 3\)"
    ):
        tg.ones(2, 2, 3) @ tg.ones(5, 3, 5)
    assert (tg.ones(2, 1, 2, 3) @ tg.ones(4, 3, 5)).shape == (2, 4, 2, 5)
    with pytest.raises(ValueError, match="at least 1 dim"):
        tg.ones(()) @ tg.ones(3)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x: x.sum(2), "sum"),
        (lambda x: x.mean((0, -3)), "mean"),
        (lambda x: x.max(2), "max"),
        (lambda x: x.logsumexp(-3), "logsumexp"),
        (lambda x: x.softmax(2), "softmax"),
        (lambda x: x.log_softmax(-3), "log_softmax"),
        (lambda x: x.transpose(0, 2), "transpose"),
        (lambda x: x.unsqueeze(3), "unsqueeze"),
        (lambda x: x.squeeze(2), "squeeze"),
        (lambda x: x.split(1, 2), "split"),
        (lambda x: x.unbind(-3), "unbind"),
        (lambda x: tg.cat([x, x], 2), "cat"),
        (lambda x: tg.stack([x, x], 3), "stack"),
        (lambda x: x.flatten(0, 2), "flatten"),
    ],
)
def test_dim_out_of_range_raises_index_error_naming_the_op_and_shape(call, name):
    with pytest.raises(IndexError, match=rf"{name}: dim -?\d is out of range .*\(2, 3\)"):
        call(tg.ones(2, 3))


def test_backward_errors_name_the_shape_and_the_cause():
    x = tg.ones(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"backward\(\) without a gradient.*shape \(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(
        RuntimeError, match=r"backward\(\) called on a tensor of shape \(\) that does not require"
    ):
        tg.ones(2, 3).sum().backward()
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\) but the tensor has shape \(2, 3\)"):
        (x * 2).backward(tg.ones(3))


def test_movement_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\)"):
        tg.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(2, 3\) to \(4, 3\)"):
        tg.ones(2, 3).expand(4, 3)
    with pytest.raises(ValueError, match="permute: dims"):
        tg.ones(2, 3).permute(0, 0)


# ---- views share the in-place version counter ---------------------------------------------------------

VIEWS = {
    "slice": lambda t: t[0:1],
    "int index": lambda t: t[1],
    "reshape": lambda t: t.reshape(4),
    "view": lambda t: t.view(-1, 1),
    "transpose": lambda t: t.transpose(0, 1),
    "T": lambda t: t.T,
    "split": lambda t: t.split(1)[1],
    "unbind": lambda t: t.unbind(1)[0],
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_in_place_change_through_a_view_is_caught_in_backward(name):
    x = tg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    loss = (x * x).sum()  # Mul saved x
    view = VIEWS[name](x.detach())
    with tg.no_grad():
        view.mul_(10)
    with pytest.raises(RuntimeError, match="Mul saved for backward was modified in place"):
        loss.backward()


def test_an_expanded_view_refuses_in_place_writes():
    with pytest.raises(ValueError, match=r"zero_: .*read-only \(tensor shape \(3, 2\)\)"):
        tg.ones(1, 2).expand(3, 2).zero_()


def test_in_place_change_of_the_base_is_caught_by_a_node_that_saved_a_view():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 1.0
    loss = (h[1:] * h[1:]).sum()  # Mul saved views of h
    with tg.no_grad():
        h.detach().add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_advanced_indexing_makes_a_copy_with_its_own_counter():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    copy = x.detach()[[0, 1]]
    copy.mul_(10)
    loss.backward()
    assert x.grad.tolist() == [2.0, 4.0]
