"""Linear, Embedding, Dropout, the activation modules and nn.init."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn

# ---- Linear ------------------------------------------------------------------------------------------


def test_linear_computes_x_times_w_transposed_plus_b():
    layer = nn.Linear(3, 2, dtype=tg.float64)
    x = np.random.default_rng(1).standard_normal((4, 3))
    expected = x @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(layer(tg.tensor(x)).numpy(), expected, atol=1e-12)


@given(
    leading=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    in_features=st.integers(1, 4),
    out_features=st.integers(1, 3),
    bias=st.booleans(),
)
def test_linear_gradients_match_finite_differences_for_any_leading_shape(
    leading, in_features, out_features, bias
):
    layer = nn.Linear(in_features, out_features, bias=bias, dtype=tg.float64)
    x = tg.randn(*leading, in_features, dtype=tg.float64, requires_grad=True)
    out = layer(x)
    assert out.shape == (*leading, out_features)
    tg.gradcheck(lambda *args: layer(x), [x, *layer.parameters()])


@pytest.mark.parametrize("leading", [(), (5,), (4, 3), (2, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_module_is_f_linear_in_one_node_with_the_same_bits(leading, bias):
    # the one-node op (loss_ops.Linear) of the module and F.linear against Transpose -> MatMul -> Add
    tg.manual_seed(3)
    layer = nn.Linear(6, 7, bias=bias)
    data = np.random.default_rng(2).standard_normal((*leading, 6)).astype(np.float32)
    upstream = np.random.default_rng(3).standard_normal((*leading, 7)).astype(np.float32)
    results = []
    for fused in (True, False):
        x = tg.tensor(data, requires_grad=True)
        if fused:
            out = layer(x)
            assert type(F.linear(x, layer.weight, layer.bias).grad_fn).__name__ == "Linear"
        else:
            out = x @ layer.weight.T
            out = out + layer.bias if bias else out
        node = type(out.grad_fn).__name__ if out.grad_fn is not None else None
        out.backward(tg.tensor(upstream))
        grads = [x.grad.numpy()] + [p.grad.numpy() for p in layer.parameters()]
        results.append((node, out.numpy(), grads))
        layer.zero_grad()
    (node, out, grads), (plain_node, plain_out, plain_grads) = results
    assert node == "Linear" and plain_node != "Linear"
    assert out.dtype == np.float32 and out.shape == plain_out.shape == (*leading, 7)
    np.testing.assert_array_equal(out, plain_out)
    np.testing.assert_array_equal(grads[0], plain_grads[0])
    np.testing.assert_array_equal(grads[1], plain_grads[1])
    if bias:  # a row sum against the tape's reduction over the leading axes: equal up to rounding
        np.testing.assert_allclose(grads[2], plain_grads[2], rtol=1e-6, atol=1e-6)


def test_linear_module_with_another_dtype_or_no_tensor_input_goes_through_f_linear():
    layer = nn.Linear(3, 2, dtype=tg.float64)
    x = tg.randn(4, 3, requires_grad=True)  # float32 input, float64 layer: promoted as by matmul
    out = layer(x)
    assert out.dtype == tg.float64 and type(out.grad_fn).__name__ != "Linear"
    np.testing.assert_allclose(
        out.numpy(), x.numpy() @ layer.weight.numpy().T + layer.bias.numpy(), rtol=1e-6
    )
    with pytest.raises(TypeError, match="floating"):
        nn.Linear(3, 2)(tg.tensor([[1, 2, 3]]))


def test_linear_module_input_changed_in_place_after_the_forward_pass_is_refused():
    layer = nn.Linear(3, 2)
    x = tg.randn(4, 3, requires_grad=True)
    h = x * 1.0
    out = layer(h)
    h.mul_(2.0)
    with pytest.raises(RuntimeError, match="Linear saved for backward was modified in place"):
        out.sum().backward()


def test_linear_default_init_is_uniform_within_one_over_sqrt_in_features():
    layer = nn.Linear(256, 128)
    bound = 1 / math.sqrt(256)
    for param in (layer.weight, layer.bias):
        values = param.numpy()
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.95 * bound
    assert layer.weight.numpy().std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_linear_without_bias_has_only_a_weight():
    layer = nn.Linear(3, 2, bias=False)
    assert layer.bias is None
    assert list(layer.state_dict()) == ["weight"]
    assert layer.state_dict()["weight"].shape == (2, 3)


def test_linear_repr_and_wrong_input_size():
    layer = nn.Linear(3, 2)
    assert repr(layer) == "Linear(in_features=3, out_features=2, bias=True)"
    with pytest.raises(ValueError, match="in_features=3"):
        layer(tg.randn(4, 5))
    with pytest.raises(ValueError, match="in_features must be a non-negative int"):
        nn.Linear(-1, 2)


# ---- Embedding ---------------------------------------------------------------------------------------


def test_embedding_looks_up_rows():
    table = nn.Embedding(10, 3)
    indices = tg.tensor([[1, 2], [9, 1]])
    np.testing.assert_array_equal(table(indices).numpy(), table.weight.numpy()[[[1, 2], [9, 1]]])
    assert table(indices).shape == (2, 2, 3)


def test_embedding_init_is_standard_normal():
    values = nn.Embedding(1000, 20).weight.numpy()
    assert abs(values.mean()) < 0.02 and values.std() == pytest.approx(1.0, rel=0.02)


def test_embedding_gradient_sums_repeated_rows():
    table = nn.Embedding(5, 2, dtype=tg.float64)
    out = table(tg.tensor([0, 3, 3, 3]))
    (out * tg.tensor([[1.0, 2.0]] * 4, dtype=tg.float64)).sum().backward()
    expected = np.zeros((5, 2))
    expected[0] = [1, 2]
    expected[3] = [3, 6]
    np.testing.assert_array_equal(table.weight.grad.numpy(), expected)


def test_embedding_gradient_matches_finite_differences():
    table = nn.Embedding(6, 3, dtype=tg.float64)
    indices = tg.tensor([[0, 5, 2], [2, 2, 1]])
    tg.gradcheck(lambda weight: table(indices), [table.weight])


def test_padding_row_starts_at_zero_and_gets_no_gradient():
    table = nn.Embedding(6, 3, padding_idx=2, dtype=tg.float64)
    np.testing.assert_array_equal(table.weight.numpy()[2], np.zeros(3))
    table(tg.tensor([2, 1, 2])).sum().backward()
    np.testing.assert_array_equal(table.weight.grad.numpy()[2], np.zeros(3))
    np.testing.assert_array_equal(table.weight.grad.numpy()[1], np.ones(3))


def test_negative_padding_idx_counts_from_the_end_and_repr_shows_it():
    table = nn.Embedding(6, 3, padding_idx=-1)
    assert table.padding_idx == 5
    assert repr(table) == "Embedding(6, 3, padding_idx=5)"
    with pytest.raises(ValueError, match="padding_idx=6 must be within num_embeddings=6"):
        nn.Embedding(6, 3, padding_idx=6)


def test_embedding_index_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match="out of range"):
        nn.Embedding(4, 2)(tg.tensor([1, 4]))


# ---- Dropout -----------------------------------------------------------------------------------------


def test_dropout_in_training_zeros_about_p_and_scales_the_rest():
    layer = nn.Dropout(0.3)
    out = layer(tg.ones(200, 100, dtype=tg.float64)).numpy()
    zero_fraction = (out == 0).mean()
    assert zero_fraction == pytest.approx(0.3, abs=0.02)
    np.testing.assert_allclose(out[out != 0], 1 / 0.7)


def test_dropout_is_the_identity_in_eval_mode():
    layer = nn.Dropout(0.5).eval()
    x = tg.randn(10, 10)
    assert layer(x) is x or np.array_equal(layer(x).numpy(), x.numpy())


def test_dropout_gradient_is_the_same_mask():
    layer = nn.Dropout(0.5)
    x = tg.ones(50, dtype=tg.float64, requires_grad=True)
    out = layer(x)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), out.numpy())


def test_dropout_rejects_probabilities_outside_zero_one():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        nn.Dropout(1.5)
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25)"


# ---- activations as modules --------------------------------------------------------------------------


def test_activation_modules_apply_their_function():
    x = tg.tensor([-2.0, 0.5, 3.0], dtype=tg.float64)
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh(x.numpy()))
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), np.maximum(x.numpy(), 0))
    np.testing.assert_allclose(nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp(-x.numpy())))
    assert nn.Identity()(x) is x


# ---- nn.init -----------------------------------------------------------------------------------------


def test_init_functions_fill_in_place_and_return_the_tensor():
    weight = nn.Parameter(tg.zeros(300, 200, dtype=tg.float64))
    assert nn.init.constant_(weight, 0.5) is weight and (weight.numpy() == 0.5).all()
    nn.init.ones_(weight)
    assert (weight.numpy() == 1).all()
    nn.init.zeros_(weight)
    assert not weight.numpy().any()
    nn.init.xavier_uniform_(weight)
    bound = math.sqrt(6 / 500)
    assert np.abs(weight.numpy()).max() <= bound and np.abs(weight.numpy()).max() > 0.99 * bound
    nn.init.xavier_normal_(weight)
    assert weight.numpy().std() == pytest.approx(math.sqrt(2 / 500), rel=0.02)
    nn.init.kaiming_uniform_(weight, nonlinearity="relu")
    assert np.abs(weight.numpy()).max() <= math.sqrt(6 / 200)
    nn.init.normal_(weight, 1.0, 0.1)
    assert weight.numpy().mean() == pytest.approx(1.0, abs=0.01)
    assert weight.grad is None and weight.is_leaf


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match="at least 2 dims"):
        nn.init.xavier_uniform_(nn.Parameter(tg.zeros(3)))


def test_linear_and_embedding_run_and_differentiate_on_each_device(device):
    linear = nn.Linear(3, 2, dtype=tg.float64).to(device)
    table = nn.Embedding(5, 3, dtype=tg.float64).to(device)
    indices = tg.tensor([[0, 4], [4, 1]], device=device)
    out = linear(table(indices))
    assert out.device == linear.weight.device == table.weight.device and out.shape == (2, 2, 2)
    assert tg.gradcheck(
        lambda w, b, e: nn.functional.linear(nn.functional.embedding(indices, e), w, b),
        [*linear.parameters(), table.weight],
    )
