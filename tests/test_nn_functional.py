"""nn.functional: linear, embedding, dropout, softmax/log_softmax and the losses, checked against NumPy
formulas written out here and against finite differences in float64."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F

REDUCTIONS = ["mean", "sum", "none"]


def f64(array, requires_grad=True):
    return tg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def reference_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def reference_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", smoothing=0.0):
    """-w[t] log p[t] (+ label smoothing) per entry, written from the formula with the class axis 1."""
    target_shape = np.shape(t)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t)[None]
    classes = x.shape[1]
    logp = np.moveaxis(reference_log_softmax(x, 1), 1, -1).reshape(-1, classes)
    flat = t.reshape(-1)
    w = np.ones(classes) if weight is None else weight
    valid = flat != ignore_index
    safe = np.where(valid, flat, 0)
    w_t = w[safe] * valid
    losses = -logp[np.arange(len(flat)), safe] * w_t
    losses = (1 - smoothing) * losses + smoothing / classes * (-(logp * w).sum(axis=1)) * valid
    if reduction == "none":
        return losses.reshape(target_shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / w_t.sum()


# ---- linear, embedding, dropout -------------------------------------------------------------------------


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    sizes=st.tuples(st.integers(1, 4), st.integers(1, 4)),
)
def test_linear_matches_formula_and_gradcheck_for_any_leading_dims(lead, sizes):
    rng = np.random.default_rng(len(lead) + sizes[0])
    in_features, out_features = sizes
    x = f64(rng.standard_normal((*lead, in_features)))
    w = f64(rng.standard_normal((out_features, in_features)))
    b = f64(rng.standard_normal(out_features))
    out = F.linear(x, w, b)
    np.testing.assert_allclose(out.numpy(), x.numpy() @ w.numpy().T + b.numpy())
    assert tg.gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b])
    assert tg.gradcheck(lambda x, w: F.linear(x, w), [x, w])


def test_linear_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"in_features=3.*\(2, 4\).*\(5, 3\)"):
        F.linear(tg.randn(2, 4), tg.randn(5, 3))
    with pytest.raises(ValueError, match="bias must have shape"):
        F.linear(tg.randn(2, 3), tg.randn(5, 3), tg.randn(4))


def test_embedding_picks_rows_and_repeated_indices_accumulate(device):
    weight = tg.tensor(np.arange(12.0).reshape(4, 3), device=device, requires_grad=True)
    index = tg.tensor([[0, 2, 2], [3, 0, 0]], device=device)
    out = F.embedding(index, weight)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.numpy(), np.arange(12.0).reshape(4, 3)[index.numpy()])
    out.sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy()[:, 0], [3.0, 0.0, 2.0, 1.0])


def test_embedding_padding_row_gets_no_gradient_but_is_still_looked_up():
    weight = f64(np.random.default_rng(1).standard_normal((5, 2)))
    index = tg.tensor([1, 4, 1, 0])
    out = F.embedding(index, weight, padding_idx=1)
    np.testing.assert_array_equal(out.numpy()[0], weight.numpy()[1])
    out.sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy()[1], [0.0, 0.0])
    np.testing.assert_array_equal(weight.grad.numpy()[4], [1.0, 1.0])
    weight.grad = None
    F.embedding(index, weight, padding_idx=-1).sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy()[4], [0.0, 0.0])


def test_embedding_gradcheck():
    weight = f64(np.random.default_rng(2).standard_normal((6, 3)))
    index = tg.tensor([[5, 0], [2, 5]])
    assert tg.gradcheck(lambda w: F.embedding(index, w), [weight])


def test_embedding_out_of_range_index_names_index_and_vocabulary_size():
    weight = tg.randn(5, 2)
    with pytest.raises(IndexError, match=r"index 7 .* size 5"):
        F.embedding(tg.tensor([1, 7]), weight)
    with pytest.raises(IndexError, match=r"index -1 .* size 5"):
        F.embedding(tg.tensor([-1]), weight)
    with pytest.raises(TypeError, match="integer"):
        F.embedding(tg.tensor([1.0]), weight)


def test_dropout_is_identity_in_eval_and_scales_kept_elements_in_training():
    x = tg.ones(2000)
    assert F.dropout(x, 0.5, training=False) is x
    out = F.dropout(x, 0.25).numpy()
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.18 < (out == 0).mean() < 0.32
    with pytest.raises(ValueError, match="p must be in"):
        F.dropout(x, 1.5)


# ---- activations ----------------------------------------------------------------------------------------


def test_activations_match_formulas_and_gradcheck():
    x = f64([-2.0, -0.5, 0.3, 4.0])
    np.testing.assert_allclose(F.relu(x).numpy(), np.maximum(x.numpy(), 0))
    np.testing.assert_allclose(F.tanh(x).numpy(), np.tanh(x.numpy()))
    np.testing.assert_allclose(F.sigmoid(x).numpy(), 1 / (1 + np.exp(-x.numpy())))
    for activation in (F.relu, F.tanh, F.sigmoid):
        assert tg.gradcheck(activation, [x])


# ---- softmax, log_softmax -------------------------------------------------------------------------------


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), data=st.data())
def test_softmax_and_log_softmax_match_formula_and_gradcheck(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = f64(np.random.default_rng(sum(shape)).standard_normal(shape) * 3)
    np.testing.assert_allclose(F.log_softmax(x, dim).numpy(), reference_log_softmax(x.numpy(), dim))
    np.testing.assert_allclose(F.softmax(x, dim).numpy(), np.exp(reference_log_softmax(x.numpy(), dim)))
    assert tg.gradcheck(lambda x: F.log_softmax(x, dim), [x])
    assert tg.gradcheck(lambda x: F.softmax(x, dim), [x])


def test_log_softmax_is_finite_for_extreme_logits_and_dtype_casts():
    x = tg.tensor([[1e4, -1e4, 0.0]], dtype=tg.float32)
    np.testing.assert_array_equal(F.log_softmax(x, dim=1).numpy(), [[0.0, -2e4, -1e4]])
    assert F.softmax(x, dim=1, dtype=tg.float64).dtype == tg.float64


# ---- mse_loss -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_matches_formula_and_gradcheck(reduction):
    rng = np.random.default_rng(3)
    x, y = f64(rng.standard_normal((3, 4))), f64(rng.standard_normal((3, 4)))
    expected = (x.numpy() - y.numpy()) ** 2
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    np.testing.assert_allclose(F.mse_loss(x, y, reduction=reduction).numpy(), expected)
    assert tg.gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [x, y])


@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**16),
)
def test_mse_loss_gradcheck_with_broadcasting(shapes, reduction, seed):
    rng = np.random.default_rng(seed)
    x, y = (f64(rng.standard_normal(shape)) for shape in shapes.input_shapes)
    expected = (x.numpy() - y.numpy()) ** 2
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    np.testing.assert_allclose(F.mse_loss(x, y, reduction=reduction).numpy(), expected)
    assert tg.gradcheck(lambda x, y: F.mse_loss(x, y, reduction=reduction), [x, y])


def test_loss_rejects_unknown_reduction_and_unbroadcastable_shapes():
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(tg.randn(3), tg.randn(3), reduction="avg")
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        F.mse_loss(tg.randn(3), tg.randn(4))


def test_legacy_size_average_and_reduce_flags_map_to_reduction():
    x, y = tg.tensor([1.0, 2.0]), tg.tensor([0.0, 0.0])
    assert F.mse_loss(x, y, size_average=False).item() == 5.0
    assert F.mse_loss(x, y, reduce=False).shape == (2,)


# ---- cross_entropy, nll_loss ----------------------------------------------------------------------------

CLASS_SHAPES = [(5,), (4, 5), (3, 5, 2), (2, 5, 2, 3)]


def class_case(shape, seed, ignore=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    target_shape = () if len(shape) == 1 else (shape[0], *shape[2:])
    t = rng.integers(0, shape[0] if len(shape) == 1 else shape[1], target_shape)
    if ignore and t.ndim:
        t.reshape(-1)[0] = -100
    return x, t


@pytest.mark.parametrize("shape", CLASS_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_matches_formula_for_every_layout(shape, reduction, weighted, smoothing):
    x, t = class_case(shape, seed=len(shape))
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    weight = np.linspace(0.5, 2.0, classes) if weighted else None
    out = F.cross_entropy(
        f64(x),
        tg.tensor(t),
        weight=None if weight is None else f64(weight, False),
        reduction=reduction,
        label_smoothing=smoothing,
    )
    expected = reference_cross_entropy(x, t, weight, reduction=reduction, smoothing=smoothing)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


@given(
    shape=st.sampled_from(CLASS_SHAPES),
    reduction=st.sampled_from(REDUCTIONS),
    weighted=st.booleans(),
    smoothing=st.sampled_from([0.0, 0.1, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_cross_entropy_gradcheck(shape, reduction, weighted, smoothing, seed):
    x, t = class_case(shape, seed)
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    weight = f64(np.random.default_rng(seed).random(classes) + 0.5, False) if weighted else None
    target = tg.tensor(t)
    assert tg.gradcheck(
        lambda x: F.cross_entropy(x, target, weight, reduction=reduction, label_smoothing=smoothing),
        [f64(x)],
    )


@given(shape=st.sampled_from(CLASS_SHAPES), reduction=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2**16))
def test_nll_loss_gradcheck_and_equals_cross_entropy_after_log_softmax(shape, reduction, seed):
    x, t = class_case(shape, seed)
    target = tg.tensor(t)
    logits = f64(x)
    dim = 0 if x.ndim == 1 else 1
    composed = F.nll_loss(F.log_softmax(logits, dim), target, reduction=reduction)
    fused = F.cross_entropy(logits, target, reduction=reduction)
    np.testing.assert_allclose(fused.numpy(), composed.numpy(), rtol=1e-12)
    weight = f64(np.random.default_rng(seed).random(x.shape[dim]) + 0.5, False)
    assert tg.gradcheck(lambda lp: F.nll_loss(lp, target, weight, reduction=reduction), [logits])


def test_cross_entropy_ignore_index_averages_over_the_rest_only():
    logits = f64([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [9.0, -9.0, 0.0]])
    loss = F.cross_entropy(logits, tg.tensor([0, 2, 1]), ignore_index=1)
    expected = -(reference_log_softmax(logits.numpy(), 1)[[0, 1], [0, 2]]).mean()
    np.testing.assert_allclose(loss.item(), expected)
    loss.backward()
    np.testing.assert_array_equal(logits.grad.numpy()[2], [0.0, 0.0, 0.0])


def test_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradient():
    logits = tg.randn(3, 4, requires_grad=True)
    loss = F.cross_entropy(logits, tg.tensor([-100, -100, -100]))
    assert np.isnan(loss.item())
    loss.backward()
    np.testing.assert_array_equal(logits.grad.numpy(), np.zeros((3, 4)))


def test_cross_entropy_is_exact_and_finite_for_logits_of_1e4_in_float32():
    logits = tg.tensor([[1e4, -1e4], [-1e4, 1e4], [1e4, 1e4]], dtype=tg.float32, requires_grad=True)
    losses = F.cross_entropy(logits, tg.tensor([1, 1, 0]), reduction="none")
    assert losses.dtype == tg.float32
    np.testing.assert_array_equal(losses.numpy(), np.array([2e4, 0.0, np.log(2.0)], dtype=np.float32))
    losses.sum().backward()
    np.testing.assert_array_equal(logits.grad.numpy(), [[1.0, -1.0], [0.0, 0.0], [-0.5, 0.5]])


def test_cross_entropy_is_one_node_on_the_tape():
    loss = F.cross_entropy(tg.randn(4, 3, requires_grad=True), tg.tensor([0, 1, 2, 0]))
    assert loss.grad_fn.name == "CrossEntropy"


def test_cross_entropy_on_each_device_matches_cpu(device):
    x, t = class_case((4, 5, 3), seed=7)
    logits = tg.tensor(x, device=device, requires_grad=True)
    loss = F.cross_entropy(logits, tg.tensor(t, device=device), label_smoothing=0.1)
    loss.backward()
    assert loss.device == device and logits.grad.device == device
    np.testing.assert_allclose(loss.item(), reference_cross_entropy(x, t, smoothing=0.1), rtol=1e-10)


def test_class_target_errors_say_what_is_wrong():
    logits = tg.randn(3, 4)
    with pytest.raises(IndexError, match=r"target 4 is out of range for 4 classes"):
        F.cross_entropy(logits, tg.tensor([0, 4, 1]))
    with pytest.raises(IndexError, match=r"target -2 is out of range"):
        F.nll_loss(logits, tg.tensor([0, -2, 1]))
    with pytest.raises(TypeError, match="integer tensor of class indices"):
        F.cross_entropy(logits, tg.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match=r"or class probabilities of the input's shape \(3, 4\)"):
        F.cross_entropy(logits, tg.rand(3, 5))
    with pytest.raises(
        ValueError, match=r"input of shape \(3, 4\) the target must have shape \(3,\), got \(2,\)"
    ):
        F.cross_entropy(logits, tg.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2]), weight=tg.ones(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(logits, tg.tensor([0, 1, 2]), label_smoothing=1.5)


# ---- binary_cross_entropy_with_logits -------------------------------------------------------------------


def reference_bce(x, y, weight=1.0, pos_weight=1.0):
    sigma = 1 / (1 + np.exp(-x))
    return -weight * (pos_weight * y * np.log(sigma) + (1 - y) * np.log(1 - sigma))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits_matches_formula(reduction):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 3)) * 2, rng.random((4, 3))
    weight, pos_weight = rng.random((4, 1)) + 0.5, rng.random(3) + 0.5
    out = F.binary_cross_entropy_with_logits(
        f64(x), f64(y), weight=f64(weight, False), reduction=reduction, pos_weight=f64(pos_weight, False)
    )
    expected = reference_bce(x, y, weight, pos_weight)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    with_pos_weight=st.booleans(),
    with_weight=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_bce_with_logits_gradcheck_in_input_target_and_weights(shape, with_pos_weight, with_weight, seed):
    rng = np.random.default_rng(seed)
    x, y = f64(rng.standard_normal(shape) * 3), f64(rng.random(shape))
    pos_weight = f64(rng.random(shape[-1]) + 0.5)
    weight = f64(rng.random(shape) + 0.5)

    def loss(x, y, pos_weight, weight):
        return F.binary_cross_entropy_with_logits(
            x, y, weight=weight if with_weight else None, pos_weight=pos_weight if with_pos_weight else None
        )

    assert tg.gradcheck(loss, [x, y, pos_weight, weight])


def test_bce_with_logits_is_finite_and_exact_for_extreme_logits():
    x = tg.tensor([1e4, -1e4, 1e4, -1e4, 0.0], dtype=tg.float32, requires_grad=True)
    y = tg.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    losses = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(losses.numpy(), [0.0, 0.0, 1e4, 1e4, np.log(2.0)], rtol=1e-7)
    losses.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 1.0, -1.0, -0.5])


def test_bce_with_logits_rejects_mismatched_target_shape():
    with pytest.raises(ValueError, match=r"target shape \(3,\) must equal input shape \(2,\)"):
        F.binary_cross_entropy_with_logits(tg.randn(2), tg.rand(3))


def test_losses_on_a_second_gpu_of_the_cupy_stand_in_match_the_cpu(monkeypatch):
    from fake_cupy import install

    install(monkeypatch, device_count=2)
    x, t = class_case((4, 5, 3), seed=11)
    y = np.random.default_rng(11).random((4, 5, 3))
    rows = np.array([[1, 5], [0, 1]])
    embedding_weight = np.random.default_rng(12).standard_normal((6, 2))

    def losses(device):
        logits = tg.tensor(x, device=device, requires_grad=True)
        weight = tg.tensor(embedding_weight, device=device, requires_grad=True)
        target = tg.tensor(t, device=device)
        total = (
            F.cross_entropy(logits, target, label_smoothing=0.1)
            + F.nll_loss(F.log_softmax(logits, 1), target, reduction="sum")
            + F.binary_cross_entropy_with_logits(logits, tg.tensor(y, device=device))
            + F.mse_loss(logits, tg.tensor(y, device=device))
            + F.embedding(tg.tensor(rows, device=device), weight, padding_idx=0).sum()
        )
        total.backward()
        assert str(total.device) == device and str(logits.grad.device) == device
        return total.item(), logits.grad.numpy(), weight.grad.numpy()

    for got, want in zip(losses("cuda:1"), losses("cpu")):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(IndexError, match="target 7"):  # checked on the GPU, raised at the next host read
        F.cross_entropy(tg.tensor(x, device="cuda:1"), tg.tensor(np.full((4, 3), 7), device="cuda:1")).item()
