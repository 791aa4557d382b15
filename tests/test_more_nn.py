"""The second round of nn names: functional forms and activation modules (values against NumPy formulas,
gradients in float64), parameter containers, forward hooks, Embedding.from_pretrained, the initialisers
and parameters_to_vector."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import nn

FLOATS = st.floats(-3.0, 3.0, allow_nan=False, allow_subnormal=False, width=64)


def shapes(min_dims=1, max_dims=3, max_side=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def leaf(data, shape, elements=FLOATS):
    return tg.tensor(data.draw(hnp.arrays(np.float64, shape, elements=elements)), requires_grad=True)


def sigmoid(a):
    return 0.5 * (1 + np.tanh(a / 2))


# ---- activations --------------------------------------------------------------------------------------


@given(shape=shapes(), data=st.data())
def test_smooth_activations_match_formulas_and_gradcheck(shape, data):
    x = leaf(data, shape)
    a = x.numpy()
    cases = [
        (F.silu, nn.SiLU(), a * sigmoid(a)),
        (F.logsigmoid, nn.LogSigmoid(), -np.logaddexp(0, -a)),
        (F.softsign, nn.Softsign(), a / (1 + np.abs(a))),
    ]
    for fn, module, expected in cases:
        np.testing.assert_allclose(fn(x).numpy(), expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-12, atol=1e-15)
        tg.gradcheck(fn, [x])


def test_logsigmoid_does_not_overflow():
    out = F.logsigmoid(tg.tensor([-1000.0, 1000.0], dtype=tg.float64))
    np.testing.assert_allclose(out.numpy(), [-1000.0, 0.0])


@given(shape=shapes(), data=st.data())
def test_hardtanh_and_relu6_clip_and_gradcheck_away_from_the_corners(shape, data):
    corners = st.floats(-3.0, 8.0, width=64).filter(lambda v: min(abs(v - c) for c in (-1, 1, 0, 6)) > 1e-3)
    x = leaf(data, shape, corners)
    np.testing.assert_array_equal(F.hardtanh(x).numpy(), np.clip(x.numpy(), -1, 1))
    np.testing.assert_array_equal(nn.Hardtanh(-0.5, 2.0)(x).numpy(), np.clip(x.numpy(), -0.5, 2.0))
    np.testing.assert_array_equal(nn.ReLU6()(x).numpy(), np.clip(x.numpy(), 0, 6))
    tg.gradcheck(F.hardtanh, [x])
    tg.gradcheck(F.relu6, [x])
    with pytest.raises(ValueError, match="min_val"):
        nn.Hardtanh(1.0, -1.0)


def test_prelu_per_channel_and_shared_slope_values_and_gradients():
    x = tg.tensor(np.linspace(-2, 2, 24).reshape(2, 3, 4), requires_grad=True)
    weight = tg.tensor([0.1, 0.25, -0.3], dtype=tg.float64, requires_grad=True)
    slopes = weight.numpy().reshape(3, 1)
    expected = np.where(x.numpy() >= 0, x.numpy(), slopes * x.numpy())
    np.testing.assert_allclose(F.prelu(x, weight).numpy(), expected)
    tg.gradcheck(F.prelu, [x, weight])
    module = nn.PReLU().double()
    assert module.weight.shape == (1,) and module.weight.item() == 0.25
    np.testing.assert_allclose(module(x).numpy(), np.where(x.numpy() >= 0, x.numpy(), 0.25 * x.numpy()))
    assert nn.PReLU(3).weight.shape == (3,)
    with pytest.raises(ValueError, match="2 slopes"):
        F.prelu(x, tg.ones(2, dtype=tg.float64))


# ---- pad, normalize, cosine_similarity ----------------------------------------------------------------


@given(shape=shapes(max_side=4), data=st.data())
def test_pad_matches_numpy_pad_with_pytorch_order_and_crops_with_negatives(shape, data):
    x = leaf(data, shape)
    dims = data.draw(st.integers(1, len(shape)))
    amounts = []
    for k in range(dims):
        size = shape[len(shape) - 1 - k]
        before = data.draw(st.integers(-(size // 2), 2))
        after = data.draw(st.integers(-(size - max(-before, 0) - 1) if size > 1 else 0, 2))
        amounts += [before, after]
    value = data.draw(st.sampled_from([0.0, -1.5]))
    out = F.pad(x, tuple(amounts), value=value)
    reference = x.numpy()
    for k in range(dims):
        axis = len(shape) - 1 - k
        before, after = amounts[2 * k], amounts[2 * k + 1]
        index = [slice(None)] * len(shape)
        index[axis] = slice(max(-before, 0), reference.shape[axis] - max(-after, 0))
        reference = reference[tuple(index)]
        widths = [(0, 0)] * len(shape)
        widths[axis] = (max(before, 0), max(after, 0))
        reference = np.pad(reference, widths, constant_values=value)
    np.testing.assert_array_equal(out.numpy(), reference)
    tg.gradcheck(lambda x: F.pad(x, tuple(amounts), value=value), [x])


def test_pad_rejects_bad_arguments():
    x = tg.ones(2, 3)
    with pytest.raises(ValueError, match="even number"):
        F.pad(x, (1,))
    with pytest.raises(ValueError, match="shape"):
        F.pad(x, (1, 1, 1, 1, 1, 1))
    with pytest.raises(NotImplementedError, match="constant"):
        F.pad(x, (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="negative size"):
        F.pad(x, (-2, -2))


@given(shape=shapes(min_dims=2), data=st.data())
def test_normalize_and_cosine_similarity_match_formulas_and_gradcheck(shape, data):
    away = FLOATS.filter(lambda v: abs(v) > 0.1)
    x, y = leaf(data, shape, away), leaf(data, shape, away)
    a, b = x.numpy(), y.numpy()
    norm_a = np.sqrt((a * a).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(F.normalize(x).numpy(), a / norm_a, rtol=1e-12)
    norm_b = np.sqrt((b * b).sum(axis=1))
    expected = (a * b).sum(axis=1) / (norm_a[:, 0] * norm_b)
    np.testing.assert_allclose(F.cosine_similarity(x, y).numpy(), expected, rtol=1e-12)
    tg.gradcheck(F.normalize, [x])
    tg.gradcheck(lambda x, y: F.cosine_similarity(x, y, dim=-1), [x, y])
    np.testing.assert_allclose(F.normalize(x, p=1, dim=0).abs().sum(0).numpy(), np.ones(a.shape[1:]))


def test_normalize_keeps_zero_vectors_zero_and_cosine_similarity_checks_shapes():
    np.testing.assert_array_equal(F.normalize(tg.zeros(2, 3)).numpy(), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        F.cosine_similarity(tg.ones(2, 3), tg.ones(2, 4))


def test_unflatten_module():
    assert nn.Unflatten(1, (3, 4))(tg.ones(2, 12)).shape == (2, 3, 4)


# ---- containers, hooks, dtypes ------------------------------------------------------------------------


def test_parameter_list_registers_parameters_and_state_dict_names():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = nn.ParameterList([nn.Parameter(tg.ones(2)), tg.zeros(3)])

    model = Model()
    assert list(model.state_dict()) == ["weights.0", "weights.1"]
    assert len(list(model.parameters())) == 2 and all(isinstance(p, nn.Parameter) for p in model.weights)
    model.weights.append(tg.ones(1))
    assert len(model.weights) == 3 and model.weights[-1].shape == (1,)
    assert isinstance(model.weights[:2], nn.ParameterList)
    with pytest.raises(IndexError, match="out of range"):
        model.weights[5]
    with pytest.raises(TypeError, match="Parameter or Tensor"):
        model.weights.append([1.0])


def test_parameter_dict_registers_parameters_under_keys():
    params = nn.ParameterDict({"a": nn.Parameter(tg.ones(2)), "b": tg.zeros(1)})
    assert params.keys() == ["a", "b"] and "a" in params and len(params) == 2
    assert list(dict(params.named_parameters())) == ["a", "b"]
    params["c"] = nn.Parameter(tg.ones(3))
    assert params.pop("a").shape == (2,) and params.keys() == ["b", "c"]
    assert params.get("zz") is None
    with pytest.raises(KeyError, match="no key 'zz'"):
        params["zz"]


def test_forward_hooks_see_and_replace_inputs_and_outputs_and_remove():
    layer = nn.Linear(2, 2)
    seen = []
    pre = layer.register_forward_pre_hook(lambda module, args: (args[0] * 0,))
    post = layer.register_forward_hook(lambda module, args, output: seen.append((args, output)))
    out = layer(tg.ones(2))
    np.testing.assert_allclose(out.numpy(), layer.bias.numpy())
    assert len(seen) == 1 and seen[0][1] is out
    np.testing.assert_array_equal(seen[0][0][0].numpy(), np.zeros(2))
    pre.remove()
    pre.remove()
    doubled = layer.register_forward_hook(lambda module, args, output: output * 2)
    expected = 2 * (layer.weight.numpy().sum(1) + layer.bias.numpy())
    np.testing.assert_allclose(layer(tg.ones(2)).numpy(), expected, rtol=1e-6)
    doubled.remove()
    post.remove()
    np.testing.assert_allclose(layer(tg.ones(2)).numpy(), expected / 2, rtol=1e-6)
    with layer.register_forward_hook(lambda module, args, output: output * 0):
        assert not layer(tg.ones(2)).numpy().any()
    assert layer(tg.ones(2)).numpy().any()
    with pytest.raises(TypeError, match="callable"):
        layer.register_forward_hook(3)


def test_module_half_converts_floating_parameters():
    layer = nn.Linear(2, 3).half()
    assert layer.weight.dtype == tg.float16 and layer.bias.dtype == tg.float16


# ---- Embedding.from_pretrained ------------------------------------------------------------------------


def test_embedding_from_pretrained_frozen_by_default_and_shares_the_table():
    table = tg.tensor(np.arange(12.0).reshape(4, 3))
    state = tg.get_rng_state()
    embedding = nn.Embedding.from_pretrained(table)
    np.testing.assert_array_equal(tg.get_rng_state().numpy(), state.numpy())  # no random draw
    assert not embedding.weight.requires_grad and embedding.num_embeddings == 4
    np.testing.assert_array_equal(embedding(tg.tensor([[2, 0]])).numpy(), [[[6, 7, 8], [0, 1, 2]]])
    table._data[0, 0] = 100.0
    assert embedding.weight[0, 0].item() == 100.0


def test_embedding_from_pretrained_trainable_with_padding_row_without_gradient():
    table = tg.tensor(np.arange(12.0).reshape(4, 3))
    embedding = nn.Embedding.from_pretrained(table, freeze=False, padding_idx=1)
    assert embedding.weight.requires_grad
    np.testing.assert_array_equal(embedding.weight[1].numpy(), [3, 4, 5])  # kept, not zeroed
    embedding(tg.tensor([1, 2, 1])).sum().backward()
    np.testing.assert_array_equal(embedding.weight.grad.numpy()[:, 0], [0, 0, 1, 0])


def test_embedding_from_pretrained_rejects_bad_tables():
    with pytest.raises(TypeError, match=r"tg\.tensor"):
        nn.Embedding.from_pretrained(np.ones((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        nn.Embedding.from_pretrained(tg.ones(3))
    with pytest.raises(TypeError, match="floating"):
        nn.Embedding.from_pretrained(tg.tensor([[1, 2]]))


# ---- init ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (3, 8), (5, 2, 3), (4, 4)])
def test_orthogonal_gives_orthonormal_rows_or_columns_times_gain(shape):
    tg.manual_seed(0)
    w = tg.empty(*shape, dtype=tg.float64)
    assert nn.init.orthogonal_(w, gain=2.0) is w
    flat = w.numpy().reshape(shape[0], -1) / 2.0
    small = min(flat.shape)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)
    with pytest.raises(ValueError, match="2 dims"):
        nn.init.orthogonal_(tg.empty(3))


def test_calculate_gain_matches_the_documented_table():
    assert nn.init.calculate_gain("linear") == 1 and nn.init.calculate_gain("conv2d") == 1
    assert nn.init.calculate_gain("sigmoid") == 1 and nn.init.calculate_gain("tanh") == 5 / 3
    assert nn.init.calculate_gain("relu") == math.sqrt(2) and nn.init.calculate_gain("selu") == 0.75
    assert nn.init.calculate_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    with pytest.raises(ValueError, match="unsupported"):
        nn.init.calculate_gain("swish")


def test_kaiming_normal_has_the_documented_std():
    tg.manual_seed(0)
    w = nn.init.kaiming_normal_(tg.empty(400, 250, dtype=tg.float64), nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 250)) < 0.02 * math.sqrt(2 / 250)
    w = nn.init.kaiming_normal_(tg.empty(400, 250, dtype=tg.float64), mode="fan_out", nonlinearity="tanh")
    assert abs(w.numpy().std() - (5 / 3) / math.sqrt(400)) < 0.02 * (5 / 3) / math.sqrt(400)
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_normal_(w, mode="fan")


def test_trunc_normal_stays_in_bounds_with_the_truncated_moments():
    tg.manual_seed(0)
    w = nn.init.trunc_normal_(tg.empty(200, 200, dtype=tg.float64), mean=0.5, std=1.0, a=0.0, b=2.0)
    values = w.numpy()
    assert values.min() >= 0.0 and values.max() <= 2.0
    # Mean of N(0.5, 1) on [0, 2]: μ + σ (φ(α) - φ(β)) / (Φ(β) - Φ(α)), α = -0.5, β = 1.5.
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    expected = 0.5 + (phi(-0.5) - phi(1.5)) / (cdf(1.5) - cdf(-0.5))
    assert abs(values.mean() - expected) < 0.01
    with pytest.raises(ValueError, match="a < b"):
        nn.init.trunc_normal_(w, a=1.0, b=0.0)


# ---- parameters_to_vector ------------------------------------------------------------------------------


def test_parameters_to_vector_and_back_round_trip_and_is_differentiable():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)).double()
    vector = nn.utils.parameters_to_vector(model.parameters())
    assert vector.shape == (3 * 2 + 2 + 2 + 1,)
    np.testing.assert_array_equal(vector.numpy()[:6], model[0].weight.numpy().reshape(-1))
    (vector * vector).sum().backward()
    np.testing.assert_allclose(model[0].weight.grad.numpy(), 2 * model[0].weight.numpy())
    nn.utils.vector_to_parameters(tg.arange(11, dtype=tg.float64), model.parameters())
    np.testing.assert_array_equal(model[1].bias.numpy(), [10.0])
    np.testing.assert_array_equal(model[0].weight.numpy(), np.arange(6.0).reshape(2, 3))
    with pytest.raises(ValueError, match="11"):
        nn.utils.vector_to_parameters(tg.zeros(4), model.parameters())
    with pytest.raises(TypeError, match="iterable"):
        nn.utils.parameters_to_vector(model[0].weight)
