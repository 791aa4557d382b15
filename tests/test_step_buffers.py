"""The tanh RNN's shared step buffers (states and step gradients written into one (T, B, H) buffer
each): the gradients are those of the path with fresh arrays, whatever part of the graph the loss uses."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import autograd, backend, nn
from tinygrad_rnn.nn import rnn as rnn_module


def _gradients(monkeypatch, shared: bool, loss_of, dtype=tg.float32, repeat: int = 1, **options) -> dict:
    """Every parameter's and the input's gradient, with or without the shared buffers."""
    monkeypatch.setattr(rnn_module, "SHARED_STEP_BUFFERS_MIN", 0 if shared else 10**12)
    tg.manual_seed(0)
    layer = nn.RNN(5, 7, dtype=dtype, **options)
    x = tg.Tensor(np.random.default_rng(1).standard_normal((9, 3, 5)), dtype=dtype, requires_grad=True)
    loss = loss_of(layer, x)
    for _ in range(repeat):
        loss.backward(retain_graph=repeat > 1)
    grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
    grads["x"] = x.grad.numpy()
    return grads


def _full(layer, x):
    output, h_n = layer(x)
    return (output * output).sum() + (h_n * 3.0).sum()


def _some_steps(layer, x):
    output, _ = layer(x)
    return (output[2:5] * output[2:5]).sum()  # steps after 4 get no gradient


def _last_state(layer, x):
    _, h_n = layer(x)
    return (h_n * h_n).sum()


def _used_twice(layer, x):
    first, _ = layer(x)
    second, _ = layer(x * 0.5)
    return (first * second).sum() + first.sum()


@pytest.mark.parametrize("loss_of", [_full, _some_steps, _last_state, _used_twice])
@pytest.mark.parametrize("options", [{}, {"bidirectional": True}, {"num_layers": 2}])
def test_shared_buffers_give_the_gradients_of_fresh_arrays(monkeypatch, loss_of, options):
    expected = _gradients(monkeypatch, False, loss_of, **options)
    got = _gradients(monkeypatch, True, loss_of, **options)
    for name, value in expected.items():
        assert got[name].dtype == np.float32, name
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


def test_a_second_walk_with_retain_graph_accumulates_the_same_gradient(monkeypatch):
    once = _gradients(monkeypatch, True, _full)
    twice = _gradients(monkeypatch, True, _full, repeat=2)
    for name, value in once.items():
        np.testing.assert_allclose(twice[name], 2 * value, rtol=1e-5, atol=1e-5, err_msg=name)


def test_float64_stays_float64(monkeypatch):
    got = _gradients(monkeypatch, True, _full, dtype=tg.float64)
    expected = _gradients(monkeypatch, False, _full, dtype=tg.float64)
    for name, value in expected.items():
        assert got[name].dtype == np.float64
        np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


def test_the_weight_gradient_reads_the_buffers_without_concatenating(monkeypatch):
    joined = []
    product = autograd._product_of_runs

    def spy(lefts, rights):
        out = product(lefts, rights)
        joined.append(out is not None)
        return out

    monkeypatch.setattr(autograd, "_product_of_runs", spy)
    _gradients(monkeypatch, True, _full)
    assert joined == [True]


def test_runs_of_views_are_found_and_joined_without_copying():
    buffer = np.arange(10 * 3 * 4, dtype=np.float32).reshape(10, 3, 4)
    fresh = np.zeros((3, 4), np.float32)
    arrays = [fresh] + [buffer[i] for i in range(5)] + [buffer[i] for i in range(6, 10)]
    runs = backend.contiguous_runs(arrays)
    assert runs == [(0, 1), (1, 6), (6, 10)]
    for start, stop in runs:
        joined = backend.join_run(arrays[start:stop])
        np.testing.assert_array_equal(joined, np.stack(arrays[start:stop]))
        assert start == 0 or np.shares_memory(joined, buffer)
    reversed_steps = [buffer[i] for i in range(9, -1, -1)]
    assert len(backend.contiguous_runs(reversed_steps)) == 10
    assert len(backend.contiguous_runs([buffer[0], buffer[1][:, :2], buffer[2]])) == 3


def test_the_walk_lets_go_of_its_gradient_buffer():
    holder = autograd.StepGradients((4, 2))
    like = np.zeros(2, np.float32)
    assert holder.slot(0, like) is None  # outside a walk: the op uses a fresh array
    x = tg.Tensor(np.ones(2, np.float32), requires_grad=True)
    seen = []
    y = x * 2.0
    y.register_hook(lambda g: seen.append(holder.slot(1, like).shape))  # an interior hook runs in the walk
    y.sum().backward()
    assert seen == [(2,)]
    assert holder.array is None
