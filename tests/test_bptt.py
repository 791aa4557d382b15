"""Truncated BPTT: both semantics against an oracle written from their definitions, the trainer, the
truncation bias meter."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.bptt import TBPTT, TBPTTTrainer, detach_hidden, truncation_bias


class TinyRNN:
    """h_t = tanh(W x_t + U h_{t-1} + b), y_t = V h_t + c; hidden state is one tensor."""

    batch_first = False

    def __init__(self, input_size=2, hidden_size=3, output_size=2, batch_first=False, seed=0):
        rng = np.random.default_rng(seed)
        scale = 0.9 / math.sqrt(hidden_size)
        self.batch_first = batch_first
        self.hidden_size = hidden_size
        self.weights = {
            "W": rng.uniform(-1, 1, (hidden_size, input_size)),
            "U": rng.uniform(-scale, scale, (hidden_size, hidden_size)) * 2,
            "b": rng.uniform(-0.1, 0.1, hidden_size),
            "V": rng.uniform(-1, 1, (output_size, hidden_size)),
            "c": rng.uniform(-0.1, 0.1, output_size),
        }
        self.weights = {k: tg.tensor(v, requires_grad=True) for k, v in self.weights.items()}

    def parameters(self):
        return list(self.weights.values())

    def initial(self, batch):
        return tg.zeros(batch, self.hidden_size, dtype=tg.float64)

    def step(self, x, hidden):
        w = self.weights
        h = (x @ w["W"].T + hidden @ w["U"].T + w["b"]).tanh()
        return h @ w["V"].T + w["c"], h

    def __call__(self, chunk, hidden):
        if self.batch_first:
            chunk = chunk.transpose(0, 1)
        hidden = self.initial(chunk.shape[1]) if hidden is None else hidden
        outputs = []
        for x in chunk.unbind(0):
            y, hidden = self.step(x, hidden)
            outputs.append(y)
        out = tg.stack(outputs, dim=0)
        return (out.transpose(0, 1) if self.batch_first else out), hidden


class TinyLSTM(TinyRNN):
    """An LSTM-style cell with a tuple (h, c) hidden state."""

    def __init__(self, input_size=2, hidden_size=3, output_size=2, batch_first=False, seed=0):
        super().__init__(input_size, hidden_size, output_size, batch_first, seed)
        rng = np.random.default_rng(seed + 1)
        self.weights["G"] = tg.tensor(rng.uniform(-0.5, 0.5, (hidden_size, input_size)), requires_grad=True)

    def initial(self, batch):
        zero = tg.zeros(batch, self.hidden_size, dtype=tg.float64)
        return zero, zero

    def step(self, x, hidden):
        h, c = hidden
        w = self.weights
        forget = (x @ w["G"].T + h @ w["U"].T).sigmoid()
        c = forget * c + (1 - forget) * (x @ w["W"].T + w["b"]).tanh()
        h = c.tanh()
        return h @ w["V"].T + w["c"], (h, c)


def sum_squares(output, target):
    return ((output - target) ** 2).sum()


def mean_squares(output, target):
    return ((output - target) ** 2).mean()


def make_stream(model, steps, batch=2, input_size=2, output_size=2, seed=1):
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((steps, batch, input_size))
    targets = rng.standard_normal((steps, batch, output_size))
    if model.batch_first:
        inputs, targets = inputs.transpose(1, 0, 2), targets.transpose(1, 0, 2)
    return tg.tensor(inputs), tg.tensor(targets)


def time_major(model, t):
    return t.transpose(0, 1) if model.batch_first else t


def oracle_states(model, inputs):
    """Detached h_0 … h_T of the stream at the current parameters."""
    x = time_major(model, inputs)
    states = [model.initial(x.shape[1])]
    with tg.no_grad():
        for step in x.unbind(0):
            states.append(model.step(step, states[-1])[1])
    return states


def gradients(model):
    return [p.grad.numpy().copy() if p.grad is not None else np.zeros(p.shape) for p in model.parameters()]


def oracle_window(model, loss_fn, inputs, targets, k1, k2):
    """From the definition: the update closing steps a+1 … a+k1 differentiates the block's loss with
    h_{a+k1-k2} a constant (a detached leaf), recomputing the steps after it."""
    x, y = time_major(model, inputs), time_major(model, targets)
    states, steps, results = oracle_states(model, inputs), x.shape[0], []
    for start in range(0, steps, k1):
        stop = min(start + k1, steps)
        reach = max(0, start + k1 - k2)
        for p in model.parameters():
            p.grad = None
        hidden, outputs = detach_hidden(states[reach]), []
        for t in range(reach, stop):
            output, hidden = model.step(x[t], hidden)
            if t >= start:
                outputs.append(output)
        loss = loss_fn(tg.stack(outputs, 0), y[start:stop])
        loss.backward()
        results.append((start, stop, loss.item(), gradients(model)))
    return results


def oracle_per_loss(model, loss_fn, inputs, targets, k1, k2):
    """From the definition: one graph per loss L_s, starting from h_{max(0, s-k2)} detached; the block's
    loss gives L_s its share through y_s alone (the other steps' outputs are constants in that graph)."""
    x, y = time_major(model, inputs), time_major(model, targets)
    states, steps, results = oracle_states(model, inputs), x.shape[0], []
    with tg.no_grad():
        values = [model.step(x[t], states[t])[0] for t in range(steps)]
    for start in range(0, steps, k1):
        stop = min(start + k1, steps)
        for p in model.parameters():
            p.grad = None
        for s in range(start + 1, stop + 1):
            hidden = detach_hidden(states[max(0, s - k2)])
            for t in range(max(0, s - k2), s):
                output, hidden = model.step(x[t], hidden)
            block = [output if t == s - 1 else values[t] for t in range(start, stop)]
            loss_fn(tg.stack(block, 0), y[start:stop]).backward()
        loss = loss_fn(tg.stack(values[start:stop], 0), y[start:stop]).item()
        results.append((start, stop, loss, gradients(model)))
    return results


def run_driver(model, loss_fn, inputs, targets, k1, k2, semantics, **options):
    driver = TBPTT(model, loss_fn, k1=k1, k2=k2, semantics=semantics, **options)
    return [(u.start, u.stop, u.loss, gradients(model)) for u in driver.updates(inputs, targets)]


def assert_same_updates(got, expected):
    assert [(a, b) for a, b, _, _ in got] == [(a, b) for a, b, _, _ in expected]
    for (start, _, loss, grads), (_, _, loss_ref, grads_ref) in zip(got, expected):
        assert abs(loss - loss_ref) <= 1e-12 * max(1, abs(loss_ref)), f"loss of the block at {start}"
        for g, g_ref in zip(grads, grads_ref):
            scale = max(np.abs(g_ref).max(), 1e-300)
            assert np.abs(g - g_ref).max() <= 1e-10 * scale, f"gradient of the block at {start}"


CASES = [(3, 5), (4, 4), (2, 7), (1, 3)]  # (k1, k2): k1 < k2, k1 = k2, k2 > 2 k1, k1 = 1


@pytest.mark.parametrize("model_class", [TinyRNN, TinyLSTM])
@pytest.mark.parametrize(("k1", "k2"), CASES)
def test_window_semantics_matches_its_definition(model_class, k1, k2):
    model = model_class(seed=k1 + k2)
    inputs, targets = make_stream(model, steps=13)  # 13 is a multiple of none of the k1
    expected = oracle_window(model, mean_squares, inputs, targets, k1, k2)
    assert_same_updates(run_driver(model, mean_squares, inputs, targets, k1, k2, "window"), expected)


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("model_class", [TinyRNN, TinyLSTM])
@pytest.mark.parametrize(("k1", "k2"), [*CASES, (5, 2), (6, 3), (7, 1)])
def test_per_loss_semantics_matches_its_definition(model_class, k1, k2, vectorize):
    model = model_class(seed=k1 * k2)
    inputs, targets = make_stream(model, steps=13)
    for loss_fn in (sum_squares, mean_squares):
        expected = oracle_per_loss(model, loss_fn, inputs, targets, k1, k2)
        got = run_driver(model, loss_fn, inputs, targets, k1, k2, "per_loss", vectorize=vectorize)
        assert_same_updates(got, expected)


def test_batch_first_inputs_give_the_same_updates_as_time_major():
    time_major_model = TinyLSTM(seed=3)
    batch_first_model = TinyLSTM(seed=3, batch_first=True)
    inputs, targets = make_stream(time_major_model, steps=10)
    got = run_driver(
        batch_first_model, mean_squares, inputs.transpose(0, 1), targets.transpose(0, 1), 3, 6, "per_loss"
    )
    assert_same_updates(got, run_driver(time_major_model, mean_squares, inputs, targets, 3, 6, "per_loss"))


@pytest.mark.parametrize("model_class", [TinyRNN, TinyLSTM])
def test_window_with_k1_equal_k2_trains_exactly_like_the_plain_detach_loop(model_class):
    lr, k = 0.1, 4
    model, plain = model_class(seed=5), model_class(seed=5)
    inputs, targets = make_stream(model, steps=14)
    losses = []
    for update in TBPTT(model, mean_squares, k1=k, k2=k).updates(inputs, targets):
        for p in model.parameters():
            p._data -= lr * p.grad._data
        losses.append(update.loss)
    # The familiar loop, written out: detach the state between chunks, one backward per chunk.
    hidden, plain_losses = None, []
    for start in range(0, 14, k):
        hidden = detach_hidden(hidden)
        output, hidden = plain(inputs[start : start + k], hidden)
        loss = mean_squares(output, targets[start : start + k])
        for p in plain.parameters():
            p.grad = None
        loss.backward()
        for p in plain.parameters():
            p._data -= lr * p.grad._data
        plain_losses.append(loss.item())
    assert losses == plain_losses
    for p, q in zip(model.parameters(), plain.parameters()):
        assert np.array_equal(p.numpy(), q.numpy())


def test_window_recomputes_the_overlap_at_the_current_parameters():
    """With k2 > k1 the steps between the cut and the block are recomputed after the optimizer changed
    the weights: the gradient is that of a fresh forward from the stored state at the new weights."""
    model = TinyRNN(seed=8)
    inputs, targets = make_stream(model, steps=8)
    checked, stored_h1 = 0, None
    for update in TBPTT(model, sum_squares, k1=2, k2=5).updates(inputs, targets):
        if update.index == 2:
            # (start, stop, reach) = (4, 6, 1): h_1 is the stored state, steps 2 … 6 use today's weights.
            got = gradients(model)
            for p in model.parameters():
                p.grad = None
            hidden, outputs = stored_h1, []
            for t in range(1, 6):
                output, hidden = model.step(inputs[t], hidden)
                outputs.append(output)
            sum_squares(tg.stack(outputs[3:], 0), targets[4:6]).backward()
            for g, g_ref in zip(got, gradients(model)):
                assert np.abs(g - g_ref).max() <= 1e-10 * np.abs(g_ref).max()
            checked += 1
        if update.index == 1:
            with tg.no_grad():  # the second update's forward stored h_1 at the weights it ran with
                stored_h1 = model.step(inputs[0], model.initial(2))[1]
        for p in model.parameters():
            p._data -= 0.5 * p.grad._data
    assert checked == 1


def test_window_refuses_k2_below_k1_and_points_to_per_loss():
    with pytest.raises(ValueError, match="per_loss"):
        TBPTT(TinyRNN(), mean_squares, k1=5, k2=2)


@pytest.mark.parametrize("bad", [{"k1": 0, "k2": 3}, {"k1": 2, "k2": -1}, {"k1": 2.0, "k2": 3}])
def test_tbptt_rejects_non_positive_or_non_integer_lengths(bad):
    with pytest.raises(ValueError, match="positive integer"):
        TBPTT(TinyRNN(), mean_squares, **bad)


def test_tbptt_rejects_unknown_semantics_and_mismatched_targets():
    with pytest.raises(ValueError, match="semantics"):
        TBPTT(TinyRNN(), mean_squares, k1=2, k2=2, semantics="sliding")
    model = TinyRNN()
    inputs, targets = make_stream(model, steps=6)
    with pytest.raises(ValueError, match="6 steps"):
        next(TBPTT(model, mean_squares, k1=2, k2=2).updates(inputs, targets[:5]))


def test_updates_report_step_ranges_reach_and_a_detached_final_state():
    model = TinyLSTM()
    inputs, targets = make_stream(model, steps=11)
    driver = TBPTT(model, mean_squares, k1=4, k2=6)
    updates = list(driver.updates(inputs, targets))
    assert [(u.start, u.stop, u.reach) for u in updates] == [(0, 4, 0), (4, 8, 2), (8, 11, 6)]
    assert [u.index for u in updates] == [0, 1, 2]
    h, c = driver.hidden
    assert not h.requires_grad and not c.requires_grad
    final = oracle_states(model, inputs)[-1]
    assert np.allclose(h.numpy(), final[0].numpy(), rtol=0, atol=1e-14)


def recurrent_steps_on_tape(state):
    """How many tanh nodes (one per step of TinyRNN) the tape holds behind ``state``."""
    seen, stack, count = set(), [state.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        count += type(node).__name__ == "Tanh"
        stack.extend(p for p in node.parents if p is not None and not isinstance(p, tg.Tensor))
    return count


@pytest.mark.parametrize(
    ("semantics", "k1", "k2", "vectorize", "longest"),
    [
        ("window", 5, 8, True, 8),  # the window: k2 steps
        ("per_loss", 6, 3, False, 3),  # one group at a time: k2 steps behind any state
        ("per_loss", 6, 3, True, 8),  # all groups side by side: the block and its reach, k1 + k2 - 1
        ("per_loss", 2, 4, True, 5),
    ],
)
def test_the_tape_spans_a_bounded_number_of_steps_of_a_long_stream(semantics, k1, k2, vectorize, longest):
    model = TinyRNN()
    inputs, targets = make_stream(model, steps=120)
    depths = []
    original_step = model.step

    def measuring_step(x, hidden):
        output, hidden = original_step(x, hidden)
        if hidden.requires_grad:
            depths.append(recurrent_steps_on_tape(hidden))
        return output, hidden

    model.step = measuring_step
    driver = TBPTT(model, mean_squares, k1=k1, k2=k2, semantics=semantics, vectorize=vectorize)
    for _ in driver.updates(inputs, targets):
        pass
    assert max(depths) == longest


def test_trainer_reduces_the_loss_and_clips_the_gradient():
    class SGD:
        def __init__(self, params, lr):
            self.params, self.lr = params, lr

        def step(self):
            for p in self.params:
                p._data -= self.lr * p.grad._data

    model = TinyLSTM(seed=2)
    inputs, _ = make_stream(model, steps=24, seed=4)
    targets = 0.5 * inputs  # learnable by the read-out of the current step
    trainer = TBPTTTrainer(
        model, SGD(model.parameters(), 0.2), k1=6, k2=8, clip_norm=0.5, loss_fn=mean_squares
    )
    first = trainer.train_epoch([(inputs, targets)])
    for _ in range(15):
        last = trainer.train_epoch([(inputs, targets)])
    assert last < 0.8 * first
    assert len(trainer.losses) == 16 * 4 and len(trainer.grad_norms) == 16 * 4
    assert any(norm > 0.5 for norm in trainer.grad_norms)  # the clip was exercised


def test_the_optimizer_sees_the_gradients_clipped_to_clip_norm():
    class Recording:
        """Takes no step; records the gradients as the optimizer finds them."""

        def __init__(self, params):
            self.params, self.seen = params, []

        def step(self):
            self.seen.append([p.grad.numpy().copy() for p in self.params])

    def run(clip_norm):
        model = TinyLSTM(seed=2)
        inputs, _ = make_stream(model, steps=24, seed=4)
        optimizer = Recording(list(model.parameters()))
        trainer = TBPTTTrainer(model, optimizer, k1=6, k2=8, clip_norm=clip_norm, loss_fn=mean_squares)
        trainer.train_epoch([(inputs, 0.5 * inputs)])
        return trainer, optimizer.seen

    _, unclipped = run(None)
    norms = [np.sqrt(sum(np.sum(g**2) for g in grads)) for grads in unclipped]
    clip = float(np.median(norms))
    trainer, clipped = run(clip)
    assert min(norms) < clip < max(norms)  # some updates are clipped, some are not
    np.testing.assert_allclose(trainer.grad_norms, norms, rtol=1e-12)
    for before, after, norm in zip(unclipped, clipped, norms):
        coefficient = min(1.0, clip / (norm + 1e-6))
        for g_before, g_after in zip(before, after):
            np.testing.assert_allclose(g_after, coefficient * g_before, rtol=1e-12, atol=0)
        assert np.sqrt(sum(np.sum(g**2) for g in after)) <= clip * (1 + 1e-12)


def test_trainer_updates_yield_after_each_step_and_match_train_epoch():
    class CountingStep:
        def __init__(self, params):
            self.params, self.calls = params, 0

        def step(self):
            self.calls += 1
            for p in self.params:
                p._data -= 0.1 * p.grad._data

    inputs, _ = make_stream(TinyLSTM(seed=2), steps=20, seed=4)
    targets = 0.5 * inputs
    stepped, whole = TinyLSTM(seed=2), TinyLSTM(seed=2)
    optimizer = CountingStep(list(stepped.parameters()))
    trainer = TBPTTTrainer(stepped, optimizer, k1=5, k2=7, clip_norm=0.3, loss_fn=mean_squares)
    seen = []
    for update in trainer.updates(inputs, targets):
        seen.append((update.start, update.stop, optimizer.calls))
    assert seen == [(0, 5, 1), (5, 10, 2), (10, 15, 3), (15, 20, 4)]  # the step is taken before each yield
    assert len(trainer.grad_norms) == 4
    reference = TBPTTTrainer(
        whole, CountingStep(list(whole.parameters())), k1=5, k2=7, clip_norm=0.3, loss_fn=mean_squares
    )
    reference.train_epoch([(inputs, targets)])
    assert trainer.losses == reference.losses
    for a, b in zip(stepped.parameters(), whole.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_trainer_default_loss_is_cross_entropy_over_classes():
    model = TinyRNN(output_size=3, seed=1)
    rng = np.random.default_rng(0)
    inputs = tg.tensor(rng.standard_normal((9, 2, 2)))
    classes = tg.tensor(rng.integers(0, 3, (9, 2)))

    class Nothing:
        def step(self):
            pass

    trainer = TBPTTTrainer(model, Nothing(), k1=3, k2=3)
    loss = trainer.train_epoch([(inputs, classes)])
    with tg.no_grad():
        output, _ = model(inputs, None)
        logits = output.numpy()
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, classes.numpy()[..., None], -1).mean()
    assert abs(loss - expected) < 1e-12


def test_truncation_bias_is_zero_without_truncation_and_grows_as_k2_shrinks():
    model = TinyRNN(hidden_size=4, seed=11)
    inputs, targets = make_stream(model, steps=30)
    none = truncation_bias(model, mean_squares, inputs, targets, k2=30)
    assert abs(none.cosine - 1) < 1e-12 and none.relative_error < 1e-12
    errors = [truncation_bias(model, mean_squares, inputs, targets, k2=k).relative_error for k in (1, 3, 10)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert all(p.grad is None for p in model.parameters())  # the meter leaves .grad as it found it


def test_truncation_bias_matches_the_oracle_gradients():
    model = TinyLSTM(seed=4)
    inputs, targets = make_stream(model, steps=12)
    truncated = np.concatenate(
        [g.ravel() for g in oracle_per_loss(model, mean_squares, inputs, targets, 12, 3)[0][3]]
    )
    full = np.concatenate(
        [g.ravel() for g in oracle_per_loss(model, mean_squares, inputs, targets, 12, 12)[0][3]]
    )
    bias = truncation_bias(model, mean_squares, inputs, targets, k2=3)
    cosine = truncated @ full / np.linalg.norm(truncated) / np.linalg.norm(full)
    assert abs(bias.cosine - cosine) < 1e-12
    assert abs(bias.relative_error - np.linalg.norm(truncated - full) / np.linalg.norm(full)) < 1e-12


@pytest.mark.parametrize("batch_first", [False, True])
def test_per_loss_vectorized_and_sequential_agree_on_a_two_layer_nn_lstm(batch_first):
    """nn.LSTM's state is ((layers, B, H), (layers, B, H)): replicas go along its batch axis."""

    class Model(tg.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = tg.nn.LSTM(2, 3, num_layers=2, batch_first=batch_first).double()
            self.readout = tg.nn.Linear(3, 2).double()
            self.batch_first = batch_first

        def forward(self, x, hidden=None):
            output, hidden = self.lstm(x, hidden)
            return self.readout(output), hidden

    model = Model()
    inputs, targets = make_stream(model, steps=11)
    for k1, k2 in ((3, 4), (5, 2)):
        vectorized = run_driver(model, mean_squares, inputs, targets, k1, k2, "per_loss", vectorize=True)
        sequential = run_driver(model, mean_squares, inputs, targets, k1, k2, "per_loss", vectorize=False)
        assert_same_updates(vectorized, sequential)


def test_the_driver_gives_the_same_updates_on_each_device(device):
    """An nn.LSTM trained by the window driver on ``device`` sees the CPU's losses and gradients."""
    results = {}
    for where in ("cpu", device):
        tg.manual_seed(0)
        model = tg.nn.LSTM(2, 3).double().to(where)
        inputs, targets = (t.to(where) for t in make_stream(model, steps=12, output_size=3))
        updates = list(TBPTT(model, mean_squares, k1=3, k2=5).updates(inputs, targets))
        results[where] = [u.loss for u in updates], [p.grad.numpy() for p in model.parameters()]
    np.testing.assert_allclose(results[device][0], results["cpu"][0], rtol=1e-10)
    for got, expected in zip(results[device][1], results["cpu"][1]):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("semantics", "k1", "k2", "most", "last"),
    [
        # window: the state the next window starts from (stop + k1 - k2) and the block ends since then,
        # ⌈(k2 - k1) / k1⌉ + 1 states
        ("window", 4, 9, 3, [95, 96, 100]),
        ("window", 2, 9, 5, [93, 94, 96, 98, 100]),
        ("window", 5, 5, 1, [100]),
        # per_loss: h_p for the k2 positions stop - k2 + 1 ... stop, where later losses' reaches begin
        ("per_loss", 3, 7, 7, list(range(94, 101))),
        ("per_loss", 8, 3, 3, [98, 99, 100]),
        ("per_loss", 6, 2, 2, [99, 100]),
    ],
)
def test_only_the_states_later_updates_start_from_are_kept(semantics, k1, k2, most, last):
    model = TinyRNN()
    inputs, targets = make_stream(model, steps=100)
    driver = TBPTT(model, mean_squares, k1=k1, k2=k2, semantics=semantics)
    kept = [sorted(driver.stored_states) for _ in driver.updates(inputs, targets)]
    assert len(kept) == math.ceil(100 / k1)
    assert max(len(positions) for positions in kept) == most
    assert kept[-1] == last


@given(
    steps=st.integers(1, 12),
    k1=st.integers(1, 6),
    k2=st.integers(1, 8),
    semantics=st.sampled_from(["window", "per_loss"]),
    tuple_state=st.booleans(),
    vectorize=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_tbptt_matches_its_definition_for_random_lengths(
    steps, k1, k2, semantics, tuple_state, vectorize, seed
):
    assume(semantics == "per_loss" or k2 >= k1)
    model = (TinyLSTM if tuple_state else TinyRNN)(seed=seed)
    inputs, targets = make_stream(model, steps=steps, seed=seed + 1)
    oracle = oracle_window if semantics == "window" else oracle_per_loss
    expected = oracle(model, mean_squares, inputs, targets, k1, k2)
    got = run_driver(model, mean_squares, inputs, targets, k1, k2, semantics, vectorize=vectorize)
    assert_same_updates(got, expected)


def test_a_given_initial_state_is_used_as_a_constant():
    model = TinyRNN(seed=6)
    inputs, targets = make_stream(model, steps=5)
    h0 = tg.tensor(np.random.default_rng(2).standard_normal((2, 3)), requires_grad=True)
    first = next(TBPTT(model, mean_squares, k1=5, k2=5).updates(inputs, targets, hidden=h0))
    with tg.no_grad():
        output, _ = model(inputs, h0.detach())
    assert abs(first.loss - mean_squares(output, targets).item()) < 1e-14
    assert h0.grad is None  # h_0 is a constant of every loss


def test_trainer_carries_the_state_across_batches_of_one_stream():
    class Nothing:
        def step(self):
            pass

    model = TinyLSTM(seed=9)
    inputs, targets = make_stream(model, steps=12)
    whole = TBPTTTrainer(model, Nothing(), k1=3, k2=3, loss_fn=mean_squares)
    whole.train_epoch([(inputs, targets)])
    halves = TBPTTTrainer(model, Nothing(), k1=3, k2=3, loss_fn=mean_squares, carry_hidden=True)
    halves.train_epoch([(inputs[:6], targets[:6]), (inputs[6:], targets[6:])])
    assert np.allclose(halves.losses, whole.losses, rtol=1e-13, atol=0)
    restarted = TBPTTTrainer(model, Nothing(), k1=3, k2=3, loss_fn=mean_squares)
    restarted.train_epoch([(inputs[:6], targets[:6]), (inputs[6:], targets[6:])])
    assert not np.allclose(restarted.losses[2:], whole.losses[2:])  # without carrying, h restarts at 0
