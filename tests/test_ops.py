"""Every op of ``ops.py`` checked against central differences in float64, shapes and values from hypothesis.

Values are kept away from the points where an op has a kink (0 for abs/relu, the bounds of clamp,
ties for max/min) because a central difference straddling a kink is not a derivative.
"""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg

FLOATS = st.floats(-2.0, 2.0, allow_nan=False, allow_subnormal=False, width=64)
AWAY_FROM_ZERO = FLOATS.filter(lambda v: abs(v) > 0.05)
POSITIVE = st.floats(0.2, 3.0, allow_nan=False, allow_subnormal=False, width=64)
# With unique=True, entries at least 0.05 apart: no tie or near-tie for max/min to straddle.
SPREAD = st.integers(-40, 40).map(lambda i: i / 20)


def shapes(min_dims: int = 0, max_dims: int = 3, max_side: int = 3) -> st.SearchStrategy:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def values(shape, elements=FLOATS, unique: bool = False) -> st.SearchStrategy:
    """A float64 leaf tensor of ``shape`` with entries drawn from ``elements``."""
    arrays = hnp.arrays(np.float64, shape, elements=elements, unique=unique)
    return arrays.map(lambda a: tg.tensor(a, requires_grad=True))


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast: hypothesis' general pairs plus the patterns an RNN meets,
    ``(1, n)`` with ``(m, n)`` and ``(n,)`` with ``(m, k, n)``, in both orders."""
    m, n, k = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pair = draw(
        st.one_of(
            hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3).map(
                lambda b: b.input_shapes
            ),
            st.just(((1, n), (m, n))),
            st.just(((n,), (m, k, n))),
        )
    )
    return pair if draw(st.booleans()) else pair[::-1]


# ---- elementwise, two operands ------------------------------------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, FLOATS, FLOATS),
    "sub": (lambda a, b: a - b, FLOATS, FLOATS),
    "mul": (lambda a, b: a * b, FLOATS, FLOATS),
    "div": (lambda a, b: a / b, FLOATS, st.floats(0.5, 2.0) | st.floats(-2.0, -0.5)),
    "pow": (lambda a, b: a**b, POSITIVE, FLOATS),
    "maximum": (tg.maximum, FLOATS, FLOATS),
    "minimum": (tg.minimum, FLOATS, FLOATS),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_op_gradients_with_broadcasting(name, data):
    fn, left, right = BINARY[name]
    shape_a, shape_b = data.draw(broadcast_pair())
    a, b = data.draw(values(shape_a, left)), data.draw(values(shape_b, right))
    if name in ("maximum", "minimum"):
        assume(np.abs(a.numpy()[...] - b.numpy()).min(initial=1.0) > 1e-3)
    out = fn(a, b)
    assert out.shape == np.broadcast_shapes(shape_a, shape_b)
    tg.gradcheck(fn, [a, b])


SCALAR_SIDES = {
    "x + s": lambda x: x + 1.5,
    "s + x": lambda x: 1.5 + x,
    "x - s": lambda x: x - 1.5,
    "s - x": lambda x: 1.5 - x,
    "x * s": lambda x: x * -2.5,
    "s * x": lambda x: -2.5 * x,
    "x / s": lambda x: x / 4.0,
    "s / x": lambda x: 3.0 / x,
    "x ** s": lambda x: x**3,
    "s ** x": lambda x: 2.0**x,
    "maximum(x, s)": lambda x: tg.maximum(x, 0.3),
    "minimum(x, s)": lambda x: tg.minimum(x, 0.3),
    "where(c, x, s)": lambda x: tg.where(x > 0, x, 2.0),
    "where(c, s, x)": lambda x: tg.where(x > 0, 2.0, x),
}


@pytest.mark.parametrize("name", sorted(SCALAR_SIDES))
@given(data=st.data())
def test_python_scalar_on_either_side(name, data):
    x = data.draw(values(data.draw(shapes()), AWAY_FROM_ZERO.filter(lambda v: abs(v - 0.3) > 0.05)))
    tg.gradcheck(SCALAR_SIDES[name], [x])


@pytest.mark.parametrize("name", sorted(SCALAR_SIDES))
def test_python_scalars_keep_float32(name):
    x = tg.tensor([0.5, -1.25, 2.0], requires_grad=True)
    out = SCALAR_SIDES[name](x)
    assert out.dtype == tg.float32
    out.sum().backward()
    assert x.grad.dtype == tg.float32


@pytest.mark.parametrize("exponent", [0, 1, 2, 3, -1, 0.5, -1.5, 2.5])
@given(data=st.data())
def test_tensor_to_a_constant_power(exponent, data):
    x = data.draw(values(data.draw(shapes()), POSITIVE))
    tg.gradcheck(lambda t: t**exponent, [x])


def test_power_zero_has_zero_gradient_even_at_zero():
    x = tg.tensor([0.0, 2.0], dtype=tg.float64, requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


@given(data=st.data())
def test_scalar_to_a_tensor_power_and_tensor_to_tensor_power(data):
    shape_a, shape_b = data.draw(broadcast_pair())
    a, b = data.draw(values(shape_a, POSITIVE)), data.draw(values(shape_b, FLOATS))
    tg.gradcheck(lambda e: 1.7**e, [b])
    tg.gradcheck(lambda base, e: base**e, [a, b])
    tg.gradcheck(lambda base, e: base.pow(e), [a, b])


def test_float_tensor_with_integer_tensor_stays_float32():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    for out in (x * tg.tensor([2, 3]), x + tg.tensor([2, 3]), x ** tg.tensor([2, 3])):
        assert out.dtype == tg.float32


def test_integer_true_division_gives_the_default_float_dtype():
    counts = tg.tensor([1, 2, 3])
    assert (counts / 2).dtype == tg.float32 and (counts / 2).tolist() == [0.5, 1.0, 1.5]
    assert (tg.tensor([True, False]).sum() / counts).dtype == tg.float32
    assert (tg.tensor([1.0], dtype=tg.float64) / counts).dtype == tg.float64


def test_where_gradient_goes_to_the_chosen_side():
    condition = tg.tensor([True, False, True])
    a = tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, requires_grad=True)
    b = tg.tensor([[4.0], [5.0]], dtype=tg.float64, requires_grad=True)
    tg.gradcheck(lambda x, y: tg.where(condition, x, y), [a, b])
    out = tg.where(condition, a, b)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 0.0, 2.0])
    np.testing.assert_array_equal(b.grad.numpy(), [[1.0], [1.0]])


def test_maximum_and_minimum_split_a_tie_evenly():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([1.0, 0.0], requires_grad=True)
    tg.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 0.0])
    a.grad = b.grad = None
    tg.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.5, 0.0])
    np.testing.assert_array_equal(b.grad.numpy(), [0.5, 1.0])


# ---- elementwise, one operand --------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, FLOATS),
    "exp": (tg.exp, FLOATS),
    "log": (tg.log, POSITIVE),
    "tanh": (tg.tanh, FLOATS),
    "sigmoid": (tg.sigmoid, FLOATS),
    "relu": (tg.relu, AWAY_FROM_ZERO),
    "sqrt": (tg.sqrt, POSITIVE),
    "abs": (tg.abs, AWAY_FROM_ZERO),
    "clamp": (
        lambda x: tg.clamp(x, -0.5, 1.0),
        FLOATS.filter(lambda v: min(abs(v + 0.5), abs(v - 1)) > 0.05),
    ),
    "clamp min": (lambda x: x.clamp(min=0.25), FLOATS.filter(lambda v: abs(v - 0.25) > 0.05)),
    "clamp max": (lambda x: x.clamp(max=0.25), FLOATS.filter(lambda v: abs(v - 0.25) > 0.05)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_op_gradients(name, data):
    fn, elements = UNARY[name]
    x = data.draw(values(data.draw(shapes()), elements))
    tg.gradcheck(fn, [x])


@pytest.mark.parametrize(
    "name, reference",
    [
        ("exp", np.exp),
        ("log", np.log),
        ("tanh", np.tanh),
        ("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
        ("relu", lambda v: np.maximum(v, 0)),
        ("sqrt", np.sqrt),
        ("abs", np.abs),
    ],
)
def test_unary_forward_matches_numpy_and_the_method_matches_the_function(name, reference):
    data = np.array([0.3, 1.7, 2.5, 0.01])
    x = tg.tensor(data)
    np.testing.assert_allclose(getattr(tg, name)(x).numpy(), reference(data), rtol=1e-6)
    np.testing.assert_array_equal(getattr(x, name)().numpy(), getattr(tg, name)(x).numpy())


def test_clamp_forward_and_its_gradient_inside_the_closed_interval():
    x = tg.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], requires_grad=True)
    out = x.clamp(-1.0, 1.0)
    np.testing.assert_array_equal(out.numpy(), [-1.0, -1.0, 0.0, 1.0, 1.0])
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])


def test_sigmoid_is_exact_and_finite_at_plus_minus_1e4():
    for dtype in (tg.float32, tg.float64):
        x = tg.tensor([1e4, -1e4, 0.0], dtype=dtype, requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = x.sigmoid()
            out.sum().backward()
        np.testing.assert_array_equal(out.numpy(), [1.0, 0.0, 0.5])
        np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.25])
        assert out.dtype == dtype


# ---- matrix product ------------------------------------------------------------------------------------


@st.composite
def matmul_shapes(draw):
    """Operand shapes for every case of ``matmul``: 1-D, 2-D, and batched with broadcast batch axes."""
    m, k, n = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch_a, batch_b = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3)
    ).input_shapes
    a = draw(st.sampled_from([(k,), (m, k), (*batch_a, m, k)]))
    b = draw(st.sampled_from([(k,), (k, n), (*batch_b, k, n)]))
    return a, b


@given(data=st.data())
def test_matmul_gradients_for_1d_2d_and_batched_broadcasting_operands(data):
    shape_a, shape_b = data.draw(matmul_shapes())
    a, b = data.draw(values(shape_a)), data.draw(values(shape_b))
    out = a @ b
    np.testing.assert_allclose(out.numpy(), np.matmul(a.numpy(), b.numpy()))
    tg.gradcheck(lambda x, y: x @ y, [a, b])
    tg.gradcheck(tg.matmul, [a, b])


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [
        ((3,), (3,)),
        ((3,), (3, 2)),
        ((2, 3), (3,)),
        ((3,), (2, 3, 4)),
        ((2, 4, 3), (3,)),
        ((2, 4, 3), (3, 2)),
        ((4, 3), (2, 3, 2)),
        ((2, 1, 2, 3), (3, 3, 4)),
    ],
)
def test_matmul_gradients_for_each_operand_rank(shape_a, shape_b):
    rng = np.random.default_rng(1)
    a = tg.tensor(rng.standard_normal(shape_a), requires_grad=True)
    b = tg.tensor(rng.standard_normal(shape_b), requires_grad=True)
    assert (a @ b).shape == np.matmul(a.numpy(), b.numpy()).shape
    tg.gradcheck(lambda x, y: x @ y, [a, b])


def test_matmul_of_two_vectors_is_a_scalar():
    a = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = tg.tensor([4.0, 5.0, 6.0], requires_grad=True)
    out = a @ b
    assert out.shape == ()
    out.backward()
    np.testing.assert_array_equal(a.grad.numpy(), [4.0, 5.0, 6.0])


def test_matmul_with_a_constant_operand_on_the_right_and_left():
    w = tg.tensor(np.ones((3, 2)), requires_grad=True)
    data = np.arange(6.0).reshape(2, 3)
    assert (data @ w).shape == (2, 2)
    (data @ w).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), data.sum(axis=0)[:, None] * np.ones((3, 2)))


@given(data=st.data())
def test_add_matmul_equals_matmul_plus_and_has_its_gradients(data):
    shape_a, shape_b = data.draw(matmul_shapes())
    out_shape = np.matmul(np.zeros(shape_a), np.zeros(shape_b)).shape
    shape_c = data.draw(st.sampled_from([out_shape, out_shape[-1:], ()]))
    a, b, c = data.draw(values(shape_a)), data.draw(values(shape_b)), data.draw(values(shape_c))
    out = tg.ops.AddMatMul.apply(a, b, c)
    np.testing.assert_allclose(out.numpy(), np.matmul(a.numpy(), b.numpy()) + c.numpy(), rtol=1e-12)
    tg.gradcheck(lambda x, y, z: tg.ops.AddMatMul.apply(x, y, z), [a, b, c])


@given(rows=st.integers(1, 3), inner=st.integers(1, 3), cols=st.integers(1, 3), data=st.data())
def test_tanh_add_matmul_equals_its_composition_and_has_its_gradients(rows, inner, cols, data):
    a, b = data.draw(values((rows, inner))), data.draw(values((inner, cols)))
    c = data.draw(values(data.draw(st.sampled_from([(rows, cols), (cols,)]))))
    out = tg.ops.TanhAddMatMul.apply(a, b, c)
    np.testing.assert_allclose(out.numpy(), np.tanh(a.numpy() @ b.numpy() + c.numpy()), rtol=1e-12)
    tg.gradcheck(lambda x, y, z: tg.ops.TanhAddMatMul.apply(x, y, z), [a, b, c])


def test_tanh_add_matmul_refuses_non_matrices():
    with pytest.raises(ValueError, match=r"TanhAddMatMul: a and b must be matrices"):
        tg.ops.TanhAddMatMul.apply(tg.ones(3), tg.ones(3, 2), tg.ones(2))


# ---- reductions ------------------------------------------------------------------------------------


@st.composite
def reduction_case(draw, unique: bool = False):
    """A tensor, a ``dim`` (None, an int or a tuple, negative or not) and ``keepdim``."""
    shape = draw(shapes(min_dims=1))
    x = draw(values(shape, SPREAD if unique else FLOATS, unique=unique))
    ndim = len(shape)
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    signed = [a - ndim if draw(st.booleans()) else a for a in axes]
    dim = draw(st.sampled_from([None, signed[0], tuple(signed)]))
    return x, dim, draw(st.booleans())


def _numpy_axis(dim):
    return dim if dim is None or isinstance(dim, int) else tuple(dim)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("sum", np.sum),
        ("mean", np.mean),
        ("amax", np.max),
        ("amin", np.min),
        ("logsumexp", lambda a, axis, keepdims: np.log(np.exp(a).sum(axis=axis, keepdims=keepdims))),
    ],
)
@given(data=st.data())
def test_reduction_values_and_gradients_over_int_and_tuple_dims(name, reference, data):
    x, dim, keepdim = data.draw(reduction_case(unique=name in ("amax", "amin")))
    if name == "logsumexp" and dim is None:
        dim = tuple(range(x.ndim))  # torch.logsumexp needs dim
    fn = lambda t: getattr(t, name)(dim, keepdim=keepdim)  # noqa: E731
    expected = reference(x.numpy(), axis=_numpy_axis(dim), keepdims=keepdim)
    np.testing.assert_allclose(fn(x).numpy(), expected, rtol=1e-12, atol=1e-12)
    tg.gradcheck(fn, [x])


@given(data=st.data())
def test_max_and_min_along_a_dim_return_values_and_indices(data):
    x, dim, keepdim = data.draw(reduction_case(unique=True))
    axis = dim if isinstance(dim, int) else -1
    for name, pick, arg in (("max", np.max, np.argmax), ("min", np.min, np.argmin)):
        values_, indices = getattr(x, name)(axis, keepdim=keepdim)
        expected_indices = arg(x.numpy(), axis=axis)
        if keepdim:
            expected_indices = np.expand_dims(expected_indices, axis)
        np.testing.assert_array_equal(values_.numpy(), pick(x.numpy(), axis=axis, keepdims=keepdim))
        np.testing.assert_array_equal(indices.numpy(), expected_indices)
        assert indices.dtype == tg.int64
        tg.gradcheck(lambda t, name=name: getattr(t, name)(axis, keepdim=keepdim).values, [x])


def test_max_without_dim_is_the_value_and_shares_the_gradient_of_a_tie():
    x = tg.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True)
    out = x.max()
    assert out.shape == () and out.item() == 3.0
    out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.5], [0.5, 0.0]])
    assert x.min().item() == 1.0


def test_max_along_a_dim_sends_the_gradient_to_the_returned_index_only():
    x = tg.tensor([[2.0, 2.0, 1.0]], requires_grad=True)
    values_, indices = x.max(1)
    values_.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, indices.numpy()], [1.0])
    assert x.grad.numpy().sum() == 1.0


def test_max_with_a_tensor_argument_is_the_elementwise_maximum():
    a, b = tg.tensor([1.0, 5.0]), tg.tensor([3.0, 2.0])
    np.testing.assert_array_equal(a.max(b).numpy(), [3.0, 5.0])
    np.testing.assert_array_equal(a.min(b).numpy(), [1.0, 2.0])


def test_reductions_of_a_0d_tensor_accept_dim_0_as_pytorch():
    x = tg.tensor(2.0, dtype=tg.float64, requires_grad=True)
    assert x.sum(0).item() == 2.0 and x.mean(-1).item() == 2.0
    values_, index = x.max(0)
    assert values_.item() == 2.0 and index.item() == 0
    assert x.argmax(0).item() == 0 and x.argmin(-1).item() == 0
    tg.gradcheck(lambda t: t.sum(0) + t.logsumexp(0), [x])


# ---- softmax, log_softmax, logsumexp -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_and_log_softmax_gradients(name, data):
    x = data.draw(values(data.draw(shapes(min_dims=1))))
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    tg.gradcheck(lambda t: getattr(tg, name)(t, dim), [x])
    tg.gradcheck(lambda t: getattr(t, name)(dim), [x])


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_softmax_family_is_exact_and_finite_for_logits_of_1e4(dtype):
    logits = tg.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = logits.softmax(1)
        log_probs = logits.log_softmax(1)
        lse = logits.logsumexp(1)
        (probs.sum() + log_probs[:, 0].sum() + lse.sum()).backward()
    third = 1.0 / 3.0
    np.testing.assert_allclose(probs.numpy(), [[1.0, 0.0, 0.0], [third, third, third]], rtol=1e-6)
    np.testing.assert_allclose(log_probs.numpy(), [[0.0, -2e4, -1e4], [-np.log(3)] * 3], rtol=1e-6)
    np.testing.assert_allclose(lse.numpy(), [1e4, -1e4 + np.log(3)], rtol=1e-6)
    assert probs.dtype == log_probs.dtype == lse.dtype == logits.grad.dtype == dtype
    assert np.isfinite(logits.grad.numpy()).all()


def test_softmax_rows_sum_to_one_and_log_softmax_is_its_log():
    x = tg.randn(4, 5, dtype=tg.float64)
    np.testing.assert_allclose(x.softmax(-1).sum(-1).numpy(), np.ones(4))
    np.testing.assert_allclose(x.log_softmax(-1).numpy(), np.log(x.softmax(-1).numpy()))


# ---- on every device (the cuda case runs where a GPU is) ----------------------------------------------


def test_every_elementwise_op_passes_gradcheck_on_each_device(device):
    # Entries in [0.35, 0.95]: positive for log/sqrt/pow, away from 0 and from the bounds of clamp.
    generator = np.random.default_rng(0)

    def leaf(*shape):
        return tg.tensor(generator.uniform(0.35, 0.95, shape), device=device, requires_grad=True)

    for name, (fn, _, _) in sorted(BINARY.items()):
        assert tg.gradcheck(fn, [leaf(2, 3), leaf(3)]), name
    for name, (fn, _) in sorted(UNARY.items()):
        assert tg.gradcheck(fn, [leaf(2, 3)]), name
    assert tg.gradcheck(lambda a, b: (a @ b).softmax(1).sum(0), [leaf(2, 3), leaf(3, 4)])
