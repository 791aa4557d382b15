"""checkpoint() and checkpoint_sequence(): same values and gradients as the plain graph, fewer arrays kept."""

import gc
import weakref

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.checkpoint import Checkpoint, checkpoint, checkpoint_segments, checkpoint_sequence


def _leaf(shape, seed=0, requires_grad=True):
    data = np.random.default_rng(seed).standard_normal(shape)
    return tg.tensor(data, dtype=tg.float64, requires_grad=requires_grad)


def _grads(tensors):
    out = [None if t.grad is None else t.grad.numpy().copy() for t in tensors]
    for t in tensors:
        t.grad = None
    return out


def _assert_same(first, second, rtol=0.0):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0.0)


@given(rows=st.integers(1, 4), cols=st.integers(1, 5), seed=st.integers(0, 100))
def test_checkpoint_gradients_equal_the_plain_graph_with_closed_over_weights(rows, cols, seed):
    w = _leaf((cols, cols), seed)
    b = _leaf((cols,), seed + 1)
    x = _leaf((rows, cols), seed + 2)

    def block(x):
        return ((x @ w + b).tanh() @ w).sigmoid() * x

    plain = block(x)
    (plain * plain).sum().backward()
    expected = _grads([x, w, b])
    recomputed = checkpoint(block, x)
    np.testing.assert_array_equal(recomputed.numpy(), plain.numpy())
    (recomputed * recomputed).sum().backward()
    _assert_same(_grads([x, w, b]), expected)


def test_checkpoint_with_tuple_outputs_and_a_non_tensor_argument():
    w = _leaf((3, 3))
    x, h = _leaf((2, 3), 1), _leaf((2, 3), 2)

    def block(x, h, scale):
        new_h = (x @ w + h).tanh() * scale
        return new_h, new_h.sum(dim=1)

    def loss(outputs):
        return (outputs[0] ** 2).sum() + (outputs[1] * outputs[1]).sum()

    loss(block(x, h, 0.5)).backward()
    expected = _grads([x, h, w])
    outputs = checkpoint(block, x, h, 0.5)
    assert isinstance(outputs, tuple) and len(outputs) == 2
    loss(outputs).backward()
    _assert_same(_grads([x, h, w]), expected)


def test_only_one_output_of_a_tuple_receiving_a_gradient():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1)

    def block(x):
        y = x @ w
        return y.tanh(), y.exp()

    block(x)[1].sum().backward()
    expected = _grads([x, w])
    checkpoint(block, x)[1].sum().backward()
    _assert_same(_grads([x, w]), expected)


@pytest.mark.parametrize(
    "fn",
    [lambda x, w: ((x @ w).tanh(),) * 2, lambda x, w: (x, x)],
    ids=["a_node_output_twice", "an_input_passed_through_twice"],
)
def test_a_tensor_returned_twice_gets_both_outputs_gradients(fn):
    # The recomputation seeds the walk from the same tensor once per output: both seeds must arrive.
    x, w = _leaf((2, 3), 0), _leaf((3, 3), 1)
    a, b = _leaf((2, 3), 2, requires_grad=False), _leaf((2, 3), 3, requires_grad=False)

    def loss(outputs):
        return (outputs[0] * a).sum() + (outputs[1] * b).sum()

    loss(fn(x, w)).backward()
    plain = _grads([x, w])
    loss(checkpoint(fn, x, w)).backward()
    _assert_same(_grads([x, w]), plain, rtol=1e-12)


def test_a_weight_used_inside_and_outside_gets_the_sum_of_both_paths():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1, requires_grad=False)
    (((x @ w).tanh() @ w).sum()).backward()
    expected = _grads([w])
    y = checkpoint(lambda x: (x @ w).tanh(), x)
    (y @ w).sum().backward()
    # The plain graph sums both paths' products in one; here they are two: rounding may differ.
    _assert_same(_grads([w]), expected, rtol=1e-13)


def test_gradients_accumulate_into_existing_grad():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1)
    checkpoint(lambda x: (x @ w).tanh(), x).sum().backward()
    once = w.grad.numpy().copy()
    checkpoint(lambda x: (x @ w).tanh(), x).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * once, rtol=1e-15)


def test_closed_over_weights_get_gradients_when_no_input_requires_grad():
    layer = nn.Linear(4, 3).double()
    x = _leaf((5, 4), requires_grad=False)
    layer(x).tanh().sum().backward()
    expected = _grads([layer.weight, layer.bias])
    checkpoint(lambda x: layer(x).tanh(), x).sum().backward()
    _assert_same(_grads([layer.weight, layer.bias]), expected)


def test_checkpoint_passes_gradcheck():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1)
    assert tg.gradcheck(lambda x, w: checkpoint(lambda x: (x @ w).tanh() * x, x), [x, w])


def test_dropout_inside_repeats_its_mask_in_the_recomputation():
    w = _leaf((6, 6))
    x = _leaf((4, 6), 1)

    def block(x):
        return tg.dropout(x @ w, p=0.5, training=True).tanh()

    tg.manual_seed(3)
    plain = block(x)
    plain.sum().backward()
    expected = _grads([x, w])
    tg.manual_seed(3)
    recomputed = checkpoint(block, x)
    tg.rand(5)  # draw more numbers between forward and backward: the recomputation must not see them
    np.testing.assert_array_equal(recomputed.numpy(), plain.numpy())
    recomputed.sum().backward()
    _assert_same(_grads([x, w]), expected)


def test_intermediate_arrays_are_not_kept_between_forward_and_backward():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1)
    kept = []

    def block(x):
        hidden = (x @ w).tanh()
        kept.append(weakref.ref(hidden._data))
        return hidden.sum(dim=1)

    y = checkpoint(block, x)
    gc.collect()
    assert kept[0]() is None, "the first run's intermediate array is still alive"
    node = y.grad_fn
    assert isinstance(node, Checkpoint)
    assert all(any(a is t._data for t in (x, w)) for a in node.saved)
    y.sum().backward()
    assert node.saved is None


def test_under_no_grad_it_is_a_plain_call():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1)
    with tg.no_grad():
        y = checkpoint(lambda x: (x @ w).tanh(), x)
    assert y.grad_fn is None and not y.requires_grad


def test_changing_a_weight_in_place_before_backward_is_caught():
    w = _leaf((3, 3))
    x = _leaf((2, 3), 1)
    y = checkpoint(lambda x: (x @ w).tanh(), x)
    with tg.no_grad():
        w.mul_(2)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_fn_returning_a_non_tensor_is_refused():
    x = _leaf((2, 3))
    with pytest.raises(TypeError, match="checkpoint: fn must return a Tensor"):
        checkpoint(lambda x: x.numpy(), x)


# ---- the sequence helper -----------------------------------------------------------------------------


def _cell_step(cell, readout):
    def step(x_t, target_t, state):
        new_state = cell(x_t, state)
        h = new_state[0] if isinstance(new_state, tuple) else new_state
        error = readout(h) - target_t
        return (error * error).sum(), new_state

    return step


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("steps, segment_size", [(1, None), (7, None), (10, None), (9, 4), (5, 5)])
def test_checkpoint_sequence_matches_the_plain_loop(kind, steps, segment_size):
    batch, input_size, hidden, output_size = 2, 3, 4, 2
    cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[kind](input_size, hidden).double()
    readout = nn.Linear(hidden, output_size).double()
    x = _leaf((steps, batch, input_size), 1)
    targets = _leaf((steps, batch, output_size), 2, requires_grad=False)
    h0 = _leaf((batch, hidden), 3)
    state = (h0, _leaf((batch, hidden), 4)) if kind == "lstm" else h0
    step = _cell_step(cell, readout)
    leaves = [x, h0, *cell.parameters(), *readout.parameters()]

    losses, current = [], state
    for t in range(steps):
        loss_t, current = step(x[t], targets[t], current)
        losses.append(loss_t)
    plain_total = tg.stack(losses).sum()
    plain_total.backward()
    expected = _grads(leaves)

    ys, final = checkpoint_sequence(step, (x, targets), state, segment_size)
    assert ys.shape == (steps,)
    assert type(final) is type(current)
    np.testing.assert_allclose(ys.sum().item(), plain_total.item(), rtol=1e-14)
    ys.sum().backward()
    for got, want in zip(_grads(leaves), expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_checkpoint_sequence_keeps_one_state_per_segment():
    steps, batch, hidden = 16, 2, 3
    cell = nn.RNNCell(hidden, hidden).double()
    x = _leaf((steps, batch, hidden), 1)
    ys, _ = checkpoint_sequence(lambda x_t, h: (cell(x_t, h).sum(), cell(x_t, h)), x, _leaf((batch, hidden)))
    # √16 = 4 segments, so the graph between forward and backward holds 4 checkpoint nodes.
    segments = {id(node) for node in ys.grad_fn.parents if isinstance(node, Checkpoint)}
    assert len(segments) == 4


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("steps", [1, 6, 11])
def test_checkpoint_segments_of_a_recurrent_layer_match_the_plain_layer(kind, steps):
    batch, input_size, hidden, output_size = 2, 3, 4, 2
    layer = {"rnn": nn.RNN, "lstm": nn.LSTM}[kind](input_size, hidden).double()
    readout = nn.Linear(hidden, output_size).double()
    x = _leaf((steps, batch, input_size), 1)
    targets = _leaf((steps, batch, output_size), 2, requires_grad=False)
    h0 = _leaf((1, batch, hidden), 3)
    state = (h0, _leaf((1, batch, hidden), 4)) if kind == "lstm" else h0
    leaves = [x, h0, *layer.parameters(), *readout.parameters()]

    def segment(x_k, target_k, state):
        output, new_state = layer(x_k, state)
        error = readout(output) - target_k
        return (error * error).sum(), new_state

    plain_loss, plain_state = segment(x, targets, state)
    plain_loss.backward()
    expected = _grads(leaves)
    losses, final = checkpoint_segments(segment, (x, targets), state)
    assert losses.shape == (len(range(0, steps, int(np.ceil(np.sqrt(steps))))),)
    final_h = final[0] if kind == "lstm" else final
    plain_h = plain_state[0] if kind == "lstm" else plain_state
    np.testing.assert_allclose(final_h.numpy(), plain_h.numpy(), rtol=1e-13)
    np.testing.assert_allclose(losses.sum().item(), plain_loss.item(), rtol=1e-13)
    losses.sum().backward()
    for got, want in zip(_grads(leaves), expected):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-14)


def test_checkpoint_segments_joins_per_step_outputs_along_time():
    layer = nn.GRU(3, 4).double()
    x = _leaf((7, 2, 3), 1)
    outputs, _ = checkpoint_segments(lambda x_k, h: layer(x_k, h), x, _leaf((1, 2, 4)), segment_size=3)
    np.testing.assert_allclose(outputs.numpy(), layer(x, _leaf((1, 2, 4)))[0].numpy(), rtol=1e-13)


def test_checkpoint_sequence_checks_its_arguments():
    x = _leaf((4, 2, 3))
    with pytest.raises(ValueError, match="segment_size must be a positive int"):
        checkpoint_sequence(lambda x_t, h: (h, h), x, _leaf((2, 3)), segment_size=0)
    with pytest.raises(ValueError, match="share their first"):
        checkpoint_sequence(lambda a, b, h: (h, h), (x, _leaf((3, 2))), _leaf((2, 3)))
    with pytest.raises(TypeError, match="inputs must be a Tensor"):
        checkpoint_sequence(lambda x_t, h: (h, h), [np.zeros(3)], _leaf((2, 3)))
    with pytest.raises(ValueError, match="checkpoint_segments: inputs have no time steps"):
        checkpoint_segments(lambda x_k, h: (h, h), _leaf((0, 2, 3)), _leaf((2, 3)))


@pytest.mark.parametrize("where", ["cpu", "cuda"])
def test_the_recomputation_leaves_the_random_stream_where_it_was(monkeypatch, where):
    """Replaying the dropout mask in backward must not move the stream that later draws come from
    (on a GPU too, where the generator's state cannot be set: ``backend.generator_fork``)."""
    if where == "cuda":
        from fake_cupy import install

        install(monkeypatch)
    w = tg.randn(5, 5, device=where, requires_grad=True)
    x = tg.randn(3, 5, device=where, requires_grad=True)

    def block(x):
        return tg.dropout(x @ w, p=0.5, training=True).tanh()

    streams = []
    for run_backward in (False, True):
        tg.manual_seed(7)
        out = checkpoint(block, x)
        first = tg.rand(4, device=where).numpy()
        if run_backward:
            out.sum().backward()
        streams.append((out.numpy(), first, tg.rand(4, device=where).numpy()))
    for without, with_backward in zip(*streams):
        np.testing.assert_array_equal(with_backward, without)
