"""Gradient clipping: joint norms over all gradients, in-place rescaling, non-finite handling."""

import decimal
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
from tinygrad_rnn.nn.utils import clip_grad_norm_, clip_grad_value_


def params_with_grads(*grads, device="cpu"):
    params = []
    for g in grads:
        p = tg.zeros(*np.shape(g), dtype=tg.float64, device=device, requires_grad=True)
        p.grad = tg.tensor(np.asarray(g, dtype=np.float64), device=device)
        params.append(p)
    return params


# Mantissas times a power of ten from 1e-300 to 1e300: naive sums of |g|^p underflow or overflow there.
finite_grads = st.integers(-300, 300).flatmap(
    lambda exponent: st.lists(
        hnp.arrays(
            np.float64,
            hnp.array_shapes(min_dims=1, max_dims=2, max_side=4),
            elements=st.floats(-1e3, 1e3).map(lambda m: m * 10.0**exponent),
        ),
        min_size=1,
        max_size=3,
    )
)


def exact_norm(values: np.ndarray, norm_type: float) -> float:
    """‖values‖_p in 60-digit decimal arithmetic, whose exponent range no float64 gradient can leave."""
    magnitudes = [abs(decimal.Decimal(float(v))) for v in values.ravel()]
    if norm_type == math.inf:
        return float(max(magnitudes))
    with decimal.localcontext() as context:
        context.prec = 60
        p = decimal.Decimal(norm_type)
        return float(sum(m**p for m in magnitudes) ** (1 / p))


@given(
    grads=finite_grads, max_norm=st.floats(0.01, 100.0), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf])
)
@example(grads=[np.array([6.50030252e-115])], max_norm=1.0, norm_type=3.0)
@example(grads=[np.array([3e200, -4e200]), np.array([[1e200]])], max_norm=1.0, norm_type=2.0)
def test_clip_grad_norm_treats_all_gradients_as_one_vector(grads, max_norm, norm_type):
    params = params_with_grads(*grads)
    flat = np.concatenate([g.ravel() for g in grads])
    expected = exact_norm(flat, norm_type)
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    np.testing.assert_allclose(total.item(), expected, rtol=1e-10, atol=0)
    coefficient = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coefficient, rtol=1e-10, atol=0)
    clipped = np.concatenate([p.grad.numpy().ravel() for p in params])
    assert exact_norm(clipped, norm_type) <= max_norm * (1 + 1e-9)


def test_clip_grad_norm_of_a_tiny_gradient_does_not_underflow():
    # |g|^3 = 2.7e-343 is below float64's smallest subnormal: a naive (Σ|g|^3)^(1/3) returns 0.
    (p,) = params_with_grads([6.50030252e-115])
    assert clip_grad_norm_(p, max_norm=1.0, norm_type=3.0).item() == pytest.approx(
        6.50030252e-115, rel=1e-12, abs=0
    )
    np.testing.assert_array_equal(p.grad.numpy(), [6.50030252e-115])
    (q,) = params_with_grads([3e-200, -4e-200])
    assert clip_grad_norm_(q, max_norm=1.0).item() == pytest.approx(5e-200, rel=1e-12, abs=0)


def test_clip_grad_norm_returns_the_norm_before_clipping_and_leaves_small_gradients_alone():
    params = params_with_grads([3.0, 0.0], [[4.0]])
    total = clip_grad_norm_(params, max_norm=1.0)
    assert isinstance(total, tg.Tensor) and total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(params[0].grad.numpy(), [3.0 / (5.0 + 1e-6), 0.0])
    small = params_with_grads([0.3, 0.4])
    assert clip_grad_norm_(small, max_norm=1.0).item() == pytest.approx(0.5)
    np.testing.assert_array_equal(small[0].grad.numpy(), [0.3, 0.4])


def test_clip_grad_norm_inf_norm_uses_the_largest_entry():
    params = params_with_grads([3.0, -7.0], [2.0])
    assert clip_grad_norm_(params, max_norm=0.7, norm_type=float("inf")).item() == 7.0
    np.testing.assert_allclose(params[0].grad.numpy(), np.array([3.0, -7.0]) * 0.7 / (7.0 + 1e-6))


def test_clip_grad_norm_accepts_a_single_tensor_and_skips_parameters_without_gradient():
    (p,) = params_with_grads([6.0, 8.0])
    bare = tg.zeros(2, requires_grad=True)
    assert clip_grad_norm_([p, bare], 5.0).item() == pytest.approx(10.0)
    assert bare.grad is None
    assert clip_grad_norm_(p, 100.0).item() == pytest.approx(5.0, rel=1e-6)
    assert clip_grad_norm_([bare], 1.0).item() == 0.0


def test_huge_finite_float32_gradients_are_clipped_without_overflow_or_nan():
    p = tg.zeros(3, requires_grad=True)
    p.grad = tg.tensor([3e30, -4e30, 0.0], dtype=tg.float32)
    total = clip_grad_norm_(p, max_norm=1.0)
    assert np.isfinite(total.item()) and total.item() == pytest.approx(5e30, rel=1e-6)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, -0.8, 0.0], rtol=1e-5)


def float32_params(*grads):
    params = []
    for g in grads:
        p = tg.zeros(*np.shape(g), requires_grad=True)
        p.grad = tg.tensor(np.asarray(g, dtype=np.float32))
        params.append(p)
    return params


@pytest.mark.parametrize("max_norm", [1e9, 0.5])
def test_float32_norm_by_chunked_dots_matches_the_scaled_two_pass_sum(max_norm):
    from tinygrad_rnn.nn.utils import _total_norm

    rng = np.random.default_rng(5)
    # sizes around the dot chunk (8192) and a long vector whose single float32 dot would drift
    grads = [rng.standard_normal(shape).astype(np.float32) * 0.01 for shape in [(8193,), (3, 5), (300_000,)]]
    params = float32_params(*grads)
    exact = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    two_pass = float(_total_norm([p.grad for p in params], 2.0, params[0].grad))
    total = clip_grad_norm_(params, max_norm)
    assert total.dtype == tg.float32
    np.testing.assert_allclose(total.item(), exact, rtol=2e-7)
    np.testing.assert_allclose(total.item(), two_pass, rtol=2e-7)
    coefficient = np.float32(min(1.0, max_norm / (total.item() + 1e-6)))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coefficient, rtol=1e-6)


def test_float32_gradients_within_the_bound_are_left_bit_for_bit():
    grads = [np.array([0.3, -0.0, 1e-30], np.float32), np.array([[0.4]], np.float32)]
    params = float32_params(*grads)
    held = params[0].grad
    assert clip_grad_norm_(params, max_norm=1.0).item() == pytest.approx(0.5)
    assert params[0].grad is held
    for p, g in zip(params, grads):
        np.testing.assert_array_equal(p.grad.numpy(), g)
        assert np.signbit(p.grad.numpy()).tolist() == np.signbit(g).tolist()


def test_tiny_float32_gradients_whose_squares_underflow_keep_their_norm():
    # 3e-25² underflows float32: the chunked dot would give 0, the scaled sum gives the norm
    params = float32_params([3e-25, 0.0], [[-4e-25]])
    assert clip_grad_norm_(params, max_norm=1.0).item() == pytest.approx(5e-25, rel=1e-6)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # inf * 0 when clipping anyway, as PyTorch
def test_nonfinite_norm_raises_when_asked_and_leaves_gradients_untouched():
    params = params_with_grads([np.nan, 1.0], [2.0])
    with pytest.raises(RuntimeError, match=r"non-finite \(nan\)"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(params[1].grad.numpy(), [2.0])
    params = params_with_grads([np.inf, 1.0])
    with pytest.raises(RuntimeError, match=r"non-finite \(inf\)"):
        clip_grad_norm_(params, 1.0, norm_type=float("inf"), error_if_nonfinite=True)
    assert math.isinf(clip_grad_norm_(params, 1.0).item())


def test_clip_grad_norm_rejects_bad_arguments():
    params = params_with_grads([1.0])
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(params, 1.0, norm_type=0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(params, -1.0)
    with pytest.raises(TypeError, match="expected a Tensor"):
        clip_grad_norm_([np.ones(2)], 1.0)


def test_clip_grad_norm_on_each_device(device):
    params = params_with_grads([3.0, 0.0], [[4.0]], device=device)
    total = clip_grad_norm_(params, max_norm=2.5)
    assert total.device == device and total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(params[1].grad.numpy(), [[4.0 * 2.5 / (5.0 + 1e-6)]])


def test_clip_grad_value_clamps_every_entry_in_place():
    params = params_with_grads([-3.0, 0.5, 2.0], [[-0.1, 9.0]])
    grad = params[0].grad
    clip_grad_value_(params, 1.0)
    assert params[0].grad is grad
    np.testing.assert_array_equal(params[0].grad.numpy(), [-1.0, 0.5, 1.0])
    np.testing.assert_array_equal(params[1].grad.numpy(), [[-0.1, 1.0]])
    (single,) = params_with_grads([5.0])
    clip_grad_value_(single, 2.0)
    np.testing.assert_array_equal(single.grad.numpy(), [2.0])
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_(params, -1.0)


def test_clipping_inside_a_training_step_bounds_the_update():
    w = tg.tensor([[1.0, -2.0]], dtype=tg.float64, requires_grad=True)
    loss = ((w * 1000.0) ** 2).sum()
    loss.backward()
    before = clip_grad_norm_([w], max_norm=1.0)
    assert before.item() > 1e5
    assert np.linalg.norm(w.grad.numpy()) == pytest.approx(1.0, rel=1e-5)


def test_clipping_runs_on_a_strict_cupy_stand_in(monkeypatch):
    from fake_cupy import install

    install(monkeypatch)
    for norm_type, expected in ((2.0, 5.0), (float("inf"), 4.0), (1.0, 7.0)):
        params = params_with_grads([3.0, 0.0], [[-4.0]], device="cuda")
        assert clip_grad_norm_(params, max_norm=1.0, norm_type=norm_type).item() == pytest.approx(expected)
        np.testing.assert_allclose(params[1].grad.numpy(), [[-4.0 / (expected + 1e-6)]])
    clip_grad_value_(params, 0.1)
    np.testing.assert_allclose(params[0].grad.numpy(), [0.1, 0.0])


def test_clipping_gradients_on_two_gpus_keeps_each_on_its_own(monkeypatch):
    from fake_cupy import install

    install(monkeypatch, device_count=2)
    first = params_with_grads([3.0, 0.0], device="cuda:1")[0]
    second = params_with_grads([[-4.0]], device="cuda:0")[0]
    total = clip_grad_norm_([first, second], max_norm=1.0)
    assert total.device == "cuda:1" and total.item() == pytest.approx(5.0)
    assert first.grad.device == "cuda:1" and second.grad.device == "cuda:0"
    np.testing.assert_allclose(second.grad.numpy(), [[-4.0 / (5.0 + 1e-6)]])
