"""Loss modules and their functional forms: PyTorch's defaults and reductions, checked against NumPy
formulas written out here and against finite differences in float64."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn

REDUCTIONS = ["mean", "sum", "none"]


def f64(array, requires_grad=True):
    return tg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def reduce(values, reduction):
    return values.mean() if reduction == "mean" else values.sum() if reduction == "sum" else values


def log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


# ---- regression losses -----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_regression_losses_match_their_formulas_and_finite_differences(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(shape) * 2, rng.standard_normal(shape) * 2
    d = x - y
    expected = {
        "l1": np.abs(d),
        "smooth_l1": np.where(np.abs(d) < 0.5, 0.5 * d * d / 0.5, np.abs(d) - 0.25),
        "huber": np.where(np.abs(d) < 0.5, 0.5 * d * d, 0.5 * (np.abs(d) - 0.25)),
        "mse": d * d,
    }
    losses = {
        "l1": lambda a, b: F.l1_loss(a, b, reduction=reduction),
        "smooth_l1": lambda a, b: F.smooth_l1_loss(a, b, reduction=reduction, beta=0.5),
        "huber": lambda a, b: F.huber_loss(a, b, reduction=reduction, delta=0.5),
        "mse": lambda a, b: F.mse_loss(a, b, reduction=reduction),
    }
    for name, loss in losses.items():
        np.testing.assert_allclose(
            loss(f64(x), f64(y)).numpy(), reduce(expected[name], reduction), err_msg=name
        )
        assert tg.gradcheck(loss, [f64(x), f64(y)])


def test_regression_modules_have_pytorchs_defaults_and_call_the_functional_forms():
    x, y = f64([0.2, -3.0, 1.5]), f64([0.0, 0.0, 0.0])
    assert nn.SmoothL1Loss().beta == 1.0 and nn.HuberLoss().delta == 1.0
    for module, function in (
        (nn.MSELoss(), F.mse_loss),
        (nn.L1Loss(), F.l1_loss),
        (nn.SmoothL1Loss(), F.smooth_l1_loss),
        (nn.HuberLoss(), F.huber_loss),
    ):
        assert module.reduction == "mean"
        np.testing.assert_allclose(module(x, y).numpy(), function(x, y).numpy())
    assert nn.L1Loss(reduction="none")(x, y).shape == (3,)
    assert nn.MSELoss(size_average=False).reduction == "sum"  # the deprecated flags still work
    assert nn.L1Loss(reduce=False).reduction == "none"


def test_huber_is_delta_times_smooth_l1_and_beta_zero_is_l1():
    rng = np.random.default_rng(3)
    x, y = f64(rng.standard_normal(20) * 3), f64(rng.standard_normal(20))
    np.testing.assert_allclose(
        F.huber_loss(x, y, delta=2.0).numpy(), 2.0 * F.smooth_l1_loss(x, y, beta=2.0).numpy()
    )
    np.testing.assert_allclose(F.smooth_l1_loss(x, y, beta=0.0).numpy(), F.l1_loss(x, y).numpy())


def test_regression_losses_reject_bad_options_and_shapes():
    x = tg.randn(3)
    with pytest.raises(ValueError, match="beta must be non-negative"):
        F.smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="delta must be positive"):
        nn.HuberLoss(delta=0.0)(x, x)
    with pytest.raises(ValueError, match="do not broadcast"):
        nn.L1Loss()(x, tg.randn(4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.L1Loss(reduction="avg")


# ---- cross-entropy and NLL -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_class_probabilities_matches_formula_and_gradcheck(reduction, smoothing):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2))
    y = np.exp(rng.standard_normal((3, 4, 2)))
    y /= y.sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 2.0, 4)
    smoothed = (1 - smoothing) * y + smoothing / 4
    expected = -(log_softmax(x, 1) * smoothed * w[None, :, None]).sum(axis=1)
    loss = nn.CrossEntropyLoss(weight=f64(w, False), reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(loss(f64(x), f64(y, False)).numpy(), reduce(expected, reduction), rtol=1e-12)
    assert tg.gradcheck(loss, [f64(x), f64(y)])


def test_cross_entropy_with_one_hot_probabilities_equals_class_indices():
    rng = np.random.default_rng(1)
    x = f64(rng.standard_normal((5, 3)))
    index = np.array([0, 2, 1, 1, 0])
    one_hot = f64(np.eye(3)[index], False)
    for smoothing in (0.0, 0.1):
        np.testing.assert_allclose(
            F.cross_entropy(x, one_hot, label_smoothing=smoothing).numpy(),
            F.cross_entropy(x, tg.tensor(index), label_smoothing=smoothing).numpy(),
            rtol=1e-12,
        )


def test_cross_entropy_probability_target_of_the_wrong_shape_is_refused():
    with pytest.raises(TypeError, match=r"class indices.*or class probabilities"):
        F.cross_entropy(tg.randn(4, 3), tg.rand(4, 2))


def test_log_softmax_then_nll_loss_equals_cross_entropy_for_sequence_shaped_inputs():
    # (N, C, d1) as a seq2seq or word-LM loss over time: class dim 1, one target per (n, t).
    rng = np.random.default_rng(2)
    x = f64(rng.standard_normal((2, 5, 3)))
    t = tg.tensor(np.array([[0, 4, 4], [2, -100, 1]]))
    weight = f64(rng.uniform(0.5, 2, 5), False)
    for reduction in REDUCTIONS:
        via_nll = nn.NLLLoss(weight=weight, reduction=reduction)(nn.LogSoftmax(dim=1)(x), t)
        direct = nn.CrossEntropyLoss(weight=weight, reduction=reduction)(x, t)
        np.testing.assert_allclose(via_nll.numpy(), direct.numpy(), rtol=1e-12)
    loss = nn.NLLLoss(ignore_index=4)
    assert tg.gradcheck(lambda x: loss(x.log_softmax(1), tg.tensor(np.array([[0, 4, 4], [2, 3, 1]]))), [x])


def test_loss_module_weights_are_buffers_in_the_state_dict():
    loss = nn.CrossEntropyLoss(weight=tg.ones(3))
    assert list(loss.state_dict()) == ["weight"]
    assert nn.NLLLoss().state_dict() == {} and nn.NLLLoss().ignore_index == -100
    assert list(nn.BCEWithLogitsLoss(pos_weight=tg.ones(2)).state_dict()) == ["pos_weight"]
    with pytest.raises(TypeError, match="weight must be a Tensor"):
        nn.NLLLoss(weight=[1.0, 2.0])


# ---- binary cross-entropy --------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@given(shape=shapes, seed=st.integers(0, 1000))
def test_bce_matches_formula_and_finite_differences(reduction, shape, seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, shape)
    y = rng.uniform(0, 1, shape)
    w = rng.uniform(0.5, 2, shape[-1:])
    expected = -w * (y * np.log(p) + (1 - y) * np.log1p(-p))
    loss = nn.BCELoss(weight=f64(w, False), reduction=reduction)
    np.testing.assert_allclose(loss(f64(p), f64(y)).numpy(), reduce(expected, reduction), rtol=1e-12)
    assert tg.gradcheck(loss, [f64(p), f64(y)])


def test_bce_clamps_its_logs_at_minus_100_and_keeps_gradients_finite():
    p = f64([0.0, 1.0, 0.0, 1.0])
    y = f64([1.0, 0.0, 0.0, 1.0], False)
    loss = F.binary_cross_entropy(p, y, reduction="none")
    np.testing.assert_array_equal(loss.numpy(), [100.0, 100.0, 0.0, 0.0])
    loss.sum().backward()
    assert np.all(np.isfinite(p.grad.numpy()))
    np.testing.assert_allclose(p.grad.numpy()[:2], [-1e12, 1e12])  # (p - y) / max(p(1-p), 1e-12)


def test_bce_refuses_probabilities_outside_zero_one_and_mismatched_shapes():
    with pytest.raises(ValueError, match="input must be between 0 and 1"):
        F.binary_cross_entropy(tg.tensor([1.5, 0.5]), tg.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="target shape"):
        nn.BCELoss()(tg.rand(3), tg.rand(3, 1))


def test_bce_with_logits_module_matches_bce_on_probabilities_and_uses_pos_weight():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 3)), rng.uniform(0, 1, (4, 3))
    pos = rng.uniform(0.5, 3, 3)
    expected = pos * y * softplus(-x) + (1 - y) * softplus(x)
    module = nn.BCEWithLogitsLoss(pos_weight=f64(pos, False))
    np.testing.assert_allclose(module(f64(x), f64(y)).numpy(), expected.mean(), rtol=1e-12)
    np.testing.assert_allclose(
        nn.BCEWithLogitsLoss()(f64(x), f64(y)).numpy(),
        nn.BCELoss()(f64(x).sigmoid(), f64(y)).numpy(),
        rtol=1e-10,
    )
    assert math.isfinite(nn.BCEWithLogitsLoss()(tg.tensor([1e4, -1e4]), tg.tensor([0.0, 1.0])).item())


# ---- KL divergence ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
def test_kl_div_matches_formula_for_every_reduction_and_both_target_forms(reduction):
    rng = np.random.default_rng(5)
    log_q = log_softmax(rng.standard_normal((3, 4)), 1)
    p = np.exp(log_softmax(rng.standard_normal((3, 4)), 1))
    p[0, 1] = 0.0  # a zero probability contributes nothing (0 log 0 = 0)
    pointwise = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - log_q), 0.0)
    expected = pointwise.sum() / 3 if reduction == "batchmean" else reduce(pointwise, reduction)
    loss = nn.KLDivLoss(reduction=reduction)
    np.testing.assert_allclose(loss(f64(log_q), f64(p)).numpy(), expected, rtol=1e-12)
    assert tg.gradcheck(loss, [f64(log_q), f64(p, False)])
    target = f64(p)
    loss(f64(log_q), target).sum().backward()
    assert np.all(np.isfinite(target.grad.numpy()))
    positive = f64(np.where(p > 0, p, 0.3))
    with_log_target = nn.KLDivLoss(reduction=reduction, log_target=True)
    np.testing.assert_allclose(
        with_log_target(f64(log_q), positive.log()).numpy(), loss(f64(log_q), positive).numpy(), rtol=1e-12
    )
    assert tg.gradcheck(with_log_target, [f64(log_q), f64(np.log(positive.numpy()))])


def test_kl_div_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match="batchmean"):
        nn.KLDivLoss(reduction="avg")
