"""Adam's flat multi-tensor update (optim/multi_tensor.py): bit for bit the per-parameter rule, for every
option, across state-dict round trips and the cases that fall back to the per-parameter path."""

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import optim
from tinygrad_rnn.optim import multi_tensor

SHAPES = [(7, 3), (3,), (5, 4, 2), (1,)]


def make_params(dtype=np.float32, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [tg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in shapes]


def gradients(params, step, skip=()):
    rng = np.random.default_rng(100 + step)
    for i, p in enumerate(params):
        # a wide range of magnitudes, exact zeros included, so that every rounding path is exercised
        g = rng.standard_normal(p.shape) * 10.0 ** rng.integers(-6, 3, size=p.shape)
        g[rng.random(p.shape) < 0.1] = 0.0
        p.grad = None if i in skip else tg.tensor(g.astype(p.dtype))


def run(make_optimizer, steps, dtype=np.float32, per_parameter=False, skips=None, monkeypatch=None):
    params = make_params(dtype)
    opt = make_optimizer(params)
    if per_parameter:
        monkeypatch.setattr(multi_tensor, "adam_step", lambda *args: False)
    for step in range(steps):
        gradients(params, step, skip=(skips or {}).get(step, ()))
        opt.step()
    if per_parameter:
        monkeypatch.undo()
    return params, opt


def assert_same(first, second):
    (params_a, opt_a), (params_b, opt_b) = first, second
    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.numpy().tobytes() == b.numpy().tobytes()  # bit for bit, signed zeros included
    state_a, state_b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert state_a[key].keys() == state_b[key].keys()
        for name, value in state_a[key].items():
            np.testing.assert_array_equal(value, state_b[key][name])


OPTIONS = [
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"maximize": True}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1, "amsgrad": True, "maximize": True, "betas": (0.8, 0.95), "eps": 1e-6}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.3, "amsgrad": True}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, options", OPTIONS)
def test_flat_update_is_bit_for_bit_the_per_parameter_rule(monkeypatch, name, options, dtype):
    def make(params):
        return getattr(optim, name)(params, lr=3e-2, **options)

    fused = run(make, 6, dtype)
    assert fused[1]._flat_states, "the flat path was not taken"
    assert_same(fused, run(make, 6, dtype, per_parameter=True, monkeypatch=monkeypatch))


@pytest.mark.parametrize("segment", [1, 5, 8, 31, 10_000])
@pytest.mark.parametrize("name, options", [OPTIONS[0], OPTIONS[4], OPTIONS[6]])
def test_any_segment_length_gives_the_same_bits(monkeypatch, segment, name, options):
    # segments that cut parameters apart, hold several, or hold the whole group
    monkeypatch.setattr(multi_tensor, "SEGMENT", segment)

    def make(params):
        return getattr(optim, name)(params, lr=3e-2, **options)

    fused = run(make, 4)
    assert fused[1]._flat_states
    reference = run(make, 4, per_parameter=True, monkeypatch=monkeypatch)
    assert_same(fused, reference)


def test_segments_cover_the_group_in_order_within_the_length(monkeypatch):
    monkeypatch.setattr(multi_tensor, "SEGMENT", 4)
    segments = multi_tensor._segments([3, 0, 9, 2])
    assert [(start, end) for start, end, _ in segments] == [(0, 4), (4, 8), (8, 12), (12, 14)]
    assert segments[0][2] == [(0, 0, 3, 0), (2, 0, 1, 3)]
    assert segments[1][2] == [(2, 1, 5, 0)]
    assert segments[3][2] == [(3, 0, 2, 0)]


def test_state_entries_are_views_of_one_buffer_and_state_dicts_hold_copies():
    params, opt = run(lambda p: optim.Adam(p, lr=1e-2), 2)
    buffers = [opt.state[p]["exp_avg"]._data for p in params]
    flat = buffers[0].base
    assert flat is not None and flat.size == sum(p.numel() for p in params)
    assert all(b.base is flat for b in buffers)
    saved = opt.state_dict()
    saved["state"][0]["exp_avg"][...] = 123.0
    assert not (opt.state[params[0]]["exp_avg"].numpy() == 123.0).any()


def test_state_dict_round_trip_continues_bit_for_bit(monkeypatch):
    def make(params):
        return optim.Adam(params, lr=2e-2, amsgrad=True, weight_decay=0.01)

    straight = run(make, 5)
    params, opt = run(make, 3)
    fresh = make(params)
    fresh.load_state_dict(opt.state_dict())
    for step in range(3, 5):
        gradients(params, step)
        fresh.step()
    assert fresh._flat_states
    assert_same(straight, (params, fresh))
    assert_same(straight, run(make, 5, per_parameter=True, monkeypatch=monkeypatch))


def test_a_step_where_some_parameter_lacks_a_gradient_matches_the_per_parameter_rule(monkeypatch):
    # step 1 leaves parameter 2 without a gradient: its step count falls behind the others', so the
    # group takes the per-parameter rule from then on, on the same (viewed) buffers
    def make(params):
        return optim.AdamW(params, lr=1e-2)

    skips = {1: (2,)}
    assert_same(
        run(make, 5, skips=skips), run(make, 5, per_parameter=True, skips=skips, monkeypatch=monkeypatch)
    )


def test_a_parameter_without_state_yet_joins_through_the_per_parameter_rule(monkeypatch):
    def make(params):
        return optim.Adam(params, lr=1e-2)

    skips = {0: (1,), 1: (1,)}
    fused = run(make, 4, skips=skips)
    assert_same(fused, run(make, 4, per_parameter=True, skips=skips, monkeypatch=monkeypatch))
    assert fused[1].state[fused[0][1]]["step"] == 2


def test_groups_are_flattened_separately_and_an_added_group_joins(monkeypatch):
    def make(params):
        opt = optim.Adam([{"params": params[:2]}, {"params": params[2:3], "lr": 0.1}], lr=1e-2)
        return opt

    def drive(per_parameter):
        params = make_params()
        opt = make(params)
        if per_parameter:
            monkeypatch.setattr(multi_tensor, "adam_step", lambda *args: False)
        for step in range(4):
            if step == 2:
                opt.add_param_group({"params": params[3:], "amsgrad": True})
            gradients(params, step, skip=(3,) if step < 2 else ())
            opt.step()
        monkeypatch.undo()
        return params, opt

    fused = drive(False)
    assert sorted(fused[1]._flat_states) == [0, 1, 2]
    assert_same(fused, drive(True))


def test_mixed_dtypes_and_gradients_that_require_grad_take_the_per_parameter_rule(monkeypatch):
    params = make_params(np.float32)[:2] + make_params(np.float64)[2:]
    opt = optim.Adam(params, lr=1e-2)
    gradients(params, 0)
    opt.step()
    assert not opt._flat_states
    single = make_params()[:1]
    opt = optim.Adam(single, lr=1e-2)
    single[0].grad = tg.ones(*single[0].shape, requires_grad=True)
    opt.step()
    assert not opt._flat_states
    np.testing.assert_allclose(single[0].numpy(), make_params()[0].numpy() - 1e-2, rtol=1e-5)


def test_a_non_contiguous_parameter_takes_the_per_parameter_rule(monkeypatch):
    def make_transposed():
        rng = np.random.default_rng(0)
        return [tg.tensor(rng.standard_normal((4, 3)).astype(np.float32).T, requires_grad=True)]

    results = []
    for per_parameter in (False, True):
        params = make_transposed()
        if per_parameter:
            monkeypatch.setattr(multi_tensor, "adam_step", lambda *args: False)
        opt = optim.Adam(params, lr=1e-2)
        for step in range(3):
            gradients(params, step)
            opt.step()
        monkeypatch.undo()
        results.append((params, opt))
    assert not results[0][0][0]._data.flags.c_contiguous
    assert not results[0][1]._flat_states
    assert_same(*results)


def test_relatives_of_adam_keep_their_own_rule():
    params = make_params()
    opt = optim.NAdam(params, lr=1e-2)
    gradients(params, 0)
    opt.step()
    assert not hasattr(opt, "_flat_states") or not opt._flat_states


def test_flat_step_bumps_each_parameter_version_so_stale_graphs_are_refused():
    (p,) = make_params(shapes=[(3,)])
    y = (p * p).sum()
    opt = optim.Adam([p], lr=1e-2)
    gradients([p], 0)
    opt.step()
    assert opt._flat_states
    with pytest.raises(RuntimeError):
        y.backward()
