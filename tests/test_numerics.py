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
from tinygrad_rnn import nn, optim

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


# ---- gradient clipping ------------------------------------------------------------------------------


def _parameters_with_grads(*grads: np.ndarray) -> list:
    parameters = []
    for g in grads:
        p = tg.zeros(*g.shape, dtype=g.dtype, requires_grad=True)
        p.grad = tg.tensor(g)
        parameters.append(p)
    return parameters


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_with_error_if_nonfinite_raises_and_leaves_gradients_alone(bad):
    grads = [np.array([1.0, 2.0], np.float32), np.array([3.0, bad], np.float32)]
    parameters = _parameters_with_grads(*grads)
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(parameters, max_norm=1.0, error_if_nonfinite=True)
    for p, g in zip(parameters, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@given(
    exponent=st.integers(-45, 38),
    mantissas=hnp.arrays(np.float64, st.integers(1, 6), elements=st.floats(-9.9, 9.9)),
    max_norm=st.sampled_from([0.0, 1e-3, 1.0, 1e30]),
)
def test_clip_grad_norm_never_turns_finite_gradients_into_nan_at_any_scale(
    norm_type, exponent, mantissas, max_norm
):
    # float32 gradients from 1e-45 (subnormal) to 1e38 (near the largest float32): naive Σ g² would
    # underflow to 0 or overflow to inf.
    with np.errstate(over="ignore"):
        grad = (mantissas * 10.0**exponent).astype(np.float32)
    grad[~np.isfinite(grad)] = np.float32(3e38)
    parameters = _parameters_with_grads(grad, grad[::-1].copy())
    exact = np.linalg.norm(np.concatenate([grad, grad[::-1]]).astype(np.float64), ord=norm_type)
    total = nn.utils.clip_grad_norm_(
        parameters, max_norm=max_norm, norm_type=norm_type, error_if_nonfinite=True
    )
    if exact < np.finfo(np.float32).max:
        assert total.item() == pytest.approx(exact, rel=1e-5)
    clipped = np.concatenate([p.grad.numpy() for p in parameters]).astype(np.float64)
    assert np.isfinite(clipped).all()
    if exact > max_norm + 1e-6:
        # Rescaled as one vector: the direction is kept and the norm is at most max_norm. A scaling
        # factor below the smallest normal float32 (1e-3 / 1e38) keeps fewer digits.
        coefficient = max_norm / (exact + 1e-6)
        rtol = 1e-5 if coefficient >= np.finfo(np.float32).tiny else 1e-3
        assert np.linalg.norm(clipped, ord=norm_type) <= max_norm * (1 + rtol) + 1e-30
        expected = np.concatenate([grad, grad[::-1]]).astype(np.float64) * coefficient
        np.testing.assert_allclose(clipped, expected, rtol=10 * rtol, atol=1e-37)


def test_clip_grad_norm_clips_finite_gradients_whose_norm_exceeds_the_largest_float32():
    # ‖(3e38, 3e38)‖ = 4.2e38 does not fit in float32: the gradients are finite and must be clipped to
    # norm 1, not zeroed (max_norm / inf) and not refused as non-finite.
    parameters = _parameters_with_grads(np.array([3e38, -3e38], np.float32))
    total = nn.utils.clip_grad_norm_(parameters, max_norm=1.0, error_if_nonfinite=True)
    assert total.item() == np.inf  # the norm itself, reported in the gradients' dtype, as in PyTorch
    np.testing.assert_allclose(parameters[0].grad.numpy(), [0.5**0.5, -(0.5**0.5)], rtol=1e-6)


def test_clip_grad_norm_of_all_zero_gradients_leaves_zeros():
    parameters = _parameters_with_grads(np.zeros(3, np.float32), np.zeros((2, 2), np.float32))
    assert nn.utils.clip_grad_norm_(parameters, 1.0, error_if_nonfinite=True).item() == 0.0
    for p in parameters:
        assert (p.grad.numpy() == 0).all()


def test_an_exploding_rnn_with_spectral_radius_3_trained_with_clipping_keeps_finite_weights():
    tg.manual_seed(0)
    hidden_size, seq_len, batch = 16, 60, 4
    rnn = nn.RNN(3, hidden_size, nonlinearity="relu")
    head = nn.Linear(hidden_size, 1)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((hidden_size, hidden_size)))
    with tg.no_grad():
        rnn.weight_hh_l0.copy_((3.0 * q).astype(np.float32))  # every eigenvalue has modulus 3
    assert np.abs(np.linalg.eigvals(rnn.weight_hh_l0.numpy())).min() == pytest.approx(3.0, rel=1e-4)
    parameters = [*rnn.parameters(), *head.parameters()]
    optimizer = optim.SGD(parameters, lr=0.01)
    data = np.random.default_rng(1).standard_normal((seq_len, batch, 3)).astype(np.float32) * 1e-3
    x, target = tg.tensor(data), tg.tensor(np.ones((batch, 1), np.float32))
    norms = []
    for _ in range(30):
        optimizer.zero_grad()
        out, _ = rnn(x)
        loss = F.mse_loss(head(out[-1]), target)
        loss.backward()
        norms.append(nn.utils.clip_grad_norm_(parameters, max_norm=1.0).item())
        optimizer.step()
        for p in parameters:
            assert np.isfinite(p.numpy()).all()
    assert max(norms) > 1e6  # the gradient really explodes: clipping was doing the work


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_recurrent_layers_with_saturated_gates_stay_finite_in_forward_and_backward(kind):
    # Pre-activations of ±1e4 saturate every sigmoid and tanh: outputs and gradients must stay finite.
    tg.manual_seed(0)
    layer = getattr(nn, kind)(3, 4)
    with tg.no_grad():
        for p in layer.parameters():
            p.mul_(1e4)
    x = tg.tensor(np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32), requires_grad=True)
    out, _ = layer(x)
    assert np.isfinite(out.numpy()).all() and np.abs(out.numpy()).max() <= 1.0
    out.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    for p in layer.parameters():
        assert np.isfinite(p.grad.numpy()).all()
