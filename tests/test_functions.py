"""Module-level functions: factories, seeding, ``cat``/``stack``/``where``/``dropout`` and the functional
forms of Tensor methods (same results and gradients as the methods)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

FLOATS = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False, width=64)


def leaf(shape) -> st.SearchStrategy:
    return hnp.arrays(np.float64, shape, elements=FLOATS).map(lambda a: tg.tensor(a, requires_grad=True))


# ---- factories ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fill", [("zeros", 0.0), ("ones", 1.0)])
def test_zeros_and_ones_take_sizes_dtype_device_and_requires_grad(name, fill, device):
    factory = getattr(tg, name)
    a = factory(2, 3, device=device)
    b = factory((2, 3), dtype=tg.float64, device=device, requires_grad=True)
    assert a.shape == b.shape == (2, 3)
    assert a.dtype == tg.float32 and b.dtype == tg.float64
    assert a.device == device and b.requires_grad and b.is_leaf and not a.requires_grad
    np.testing.assert_array_equal(a.numpy(), np.full((2, 3), fill))
    assert factory(4, dtype=tg.int64).dtype == tg.int64


def test_full_uses_the_value_type_for_its_dtype():
    assert tg.full((2, 2), 1.5).dtype == tg.float32
    assert tg.full((2,), 7).dtype == tg.int64
    assert tg.full(3, 2.0, dtype=tg.float64).tolist() == [2.0, 2.0, 2.0]
    assert tg.full((2,), 0.5, requires_grad=True).requires_grad


def test_arange_is_int64_for_ints_and_the_default_float_otherwise():
    assert tg.arange(4).tolist() == [0, 1, 2, 3] and tg.arange(4).dtype == tg.int64
    assert tg.arange(1, 7, 2).tolist() == [1, 3, 5]
    x = tg.arange(0, 1, 0.25)
    assert x.dtype == tg.float32 and x.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert tg.arange(3, dtype=tg.float64).dtype == tg.float64


def test_like_factories_copy_shape_dtype_and_device():
    base = tg.tensor(np.ones((2, 5)), dtype=tg.float64)
    for made in (tg.zeros_like(base), tg.ones_like(base), tg.randn_like(base), tg.rand_like(base)):
        assert made.shape == (2, 5) and made.dtype == tg.float64 and made.device == base.device
    assert tg.zeros_like(base, dtype=tg.float32).dtype == tg.float32
    assert tg.ones_like(base, requires_grad=True).requires_grad
    assert tg.full_like(base, 3.0).numpy().max() == 3.0
    for like in (tg.full_like(base, 1.0, requires_grad=True), tg.randn_like(base, requires_grad=True)):
        assert like.requires_grad and like.dtype == tg.float64
    assert tg.rand_like(base, requires_grad=True).requires_grad


def test_factories_refuse_requires_grad_for_integer_dtypes_and_bad_sizes():
    with pytest.raises(ValueError, match="floating-point"):
        tg.zeros(2, dtype=tg.int64, requires_grad=True)
    with pytest.raises(ValueError, match="floating-point"):
        tg.arange(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"sizes must be non-negative ints, got \(2, -1\)"):
        tg.ones(2, -1)


def test_random_factories_are_reproducible_after_manual_seed():
    tg.manual_seed(123)
    first = [tg.randn(3, 4).numpy(), tg.rand(5).numpy(), tg.randint(0, 10, (6,)).numpy()]
    tg.manual_seed(123)
    second = [tg.randn(3, 4).numpy(), tg.rand(5).numpy(), tg.randint(0, 10, (6,)).numpy()]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    tg.manual_seed(124)
    assert not np.array_equal(tg.randn(3, 4).numpy(), first[0])


def test_random_factories_have_the_right_dtype_range_and_moments():
    tg.manual_seed(0)
    normal = tg.randn(20_000, dtype=tg.float64).numpy()
    uniform = tg.rand(20_000).numpy()
    assert tg.randn(2).dtype == tg.float32 and tg.rand(2, dtype=tg.float64).dtype == tg.float64
    assert abs(normal.mean()) < 0.03 and abs(normal.std() - 1) < 0.03
    assert uniform.min() >= 0.0 and uniform.max() < 1.0 and abs(uniform.mean() - 0.5) < 0.01
    ints = tg.randint(3, 7, (1000,)).numpy()
    assert ints.min() == 3 and ints.max() == 6 and tg.randint(5, size=(2,)).dtype == tg.int64


# ---- cat and stack -----------------------------------------------------------------------------------


@given(data=st.data())
def test_cat_gradients_along_any_dim(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    parts = [
        data.draw(leaf(tuple(n if i != dim % len(shape) else size for i, n in enumerate(shape))))
        for size in sizes
    ]
    out = tg.cat(parts, dim)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([p.numpy() for p in parts], dim))
    tg.gradcheck(lambda *ts: tg.cat(ts, dim=dim), parts)


@given(data=st.data())
def test_stack_gradients_along_any_new_dim(data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3))
    count = data.draw(st.integers(1, 3))
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    parts = [data.draw(leaf(shape)) for _ in range(count)]
    out = tg.stack(parts, dim)
    np.testing.assert_array_equal(out.numpy(), np.stack([p.numpy() for p in parts], dim))
    tg.gradcheck(lambda *ts: tg.stack(ts, dim=dim), parts)


def test_concat_and_concatenate_are_cat():
    parts = [tg.ones(2, 1), tg.zeros(2, 2)]
    for join in (tg.concat, tg.concatenate):
        np.testing.assert_array_equal(join(parts, dim=1).numpy(), tg.cat(parts, 1).numpy())


def test_cat_of_tensors_some_without_grad_sends_gradient_only_where_needed():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([3.0])
    out = tg.cat([a, b])
    (out * tg.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 2.0])
    assert b.grad is None


def test_cat_and_stack_errors_name_the_shapes():
    with pytest.raises(
        ValueError, match=r"cat: sizes must match except in dim 0, got shapes \[\(2, 3\), \(2, 4\)\]"
    ):
        tg.cat([tg.ones(2, 3), tg.ones(2, 4)])
    with pytest.raises(ValueError, match=r"stack: all tensors must have the same shape.*\(2,\), \(3,\)"):
        tg.stack([tg.ones(2), tg.ones(3)])
    with pytest.raises(ValueError, match="cat: expected a non-empty sequence"):
        tg.cat([])
    with pytest.raises(TypeError, match="cat: element 1 is a list"):
        tg.cat([tg.ones(2), [1.0]])


# ---- where, dropout --------------------------------------------------------------------------------


@given(data=st.data())
def test_where_gradients_with_broadcast_condition_and_operands(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3)).input_shapes
    condition = data.draw(hnp.arrays(np.bool_, shapes[0]))
    a, b = data.draw(leaf(shapes[1])), data.draw(leaf(shapes[2]))
    np.testing.assert_array_equal(
        tg.where(tg.tensor(condition), a, b).numpy(), np.where(condition, a.numpy(), b.numpy())
    )
    tg.gradcheck(lambda x, y: tg.where(tg.tensor(condition), x, y), [a, b])
    tg.gradcheck(lambda x, y: x.where(tg.tensor(condition), y), [a, b])
    tg.gradcheck(lambda x: tg.where(condition, x, 0.5), [a])


def test_where_accepts_numbers_for_both_branches_and_a_nonboolean_condition():
    out = tg.where(tg.tensor([1, 0, 2]), 1.0, -1.0)
    assert out.tolist() == [1.0, -1.0, 1.0] and out.dtype == tg.float32


def test_masked_fill_gradient_is_zero_where_filled():
    x = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = tg.masked_fill(x, tg.tensor([True, False, True]), 0.0)
    assert out.tolist() == [0.0, 2.0, 0.0]
    out.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_gradient_is_the_mask_over_one_minus_p(p):
    x = tg.tensor(np.linspace(0.5, 1.5, 2000), requires_grad=True)
    out = tg.dropout(x, p)
    upstream = np.linspace(-1.0, 1.0, 2000)
    out.backward(tg.tensor(upstream))
    kept = out.numpy() != 0
    np.testing.assert_allclose(out.numpy(), np.where(kept, x.numpy() / (1 - p), 0.0))
    np.testing.assert_allclose(x.grad.numpy(), upstream * kept / (1 - p))
    assert abs(kept.mean() - (1 - p)) < 0.05


@given(data=st.data())
def test_dropout_passes_gradcheck_when_each_evaluation_draws_the_same_mask(data):
    x = data.draw(leaf(data.draw(hnp.array_shapes(max_dims=3, max_side=4))))
    p = data.draw(st.sampled_from([0.2, 0.5, 0.9]))

    def seeded_dropout(t):
        tg.manual_seed(99)  # the same mask at every perturbed evaluation
        return tg.dropout(t, p)

    tg.gradcheck(seeded_dropout, [x])


def test_dropout_is_reproducible_after_manual_seed_and_varies_without_it():
    x = tg.ones(500)
    tg.manual_seed(7)
    first = tg.dropout(x, 0.5).numpy()
    second = tg.dropout(x, 0.5).numpy()
    tg.manual_seed(7)
    again = tg.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)


def test_dropout_edge_probabilities_and_eval_mode():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    assert tg.dropout(x, 0.5, training=False) is x and tg.dropout(x, 0.0) is x
    dropped = tg.dropout(x, 1.0)
    assert dropped.tolist() == [0.0, 0.0]
    dropped.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"dropout: probability p must be in \[0, 1\], got 1.5"):
        tg.dropout(x, 1.5)


def test_dropout_keeps_float32():
    x = tg.ones(10, requires_grad=True)
    out = tg.dropout(x, 0.3)
    out.sum().backward()
    assert out.dtype == x.grad.dtype == tg.float32


# ---- functional forms --------------------------------------------------------------------------------

FUNCTIONAL = {
    "exp": (tg.exp, lambda t: t.exp()),
    "log": (tg.log, lambda t: t.log()),
    "tanh": (tg.tanh, lambda t: t.tanh()),
    "sigmoid": (tg.sigmoid, lambda t: t.sigmoid()),
    "relu": (tg.relu, lambda t: t.relu()),
    "sqrt": (tg.sqrt, lambda t: t.sqrt()),
    "abs": (tg.abs, lambda t: t.abs()),
    "neg": (tg.neg, lambda t: t.neg()),
    "clamp": (lambda t: tg.clamp(t, 0.7, 1.4), lambda t: t.clamp(0.7, 1.4)),
    "clip": (lambda t: tg.clip(t, max=1.4), lambda t: t.clip(max=1.4)),
    "sum": (lambda t: tg.sum(t, 0), lambda t: t.sum(0)),
    "mean": (lambda t: tg.mean(t, (0, 1), keepdim=True), lambda t: t.mean((0, 1), keepdim=True)),
    "max": (lambda t: tg.max(t, 1).values, lambda t: t.max(1).values),
    "min": (lambda t: tg.min(t), lambda t: t.min()),
    "amax": (lambda t: tg.amax(t, -1), lambda t: t.amax(-1)),
    "amin": (lambda t: tg.amin(t, 0), lambda t: t.amin(0)),
    "logsumexp": (lambda t: tg.logsumexp(t, 1), lambda t: t.logsumexp(1)),
    "softmax": (lambda t: tg.softmax(t, 0), lambda t: t.softmax(0)),
    "log_softmax": (lambda t: tg.log_softmax(t, 1), lambda t: t.log_softmax(1)),
    "t": (tg.t, lambda t: t.t()),
    "add": (lambda t: tg.add(t, t * 2, alpha=3), lambda t: t.add(t * 2, alpha=3)),
    "sub": (lambda t: tg.sub(1.0, t), lambda t: 1.0 - t),
    "Tensor.sub": (lambda t: t - 0.5 * t.exp(), lambda t: t.sub(t.exp(), alpha=0.5)),
    "mul": (lambda t: tg.mul(t, t), lambda t: t * t),
    "div": (lambda t: tg.div(t, 2.0), lambda t: t / 2.0),
    "pow": (lambda t: tg.pow(t, 2) + tg.pow(2.0, t), lambda t: t**2 + 2.0**t),
    "maximum": (lambda t: tg.maximum(t, t.T), lambda t: t.maximum(t.T)),
    "minimum": (lambda t: tg.minimum(t, t.T), lambda t: t.minimum(t.T)),
    "matmul": (lambda t: tg.matmul(t, t), lambda t: t @ t),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_form_matches_the_method_in_value_and_gradient(name):
    function, method = FUNCTIONAL[name]
    data = np.array([[0.5, 1.5, 0.9], [1.2, 0.8, 1.7], [0.6, 1.1, 1.3]])
    x = tg.tensor(data, requires_grad=True)
    np.testing.assert_array_equal(function(x).numpy(), method(x).numpy())
    tg.gradcheck(function, [x])


def test_argmax_argmin_and_numel_functions():
    x = tg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert tg.argmax(x).item() == 3 and tg.argmin(x).item() == 4
    assert tg.argmax(x, 1).tolist() == [1, 0] and tg.argmin(x, 0, keepdim=True).tolist() == [[0, 1, 0]]
    assert tg.numel(x) == 6 and tg.is_tensor(x) and not tg.is_tensor(x.numpy())


def test_gather_gradient_accumulates_repeated_indices():
    x = tg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    index = tg.tensor([[0, 0], [2, 1]])
    out = tg.gather(x, 1, index)
    assert out.tolist() == [[0.0, 0.0], [5.0, 4.0]]
    out.sum().backward()
    assert x.grad.tolist() == [[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    tg.gradcheck(lambda t: tg.gather(t, 1, index), [x.double().detach().requires_grad_()])
