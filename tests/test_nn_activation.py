"""Activation modules, their functional forms and LayerNorm: PyTorch's defaults, formulas written out in
NumPy here, finite differences in float64, and no overflow at extreme inputs."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn
from tinygrad_rnn.loss_ops import erf

ERF = np.vectorize(math.erf)


def f64(array, requires_grad=True):
    return tg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


values = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4),
    elements=st.floats(-4, 4).filter(lambda v: abs(v) > 1e-3),  # away from the kinks at 0
)


def test_erf_matches_math_erf_to_a_few_ulps_over_the_whole_range():
    z = np.linspace(-9, 9, 4001)
    np.testing.assert_allclose(erf(z), ERF(z), rtol=4e-15, atol=4e-16)
    assert erf(z.astype(np.float32)).dtype == np.float32


@given(x=values)
def test_gelu_both_forms_match_their_formulas_and_finite_differences(x):
    exact = 0.5 * x * (1 + ERF(x / math.sqrt(2)))
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(nn.GELU()(f64(x)).numpy(), exact, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(nn.GELU("tanh")(f64(x)).numpy(), tanh_form, rtol=1e-13, atol=1e-15)
    assert tg.gradcheck(F.gelu, [f64(x)])
    assert tg.gradcheck(lambda t: F.gelu(t, approximate="tanh"), [f64(x)])


@given(x=values, alpha=st.floats(0.1, 2.0), slope=st.floats(0.0, 0.5))
def test_elu_and_leaky_relu_match_their_formulas_and_finite_differences(x, alpha, slope):
    np.testing.assert_allclose(
        nn.ELU(alpha)(f64(x)).numpy(), np.where(x > 0, x, alpha * np.expm1(x)), rtol=1e-14
    )
    np.testing.assert_allclose(nn.LeakyReLU(slope)(f64(x)).numpy(), np.where(x > 0, x, slope * x))
    assert tg.gradcheck(lambda t: F.elu(t, alpha), [f64(x)])
    assert tg.gradcheck(lambda t: F.leaky_relu(t, slope), [f64(x)])


@given(x=values, beta=st.sampled_from([0.5, 1.0, 3.0]))
def test_softplus_matches_formula_below_the_threshold_and_is_x_above_it(x, beta):
    threshold = 4.0
    scaled = beta * x
    expected = np.where(
        scaled > threshold, x, (np.maximum(scaled, 0) + np.log1p(np.exp(-np.abs(scaled)))) / beta
    )
    np.testing.assert_allclose(nn.Softplus(beta, threshold)(f64(x)).numpy(), expected, rtol=1e-13)
    keep = np.abs(scaled - threshold) > 1e-4  # finite differences across the switch are meaningless
    assert tg.gradcheck(lambda t: F.softplus(t, beta, threshold), [f64(np.where(keep, x, 0.1))])


def test_activations_stay_finite_with_finite_gradients_at_extreme_inputs():
    for function in (F.gelu, lambda t: F.gelu(t, "tanh"), F.elu, F.leaky_relu, F.softplus):
        x = tg.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], requires_grad=True)
        out = function(x)
        out.sum().backward()
        assert np.all(np.isfinite(out.numpy())) and np.all(np.isfinite(x.grad.numpy()))
    np.testing.assert_array_equal(F.gelu(tg.tensor([-1e4, 1e4])).numpy(), [0.0, 1e4])
    np.testing.assert_array_equal(F.softplus(tg.tensor([1e4])).numpy(), [1e4])


def test_modules_have_pytorchs_defaults():
    assert nn.LeakyReLU().negative_slope == 0.01 and nn.ELU().alpha == 1.0
    assert (nn.Softplus().beta, nn.Softplus().threshold) == (1.0, 20.0)
    assert nn.GELU().approximate == "none"
    assert (nn.Flatten().start_dim, nn.Flatten().end_dim) == (1, -1)
    assert nn.Flatten()(tg.randn(2, 3, 4, 5)).shape == (2, 60)
    assert nn.Flatten(0, 1)(tg.randn(2, 3, 4)).shape == (6, 4)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_softmax_and_log_softmax_modules_use_their_dim():
    x = f64(np.random.default_rng(0).standard_normal((2, 3, 4)))
    np.testing.assert_allclose(nn.Softmax(dim=1)(x).numpy().sum(axis=1), np.ones((2, 4)))
    np.testing.assert_allclose(nn.LogSoftmax(dim=-1)(x).numpy(), np.log(nn.Softmax(dim=-1)(x).numpy()))
    assert tg.gradcheck(nn.LogSoftmax(dim=1), [x])


def test_inplace_writes_the_result_into_the_input_on_the_tape_and_refuses_a_leaf():
    x = tg.tensor([-1.0, 2.0])
    out = nn.LeakyReLU(0.5, inplace=True)(x)
    assert out is x
    np.testing.assert_array_equal(x.numpy(), [-0.5, 2.0])
    y = tg.tensor([-1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        F.elu(y, inplace=True)
    # On an interior tensor the write is recorded on the tape, so the gradient is the out-of-place one.
    z = y * 1.0
    F.leaky_relu(z, 0.5, inplace=True).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [0.5, 1.0])


# ---- LayerNorm -------------------------------------------------------------------------------------------


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    normalized=st.lists(st.integers(2, 3), min_size=1, max_size=2),
    seed=st.integers(0, 100),
)
def test_layer_norm_matches_formula_and_finite_differences(lead, normalized, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, *normalized)) * 3 + 1
    layer = nn.LayerNorm(normalized, eps=1e-5).double()
    layer.weight.data = f64(rng.standard_normal(normalized), False)
    layer.bias.data = f64(rng.standard_normal(normalized), False)
    axes = tuple(range(-len(normalized), 0))
    centered = x - x.mean(axis=axes, keepdims=True)
    expected = centered / np.sqrt((centered**2).mean(axis=axes, keepdims=True) + 1e-5)
    expected = expected * layer.weight.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(layer(f64(x)).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert tg.gradcheck(lambda x, w, b: layer(x), [f64(x), layer.weight, layer.bias])


def test_layer_norm_parameters_and_options_follow_pytorch():
    layer = nn.LayerNorm(4)
    assert list(layer.state_dict()) == ["weight", "bias"]
    np.testing.assert_array_equal(layer.weight.numpy(), np.ones(4))
    np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(4))
    assert list(nn.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm(4, elementwise_affine=False).state_dict()) == []
    assert nn.LayerNorm((2, 3)).weight.shape == (2, 3)
    with pytest.raises(ValueError, match=r"normalized_shape=\[4\].*\(2, 3\)"):
        layer(tg.randn(2, 3))
