"""Anomaly mode: the first NaN/Inf in forward or backward raises, naming the op and the user's line."""

import inspect
import os

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import anomaly

# The ops below produce NaN/Inf on purpose; NumPy's warnings about it are expected noise.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

THIS_FILE = os.path.basename(__file__)


def _line_here() -> int:
    """The line number of the caller (where the op under test is written)."""
    return inspect.currentframe().f_back.f_lineno


def test_forward_nan_raises_naming_the_op_and_the_line_that_created_it():
    x = tg.tensor([-1.0, 2.0], dtype=tg.float64, requires_grad=True)
    with tg.autograd.detect_anomaly(), pytest.raises(RuntimeError) as info:
        line = _line_here() + 1
        x.log()
    message = str(info.value)
    assert "Log" in message and "NaN" in message and "forward" in message
    assert f'{THIS_FILE}", line {line}' in message


def test_forward_inf_raises_in_float32_overflow():
    x = tg.tensor([1.0, 100.0], requires_grad=True)
    with tg.autograd.detect_anomaly(), pytest.raises(RuntimeError, match=r"Exp produced Inf"):
        x.exp()


def test_backward_inf_raises_naming_the_op_whose_backward_produced_it():
    # sqrt(0) = 0 is finite, but its derivative 1/(2·0) is not: only the backward pass can see it.
    x = tg.tensor([0.0, 4.0], dtype=tg.float64, requires_grad=True)
    with tg.autograd.detect_anomaly():
        line = _line_here() + 1
        y = x.sqrt()
        loss = (y * 3.0).sum()
        with pytest.raises(RuntimeError) as info:
            loss.backward()
    message = str(info.value)
    assert "Sqrt produced Inf in its backward" in message
    assert f'{THIS_FILE}", line {line}' in message


def test_backward_nan_from_zero_times_inf_names_the_first_op_in_backward_order():
    x = tg.tensor([0.0], dtype=tg.float64, requires_grad=True)
    with tg.autograd.detect_anomaly():
        y = x.sqrt()  # dy/dx = inf at 0
        z = y * 0.0  # dz/dy = 0, finite
        with pytest.raises(RuntimeError, match="Sqrt produced"):
            z.sum().backward()


def test_the_first_anomalous_op_of_an_unrolled_loop_is_the_one_reported():
    h = tg.tensor([0.5, 0.25], dtype=tg.float64, requires_grad=True)
    steps_done = 0
    with tg.autograd.detect_anomaly(), pytest.raises(RuntimeError) as info:
        for step in range(10):
            # From step 3 on, log(h - 0.4) is NaN for the second entry (0.25 - 0.4 < 0).
            h = (h * 1.0 + 0.0) if step < 3 else (h - 0.4).log()
            steps_done += 1
    assert steps_done == 3
    assert "Log produced NaN" in str(info.value)


def test_ops_outside_the_tape_are_checked_in_forward_too():
    x = tg.tensor([0.0, 1.0])  # requires no grad: no node is recorded
    with tg.autograd.detect_anomaly(), pytest.raises(RuntimeError, match="Div produced"):
        _ = 1.0 / x


def test_multi_output_op_reports_the_output_index_of_a_bad_gradient():
    class BadSplitGrad(tg.Function):
        """out1, out2 = x, x;  a deliberately wrong backward that returns NaN."""

        def forward(ctx, x):
            return x.copy(), x.copy()

        def backward(ctx, g1, g2):
            return np.full_like(g1 if g1 is not None else g2, np.nan)

    x = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    with tg.autograd.detect_anomaly():
        a, _ = BadSplitGrad.apply(x)
        with pytest.raises(
            RuntimeError, match=r"BadSplitGrad produced NaN in its backward gradient for input 0"
        ):
            a.sum().backward()


def test_finite_graph_gives_identical_gradients_with_anomaly_mode_on_and_off():
    data = np.random.default_rng(1).standard_normal((3, 4))

    def grads():
        x = tg.tensor(data, requires_grad=True)
        w = tg.tensor(data.T, requires_grad=True)
        ((x @ w).tanh().sigmoid() * x.sum(0).exp().sum()).sum().backward()
        return x.grad.numpy(), w.grad.numpy()

    off = grads()
    with tg.autograd.detect_anomaly():
        on = grads()
    for a, b in zip(off, on):
        np.testing.assert_array_equal(a, b)


def test_anomaly_mode_is_off_by_default_and_nan_passes_silently():
    assert not tg.autograd.is_anomaly_enabled()
    x = tg.tensor([-1.0], requires_grad=True)
    y = x.log()
    assert np.isnan(y.numpy()).all()
    assert not hasattr(y.grad_fn, "anomaly_trace")


def test_anomaly_mode_off_never_captures_a_stack(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the stack was captured with anomaly mode off")

    monkeypatch.setattr(anomaly.traceback, "extract_stack", fail)
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x.exp() * x).sum().backward()
    assert x.grad is not None


def test_anomaly_mode_records_a_creation_trace_on_each_node():
    x = tg.tensor([1.0], requires_grad=True)
    with tg.autograd.detect_anomaly():
        line = _line_here() + 1
        y = x.tanh()
    frame = y.grad_fn.anomaly_trace[-1]
    assert os.path.basename(frame.filename) == THIS_FILE and frame.lineno == line


def test_flag_is_restored_after_an_error_inside_the_block_and_after_nesting():
    with pytest.raises(ValueError), tg.autograd.detect_anomaly():
        with tg.autograd.detect_anomaly(check_nan=False):
            assert tg.autograd.is_anomaly_enabled()
        assert tg.autograd.is_anomaly_enabled()
        raise ValueError("boom")
    assert not tg.autograd.is_anomaly_enabled()


def test_check_nan_false_records_traces_but_does_not_raise():
    x = tg.tensor([-1.0], requires_grad=True)
    with tg.autograd.detect_anomaly(check_nan=False):
        y = x.log()
    assert np.isnan(y.numpy()).all()
    assert y.grad_fn.anomaly_trace


def test_detect_anomaly_works_as_a_decorator():
    @tg.autograd.detect_anomaly()
    def step(x):
        assert tg.autograd.is_anomaly_enabled()
        return (x - 2.0).sqrt()

    with pytest.raises(RuntimeError, match="Sqrt produced NaN"):
        step(tg.tensor([1.0], requires_grad=True))
    assert not tg.autograd.is_anomaly_enabled()


def test_set_detect_anomaly_turns_the_mode_on_and_off():
    try:
        tg.autograd.set_detect_anomaly(True)
        assert tg.autograd.is_anomaly_enabled()
        with pytest.raises(RuntimeError, match="Log produced"):
            tg.tensor([0.0]).log()
    finally:
        tg.autograd.set_detect_anomaly(False)
    assert not tg.autograd.is_anomaly_enabled()


def test_a_nan_inside_an_lstm_is_reported_at_the_users_call_not_inside_the_package():
    lstm = tg.nn.LSTM(3, 4)
    data = np.zeros((5, 2, 3), dtype=np.float32)
    data[3, 1, 2] = np.nan  # a corrupt sample at step 3
    with tg.autograd.detect_anomaly(), pytest.raises(RuntimeError) as info:
        line = _line_here() + 1
        lstm(tg.tensor(data))
    message = str(info.value)
    assert "produced NaN in its forward output" in message
    assert f'{THIS_FILE}", line {line}' in message
    assert "tinygrad_rnn" not in message.split("created at")[1]  # only the user's frames are shown


def test_an_exploding_gradient_through_time_is_caught_in_backward():
    # A linear recurrence h <- 1e30 h overflows float32 in the backward pass only when the gradient
    # is pushed back through many steps: the forward values stay at 0.
    w = tg.tensor([1e30], requires_grad=True)
    h = tg.zeros(1)
    with tg.autograd.detect_anomaly():
        for _ in range(3):
            h = h * w
        with pytest.raises(RuntimeError, match=r"Mul produced Inf in its backward"):
            (h + 1.0).sum().backward()
