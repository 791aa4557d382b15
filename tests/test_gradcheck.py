"""``gradcheck`` and ``gradcheck_projection`` pass on correct ops and fail on wrong ones."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn.autograd import Function


class TanhWithScaledGradient(Function):
    """tanh whose backward is multiplied by a class-level ``factor``: wrong unless factor == 1."""

    factor = 1.0

    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    def backward(ctx, g):
        return ctx.factor * g * (1 - ctx.saved[0] ** 2)


class TanhTwice(TanhWithScaledGradient):
    factor = 2.0


class TanhHalf(TanhWithScaledGradient):
    factor = 0.5


class MulForgetsSecondInput(Function):
    """a * b whose backward drops b's gradient (a classic wrong op)."""

    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    def backward(ctx, g):
        _, b = ctx.saved
        return g * b, None


class TanhOffByOneIn10000(TanhWithScaledGradient):
    factor = 1.0 + 1e-4


class DoubleWithCenteredError(Function):
    """2x whose backward adds g - mean(g): wrong, but right whenever g is constant (all outputs weighted
    alike), and the error is orthogonal to the all-ones direction in input space."""

    def forward(ctx, x):
        return 2 * x

    def backward(ctx, g):
        return 2 * g + (g - g.mean())


def inputs(*shapes):
    rng = np.random.default_rng(3)
    return [tg.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]


CHECKS = [tg.gradcheck, tg.gradcheck_projection]


@pytest.mark.parametrize("check", CHECKS)
def test_correct_ops_pass(check):
    assert check(TanhWithScaledGradient.apply, inputs((3, 4)))
    assert check(lambda a, b: (a @ b).tanh().sum(0), inputs((2, 3), (3, 4)))
    assert check(lambda a, b: a * b + a.exp(), inputs((2, 1), (1, 3)))


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("wrong", [TanhTwice, TanhHalf])
def test_a_gradient_off_by_a_factor_of_two_fails(check, wrong):
    with pytest.raises(AssertionError, match="gradcheck"):
        check(wrong.apply, inputs((3, 4)))
    assert check(wrong.apply, inputs((3, 4)), raise_exception=False) is False


@pytest.mark.parametrize("check", CHECKS)
def test_a_missing_input_gradient_fails(check):
    with pytest.raises(AssertionError):
        check(MulForgetsSecondInput.apply, inputs((2, 3), (2, 3)))
    with pytest.raises(AssertionError):
        check(lambda x: x.detach() * x, inputs((3,)))


def test_gradcheck_message_names_the_input_and_entry():
    with pytest.raises(
        AssertionError, match=r"input 0 \(shape \(3, 4\)\) entry \(0, 0\): analytic .* numeric"
    ):
        tg.gradcheck(TanhTwice.apply, inputs((3, 4)))


def test_inputs_without_requires_grad_are_constants():
    a = tg.tensor(np.ones((2, 2)), requires_grad=True)
    b = tg.tensor(np.full((2, 2), 3.0))
    assert tg.gradcheck(lambda x, y: x * y, [a, b])
    assert tg.gradcheck_projection(lambda x, y: x * y, [a, b])


def test_tuple_outputs_are_each_checked():
    assert tg.gradcheck(lambda x: x.split(1, dim=1), inputs((2, 3)))
    with pytest.raises(AssertionError):
        tg.gradcheck(lambda x: (x * 2, TanhTwice.apply(x)), inputs((2,)))


def test_non_contiguous_inputs_are_perturbed_in_place():
    data = np.random.default_rng(0).standard_normal((3, 2))
    x = tg.tensor(data.T, requires_grad=True)  # a transposed (Fortran-ordered) copy
    assert tg.gradcheck(lambda t: t * t.sum(), [x])
    np.testing.assert_array_equal(x.numpy(), data.T)


def test_float32_inputs_are_refused():
    with pytest.raises(TypeError, match="input 0 has dtype float32; finite differences need float64"):
        tg.gradcheck(lambda t: t * 2, [tg.ones(2, requires_grad=True)])
    with pytest.raises(TypeError, match="expected a Tensor"):
        tg.gradcheck_projection(lambda t: t * 2, [np.ones(2)])


def test_non_leaf_inputs_are_refused_with_the_fix():
    (x,) = inputs((2,))
    with pytest.raises(ValueError, match=r"input 0 \(shape \(2,\)\) is not a leaf"):
        tg.gradcheck(lambda t: t * 2, [x * 3])


def test_checks_leave_the_inputs_grad_and_the_seeded_stream_alone():
    (x,) = inputs((2, 2))
    x.grad = tg.tensor(np.full((2, 2), 7.0))
    tg.manual_seed(5)
    expected = tg.randn(4).numpy()
    tg.manual_seed(5)
    tg.gradcheck(lambda t: t.tanh(), [x])
    tg.gradcheck_projection(lambda t: t.tanh(), [x])
    np.testing.assert_array_equal(tg.randn(4).numpy(), expected)
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 2), 7.0))


def test_projection_check_is_cheap_for_a_large_input():
    a, b = inputs((200, 300), (300, 50))
    assert tg.gradcheck_projection(lambda x, y: (x @ y).tanh(), [a, b], trials=3)


# Gradients (directional derivatives) of three sizes, the smallest just above each check's absolute
# tolerance: a relative tolerance loosened to PyTorch's 1e-3, or an absolute one loosened 10x (gradcheck)
# or 100x (the projection), lets one of them pass.
@pytest.mark.parametrize(
    ("check", "scale"),
    [(tg.gradcheck, s) for s in (0.03, 1.0, 1000.0)]
    + [(tg.gradcheck_projection, s) for s in (1e-3, 1.0, 1e3)],
)
def test_a_gradient_off_by_one_part_in_ten_thousand_fails(check, scale):
    x = tg.tensor(np.linspace(-0.5, 0.5, 12).reshape(3, 4), requires_grad=True)
    assert check(lambda t: TanhWithScaledGradient.apply(t) * scale, [x])
    with pytest.raises(AssertionError, match="gradcheck"):
        check(lambda t: TanhOffByOneIn10000.apply(t) * scale, [x])


@pytest.mark.parametrize("check", CHECKS)
def test_an_error_that_a_uniform_projection_cannot_see_fails(check):
    # Summing the outputs (all weights equal) or perturbing along all-ones both hide the error: only
    # random output weights and random directions reveal it.
    (x,) = inputs((3, 4))
    with pytest.raises(AssertionError, match="gradcheck"):
        check(DoubleWithCenteredError.apply, [x])
    assert tg.gradcheck(lambda t: 2 * t, [x])
    ones = tg.ones(3, 4, dtype=tg.float64)
    DoubleWithCenteredError.apply(x).backward(ones)
    np.testing.assert_array_equal(x.grad.numpy(), 2 * ones.numpy())  # right for a uniform seed
