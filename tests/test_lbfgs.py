"""optim.LBFGS against the documented algorithm, written out here independently.

The reference builds the inverse-Hessian approximation as an explicit matrix by the BFGS update
H ← (I - ρ s yᵀ) H (I - ρ y sᵀ) + ρ s sᵀ, ρ = 1 / yᵀs, from H₀ = (yᵀs / yᵀy) I of the newest pair,
over the last ``history_size`` pairs with yᵀs > 1e-10; d = -H g. The optimizer computes the same
direction by the two-loop recursion without ever forming H, so agreement checks the recursion.
The first step is lr · min(1, 1/‖g‖₁), later ones lr. With ``line_search_fn="strong_wolfe"`` every
accepted step is checked against the strong Wolfe conditions
f(x + t d) ≤ f(x) + c₁ t gᵀd and |∇f(x + t d)ᵀd| ≤ c₂ |gᵀd| (c₁ = 1e-4, c₂ = 0.9).
"""

import io

import numpy as np
import pytest
from fake_cupy import install

import tinygrad_rnn as tg
from tinygrad_rnn import optim

A = np.array(
    [
        [4.0, 1.0, 0.5, 0.0, 0.2],
        [1.0, 3.0, 0.3, 0.1, 0.0],
        [0.5, 0.3, 2.0, 0.4, 0.1],
        [0.0, 0.1, 0.4, 1.5, 0.3],
        [0.2, 0.0, 0.1, 0.3, 1.0],
    ]
)
B = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
X0 = np.array([0.3, -0.7, 1.2, 0.4, -0.5])


def quadratic(x):
    return 0.5 * x @ A @ x - B @ x, A @ x - B


def rosenbrock(x):
    a, b = x
    value = (1 - a) ** 2 + 100 * (b - a * a) ** 2
    grad = np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])
    return value, grad


def quartic(x):
    """Non-convex (double wells along each axis): pairs with yᵀs ≤ 0 occur and must be skipped."""
    value = np.sum(0.25 * x**4 - x**2) + 0.5 * (x[0] - x[1]) ** 2
    grad = x**3 - 2 * x
    grad[0] += x[0] - x[1]
    grad[1] -= x[0] - x[1]
    return value, grad


def explicit_direction(g, pairs):
    """d = -H g with H built as a matrix by the BFGS inverse update (not the two-loop recursion)."""
    if not pairs:
        return -g
    s_new, y_new = pairs[-1]
    h = (y_new @ s_new) / (y_new @ y_new) * np.eye(len(g))
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        left = np.eye(len(g)) - rho * np.outer(s, y)
        h = left @ h @ left.T + rho * np.outer(s, s)
    return -h @ g


def reference_iterates(function, x0, lr, iterations, history_size):
    """x₀, x₁, ... of L-BFGS with a fixed step, and how many pairs were skipped for bad curvature."""
    x = x0.copy()
    pairs, points, skipped = [], [x.copy()], 0
    g_prev = s_prev = None
    for k in range(iterations):
        _, g = function(x)
        if k > 0:
            y = g - g_prev
            if y @ s_prev > 1e-10:
                pairs = [*pairs, (s_prev, y)][-history_size:]
            else:
                skipped += 1
        d = explicit_direction(g, pairs)
        t = lr * min(1.0, 1.0 / np.abs(g).sum()) if k == 0 else lr
        s_prev, g_prev = t * d, g
        x = x + s_prev
        points.append(x.copy())
    return points, skipped


def make_problem(function, x0, split):
    """The vector x0 held as several parameters (flattening across parameters is part of the test)."""
    pieces = np.split(x0, split)
    params = [tg.tensor(piece.copy(), dtype=tg.float64, requires_grad=True) for piece in pieces]
    params[-1] = tg.tensor(pieces[-1].reshape(1, -1).copy(), dtype=tg.float64, requires_grad=True)
    seen = []

    def current():
        return np.concatenate([p.detach().numpy().reshape(-1) for p in params])

    def closure():
        x = current()
        seen.append(x)
        value, grad = function(x)
        for p, piece in zip(params, np.split(grad, split)):
            p.grad = tg.tensor(piece.reshape(p.shape).copy())
        return tg.tensor(value)

    return params, closure, seen, current


@pytest.mark.parametrize(
    ("function", "x0", "lr", "history_size", "expect_skips"),
    [
        (quadratic, X0, 1.0, 3, False),
        (quadratic, X0, 0.5, 100, False),
        (quartic, np.array([0.5, 0.6, 0.7]), 1.0, 2, True),
    ],
)
def test_iterates_without_line_search_match_the_explicit_bfgs_reference(
    function, x0, lr, history_size, expect_skips
):
    params, closure, seen, _ = make_problem(function, x0, [1])
    opt = optim.LBFGS(
        params,
        lr=lr,
        max_iter=4,
        max_eval=100,
        history_size=history_size,
        tolerance_change=0,
        tolerance_grad=0,
    )
    for _ in range(3):  # three calls of four iterations: the history carries over between calls
        opt.step(closure)
    want, skipped = reference_iterates(function, x0, lr, 12, history_size)
    assert len(seen) == 12  # x₀ ... x₁₁ evaluated; x₁₂ is set without an evaluation
    np.testing.assert_allclose(np.array(seen), np.array(want[:12]), rtol=1e-10, atol=1e-12)
    got_final = np.concatenate([p.detach().numpy().reshape(-1) for p in params])
    np.testing.assert_allclose(got_final, want[12], rtol=1e-10, atol=1e-12)
    assert (skipped > 0) == expect_skips
    assert len(opt.state[params[0]]["old_dirs"]) <= history_size
    assert opt.state[params[0]]["n_iter"] == 12 and opt.state[params[0]]["func_evals"] == 12


def test_the_curvature_skip_and_history_window_change_the_iterates():
    """Guards the reference comparison: a reference without the window or the skip disagrees."""
    windowed, _ = reference_iterates(quadratic, X0, 1.0, 10, 3)
    full, _ = reference_iterates(quadratic, X0, 1.0, 10, 100)
    assert np.abs(np.array(windowed) - np.array(full)).max() > 1e-3


def test_quadratic_converges_to_the_solution():
    params, closure, _, current = make_problem(quadratic, X0, [2])
    opt = optim.LBFGS(params, lr=1.0, max_iter=50, tolerance_change=1e-15, line_search_fn="strong_wolfe")
    opt.step(closure)
    np.testing.assert_allclose(current(), np.linalg.solve(A, B), atol=1e-7)


def test_strong_wolfe_steps_satisfy_both_conditions_and_follow_the_explicit_direction_on_rosenbrock():
    params, closure, _, current = make_problem(rosenbrock, np.array([-1.2, 1.0]), [1])
    opt = optim.LBFGS(params, lr=1.0, max_iter=1, history_size=5, line_search_fn="strong_wolfe")
    pairs, previous, checked = [], None, 0
    c1, c2 = 1e-4, 0.9
    for _ in range(60):
        x = current()
        f, g = rosenbrock(x)
        if previous is not None:
            s, g_old = previous
            y = g - g_old
            if y @ s > 1e-10:
                pairs = [*pairs, (s, y)][-5:]
        d = explicit_direction(g, pairs)
        opt.step(closure)
        x_new = current()
        if np.array_equal(x_new, x):  # stopped: gᵀd > -tolerance_change, so no step was taken
            assert g @ d > -1e-9
            break
        checked += 1
        step = x_new - x
        t = (step @ d) / (d @ d)
        np.testing.assert_allclose(step, t * d, rtol=1e-7, atol=1e-12)  # moved along the explicit direction
        f_new, g_new = rosenbrock(x_new)
        assert t > 0
        assert f_new <= f + c1 * t * (g @ d) + 1e-12  # sufficient decrease
        assert abs(g_new @ d) <= c2 * abs(g @ d) + 1e-12  # strong curvature condition
        previous = (step, g)
    assert checked > 30
    np.testing.assert_allclose(current(), [1.0, 1.0], atol=1e-4)


ONE_D = {
    "quadratic": (lambda x: 0.5 * (x - 10) ** 2, lambda x: x - 10),
    "quartic": (lambda x: (x - 3) ** 4 + x, lambda x: 4 * (x - 3) ** 3 + 1),
    "softplus": (
        lambda x: np.logaddexp(0, -(x - 4)) + 0.05 * x * x,
        lambda x: -1 / (1 + np.exp(x - 4)) + 0.1 * x,
    ),
}


@pytest.mark.parametrize("lr", [0.01, 0.3, 1.0, 30.0, 300.0])
@pytest.mark.parametrize("name", sorted(ONE_D))
def test_line_search_extends_short_and_shrinks_long_first_steps_to_a_strong_wolfe_point(name, lr):
    """The first trial step lr·min(1, 1/|g|) is too short for small lr (the search must extrapolate)
    and too long for large lr (it must zoom); either way the step taken meets both conditions."""
    f, df = ONE_D[name]
    p = tg.tensor([0.0], dtype=tg.float64, requires_grad=True)
    evaluations = []

    def closure():
        x = p.item()
        evaluations.append(x)
        p.grad = tg.tensor([df(x)], dtype=tg.float64)
        return tg.tensor(f(x), dtype=tg.float64)

    optim.LBFGS([p], lr=lr, max_iter=1, line_search_fn="strong_wolfe").step(closure)
    x, d = p.item(), -df(0.0)  # x₀ = 0 and d = -g₀, so x = t d
    t = x / d
    assert t > 0
    if lr in (0.01, 300.0):  # the first trial fails a condition, so the search must move t
        assert len(evaluations) > 2
    assert f(x) <= f(0.0) + 1e-4 * t * (df(0.0) * d)
    assert abs(df(x) * d) <= 0.9 * abs(df(0.0) * d)


def test_fixed_step_lbfgs_diverges_where_the_line_search_converges_on_rosenbrock():
    """The line search is doing the work: the same start with a fixed unit step does not reach (1, 1)."""
    params, closure, _, current = make_problem(rosenbrock, np.array([-1.2, 1.0]), [1])
    opt = optim.LBFGS(params, lr=1.0, max_iter=30)
    opt.step(closure)
    assert not np.allclose(current(), [1.0, 1.0], atol=1e-3)


def test_step_returns_the_first_loss_and_stops_at_tolerance_grad():
    params, closure, seen, current = make_problem(quadratic, np.linalg.solve(A, B), [1])
    opt = optim.LBFGS(params)
    loss = opt.step(closure)
    assert isinstance(loss, tg.Tensor) and len(seen) == 1  # already optimal: one evaluation, no move
    np.testing.assert_allclose(current(), np.linalg.solve(A, B))


def test_max_eval_bounds_the_closure_calls():
    params, closure, seen, _ = make_problem(rosenbrock, np.array([-1.2, 1.0]), [1])
    optim.LBFGS(params, max_iter=100, max_eval=7, line_search_fn="strong_wolfe").step(closure)
    # The count is checked after each line search, which may itself take several evaluations.
    assert 7 <= len(seen) <= 7 + 25
    params, closure, seen, _ = make_problem(quadratic, X0, [1])
    optim.LBFGS(params, max_iter=100, max_eval=5, tolerance_grad=0, tolerance_change=0).step(closure)
    assert len(seen) == 5


def test_a_model_trains_through_the_closure_api():
    tg.manual_seed(0)
    model = tg.nn.Linear(3, 1).double()
    x = tg.tensor(np.random.default_rng(0).standard_normal((20, 3)))
    y = x @ tg.tensor([[1.0], [-2.0], [0.5]]) + 0.25
    opt = optim.LBFGS(model.parameters(), lr=0.8, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    first = opt.step(closure).item()
    last = opt.step(closure).item()
    assert last < 1e-8 < first
    np.testing.assert_allclose(model.bias.detach().numpy(), [0.25], atol=1e-5)


def test_state_dict_round_trip_continues_identically_and_does_not_alias():
    params, closure, _, current = make_problem(quadratic, X0, [1])
    opt = optim.LBFGS(params, max_iter=3, history_size=4, tolerance_change=0, tolerance_grad=0)
    opt.step(closure)
    buffer = io.BytesIO()
    tg.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = tg.load(buffer)

    copies, copy_closure, _, copy_current = make_problem(quadratic, current(), [1])
    fresh = optim.LBFGS(copies, max_iter=3, history_size=4, tolerance_change=0, tolerance_grad=0)
    fresh.load_state_dict(saved)
    before = [np.array(a) for a in saved["state"][0]["old_dirs"]]
    opt.step(closure)
    fresh.step(copy_closure)
    np.testing.assert_array_equal(copy_current(), current())
    for a, b in zip(saved["state"][0]["old_dirs"], before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(history_size=1.5), ValueError, "history_size"),
        (dict(line_search_fn="backtracking"), ValueError, "strong_wolfe"),
        (dict(lr=-1.0), ValueError, "learning rate"),
        (dict(tolerance_grad=float("nan")), TypeError, "tolerance_grad"),
    ],
)
def test_invalid_options_raise_clear_errors(options, error, match):
    with pytest.raises(error, match=match):
        optim.LBFGS([tg.zeros(2, requires_grad=True)], **options)


def test_step_without_a_closure_and_parameter_groups_are_refused():
    p = tg.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="closure"):
        optim.LBFGS([p]).step()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [p]}, {"params": [tg.zeros(1, requires_grad=True)]}])


def test_lbfgs_runs_on_a_gpu_parameter_as_on_the_cpu(monkeypatch):
    install(monkeypatch, device_count=1)  # CuPy stand-in, strict where CuPy is
    results = []
    for device in ("cpu", "cuda"):
        p = tg.tensor([1.0, 2.0], dtype=tg.float64, device=device, requires_grad=True)
        opt = optim.LBFGS([p], history_size=3, line_search_fn="strong_wolfe")

        def closure(p=p, opt=opt):
            opt.zero_grad()
            loss = ((p - 3.0) ** 4).sum() + (p[0] * p[1]) ** 2 * 0.01
            loss.backward()
            return loss

        opt.step(closure)
        fresh = optim.LBFGS([p], history_size=3, line_search_fn="strong_wolfe")
        fresh.load_state_dict(opt.state_dict())
        assert fresh.state[p]["d"].device == device
        fresh.step(closure)
        results.append(p.numpy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12)
