"""Forward mode, op by op: every op's jvp rule checked in float64 against central finite differences
and against the op's reverse mode through the dot-product identity ⟨u, J v⟩ = ⟨Jᵀu, v⟩, with K
directions carried at once. The op cases are those of tests/test_portability.py (one per op, reached
through the public API); a test keeps the table covering every ``Function`` of the package."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_portability import CASES, RANDOM_CASES, _all_functions, _leaf

import tinygrad_rnn as tg
from tinygrad_rnn import autograd, ops
from tinygrad_rnn.autograd import forward_ad as fwad
from tinygrad_rnn.func import batched_jvp, vjp


class _ProductAndSumWithJvp(tg.autograd.Function):
    """(a * b, a + b) as a PyTorch-style custom function with its forward-mode rule."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b, a + b

    @staticmethod
    def backward(ctx, grad_product, grad_sum):
        a, b = ctx.saved_tensors
        return grad_product * b + grad_sum, grad_product * a + grad_sum

    @staticmethod
    def jvp(ctx, tangent_a, tangent_b):
        a, b = ctx.saved_tensors
        return tangent_a * b + a * tangent_b, tangent_a + tangent_b


OP_CASES = dict(CASES)
OP_CASES["CustomNode"] = (
    lambda d: [_leaf(d, 3, 4), _leaf(d, 3, 4, seed=1)],
    lambda a, b: _ProductAndSumWithJvp.apply(a, b)[0] * _ProductAndSumWithJvp.apply(a, b)[1],
)
OP_CASES["ToDevice"] = (lambda d: [_leaf(d, 3)], lambda a: ops.ToDevice.apply(a, device=a.device) * 2)
# Finite-difference steps: a float32 round trip (Cast) needs a step far above float32's rounding.
FD_STEP = {"Cast": 1e-2}
FD_TOLERANCE = {"Cast": 1e-3}  # the function rounds to float32 on the way
# Inputs a case detaches (the second one of Softplus's is a target): the function does not depend on
# them through the tape or the tangents, so finite differences keep them fixed.
DETACHED_INPUTS = {"Softplus": {1}}
# The dot-product identity holds to rounding: float32 rounding where the op computes in float32.
IDENTITY_TOLERANCE = {"Cast": 1e-6}


def _inputs(name):
    build, function = OP_CASES[name] if name in OP_CASES else RANDOM_CASES[name]
    return build("cpu"), function


def _seeded(name, function):
    """The random op's case runs with the same generator state every time (the same dropout mask)."""
    if name not in RANDOM_CASES:
        return function

    def run(*args):
        tg.manual_seed(7)
        return function(*args)

    return run


def _directions(inputs, k, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((k, *x.shape)) for x in inputs]


@pytest.mark.parametrize("name", sorted(OP_CASES) + sorted(RANDOM_CASES))
@given(k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_every_op_jvp_satisfies_the_dot_product_identity_with_its_backward(name, k, seed):
    inputs, function = _inputs(name)
    function = _seeded(name, function)
    directions = _directions(inputs, k, seed)
    (out,), (jv,) = batched_jvp(function, inputs, directions)
    result, vjp_fn = vjp(function, *inputs)
    np.testing.assert_allclose(out.numpy(), result.numpy(), rtol=1e-12, atol=1e-12)
    assert jv.shape == (k, *out.shape)
    u = np.random.default_rng(seed + 1).standard_normal(out.shape)
    pulled = [g.numpy() for g in vjp_fn(tg.tensor(u))]
    for direction in range(k):
        forward = float((u * jv[direction]).sum())
        reverse = sum(float((g * v[direction]).sum()) for g, v in zip(pulled, directions))
        tolerance = IDENTITY_TOLERANCE.get(name, 1e-9)
        assert forward == pytest.approx(reverse, rel=tolerance, abs=tolerance), (
            f"{name}, direction {direction}"
        )


@pytest.mark.parametrize("name", sorted(OP_CASES) + sorted(RANDOM_CASES))
def test_every_op_jvp_matches_central_finite_differences(name):
    inputs, function = _inputs(name)
    function = _seeded(name, function)
    directions = _directions(inputs, 2, 11)
    for position in DETACHED_INPUTS.get(name, ()):
        directions[position][...] = 0
    _, (jv,) = batched_jvp(function, inputs, directions)
    step = FD_STEP.get(name, 1e-6)
    for direction in range(2):
        with tg.no_grad():
            plus = function(*[tg.tensor(x.numpy() + step * v[direction]) for x, v in zip(inputs, directions)])
            minus = function(
                *[tg.tensor(x.numpy() - step * v[direction]) for x, v in zip(inputs, directions)]
            )
        numeric = (plus.numpy() - minus.numpy()) / (2 * step)
        tolerance = FD_TOLERANCE.get(name, 1e-5)
        np.testing.assert_allclose(jv[direction], numeric, rtol=tolerance, atol=tolerance / 10, err_msg=name)


def test_the_jvp_cases_cover_every_op_and_every_op_has_its_own_rule(monkeypatch):
    missing = _all_functions() - set(OP_CASES) - set(RANDOM_CASES)
    assert not missing, f"add these ops to the cases: {sorted(missing)}"
    found, stack = [], [autograd.Function]
    while stack:
        for subclass in stack.pop().__subclasses__():
            if subclass.__module__.startswith("tinygrad_rnn."):
                found.append(subclass)
            stack.append(subclass)
    without_rule = [cls.__name__ for cls in found if "jvp" not in vars(cls)]
    assert not without_rule, f"these ops inherit the jvp of their base class: {without_rule}"


@pytest.mark.parametrize("name", sorted(OP_CASES) + sorted(RANDOM_CASES))
def test_every_case_applies_its_op_with_a_tangent(monkeypatch, name):
    applied = set()
    original = autograd.Function.apply.__func__

    def recording_apply(cls, *inputs, **constants):
        if any(fwad.tangent_of(t) is not None for t in inputs if isinstance(t, tg.Tensor)):
            applied.add(cls.__name__)
        return original(cls, *inputs, **constants)

    monkeypatch.setattr(autograd.Function, "apply", classmethod(recording_apply))
    inputs, function = _inputs(name)
    batched_jvp(_seeded(name, function), inputs, _directions(inputs, 1, 0))
    assert name in applied, f"the case for {name} never applied it to a tensor carrying a tangent"


def test_an_op_without_a_rule_raises_naming_it():
    class Cube(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x**3

        @staticmethod
        def backward(ctx, g):
            return g

    with fwad.dual_level():
        x = fwad.make_dual(tg.tensor([1.0, 2.0]), tg.tensor([1.0, 0.0]))
        with pytest.raises(NotImplementedError, match="no forward-mode rule for Cube"):
            Cube.apply(x)


# ---- shapes drawn by hypothesis: broadcasting and batched matrix products ----------------------------


@st.composite
def broadcastable_pair(draw):
    shape = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    other = list(shape[len(shape) - draw(st.integers(0, len(shape))) :])
    other = [1 if draw(st.booleans()) else n for n in other]
    if draw(st.booleans()):
        return tuple(shape), tuple(other)
    return tuple(other), tuple(shape)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1),
    "pow": lambda a, b: (a * a + 1) ** b,
    "maximum": lambda a, b: tg.maximum(a, b),
    "where": lambda a, b: tg.where(b > 0, a, b),
}


def _identity_holds(function, inputs, k, seed):
    directions = _directions(inputs, k, seed)
    (out,), (jv,) = batched_jvp(function, inputs, directions)
    _, vjp_fn = vjp(function, *inputs)
    u = np.random.default_rng(seed + 1).standard_normal(out.shape)
    pulled = [g.numpy() for g in vjp_fn(tg.tensor(u))]
    for direction in range(k):
        forward = float((u * jv[direction]).sum())
        reverse = sum(float((g * v[direction]).sum()) for g, v in zip(pulled, directions))
        assert forward == pytest.approx(reverse, rel=1e-9, abs=1e-9)


@given(
    shapes=broadcastable_pair(),
    op=st.sampled_from(sorted(BINARY)),
    k=st.integers(1, 3),
    seed=st.integers(0, 99),
)
def test_broadcasting_binary_ops_jvp_on_drawn_shapes(shapes, op, k, seed):
    rng = np.random.default_rng(seed)
    inputs = [tg.tensor(rng.standard_normal(s) if s else np.array(rng.standard_normal())) for s in shapes]
    _identity_holds(BINARY[op], inputs, k, seed)


@given(
    batch=st.lists(st.integers(1, 2), max_size=2),
    m=st.integers(1, 3),
    n=st.integers(1, 3),
    p=st.integers(1, 3),
    vector=st.sampled_from(["none", "left", "right", "both"]),
    batch_on=st.sampled_from(["left", "right"]),
    k=st.integers(1, 3),
)
def test_matmul_jvp_on_drawn_shapes(batch, m, n, p, vector, batch_on, k):
    rng = np.random.default_rng(m * 100 + n * 10 + p)
    left = (n,) if vector in ("left", "both") else (*(batch if batch_on == "left" else []), m, n)
    right = (n,) if vector in ("right", "both") else (*(batch if batch_on == "right" else []), n, p)
    inputs = [tg.tensor(rng.standard_normal(left)), tg.tensor(rng.standard_normal(right))]
    _identity_holds(lambda a, b: a @ b, inputs, k, n)


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), data=st.data())
def test_reductions_jvp_on_drawn_shapes_and_dims(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    x = tg.tensor(np.random.default_rng(len(shape)).standard_normal(shape))
    for function in (
        lambda a: a.sum(dim=dim, keepdim=keepdim),
        lambda a: a.mean(dim=dim, keepdim=keepdim),
        lambda a: a.logsumexp(dim=dim, keepdim=keepdim),
        lambda a: a.softmax(dim=dim),
        lambda a: a.cumsum(dim),
        lambda a: a.amax(dim=dim, keepdim=keepdim),
    ):
        _identity_holds(function, [x], 2, 3)
