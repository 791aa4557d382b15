"""Numerical safety: losses and activations stay finite and exact for huge logits in float32, gradient
clipping never manufactures NaN, and an exploding recurrent network trained with clipping stays finite."""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F

HUGE = 1e4
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True)
def _overflow_is_an_error():
    """Any overflow or invalid operation inside NumPy fails the test instead of warning."""
    with warnings.catch_warnings(), np.errstate(all="raise", under="ignore"):
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _log_softmax64(x: np.ndarray, axis: int) -> np.ndarray:
    """The reference in float64: x - max - log Σ exp(x - max)."""
    x = x.astype(np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _assert_close32(got: np.ndarray, expected: np.ndarray, scale: float) -> None:
    """Equal up to a few float32 roundings of numbers of size ``scale``."""
    assert got.dtype == np.float32
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=4 * EPS32, atol=4 * EPS32 * max(scale, 1.0))


EXTREME_LOGITS = np.array(
    [[HUGE, -HUGE, 0.0], [-HUGE, -HUGE, -HUGE], [HUGE, HUGE, -HUGE], [1.0, 2.0, HUGE]], dtype=np.float32
)


def test_log_softmax_is_finite_and_exact_for_logits_of_plus_minus_1e4():
    x = tg.tensor(EXTREME_LOGITS, requires_grad=True)
    out = F.log_softmax(x, dim=1)
    _assert_close32(out.numpy(), _log_softmax64(EXTREME_LOGITS, 1), 2 * HUGE)
    out.backward(tg.ones_like(out))
    grad = x.grad.numpy()
    assert np.isfinite(grad).all()
    softmax = np.exp(_log_softmax64(EXTREME_LOGITS, 1))
    _assert_close32(grad, 1.0 - 3.0 * softmax, 3.0)


def test_functional_and_method_log_softmax_agree_on_extreme_logits():
    x = tg.tensor(EXTREME_LOGITS)
    np.testing.assert_array_equal(tg.log_softmax(x, 1).numpy(), F.log_softmax(x, dim=1).numpy())


def test_softmax_is_finite_and_sums_to_one_for_logits_of_plus_minus_1e4():
    x = tg.tensor(EXTREME_LOGITS, requires_grad=True)
    out = F.softmax(x, dim=1)
    _assert_close32(out.numpy(), np.exp(_log_softmax64(EXTREME_LOGITS, 1)), 1.0)
    (out * tg.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_logsumexp_is_finite_and_exact_for_logits_of_plus_minus_1e4():
    x = tg.tensor(EXTREME_LOGITS, requires_grad=True)
    out = tg.logsumexp(x, dim=1)
    x64 = EXTREME_LOGITS.astype(np.float64)
    m = x64.max(axis=1)
    expected = m + np.log(np.exp(x64 - m[:, None]).sum(axis=1))
    _assert_close32(out.numpy(), expected, HUGE)
    out.sum().backward()
    _assert_close32(x.grad.numpy(), np.exp(_log_softmax64(EXTREME_LOGITS, 1)), 1.0)


def test_logsumexp_of_minus_infinity_is_minus_infinity_without_nan():
    x = tg.tensor([[-np.inf, -np.inf], [0.0, -np.inf]], dtype=tg.float32, requires_grad=True)
    with np.errstate(divide="ignore"):  # log(0) = -inf is the answer here, not an accident
        out = tg.logsumexp(x, dim=1)
    assert out.numpy()[0] == -np.inf and out.numpy()[1] == 0.0
    out.backward(tg.ones_like(out))
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.0], [1.0, 0.0]])


def test_sigmoid_saturates_exactly_without_overflow_and_has_a_finite_gradient():
    x = tg.tensor([HUGE, -HUGE, 30.0, -30.0, 0.0], requires_grad=True)
    out = x.sigmoid()
    got = out.numpy()
    assert got[0] == 1.0 and got[1] == 0.0 and got[4] == 0.5
    np.testing.assert_allclose(got[3], 1 / (1 + np.exp(30.0)), rtol=4 * EPS32)  # not 1 - σ(30) = 0
    out.sum().backward()
    grad = x.grad.numpy()
    assert np.isfinite(grad).all() and grad[0] == 0.0 and grad[1] == 0.0 and grad[4] == 0.25


def test_cross_entropy_is_finite_and_exact_for_logits_of_plus_minus_1e4():
    logits = np.array([[HUGE, -HUGE, 0.0], [-HUGE, HUGE, 0.0], [0.0, 0.0, HUGE]], dtype=np.float32)
    targets = np.array([1, 1, 0])
    x = tg.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, tg.tensor(targets), reduction="none")
    expected = -_log_softmax64(logits, 1)[np.arange(3), targets]  # [2e4, 0, 1e4]
    _assert_close32(loss.numpy(), expected, 2 * HUGE)
    loss.sum().backward()
    onehot = np.eye(3)[targets]
    _assert_close32(x.grad.numpy(), np.exp(_log_softmax64(logits, 1)) - onehot, 1.0)


def test_cross_entropy_mean_of_extreme_logits_matches_the_float64_reference():
    logits = np.array([[HUGE, -HUGE], [-HUGE, HUGE]], dtype=np.float32)
    loss = F.cross_entropy(tg.tensor(logits), tg.tensor([1, 1]))
    assert loss.dtype == tg.float32
    assert loss.item() == pytest.approx(HUGE, rel=4 * EPS32)


def test_binary_cross_entropy_with_logits_is_finite_for_logits_of_plus_minus_1e4():
    x = tg.tensor([HUGE, -HUGE, HUGE, -HUGE], requires_grad=True)
    y = tg.tensor([1.0, 0.0, 0.0, 1.0])
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    _assert_close32(loss.numpy(), np.array([0.0, 0.0, HUGE, HUGE]), HUGE)
    loss.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0, -1.0])


@given(
    hnp.arrays(
        np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6), elements=st.floats(-1, 1, width=32)
    ),
    st.sampled_from([1.0, 100.0, HUGE]),
)
def test_log_softmax_and_cross_entropy_match_float64_for_random_logits_at_any_scale(base, scale):
    logits = (base * np.float32(scale)).astype(np.float32)
    out = F.log_softmax(tg.tensor(logits), dim=1).numpy()
    reference = _log_softmax64(logits, 1)
    _assert_close32(out, reference, 2 * scale)
    targets = np.arange(logits.shape[0]) % logits.shape[1]
    loss = F.cross_entropy(tg.tensor(logits), tg.tensor(targets), reduction="none").numpy()
    _assert_close32(loss, -reference[np.arange(len(targets)), targets], 2 * scale)
