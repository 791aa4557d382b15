"""Adamax, NAdam and RAdam against their documented update rules written out in NumPy here, and the
warm-up schedulers (LinearLR, ConstantLR, SequentialLR, OneCycleLR) against their closed forms."""

import math

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import optim
from tinygrad_rnn.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    OneCycleLR,
    SequentialLR,
)

P0 = np.array([[0.5, -1.5, 2.0], [1.0, 0.0, -0.25]])
C = np.array([[1.0, 2.0, 0.5], [3.0, 1.0, 1.5]])
D = np.array([[0.1, -0.2, 0.3], [-0.4, 0.5, -0.6]])
SCALES = [1.0, 0.1, 0.5, 2.0, 0.3, 1.5, 0.7]
STEPS = len(SCALES)


def gradient(p, step):
    return SCALES[step] * (C * p + D)


def run(make, steps=STEPS):
    p = tg.tensor(P0.copy(), requires_grad=True)
    opt = make([p])
    path = []
    for step in range(steps):
        p.grad = tg.tensor(gradient(p.numpy(), step))
        opt.step()
        path.append(p.numpy().copy())
    return path


# ---- the documented rules ------------------------------------------------------------------------------


def adamax_reference(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False):
    p, m, u, path = P0.copy(), 0.0, 0.0, []
    beta1, beta2 = betas
    for t in range(1, STEPS + 1):
        g = gradient(p, t - 1)
        g = -g if maximize else g
        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g) + eps)
        p = p - lr * m / ((1 - beta1**t) * u)
        path.append(p)
    return path


def nadam_reference(
    lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False
):
    p, m, v, product, path = P0.copy(), 0.0, 0.0, 1.0, []
    beta1, beta2 = betas
    for t in range(1, STEPS + 1):
        g = gradient(p, t - 1)
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        mu = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        product *= mu
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_hat = v / (1 - beta2**t)
        step = mu_next * m / (1 - product * mu_next) + (1 - mu) * g / (1 - product)
        p = p - lr * step / (np.sqrt(v_hat) + eps)
        path.append(p)
    return path


def radam_reference(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False):
    p, m, v, path = P0.copy(), 0.0, 0.0, []
    beta1, beta2 = betas
    rho_inf = 2 / (1 - beta2) - 1
    for t in range(1, STEPS + 1):
        g = gradient(p, t - 1)
        if decoupled_weight_decay:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        rho = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
        if rho > 5:
            adaptive = math.sqrt(1 - beta2**t) / (np.sqrt(v) + eps)
            rect = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            p = p - lr * m_hat * rect * adaptive
        else:
            p = p - lr * m_hat
        path.append(p)
    return path


CASES = [
    ("Adamax", dict(), adamax_reference),
    ("Adamax", dict(lr=0.1, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.2), adamax_reference),
    ("Adamax", dict(lr=0.1, maximize=True), adamax_reference),
    ("NAdam", dict(), nadam_reference),
    ("NAdam", dict(lr=0.1, betas=(0.8, 0.9), momentum_decay=0.1, weight_decay=0.2), nadam_reference),
    ("NAdam", dict(lr=0.1, weight_decay=0.2, decoupled_weight_decay=True), nadam_reference),
    ("RAdam", dict(), radam_reference),  # rho_t <= 5 for the first steps: the un-adapted branch
    # beta2 = 0.9 makes rho_t > 5 from step 6: the rectified branch is taken in the last steps.
    ("RAdam", dict(lr=0.1, betas=(0.8, 0.9), weight_decay=0.2), radam_reference),
    ("RAdam", dict(lr=0.1, betas=(0.8, 0.9), weight_decay=0.2, decoupled_weight_decay=True), radam_reference),
]


@pytest.mark.parametrize(("name", "options", "reference"), CASES)
def test_first_steps_follow_the_documented_rule(name, options, reference):
    path = run(lambda params: getattr(optim, name)(params, **options))
    expected = reference(**options)
    for got, want in zip(path, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_radam_takes_both_branches_in_the_checked_steps():
    beta2 = 0.9
    rho_inf = 2 / (1 - beta2) - 1
    rhos = [rho_inf - 2 * t * beta2**t / (1 - beta2**t) for t in range(1, STEPS + 1)]
    assert min(rhos) <= 5 < max(rhos)


def test_nadam_state_dict_round_trip_continues_identically():
    p = tg.tensor(P0.copy(), requires_grad=True)
    opt = optim.NAdam([p], lr=0.1)
    for step in range(3):
        p.grad = tg.tensor(gradient(p.numpy(), step))
        opt.step()
    q = tg.tensor(p.numpy().copy(), requires_grad=True)
    other = optim.NAdam([q], lr=0.1)
    other.load_state_dict(opt.state_dict())
    for step in range(3, 5):
        for t, o in ((p, opt), (q, other)):
            t.grad = tg.tensor(gradient(t.numpy(), step))
            o.step()
    np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.parametrize("name", ["Adamax", "NAdam", "RAdam"])
def test_bad_options_raise_clear_errors(name):
    p = tg.zeros(2, requires_grad=True)
    cls = getattr(optim, name)
    with pytest.raises(ValueError, match="learning rate"):
        cls([p], lr=-1.0)
    with pytest.raises(ValueError, match="beta parameter at index 1"):
        cls([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        cls([p], betas=(0.9,))
    with pytest.raises(ValueError, match="weight_decay"):
        cls([p], weight_decay=-0.1)


def test_nadam_rejects_negative_momentum_decay():
    with pytest.raises(ValueError, match="momentum_decay"):
        optim.NAdam([tg.zeros(2, requires_grad=True)], momentum_decay=-1.0)


# ---- schedulers ---------------------------------------------------------------------------------------

BASE = (0.1, 0.03)


def make_optimizer(kind="sgd"):
    a, b = tg.zeros(2, requires_grad=True), tg.zeros(3, requires_grad=True)
    groups = [{"params": [a]}, {"params": [b], "lr": BASE[1]}]
    if kind == "adam":
        return optim.Adam(groups, lr=BASE[0])
    return optim.SGD(groups, lr=BASE[0], momentum=0.9)


def trace(make_scheduler, epochs, kind="sgd", keys=("lr",)):
    opt = make_optimizer(kind)
    scheduler = make_scheduler(opt)
    rows = [[tuple(group[k] for k in keys) for group in opt.param_groups]]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        assert scheduler.get_last_lr() == [group["lr"] for group in opt.param_groups]
        rows.append([tuple(group[k] for k in keys) for group in opt.param_groups])
    return rows


def test_linear_lr_follows_its_closed_form():
    start, end, total = 0.25, 0.9, 4
    rows = trace(lambda o: LinearLR(o, start, end, total), 7)
    for e, row in enumerate(rows):
        factor = start + (end - start) * min(e, total) / total
        for (rate,), base in zip(row, BASE):
            assert rate == pytest.approx(base * factor, rel=1e-12)


def test_constant_lr_follows_its_closed_form():
    rows = trace(lambda o: ConstantLR(o, factor=0.5, total_iters=3), 6)
    for e, row in enumerate(rows):
        for (rate,), base in zip(row, BASE):
            assert rate == pytest.approx(base * (0.5 if e < 3 else 1.0), rel=1e-12)


def test_sequential_lr_restarts_each_scheduler_at_its_milestone():
    def make(o):
        return SequentialLR(
            o, [LinearLR(o, 0.1, 1.0, 4), ExponentialLR(o, 0.5), CosineAnnealingLR(o, T_max=4)], [5, 8]
        )

    rows = trace(make, 12)
    for e, row in enumerate(rows):
        for (rate,), base in zip(row, BASE):
            if e < 5:
                expected = base * (0.1 + 0.9 * min(e, 4) / 4)
            elif e < 8:
                expected = base * 0.5 ** (e - 5)
            else:
                # Restarted by its closed form at epoch 0, the cosine starts from the base rate.
                expected = base * (1 + math.cos(math.pi * (e - 8) / 4)) / 2
            assert rate == pytest.approx(expected, rel=1e-12), (e, rate, expected)


def test_sequential_lr_checks_its_arguments():
    opt, other = make_optimizer(), make_optimizer()
    with pytest.raises(ValueError, match="1 milestones"):
        SequentialLR(opt, [LinearLR(opt), ConstantLR(opt)], [2, 4])
    with pytest.raises(ValueError, match="another optimizer"):
        SequentialLR(opt, [LinearLR(opt), ConstantLR(other)], [2])
    with pytest.raises(ValueError, match="increase"):
        SequentialLR(opt, [LinearLR(opt), ConstantLR(opt), ConstantLR(opt)], [3, 3])


def one_cycle_closed_form(step, top, total, pct, div=25.0, final=1e4, three=False, anneal="cos"):
    def curve(a, b, fraction):
        if anneal == "cos":
            return b + (a - b) * (1 + math.cos(math.pi * fraction)) / 2
        return a + (b - a) * fraction

    low = top / div
    floor = low / final
    if three:
        ends = [pct * total - 1, 2 * pct * total - 2, total - 1]
        values = [(low, top, 0.95, 0.85), (top, low, 0.85, 0.95), (low, floor, 0.95, 0.95)]
    else:
        ends = [pct * total - 1, total - 1]
        values = [(low, top, 0.95, 0.85), (top, floor, 0.85, 0.95)]
    start = 0.0
    for i, end in enumerate(ends):
        if step <= end or i == len(ends) - 1:
            fraction = (step - start) / (end - start)
            lr_from, lr_to, m_from, m_to = values[i]
            return curve(lr_from, lr_to, fraction), curve(m_from, m_to, fraction)
        start = end
    raise AssertionError


@pytest.mark.parametrize(
    ("three", "anneal", "kind"),
    [(False, "cos", "sgd"), (False, "linear", "adam"), (True, "cos", "adam"), (True, "linear", "sgd")],
)
def test_one_cycle_lr_rates_and_momenta_follow_the_phases(three, anneal, kind):
    total, pct, tops = 20, 0.25, [1.0, 0.4]
    key = "betas" if kind == "adam" else "momentum"

    def make(o):
        return OneCycleLR(
            o, max_lr=tops, total_steps=total, pct_start=pct, anneal_strategy=anneal, three_phase=three
        )

    rows = trace(make, total - 1, kind, keys=("lr", key))
    for step, row in enumerate(rows):
        for (rate, momentum), top in zip(row, tops):
            expected_rate, expected_momentum = one_cycle_closed_form(
                step, top, total, pct, three=three, anneal=anneal
            )
            assert rate == pytest.approx(expected_rate, rel=1e-12, abs=1e-15)
            momentum = momentum[0] if kind == "adam" else momentum
            assert momentum == pytest.approx(expected_momentum, rel=1e-12)
    assert rows[0][0][0] == pytest.approx(tops[0] / 25)
    assert rows[-1][0][0] == pytest.approx(tops[0] / 25 / 1e4)


def test_one_cycle_lr_from_epochs_and_steps_and_its_errors():
    opt = make_optimizer()
    scheduler = OneCycleLR(opt, max_lr=0.5, epochs=2, steps_per_epoch=3)
    assert scheduler.total_steps == 6
    for _ in range(6):
        opt.step()
        scheduler.step()
    with pytest.raises(ValueError, match="tried to step 7 times"):
        opt.step()
        scheduler.step()
    with pytest.raises(ValueError, match="total_steps, or both"):
        OneCycleLR(make_optimizer(), max_lr=0.5)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycleLR(make_optimizer(), max_lr=0.5, total_steps=5, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        OneCycleLR(make_optimizer(), max_lr=0.5, total_steps=5, anneal_strategy="step")
    with pytest.raises(ValueError, match="2 values for max_lr"):
        OneCycleLR(make_optimizer(), max_lr=[0.5], total_steps=5)
    with pytest.raises(ValueError, match="momentum or betas"):
        OneCycleLR(optim.Adagrad([tg.zeros(2, requires_grad=True)]), max_lr=0.5, total_steps=5)


def test_linear_and_constant_lr_reject_bad_factors():
    opt = make_optimizer()
    with pytest.raises(ValueError, match="start_factor"):
        LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="end_factor"):
        LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match="factor"):
        ConstantLR(opt, factor=2.0)
    with pytest.raises(ValueError, match="total_iters"):
        ConstantLR(opt, total_iters=0)
