"""Optimizers: the first steps of each against its documented update rule written out in NumPy here,
parameter groups, state dicts, in-place semantics and argument checks."""

from copy import deepcopy

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import optim

P0 = np.array([[0.5, -1.5, 2.0], [1.0, 0.0, -0.25]])
C = np.array([[1.0, 2.0, 0.5], [3.0, 1.0, 1.5]])
D = np.array([[0.1, -0.2, 0.3], [-0.4, 0.5, -0.6]])
# The gradient shrinks at step 2 and grows at step 3, so amsgrad's running maximum matters.
SCALES = [1.0, 0.1, 0.5, 2.0, 0.3]


def gradient(p, step):
    return SCALES[step] * (C * p + D)


def run(make, steps=3, p0=P0, device="cpu"):
    """Positions after each step, gradients set by hand from ``gradient``."""
    p = tg.tensor(p0.copy(), device=device, requires_grad=True)
    opt = make([p])
    path = []
    for step in range(steps):
        p.grad = tg.tensor(gradient(p.numpy(), step), device=device)
        opt.step()
        path.append(p.numpy().copy())
    return path


# ---- the documented rules, one step at a time -----------------------------------------------------------


def sgd_reference(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    p, b, path = P0.copy(), None, []
    for t in range(3):
        g = gradient(p, t)
        g = -g if maximize else g
        g = g + weight_decay * p
        if momentum:
            b = g.copy() if b is None else momentum * b + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
        path.append(p)
    return path


def adam_reference(
    lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False, maximize=False
):
    p, m, v, v_max, path = P0.copy(), 0.0, 0.0, 0.0, []
    beta1, beta2 = betas
    for t in range(1, 4):
        g = -gradient(p, t - 1) if maximize else gradient(p, t - 1)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        if amsgrad:
            v_max = np.maximum(v_max, v)
            v_hat = v_max / (1 - beta2**t)
        else:
            v_hat = v / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        path.append(p)
    return path


def rmsprop_reference(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    p, v, g_avg, b, path = P0.copy(), 0.0, 0.0, 0.0, []
    for t in range(3):
        g = gradient(p, t) + weight_decay * p
        v = alpha * v + (1 - alpha) * g**2
        v_tilde = v
        if centered:
            g_avg = alpha * g_avg + (1 - alpha) * g
            v_tilde = v - g_avg**2
        if momentum > 0:
            b = momentum * b + g / (np.sqrt(v_tilde) + eps)
            p = p - lr * b
        else:
            p = p - lr * g / (np.sqrt(v_tilde) + eps)
        path.append(p)
    return path


def adagrad_reference(lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    p, s, path = P0.copy(), initial_accumulator_value, []
    for t in range(1, 4):
        g = gradient(p, t - 1) + weight_decay * p
        lr_t = lr / (1 + (t - 1) * lr_decay)
        s = s + g**2
        p = p - lr_t * g / (np.sqrt(s) + eps)
        path.append(p)
    return path


CASES = [
    ("SGD", dict(lr=0.1), sgd_reference),
    ("SGD", dict(lr=0.1, momentum=0.9), sgd_reference),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3), sgd_reference),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), sgd_reference),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.2), sgd_reference),
    ("SGD", dict(lr=0.1, maximize=True), sgd_reference),
    ("Adam", dict(lr=0.1), adam_reference),
    ("Adam", dict(lr=0.1, betas=(0.8, 0.9), eps=1e-3), adam_reference),
    ("Adam", dict(lr=0.1, weight_decay=0.2), adam_reference),
    ("Adam", dict(lr=0.1, amsgrad=True), adam_reference),
    ("Adam", dict(lr=0.1, weight_decay=0.2, maximize=True), adam_reference),
    ("Adam", dict(lr=0.1, betas=(0.9, 0.5), amsgrad=True), adam_reference),
    ("AdamW", dict(lr=0.1, weight_decay=0.2), lambda **kw: adam_reference(decoupled=True, **kw)),
    (
        "AdamW",
        dict(lr=0.1, weight_decay=0.2, amsgrad=True),
        lambda **kw: adam_reference(decoupled=True, **kw),
    ),
    ("RMSprop", dict(lr=0.01), rmsprop_reference),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1), rmsprop_reference),
    ("RMSprop", dict(lr=0.01, centered=True), rmsprop_reference),
    ("RMSprop", dict(lr=0.01, momentum=0.9), rmsprop_reference),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1), rmsprop_reference),
    ("Adagrad", dict(lr=0.1), adagrad_reference),
    ("Adagrad", dict(lr=0.1, lr_decay=0.5), adagrad_reference),
    ("Adagrad", dict(lr=0.1, weight_decay=0.2, initial_accumulator_value=0.5), adagrad_reference),
]


@pytest.mark.parametrize(("name", "options", "reference"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_first_three_steps_follow_the_documented_rule(name, options, reference):
    path = run(lambda params: getattr(optim, name)(params, **options))
    expected = reference(**options)
    for step, (got, want) in enumerate(zip(path, expected)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=f"step {step + 1}")


def test_the_options_under_test_change_the_trajectory():
    # Guards the table above: each variant must differ from the plain rule, or its case checks nothing.
    plain = adam_reference(0.1, betas=(0.9, 0.5))[-1]
    assert not np.allclose(adam_reference(0.1, betas=(0.9, 0.5), amsgrad=True)[-1], plain)
    assert not np.allclose(
        sgd_reference(0.1, momentum=0.9, nesterov=True)[-1], sgd_reference(0.1, momentum=0.9)[-1]
    )
    assert not np.allclose(rmsprop_reference(0.01, centered=True)[-1], rmsprop_reference(0.01)[-1])
    assert not np.allclose(
        adam_reference(0.1, weight_decay=0.2, decoupled=True)[-1], adam_reference(0.1, weight_decay=0.2)[-1]
    )


def test_float32_parameters_stay_float32_and_follow_the_rule():
    p = tg.tensor(P0.astype(np.float32), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    for step in range(3):
        p.grad = tg.tensor(gradient(p.numpy().astype(np.float64), step).astype(np.float32))
        opt.step()
    assert p.dtype == tg.float32 and opt.state[p]["exp_avg"].dtype == tg.float32
    np.testing.assert_allclose(p.numpy(), adam_reference(0.1)[-1], rtol=1e-5, atol=1e-6)


# ---- parameter groups -----------------------------------------------------------------------------------


def test_param_groups_use_their_own_learning_rates_and_options():
    a = tg.tensor([1.0, 2.0], dtype=tg.float64, requires_grad=True)
    b = tg.tensor([3.0], dtype=tg.float64, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["momentum"] == 0.0
    assert opt.param_groups[1]["lr"] == 0.5 and opt.defaults["lr"] == 0.1
    for _ in range(2):
        a.grad, b.grad = tg.ones(2, dtype=tg.float64), tg.ones(1, dtype=tg.float64)
        opt.step()
    np.testing.assert_allclose(a.numpy(), [1.0 - 0.2, 2.0 - 0.2])
    np.testing.assert_allclose(b.numpy(), [3.0 - 0.5 * 1.0 - 0.5 * 1.9])


def test_add_param_group_fills_defaults_and_rejects_a_parameter_already_present():
    a, b = tg.zeros(2, requires_grad=True), tg.zeros(2, requires_grad=True)
    opt = optim.Adam([a], lr=0.01)
    opt.add_param_group({"params": b, "betas": (0.5, 0.6)})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["betas"] == (0.5, 0.6)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)


def test_parameters_without_gradient_are_left_alone():
    a, b = tg.ones(2, requires_grad=True), tg.ones(2, requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = tg.ones(2)
    opt.step()
    np.testing.assert_array_equal(b.numpy(), [1.0, 1.0])
    assert b not in opt.state and opt.state[a]["step"] == 1


# ---- zero_grad, step semantics ---------------------------------------------------------------------------


def test_zero_grad_sets_none_by_default_or_fills_zeros():
    p = tg.ones(3, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    (p * 2).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad
    np.testing.assert_array_equal(p.grad.numpy(), [0.0, 0.0, 0.0])
    opt.zero_grad()
    assert p.grad is None


def test_step_updates_in_place_and_bumps_the_version_counter():
    p = tg.tensor([1.0, 2.0], requires_grad=True)
    storage, version = p._data, p.version
    y = p * p  # saves p for its backward
    opt = optim.SGD([p], lr=0.1)
    p.grad = tg.ones(2)
    opt.step()
    assert p._data is storage and p.version == version + 1 and p.requires_grad and p.is_leaf
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_step_with_closure_returns_the_loss_and_uses_its_gradient():
    p = tg.tensor([2.0], dtype=tg.float64, requires_grad=True)
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with tg.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 4.0
    np.testing.assert_allclose(p.numpy(), [2.0 - 0.25 * 4.0])


def test_state_buffers_live_on_the_parameters_device(device):
    path = run(lambda params: optim.Adam(params, lr=0.1, amsgrad=True), device=device)
    np.testing.assert_allclose(path[-1], adam_reference(0.1, amsgrad=True)[-1], rtol=1e-12)
    p = tg.ones(2, device=device, requires_grad=True)
    opt = optim.RMSprop([p], momentum=0.9, centered=True)
    p.grad = tg.ones(2, device=device)
    opt.step()
    assert all(opt.state[p][k].device == device for k in ("square_avg", "momentum_buffer", "grad_avg"))


# ---- state dicts ----------------------------------------------------------------------------------------


def make_pair(name, options):
    p = tg.tensor(P0.copy(), requires_grad=True)
    q = tg.tensor([0.5, -0.5], dtype=tg.float64, requires_grad=True)
    opt = getattr(optim, name)([{"params": [p]}, {"params": [q], "lr": 0.01}], **options)
    return (p, q), opt


def drive(params, opt, steps, start):
    for step in range(start, start + steps):
        params[0].grad = tg.tensor(gradient(params[0].numpy(), step))
        params[1].grad = tg.tensor(np.array([1.0, -2.0]) * SCALES[step])
        opt.step()


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
        ("Adam", dict(lr=0.1, amsgrad=True)),
        ("AdamW", dict(lr=0.1)),
        ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
        ("Adagrad", dict(lr=0.1, lr_decay=0.1)),
    ],
)
def test_state_dict_round_trip_continues_identically(name, options):
    params, opt = make_pair(name, options)
    drive(params, opt, 2, start=0)
    saved = opt.state_dict()

    copies, fresh = make_pair(name, {})
    for original, copy in zip(params, copies):
        copy.data = original.detach().numpy().copy()
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == options["lr"] and fresh.param_groups[1]["lr"] == 0.01

    drive(params, opt, 3, start=2)
    drive(copies, fresh, 3, start=2)
    for original, copy in zip(params, copies):
        np.testing.assert_array_equal(copy.numpy(), original.numpy())


def test_state_dict_has_pytorchs_layout_with_numpy_copies():
    params, opt = make_pair("Adam", dict(lr=0.1))
    drive(params, opt, 1, start=0)
    state = opt.state_dict()
    assert set(state) == {"state", "param_groups"}
    assert [g["params"] for g in state["param_groups"]] == [[0], [1]]
    assert state["param_groups"][1]["lr"] == 0.01 and state["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(state["state"]) == {0, 1}
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and state["state"][0]["step"] == 1
    buffer = state["state"][0]["exp_avg"]
    assert isinstance(buffer, np.ndarray) and buffer.shape == P0.shape
    buffer[...] = 123.0
    assert not np.any(opt.state[params[0]]["exp_avg"].numpy() == 123.0)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("SGD", dict(lr=0.1, momentum=0.9)),
        ("Adam", dict(lr=0.1, amsgrad=True)),
        ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
        ("Adagrad", dict(lr=0.1)),
    ],
)
def test_load_state_dict_copies_so_optimizers_loaded_from_one_dict_share_nothing(name, options):
    params, opt = make_pair(name, options)
    drive(params, opt, 2, start=0)
    saved = opt.state_dict()
    snapshot = deepcopy(saved)

    first_params, first = make_pair(name, options)
    second_params, second = make_pair(name, options)
    first.load_state_dict(saved)
    second.load_state_dict(saved)
    before = {
        key: value.numpy().copy() for key, value in second.state[second_params[0]].items() if key != "step"
    }
    drive(first_params, first, 2, start=2)

    after = second.state[second_params[0]]
    assert after["step"] == 2
    for key, value in before.items():
        np.testing.assert_array_equal(after[key].numpy(), value, err_msg=key)
    for index, buffers in snapshot["state"].items():
        for key, value in buffers.items():
            np.testing.assert_array_equal(saved["state"][index][key], value, err_msg=key)
    first.param_groups[0]["lr"] = 123.0
    assert second.param_groups[0]["lr"] == saved["param_groups"][0]["lr"] == options["lr"]


def test_load_state_dict_rejects_a_dict_that_does_not_fit_and_changes_nothing():
    params, opt = make_pair("SGD", dict(lr=0.1, momentum=0.9))
    drive(params, opt, 1, start=0)
    saved = opt.state_dict()
    other = optim.SGD([tg.zeros(3, requires_grad=True)], lr=0.5, momentum=0.9)
    with pytest.raises(ValueError, match="2 parameter group"):
        other.load_state_dict(saved)
    wrong_shape = optim.SGD(
        [{"params": [tg.zeros(4, requires_grad=True)]}, {"params": [tg.zeros(2, requires_grad=True)]}], lr=0.5
    )
    with pytest.raises(ValueError, match=r"momentum_buffer.*shape \(2, 3\).*shape \(4,\)"):
        wrong_shape.load_state_dict(saved)
    assert wrong_shape.param_groups[0]["lr"] == 0.5 and not wrong_shape.state


# ---- argument checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: optim.SGD(p, lr=-0.1), ValueError, "learning rate"),
        (lambda p: optim.Adam(p, betas=(0.9, 1.0)), ValueError, "beta parameter at index 1"),
        (lambda p: optim.Adam(p, betas=(-0.1, 0.9)), ValueError, "beta parameter at index 0"),
        (lambda p: optim.Adam(p, eps=-1.0), ValueError, "epsilon"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, "nesterov"),
        (lambda p: optim.RMSprop(p, alpha=-0.5), ValueError, "alpha"),
        (lambda p: optim.Adagrad(p, lr_decay=-1.0), ValueError, "lr_decay"),
        (lambda p: optim.SGD(p, lr="fast"), TypeError, "learning rate"),
        (lambda p: optim.SGD([{"params": p, "betas": (0.9, 0.9)}], lr=0.1), ValueError, "unknown option"),
        (lambda p: optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
        (lambda p: optim.SGD(p + p, lr=0.1), ValueError, "appears twice"),
        (lambda p: optim.SGD(p[0], lr=0.1), TypeError, "single Tensor"),
        (lambda p: optim.SGD([p[0] * 2], lr=0.1), ValueError, "non-leaf"),
        (lambda p: optim.SGD([np.zeros(2)], lr=0.1), TypeError, "expected a Tensor"),
    ],
)
def test_invalid_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make([tg.zeros(2, requires_grad=True)])


def test_repr_lists_each_group():
    opt = optim.Adam([tg.zeros(1, requires_grad=True)], lr=0.5)
    assert "Adam (" in repr(opt) and "lr: 0.5" in repr(opt)


@pytest.mark.parametrize(
    ("name", "options", "reference"), CASES[::3], ids=[f"{c[0]}-{c[1]}" for c in CASES[::3]]
)
def test_optimizers_run_on_a_strict_cupy_stand_in_as_on_numpy(monkeypatch, name, options, reference):
    from fake_cupy import FakeArray, install

    install(monkeypatch)
    p = tg.tensor(P0.copy(), device="cuda", requires_grad=True)
    opt = getattr(optim, name)([p], **options)
    for step in range(3):
        p.grad = tg.tensor(gradient(p.numpy(), step), device="cuda")
        opt.step()
    assert isinstance(p._data, FakeArray)
    assert all(isinstance(v._data, FakeArray) for v in opt.state[p].values() if isinstance(v, tg.Tensor))
    np.testing.assert_allclose(p.numpy(), reference(**options)[-1], rtol=1e-12)
    restored = getattr(optim, name)([p], **options)
    restored.load_state_dict(opt.state_dict())
    assert all(isinstance(v._data, FakeArray) for v in restored.state[p].values() if isinstance(v, tg.Tensor))


def test_state_of_a_parameter_on_a_second_gpu_stays_there(monkeypatch):
    from fake_cupy import install

    install(monkeypatch, device_count=2)
    far = tg.ones(3, device="cuda:1", requires_grad=True)
    near = tg.ones(2, device="cuda:0", requires_grad=True)
    for make in (
        lambda p: optim.Adam(p, amsgrad=True),
        lambda p: optim.RMSprop(p, momentum=0.5, centered=True),
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: optim.Adagrad(p),
    ):
        opt = make([far, near])
        far.grad, near.grad = tg.ones(3, device="cuda:1"), tg.ones(2, device="cuda:0")
        opt.step()
        restored = make([far, near])
        restored.load_state_dict(opt.state_dict())
        for o in (opt, restored):
            assert {str(v.device) for v in o.state[far].values() if isinstance(v, tg.Tensor)} == {"cuda:1"}
            assert {str(v.device) for v in o.state[near].values() if isinstance(v, tg.Tensor)} == {"cuda:0"}
    assert far.device == "cuda:1" and near.device == "cuda:0"
