"""Each speed-up in ``fastpaths.py`` gives the plain path's gradients: the deferred weight-gradient
product (``outer_product``) against ``a.T @ g`` added use by use."""

import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import fastpaths, nn


def _plain(a, g):
    return a.T @ g


def test_outer_product_sum_equals_the_sum_of_the_plain_products(monkeypatch):
    monkeypatch.setattr(fastpaths, "DEFER_MIN_BYTES", 0)
    rng = np.random.default_rng(0)
    pairs = [(rng.standard_normal((4, 3)), rng.standard_normal((4, 5))) for _ in range(6)]
    dense = rng.standard_normal((3, 5))
    total = None
    for a, g in pairs:
        term = fastpaths.outer_product(a, g)
        total = term if total is None else total + term
    total = dense + total  # an array added to a deferred sum stays deferred
    assert isinstance(total, fastpaths.OuterProductSum)
    expected = sum(_plain(a, g) for a, g in pairs) + dense
    np.testing.assert_allclose(fastpaths.dense(total), expected, rtol=1e-12)


def test_dense_returns_an_array_unchanged():
    array = np.ones((2, 2))
    assert fastpaths.dense(array) is array


def _model_gradients(kind: str, seed: int = 0) -> dict:
    tg.manual_seed(seed)
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](3, 5, num_layers=2, dtype=tg.float64)
    readout = nn.Linear(5, 2, dtype=tg.float64)
    rng = np.random.default_rng(seed)
    x = tg.tensor(rng.standard_normal((7, 4, 3)), dtype=tg.float64, requires_grad=True)
    target = tg.tensor(rng.standard_normal((7, 4, 2)), dtype=tg.float64)
    output, _ = layer(x)
    F.mse_loss(readout(output), target).backward()
    grads = {name: p.grad.numpy() for name, p in [*layer.named_parameters(), *readout.named_parameters()]}
    grads["x"] = x.grad.numpy()
    return grads


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_deferred_weight_gradients_equal_the_plain_products(monkeypatch, kind):
    monkeypatch.setattr(fastpaths, "DEFER_MIN_BYTES", 0)  # defer every weight gradient, however small
    deferred = _model_gradients(kind)
    monkeypatch.setattr(fastpaths, "outer_product", _plain)
    plain = _model_gradients(kind)
    assert deferred.keys() == plain.keys()
    for name, value in plain.items():
        np.testing.assert_allclose(deferred[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_deferred_gradient_reaches_a_leaf_hook_and_grad_as_an_array(monkeypatch):
    monkeypatch.setattr(fastpaths, "DEFER_MIN_BYTES", 0)
    w = tg.tensor(np.ones((3, 2)), dtype=tg.float64, requires_grad=True)
    seen = []
    w.register_hook(lambda g: seen.append(type(g._data)))
    x = tg.tensor(np.arange(6.0).reshape(2, 3), dtype=tg.float64)
    ((x @ w).sum() + (x @ w).sum()).backward()
    assert seen == [np.ndarray] and type(w.grad._data) is np.ndarray
    np.testing.assert_allclose(w.grad.numpy(), 2 * x.numpy().sum(axis=0)[:, None] * np.ones((3, 2)))


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_anomaly_mode_checks_a_deferred_gradient(monkeypatch):
    monkeypatch.setattr(fastpaths, "DEFER_MIN_BYTES", 0)
    # Finite forward, but dW = xᵀ g = 1e200 · 1e200 overflows: only the deferred product is infinite.
    w = tg.tensor(np.full((2, 2), 1e-200), dtype=tg.float64, requires_grad=True)
    x = tg.tensor(np.full((1, 2), 1e200), dtype=tg.float64)
    loss = (x @ w).sum() * 1e200
    expected = "MatMul produced Inf in its backward"
    with pytest.raises(RuntimeError, match=expected), tg.autograd.detect_anomaly():
        loss.backward()


def test_outer_product_defers_the_small_and_the_large_gradients_and_computes_the_ones_between():
    def kind(m: int, n: int) -> type:
        return type(fastpaths.outer_product(np.ones((2, m), np.float32), np.ones((2, n), np.float32)))

    assert kind(64, 64) is fastpaths.OuterProductSum  # 16 KB: under DEFER_BELOW_BYTES
    assert kind(128, 128) is np.ndarray  # 64 KB
    assert kind(256, 256) is np.ndarray  # 256 KB, square
    assert kind(128, 512) is fastpaths.OuterProductSum  # 256 KB, an LSTM's gate weight
    assert kind(128, 384) is fastpaths.OuterProductSum  # 192 KB, a GRU's
    assert kind(64, 256) is np.ndarray  # 64 KB, gate-shaped but under DEFER_GATES_MIN_BYTES
    assert kind(512, 256) is fastpaths.OuterProductSum  # 512 KB: DEFER_MIN_BYTES


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_the_default_size_policy_gives_the_plain_products(monkeypatch, kind):
    default = _model_gradients(kind, seed=3)  # H = 5: every weight gradient deferred by size
    monkeypatch.setattr(fastpaths, "outer_product", _plain)
    plain = _model_gradients(kind, seed=3)
    for name, value in plain.items():
        np.testing.assert_allclose(default[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
