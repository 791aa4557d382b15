"""optim.lr_scheduler: every scheduler's rates against its closed-form formula, PyTorch's step order,
last_epoch and get_last_lr, chaining, state dicts and argument checks."""

import io
import math
import warnings

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import optim
from tinygrad_rnn.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    MultiplicativeLR,
    MultiStepLR,
    ReduceLROnPlateau,
    StepLR,
)

BASE = (0.1, 0.03)  # two parameter groups with their own base rates


def make_optimizer():
    a = tg.zeros(2, requires_grad=True)
    b = tg.zeros(3, requires_grad=True)
    return optim.SGD([{"params": [a]}, {"params": [b], "lr": BASE[1]}], lr=BASE[0], momentum=0.9)


def trace(make_scheduler, epochs):
    """[rates at epoch 0, 1, ...] with the PyTorch loop: optimizer.step() then scheduler.step()."""
    opt = make_optimizer()
    scheduler = make_scheduler(opt)
    rates = [scheduler.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr())
        assert rates[-1] == [group["lr"] for group in opt.param_groups]
    assert scheduler.last_epoch == epochs
    return rates


CLOSED_FORMS = [
    ("StepLR", lambda opt: StepLR(opt, step_size=3, gamma=0.5), lambda b, e: b * 0.5 ** (e // 3)),
    (
        "MultiStepLR",
        lambda opt: MultiStepLR(opt, milestones=[2, 5, 5, 9], gamma=0.1),
        # 5 appears twice: two factors there.
        lambda b, e: b * 0.1 ** sum(m <= e for m in [2, 5, 5, 9]),
    ),
    ("ExponentialLR", lambda opt: ExponentialLR(opt, gamma=0.9), lambda b, e: b * 0.9**e),
    (
        "CosineAnnealingLR",
        lambda opt: CosineAnnealingLR(opt, T_max=7, eta_min=0.001),
        lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * e / 7)) / 2,
    ),
    (
        "LambdaLR",
        lambda opt: LambdaLR(opt, [lambda e: 1 / (e + 1), lambda e: 0.95**e]),
        None,  # per group, below
    ),
    (
        "MultiplicativeLR",
        lambda opt: MultiplicativeLR(opt, lambda e: 0.9 if e % 2 else 0.8),
        lambda b, e: b * math.prod(0.9 if k % 2 else 0.8 for k in range(1, e + 1)),
    ),
]


@pytest.mark.parametrize(("name", "make", "formula"), CLOSED_FORMS, ids=[c[0] for c in CLOSED_FORMS])
def test_rates_follow_the_closed_form(name, make, formula):
    if formula is None:
        lambdas = [lambda e: 1 / (e + 1), lambda e: 0.95**e]
        expected = [[base * lambdas[g](e) for g, base in enumerate(BASE)] for e in range(31)]
    else:
        expected = [[formula(base, e) for base in BASE] for e in range(31)]
    got = trace(make, 30)
    for e, (rates, want) in enumerate(zip(got, expected)):
        assert rates == pytest.approx(want, rel=1e-9, abs=1e-15), f"epoch {e}"


def test_cosine_annealing_climbs_back_after_t_max_and_passes_the_bottom_exactly():
    rates = trace(lambda opt: CosineAnnealingLR(opt, T_max=4), 12)
    assert rates[4][0] == pytest.approx(0.0, abs=1e-15)
    assert rates[8][0] == pytest.approx(BASE[0], rel=1e-9)  # one full period later: back at the start
    assert rates[5][0] > rates[4][0]  # the step past the bottom uses the increment, not a 0/0 ratio


def test_schedulers_on_one_optimizer_compose():
    opt = make_optimizer()
    first = ExponentialLR(opt, gamma=0.9)
    second = StepLR(opt, step_size=2, gamma=0.5)
    for e in range(1, 9):
        opt.step()
        first.step()
        second.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(BASE[0] * 0.9**e * 0.5 ** (e // 2), rel=1e-12)


def test_construction_records_initial_lr_and_is_epoch_zero():
    opt = make_optimizer()
    scheduler = StepLR(opt, step_size=2)
    assert scheduler.last_epoch == 0 and scheduler.base_lrs == list(BASE)
    assert [group["initial_lr"] for group in opt.param_groups] == list(BASE)
    assert scheduler.get_last_lr() == list(BASE)


def test_resuming_without_initial_lr_names_the_missing_key():
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(make_optimizer(), step_size=2, last_epoch=4)


def test_stepping_the_scheduler_before_the_optimizer_warns():
    opt = make_optimizer()
    scheduler = StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"before `optimizer.step\(\)`"):
        scheduler.step()
    opt = make_optimizer()
    scheduler = StepLR(opt, step_size=2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler.step()


def test_an_optimizer_subclass_with_its_own_step_is_tracked_too():
    class SignSGD(optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, dict(lr=lr))

        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.data = p.numpy() - group["lr"] * np.sign(p.grad.numpy())

    p = tg.ones(2, requires_grad=True)
    opt = SignSGD([p], lr=0.5)
    scheduler = ExponentialLR(opt, gamma=0.5)
    p.grad = tg.ones(2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler.step()
    assert p.tolist() == [0.5, 0.5] and opt.param_groups[0]["lr"] == 0.25


def test_step_with_an_epoch_jumps_to_the_closed_form_with_a_deprecation_warning():
    opt = make_optimizer()
    scheduler = StepLR(opt, step_size=3, gamma=0.5)
    opt.step()
    with pytest.warns(DeprecationWarning):
        scheduler.step(7)
    assert scheduler.last_epoch == 7 and scheduler.get_last_lr() == pytest.approx([b * 0.25 for b in BASE])


def reduce_on_plateau_reference(metrics, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr):
    """The documented rule, written out: one rate, epochs counted from 1."""
    lr, best, bad, cool, rates = BASE[0], (math.inf if mode == "min" else -math.inf), 0, 0, []
    for m in metrics:
        if mode == "min":
            better = m < (best * (1 - threshold) if threshold_mode == "rel" else best - threshold)
        else:
            better = m > (best * (1 + threshold) if threshold_mode == "rel" else best + threshold)
        best, bad = (m, 0) if better else (best, bad + 1)
        if cool > 0:
            cool, bad = cool - 1, 0
        if bad > patience:
            new = max(lr * factor, min_lr)
            lr = new if lr - new > 1e-8 else lr
            cool, bad = cooldown, 0
        rates.append(lr)
    return rates


METRICS = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.2, 3.0, 3.0, 3.0, 3.0, 3.0, 2.99, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5]


@pytest.mark.parametrize(
    "options",
    [
        dict(
            mode="min", factor=0.5, patience=2, threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0.0
        ),
        dict(
            mode="min", factor=0.1, patience=1, threshold=0.05, threshold_mode="abs", cooldown=2, min_lr=0.0
        ),
        dict(
            mode="min", factor=0.5, patience=0, threshold=0.0, threshold_mode="rel", cooldown=0, min_lr=0.02
        ),
        dict(
            mode="max", factor=0.5, patience=1, threshold=1e-4, threshold_mode="rel", cooldown=1, min_lr=0.0
        ),
    ],
)
def test_reduce_on_plateau_follows_the_documented_rule(options):
    opt = make_optimizer()
    scheduler = ReduceLROnPlateau(opt, **{**options, "min_lr": [options["min_lr"], 0.0]})
    got = []
    for m in METRICS:
        opt.step()
        scheduler.step(tg.tensor(m) if m == 3.0 else m)  # a one-element Tensor is accepted, as loss.item()
        got.append(scheduler.get_last_lr()[0])
    want = reduce_on_plateau_reference(METRICS, **options)
    assert got == pytest.approx(want, rel=1e-12)
    assert len(set(want)) > 1  # the sequence does trigger reductions


def test_state_dict_round_trip_continues_identically_through_tg_save():
    def build(opt):
        return [
            StepLR(opt, step_size=2, gamma=0.5),
            MultiStepLR(opt, milestones=[3, 3, 6], gamma=0.5),
            CosineAnnealingLR(opt, T_max=5),
            LambdaLR(opt, lambda e: 0.9**e),
        ]

    opt = make_optimizer()
    schedulers = build(opt)
    plateau = ReduceLROnPlateau(opt, patience=0, factor=0.5)
    for _ in range(4):
        opt.step()
        for s in schedulers:
            s.step()
        plateau.step(1.0)
    buffer = io.BytesIO()
    tg.save(
        {"optimizer": opt.state_dict(), "schedulers": [s.state_dict() for s in [*schedulers, plateau]]},
        buffer,
    )
    buffer.seek(0)
    saved = tg.load(buffer)
    assert saved["schedulers"][3]["lr_lambdas"] == [None, None]  # functions are not saved, as in PyTorch
    assert "optimizer" not in saved["schedulers"][0]

    fresh = make_optimizer()
    fresh_schedulers = build(fresh)
    fresh_plateau = ReduceLROnPlateau(fresh)
    fresh.load_state_dict(saved["optimizer"])
    for s, state in zip([*fresh_schedulers, fresh_plateau], saved["schedulers"]):
        s.load_state_dict(state)
    for _ in range(6):
        for o, ss, p in ((opt, schedulers, plateau), (fresh, fresh_schedulers, fresh_plateau)):
            o.step()
            for s in ss:
                s.step()
            p.step(1.0)
        assert [g["lr"] for g in fresh.param_groups] == [g["lr"] for g in opt.param_groups]
        assert fresh_plateau.get_last_lr() == plateau.get_last_lr()


def test_a_callable_objects_attributes_are_saved_and_restored():
    class Warmup:
        def __init__(self, epochs):
            self.epochs = epochs

        def __call__(self, e):
            return min(1.0, (e + 1) / self.epochs)

    scheduler = LambdaLR(make_optimizer(), Warmup(4))
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [{"epochs": 4}, {"epochs": 4}]  # one per group
    other = LambdaLR(make_optimizer(), Warmup(10))
    other.load_state_dict(state)
    assert other.lr_lambdas[0].epochs == 4


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda opt: StepLR(opt, step_size=0), ValueError, "step_size"),
        (lambda opt: CosineAnnealingLR(opt, T_max=0), ValueError, "T_max"),
        (
            lambda opt: LambdaLR(opt, [lambda e: 1.0]),
            ValueError,
            "Expected 2 lr_lambdas|expected 2 lr_lambdas",
        ),
        (lambda opt: LambdaLR(opt, 0.5), TypeError, "callable"),
        (lambda opt: ReduceLROnPlateau(opt, factor=1.0), ValueError, "factor"),
        (lambda opt: ReduceLROnPlateau(opt, mode="avg"), ValueError, "mode"),
        (lambda opt: ReduceLROnPlateau(opt, threshold_mode="pct"), ValueError, "threshold mode"),
        (lambda opt: ReduceLROnPlateau(opt, min_lr=[0.0]), ValueError, "min_lrs"),
        (lambda opt: StepLR("not an optimizer", step_size=2), TypeError, "optimizer"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make(make_optimizer())


def test_schedulers_drive_lbfgs_and_adam_as_any_optimizer():
    p = tg.zeros(2, requires_grad=True)
    for opt in (optim.Adam([p], lr=0.5), optim.LBFGS([p], lr=0.5)):
        scheduler = ExponentialLR(opt, gamma=0.5)
        with pytest.warns(UserWarning, match="before"):  # no optimizer step was taken here
            scheduler.step()
        assert opt.param_groups[0]["lr"] == 0.25
