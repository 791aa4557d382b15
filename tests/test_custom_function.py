"""Custom ops written the PyTorch way: ``tg.autograd.Function`` subclasses with ``@staticmethod``
forward/backward on Tensors, ``ctx.save_for_backward``/``saved_tensors``/``needs_input_grad``,
``mark_non_differentiable``, non-tensor arguments, several outputs and ``.apply``."""

import numpy as np
import pytest

import tinygrad_rnn as tg


class ScaledCube(tg.autograd.Function):
    """y = scale * x³ with a non-tensor scale."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x * x * x * scale

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * 3.0 * x * x * ctx.scale, None


class MulAdd(tg.autograd.Function):
    """(a * b, a + b): two outputs, two tensor inputs; records which inputs need a gradient."""

    seen_needs: tuple = ()

    @staticmethod
    def forward(ctx, a, b):
        MulAdd.seen_needs = ctx.needs_input_grad
        ctx.save_for_backward(a, b)
        return a * b, a + b

    @staticmethod
    def backward(ctx, grad_product, grad_sum):
        a, b = ctx.saved_tensors
        grad_a = grad_product * b + grad_sum if ctx.needs_input_grad[0] else None
        grad_b = grad_product * a + grad_sum if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class ArgmaxAndMax(tg.autograd.Function):
    """(argmax one-hot, max) along the last axis; the one-hot is marked non-differentiable."""

    @staticmethod
    def forward(ctx, x):
        data = x.numpy()
        onehot = (data == data.max(axis=-1, keepdims=True)).astype(data.dtype)
        onehot_t = tg.tensor(onehot)
        ctx.mark_non_differentiable(onehot_t)
        ctx.save_for_backward(onehot_t)
        return onehot_t, tg.tensor(data.max(axis=-1))

    @staticmethod
    def backward(ctx, grad_onehot, grad_max):
        (onehot,) = ctx.saved_tensors
        assert float(np.abs(grad_onehot.numpy()).sum()) == 0.0  # zeros for the non-differentiable output
        return onehot * grad_max.reshape(*grad_max.shape, 1)


def _leaf(shape, seed=0):
    return tg.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=tg.float64, requires_grad=True)


def test_scaled_cube_gradient_matches_finite_differences_in_float64():
    x = _leaf((3, 2))
    assert tg.gradcheck(lambda t: ScaledCube.apply(t, 2.5), [x])


def test_two_outputs_gradient_matches_finite_differences_in_float64():
    a, b = _leaf((2, 3), 1), _leaf((2, 3), 2)
    assert tg.gradcheck(lambda s, t: MulAdd.apply(s, t), [a, b])


def test_needs_input_grad_follows_requires_grad_of_each_argument():
    a = _leaf((2,))
    b = tg.tensor(np.ones(2), dtype=tg.float64)
    product, total = MulAdd.apply(a, b)
    assert MulAdd.seen_needs == (True, False)
    (product + total).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.ones(2) + 1.0)
    assert b.grad is None


def test_only_one_output_used_gives_zeros_for_the_other():
    a, b = _leaf((2, 2), 3), _leaf((2, 2), 4)
    product, _ = MulAdd.apply(a, b)
    product.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.numpy())


def test_non_differentiable_output_does_not_require_grad_and_max_gets_its_gradient():
    x = _leaf((2, 4), 5)
    onehot, top = ArgmaxAndMax.apply(x)
    assert not onehot.requires_grad and top.requires_grad
    top.sum().backward()
    expected = (x.numpy() == x.numpy().max(axis=-1, keepdims=True)).astype(np.float64)
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_grad_fn_is_named_after_the_function_and_saved_tensors_are_freed():
    x = _leaf((2,))
    y = ScaledCube.apply(x, 1.0)
    assert y.grad_fn.name == "ScaledCubeBackward"
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()


def test_saved_input_changed_in_place_raises():
    x = _leaf((2,))
    base = x * 1.0
    y = ScaledCube.apply(base, 1.0)
    with tg.no_grad():
        base.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_no_input_requiring_grad_records_nothing():
    x = tg.tensor(np.ones(3), dtype=tg.float64)
    y = ScaledCube.apply(x, 2.0)
    assert not y.requires_grad and y.grad_fn is None
    np.testing.assert_allclose(y.numpy(), 2.0 * np.ones(3))


def test_backward_with_the_wrong_number_of_gradients_raises():
    class Bad(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return g

    a, b = _leaf((2,)), _leaf((2,), 1)
    with pytest.raises(RuntimeError, match="incorrect number of gradients"):
        Bad.apply(a, b).sum().backward()


def test_backward_with_a_gradient_of_the_wrong_shape_raises():
    class Bad(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return tg.tensor(np.ones(5))

    with pytest.raises(RuntimeError, match="invalid gradient at index 0"):
        Bad.apply(_leaf((2,))).sum().backward()


def test_save_for_backward_refuses_a_non_tensor():
    class Bad(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(3.0)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(TypeError, match="save_for_backward can only save tensors"):
        Bad.apply(_leaf((2,)))


def test_custom_function_inside_a_larger_graph_accumulates_into_a_shared_leaf():
    x = _leaf((3,), 7)
    loss = (ScaledCube.apply(x, 1.0) + x * 2.0).sum()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * x.numpy() ** 2 + 2.0)
