"""The second round of everyday Tensor methods and functions: values against NumPy, gradients in float64
against central differences (hypothesis for shapes and values), clear errors for bad input."""

import os
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

FLOATS = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False, width=64)
# Away from the jumps of fmod/remainder and from 0 for rsqrt/reciprocal.
POSITIVE = st.floats(0.3, 3.0, width=64)


def shapes(min_dims=1, max_dims=3, max_side=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def leaf(data, shape, elements=FLOATS):
    return tg.tensor(data.draw(hnp.arrays(np.float64, shape, elements=elements)), requires_grad=True)


# ---- elementwise --------------------------------------------------------------------------------------


@given(shape=shapes(), data=st.data())
def test_log1p_rsqrt_reciprocal_square_match_numpy_and_gradcheck(shape, data):
    x = leaf(data, shape, POSITIVE)
    a = x.numpy()
    np.testing.assert_allclose(tg.log1p(x).numpy(), np.log1p(a), rtol=1e-14)
    np.testing.assert_allclose(x.rsqrt().numpy(), 1 / np.sqrt(a), rtol=1e-14)
    np.testing.assert_allclose(tg.reciprocal(x).numpy(), 1 / a, rtol=1e-14)
    np.testing.assert_allclose(tg.square(x).numpy(), a * a, rtol=1e-14)
    for fn in (tg.log1p, tg.rsqrt, tg.reciprocal, tg.square):
        tg.gradcheck(fn, [x])


def test_log1p_is_accurate_for_tiny_inputs_and_promotes_integers():
    assert tg.tensor([1e-12], dtype=tg.float64).log1p().item() == pytest.approx(1e-12, rel=1e-12)
    out = tg.tensor([0, 1]).log1p()
    assert out.dtype == tg.float32
    np.testing.assert_allclose(out.numpy(), [0, np.log(2)], rtol=1e-6)
    assert tg.tensor([4]).rsqrt().dtype == tg.float32


def test_ceil_and_trunc_match_numpy_with_zero_gradient():
    x = tg.tensor([-1.5, -0.2, 0.0, 0.7, 2.0], dtype=tg.float64, requires_grad=True)
    np.testing.assert_array_equal(tg.ceil(x).numpy(), np.ceil(x.numpy()))
    np.testing.assert_array_equal(tg.trunc(x).numpy(), np.trunc(x.numpy()))
    (tg.ceil(x) + tg.trunc(x)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(5))


@given(shape=shapes(), data=st.data(), floor=st.booleans())
def test_fmod_and_remainder_match_numpy_and_gradcheck(shape, data, floor):
    # Quotients kept away from integers so that finite differences do not cross a jump.
    q = data.draw(hnp.arrays(np.float64, shape, elements=st.integers(-4, 4).map(lambda k: k + 0.5)))
    b = data.draw(hnp.arrays(np.float64, shape, elements=POSITIVE | POSITIVE.map(lambda v: -v)))
    a = tg.tensor(q * b, requires_grad=True)
    d = tg.tensor(b, requires_grad=True)
    fn = tg.remainder if floor else tg.fmod
    expected = np.mod(q * b, b) if floor else np.fmod(q * b, b)
    np.testing.assert_allclose(fn(a, d).numpy(), expected, atol=1e-12)
    tg.gradcheck(fn, [a, d])
    by_number = tg.tensor(q * 1.25, requires_grad=True)
    tg.gradcheck(lambda a: fn(a, 1.25), [by_number])


def test_remainder_signs_follow_python_and_fmod_follow_c():
    a = tg.tensor([-3, -2, 5, 7])
    np.testing.assert_array_equal(a.remainder(3).numpy(), [0, 1, 2, 1])
    np.testing.assert_array_equal((a % 3).numpy(), [0, 1, 2, 1])
    np.testing.assert_array_equal(a.fmod(3).numpy(), [0, -2, 2, 1])
    assert a.remainder(3).dtype == tg.int64
    assert tg.tensor([5.5]).fmod(2).item() == pytest.approx(1.5)
    with pytest.raises(ZeroDivisionError, match="fmod"):
        a.fmod(0)
    with pytest.raises(TypeError, match="divisor"):
        a.remainder("3")


def test_predicates_and_logical_ops_match_numpy():
    a = np.array([1.0, np.nan, np.inf, -np.inf, 0.0])
    x = tg.tensor(a)
    np.testing.assert_array_equal(tg.isnan(x).numpy(), np.isnan(a))
    np.testing.assert_array_equal(tg.isinf(x).numpy(), np.isinf(a))
    np.testing.assert_array_equal(tg.isfinite(x).numpy(), np.isfinite(a))
    assert tg.isnan(x).dtype == tg.bool
    p, q = tg.tensor([0, 1, 2, 0]), tg.tensor([True, True, False, False])
    np.testing.assert_array_equal(tg.logical_and(p, q).numpy(), [False, True, False, False])
    np.testing.assert_array_equal(tg.logical_or(p, q).numpy(), [True, True, True, False])
    np.testing.assert_array_equal(tg.logical_xor(p, q).numpy(), [True, False, True, False])
    np.testing.assert_array_equal(tg.logical_not(p).numpy(), [True, False, False, True])
    with pytest.raises(TypeError, match="logical_and"):
        p.logical_and("x")


# ---- products -----------------------------------------------------------------------------------------


@given(shape=shapes(), data=st.data(), keepdim=st.booleans())
def test_prod_matches_numpy_and_gradcheck_including_zeros(shape, data, keepdim):
    elements = st.sampled_from([0.0, -1.5, -0.5, 0.5, 1.25, 2.0])
    x = leaf(data, shape, elements)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_allclose(tg.prod(x).numpy(), np.prod(x.numpy()))
    np.testing.assert_allclose(x.prod(dim, keepdim).numpy(), np.prod(x.numpy(), axis=dim, keepdims=keepdim))
    tg.gradcheck(lambda x: x.prod(), [x])
    tg.gradcheck(lambda x: x.prod(dim, keepdim), [x])


@given(shape=shapes(), data=st.data())
def test_cumprod_matches_numpy_and_gradcheck_including_zeros(shape, data):
    elements = st.sampled_from([0.0, -1.5, -0.5, 0.5, 1.25, 2.0])
    x = leaf(data, shape, elements)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_allclose(tg.cumprod(x, dim).numpy(), np.cumprod(x.numpy(), axis=dim))
    tg.gradcheck(lambda x: x.cumprod(dim), [x])


def test_prod_of_integers_is_int64_and_bad_dims_raise():
    assert tg.tensor([2, 3, 4], dtype=tg.int32).prod().item() == 24
    assert tg.tensor([2, 3, 4], dtype=tg.int32).prod().dtype == tg.int64
    with pytest.raises(IndexError, match="prod"):
        tg.ones(2, 3).prod(2)
    with pytest.raises(IndexError, match="cumprod"):
        tg.ones(2).cumprod(1)


def test_dot_outer_and_diag_values_and_gradients():
    a = tg.tensor([1.0, -2.0, 0.5], dtype=tg.float64, requires_grad=True)
    b = tg.tensor([0.3, 0.7, -1.1], dtype=tg.float64, requires_grad=True)
    assert tg.dot(a, b).item() == pytest.approx(float(np.dot(a.numpy(), b.numpy())))
    np.testing.assert_allclose(tg.outer(a, b).numpy(), np.outer(a.numpy(), b.numpy()))
    for k in (-1, 0, 2):
        np.testing.assert_array_equal(tg.diag(a, k).numpy(), np.diag(a.numpy(), k))
        tg.gradcheck(lambda a, k=k: tg.diag(a, k), [a])
    m = tg.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    for k in (-2, 0, 1):
        np.testing.assert_array_equal(m.diag(k).numpy(), np.diag(m.numpy(), k))
        tg.gradcheck(lambda m, k=k: m.diag(k), [m])
    tg.gradcheck(tg.dot, [a, b])
    tg.gradcheck(tg.outer, [a, b])
    with pytest.raises(ValueError, match="dot"):
        tg.dot(a, tg.ones(2, dtype=tg.float64))
    with pytest.raises(ValueError, match="outer"):
        tg.outer(m, a)
    with pytest.raises(ValueError, match="diag"):
        tg.ones(2, 2, 2).diag()


# ---- rearrangements and index queries -----------------------------------------------------------------


@given(shape=shapes(), data=st.data())
def test_repeat_interleave_matches_numpy_repeat_and_gradcheck(shape, data):
    x = leaf(data, shape)
    dim = data.draw(st.integers(0, len(shape) - 1))
    counts = data.draw(st.lists(st.integers(0, 3), min_size=shape[dim], max_size=shape[dim]))
    out = x.repeat_interleave(tg.tensor(counts), dim=dim)
    np.testing.assert_array_equal(out.numpy(), np.repeat(x.numpy(), counts, axis=dim))
    np.testing.assert_array_equal(tg.repeat_interleave(x, 2).numpy(), np.repeat(x.numpy(), 2))
    tg.gradcheck(lambda x: x.repeat_interleave(tg.tensor(counts), dim=dim), [x])
    tg.gradcheck(lambda x: x.repeat_interleave(2), [x])


def test_repeat_interleave_rejects_bad_counts():
    x = tg.ones(2, 3)
    with pytest.raises(ValueError, match="2 counts for a dim of size 3"):
        x.repeat_interleave(tg.tensor([1, 2]), dim=1)
    with pytest.raises(ValueError, match="non-negative"):
        x.repeat_interleave(-1)
    with pytest.raises(TypeError, match="repeats"):
        x.repeat_interleave(1.5)


def test_unflatten_and_mT():
    x = tg.tensor(np.arange(24.0).reshape(2, 12), dtype=tg.float64, requires_grad=True)
    assert x.unflatten(1, (3, 4)).shape == (2, 3, 4)
    assert tg.unflatten(x, -1, (2, -1, 3)).shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(x.unflatten(1, (3, 4)).numpy(), x.numpy().reshape(2, 3, 4))
    tg.gradcheck(lambda x: x.unflatten(1, (3, 4)) * 2, [x])
    with pytest.raises(ValueError, match="multiply to 10"):
        x.unflatten(1, (2, 5))
    y = tg.ones(5, 2, 3)
    assert y.mT.shape == (5, 3, 2)
    np.testing.assert_array_equal(x.mT.numpy(), x.numpy().T)
    with pytest.raises(ValueError, match="mT"):
        _ = tg.ones(3).mT


def test_index_fill_writes_value_and_routes_gradients():
    base = np.arange(12.0).reshape(3, 4)
    x = tg.tensor(base, requires_grad=True)
    v = tg.tensor(-1.0, dtype=tg.float64, requires_grad=True)
    out = x.index_fill(1, tg.tensor([0, 3]), v)
    expected = base.copy()
    expected[:, [0, 3]] = -1.0
    np.testing.assert_array_equal(out.numpy(), expected)
    tg.gradcheck(lambda x, v: tg.index_fill(x, 1, tg.tensor([0, -1]), v), [x, v])
    y = tg.zeros(2, 3)
    y.index_fill_(0, tg.tensor([1]), 5)
    np.testing.assert_array_equal(y.numpy(), [[0, 0, 0], [5, 5, 5]])
    with pytest.raises(IndexError, match="out of range"):
        y.index_fill_(1, tg.tensor([3]), 0)
    with pytest.raises(RuntimeError, match="leaf"):
        x.index_fill_(0, tg.tensor([0]), 1.0)


def test_nonzero_and_argwhere_match_numpy():
    a = np.array([[0, 1, 0], [2, 0, 3]])
    x = tg.tensor(a)
    np.testing.assert_array_equal(x.nonzero().numpy(), np.argwhere(a))
    assert x.nonzero().dtype == tg.int64
    rows, cols = tg.nonzero(x, as_tuple=True)
    np.testing.assert_array_equal(rows.numpy(), np.nonzero(a)[0])
    np.testing.assert_array_equal(x[rows, cols].numpy(), [1, 2, 3])
    np.testing.assert_array_equal(tg.argwhere(x).numpy(), np.argwhere(a))
    assert tg.tensor(0).nonzero().shape == (0, 0)


def test_unique_sorted_with_inverse_and_counts():
    a = np.array([[3, 1, 3], [2, 1, 7]])
    values, inverse, counts = tg.unique(tg.tensor(a), return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(values.numpy(), [1, 2, 3, 7])
    np.testing.assert_array_equal(values.numpy()[inverse.numpy()], a)
    np.testing.assert_array_equal(counts.numpy(), [2, 1, 2, 1])
    assert inverse.shape == (2, 3) and inverse.dtype == tg.int64
    rows = tg.tensor([[1, 2], [0, 5], [1, 2]]).unique(dim=0)
    np.testing.assert_array_equal(rows.numpy(), [[0, 5], [1, 2]])


# ---- random draws, dtypes and sizes -------------------------------------------------------------------


def test_bernoulli_draws_zeros_and_ones_at_the_given_rate():
    tg.manual_seed(0)
    probabilities = tg.full((20000,), 0.3)
    draws = tg.bernoulli(probabilities)
    assert set(np.unique(draws.numpy())) <= {0.0, 1.0} and draws.dtype == tg.float32
    assert abs(draws.numpy().mean() - 0.3) < 0.02
    assert tg.tensor([0.0, 1.0]).bernoulli().tolist() == [0.0, 1.0]
    filled = tg.zeros(20000).bernoulli_(0.8)
    assert abs(filled.numpy().mean() - 0.8) < 0.02
    g1, g2 = tg.Generator().manual_seed(3), tg.Generator().manual_seed(3)
    np.testing.assert_array_equal(
        probabilities.bernoulli(generator=g1).numpy(), probabilities.bernoulli(generator=g2).numpy()
    )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tg.tensor([1.5]).bernoulli()
    with pytest.raises(TypeError, match="floating"):
        tg.tensor([1]).bernoulli()


def test_half_byte_nelement_element_size():
    x = tg.tensor([[1.5, 2.0, 3.0]], dtype=tg.float64, requires_grad=True)
    h = x.half()
    assert h.dtype == tg.float16 and h.element_size() == 2
    h.float().sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((1, 3)))
    assert tg.tensor([1, 300]).byte().dtype == tg.uint8
    assert x.nelement() == 3 and x.element_size() == 8
    assert tg.is_floating_point(x) and not tg.is_floating_point(tg.tensor([1]))
    assert x.is_floating_point()


# ---- utilities ----------------------------------------------------------------------------------------


def test_clone_std_var_as_functions():
    x = tg.tensor([[1.0, 2.0, 4.0], [0.5, 0.0, 3.0]], dtype=tg.float64, requires_grad=True)
    c = tg.clone(x)
    assert c is not x and np.shares_memory(c.numpy(), x.numpy()) is False
    np.testing.assert_allclose(tg.std(x, 1).numpy(), np.std(x.numpy(), axis=1, ddof=1))
    np.testing.assert_allclose(tg.var(x).numpy(), np.var(x.numpy(), ddof=1))
    tg.gradcheck(lambda x: tg.std(x, 1), [x])


def test_as_tensor_shares_memory_when_it_can():
    a = np.arange(3.0)
    t = tg.as_tensor(a)
    a[0] = 7.0
    assert t[0].item() == 7.0 and not t.requires_grad
    converted = tg.as_tensor(a, dtype=tg.float32)
    assert converted.dtype == tg.float32
    x = tg.ones(2, requires_grad=True)
    assert tg.as_tensor(x) is x
    assert tg.as_tensor([1, 2]).dtype == tg.int64


def test_allclose_and_isclose():
    a = tg.tensor([1.0, 2.0, np.nan])
    b = tg.tensor([1.0 + 1e-7, 2.0, np.nan])
    assert not tg.allclose(a, b) and tg.allclose(a, b, equal_nan=True)
    np.testing.assert_array_equal(tg.isclose(a, b).numpy(), [True, True, False])
    with pytest.raises(ValueError, match="broadcast"):
        tg.allclose(tg.ones(2), tg.ones(3))
    with pytest.raises(TypeError, match="allclose"):
        tg.allclose(a, [1.0, 2.0, 3.0])


def test_inference_mode_records_nothing_and_restores():
    x = tg.ones(2, requires_grad=True)
    with tg.inference_mode():
        assert not (x * 2).requires_grad and tg.is_inference_mode_enabled()
    assert (x * 2).requires_grad
    with tg.inference_mode(False):
        assert (x * 2).requires_grad

    @tg.inference_mode()
    def called(t):
        return t * 2

    @tg.inference_mode
    def bare(t):
        return t * 2

    assert not called(x).requires_grad and not bare(x).requires_grad
    assert tg.is_grad_enabled()


def test_thread_settings_are_honest_about_doing_nothing(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert tg.get_num_threads() == 3
    with pytest.warns(UserWarning, match="no effect"):
        tg.set_num_threads(1)
    assert tg.get_num_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert tg.get_num_threads() == (os.cpu_count() or 1)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="positive int"):
        warnings.simplefilter("ignore")
        tg.set_num_threads(0)


def test_finfo_iinfo_and_size():
    assert tg.finfo(tg.float32).eps == np.finfo(np.float32).eps
    assert tg.finfo().tiny == np.finfo(np.float32).tiny
    assert tg.iinfo(tg.int64).max == 2**63 - 1
    with pytest.raises(TypeError, match="iinfo"):
        tg.finfo(tg.int64)
    with pytest.raises(TypeError, match="finfo"):
        tg.iinfo(tg.float32)
    size = tg.Size([2, 3])
    assert size == (2, 3) == tg.ones(2, 3).shape and size.numel() == 6 and isinstance(size, tuple)
    with pytest.raises(TypeError, match="Size"):
        tg.Size([2, -1])
