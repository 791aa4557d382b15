"""Fuzzing the engine: hypothesis builds random graphs and every leaf gradient is checked in float64.

A graph is a program of steps, each an op from the op list applied to values already in a pool
(leaves first): picking the same value twice makes shared subexpressions, binary ops pair shapes
that broadcast, and some steps run detached or inside a ``no_grad`` island. The program is run once to
learn its shapes, then ``tg.gradcheck`` compares the tape's gradient of a random weighting of a random
part of the pool (always its last value) with central differences, element by element. The same
random graphs also check that a second backward with ``retain_graph`` doubles every gradient, that
anomaly mode changes nothing on finite graphs, and that a hook rescaling one value's gradient acts as
a rescaled branch; random recurrent stacks (RNN/LSTM/GRU) are checked for input, state and weights.

A detached value or a ``no_grad`` island is a constant for the gradient, so during the finite
differences it is frozen at the value it had at the unperturbed point (that is what its gradient of
zero means); the same holds for the data-dependent choice of squashing a value that grew large.

Sizes follow the hypothesis profile: the default "ci" profile runs a small fixed set, and
``HYPOTHESIS_PROFILE=long`` checks tens of thousands of graphs. The number of graphs checked is
printed at the end (``pytest -s``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn, ops

# Graphs per fuzz test: a multiple of the profile's example count, so "long" scales them all.
EXAMPLES = settings.default.max_examples * 4
BIG = 8.0  # values larger than this are squashed, so products of products stay well conditioned
FROZEN_SHIFT = 0.0123  # added to detached and no_grad values (see run_program)
GRAPHS_CHECKED = [0]


# ---- the op list: each entry maps operands (and drawn parameters) to one or more values ---------------


def _positive(a: tg.Tensor) -> tg.Tensor:
    """a² + 1: keeps log, sqrt, division and powers inside their domain and away from poles."""
    return a * a + 1.0


UNARY: dict[str, Callable[[tg.Tensor], tg.Tensor]] = {
    "neg": lambda a: -a,
    "exp": lambda a: a.tanh().exp(),
    "log": lambda a: _positive(a).log(),
    "tanh": lambda a: a.tanh(),
    "sigmoid": lambda a: a.sigmoid(),
    "relu": lambda a: a.relu(),
    "abs": lambda a: a.abs(),
    "sqrt": lambda a: _positive(a).sqrt(),
    "square": lambda a: a**2,
    "cube": lambda a: a**3,
    "power_half": lambda a: _positive(a) ** 0.5,
    "reciprocal": lambda a: 1.0 / _positive(a),
    "rsub": lambda a: 1.5 - a,
    "scale": lambda a: a * 2.5,
    "clamp": lambda a: a.clamp(-0.5, 0.7),
    "clamp_low": lambda a: tg.clamp(a, min=0.2),
    "clone": lambda a: a.clone(),
    "mean_all": lambda a: a.mean(),
    "sum_all": lambda a: a.sum(),
    "max_all": lambda a: a.max(),
    "min_all": lambda a: a.min(),
    "norm": lambda a: (a * a + 0.1).sum().sqrt(),
    "var": lambda a: a.var(unbiased=False) if a.numel() > 1 else a * 1.0,
}

BINARY: dict[str, Callable[[tg.Tensor, tg.Tensor], tg.Tensor]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / _positive(b),
    "pow": lambda a, b: _positive(a) ** b.tanh(),
    "maximum": lambda a, b: tg.maximum(a, b),
    "minimum": lambda a, b: tg.minimum(a, b),
    "where": lambda a, b: tg.where(a > 0.3, a, b),
    "masked_fill": lambda a, b: (a + b).masked_fill(b < -0.2, 0.5),
}


@dataclass
class Step:
    """One op of a random program: its kind, the pool positions it reads and its parameters."""

    kind: str
    name: str
    operands: tuple[int, ...]
    params: dict = field(default_factory=dict)
    frozen: str | None = None  # None, "detach" or "no_grad"


def _apply(step: Step, pool: list) -> list:
    """Run one step on values from the pool; return the new values (several for a split)."""
    args = [pool[i] for i in step.operands]
    p = step.params
    kind = step.kind
    if kind == "unary":
        out: Any = UNARY[step.name](args[0])
    elif kind == "binary":
        out = BINARY[step.name](args[0], args[1])
    elif kind == "reduce":
        a = args[0]
        if step.name in ("sum", "mean"):
            out = getattr(a, step.name)(p["dims"], keepdim=p["keepdim"])
        elif step.name == "amax":
            out = a.amax(p["dims"], keepdim=p["keepdim"])
        elif step.name == "logsumexp":
            out = tg.logsumexp(a, p["dims"], keepdim=p["keepdim"])
        elif step.name == "max_dim":
            out = a.max(p["dims"][0], keepdim=p["keepdim"]).values
        else:  # softmax / log_softmax
            out = getattr(a, step.name)(p["dims"][0])
    elif kind == "move":
        a = args[0]
        name = step.name
        if name == "reshape":
            out = a.reshape(p["shape"])
        elif name == "flatten":
            out = a.flatten()
        elif name == "unsqueeze":
            out = a.unsqueeze(p["dim"])
        elif name == "squeeze":
            out = a.squeeze()
        elif name == "permute":
            out = a.permute(*p["order"])
        elif name == "transpose":
            out = a.transpose(p["dims"][0], p["dims"][1])
        elif name == "slice":
            index = [slice(None)] * a.ndim
            index[p["dim"]] = slice(p["start"], p["stop"], p["step"])
            out = a[tuple(index)]
        elif name == "take":
            index: list = [slice(None)] * a.ndim
            index[p["dim"]] = tg.tensor(p["positions"])
            out = a[tuple(index)]
        elif name == "select":
            out = a[p["position"]]
        elif name == "mask":
            out = a[tg.tensor(p["mask"])]
        elif name == "expand":
            out = a.expand(*p["shape"])
        else:  # gather
            out = a.gather(p["dim"], tg.tensor(p["index"]))
    elif kind == "join":
        name = step.name
        if name == "cat":
            out = tg.cat(args, dim=p["dim"])
        elif name == "stack":
            out = tg.stack(args, dim=p["dim"])
        elif name == "split":
            out = args[0].split(p["size"], dim=p["dim"])
        elif name == "chunk":
            out = tg.chunk(args[0], p["chunks"], dim=p["dim"])
        else:  # unbind
            out = args[0].unbind(p["dim"])
    elif kind == "matmul":
        a, b = args
        out = a @ (b.transpose(-1, -2) if p["transpose"] else b)
    else:  # dropout with a fixed seed, so every evaluation draws the same mask
        tg.manual_seed(p["seed"])
        out = tg.dropout(args[0], p=0.3)
    return list(out) if isinstance(out, tuple | list) else [out]


def run_program(leaves: list, steps: list, cache: dict, transforms: dict | None = None) -> tuple:
    """Evaluate the program; ``cache`` freezes the constants (detached values, squash choices) at the
    first run; ``transforms`` maps a pool position to a function applied to the value made there."""
    pool = list(leaves)
    if transforms:
        pool = [transforms[i](v) if i in transforms else v for i, v in enumerate(pool)]
    for i, step in enumerate(steps):
        if step.frozen is None:
            new = _apply(step, pool)
        elif i in cache:
            new = [tg.tensor(value) for value in cache[i]]
        else:
            if step.frozen == "no_grad":
                with tg.no_grad():
                    new = _apply(step, pool)
            else:
                new = _apply(step, pool)
            # Shifted so that a constant never ties exactly with the live value it copies: a max over
            # such a tie has no derivative, and the tape's even split is not a central difference.
            new = [v.detach() + FROZEN_SHIFT for v in new]
            cache[i] = [v.numpy().copy() for v in new]
        for j, value in enumerate(new):
            key = ("squash", i, j)
            if key not in cache:
                cache[key] = value.numel() > 0 and float(np.abs(value.numpy()).max()) > BIG
            if cache[key]:
                value = (value * (1.0 / BIG)).tanh() * BIG
            if transforms and len(pool) in transforms:
                value = transforms[len(pool)](value)
            pool.append(value)
    return tuple(pool)


# ---- drawing programs ------------------------------------------------------------------------------


def _broadcastable(a: tuple, b: tuple) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _draw_dims(draw: Callable, ndim: int) -> tuple:
    dims = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in dims)  # negative dims too


def _draw_step(draw: Callable, shapes: list, kinds: tuple, first: int | None = None) -> Step | None:
    """Draw one step valid for the shapes in the pool, or None when the drawn kind does not fit."""
    kind = draw(st.sampled_from(kinds))
    if first is None:
        first = draw(st.integers(0, len(shapes) - 1))
    a = shapes[first]
    ndim = len(a)
    if math.prod(a) == 0:
        # An empty value: only ops defined on empty tensors (a max of nothing is an error, as in PyTorch).
        if kind not in ("unary", "binary"):
            return None
        kind = "binary" if kind == "binary" else "unary"
    if kind == "unary":
        names = sorted(UNARY) if math.prod(a) else sorted(set(UNARY) - {"max_all", "min_all"})
        return Step(kind, draw(st.sampled_from(names)), (first,))
    if kind == "binary":
        partners = [i for i, s in enumerate(shapes) if _broadcastable(a, s)]
        second = draw(st.sampled_from(partners))  # may be `first` itself: a shared subexpression
        return Step(kind, draw(st.sampled_from(sorted(BINARY))), (first, second))
    if kind == "dropout":
        return Step(kind, "dropout", (first,), {"seed": draw(st.integers(0, 1000))})
    if ndim == 0:
        return None
    if kind == "reduce":
        name = draw(
            st.sampled_from(["sum", "mean", "amax", "logsumexp", "max_dim", "softmax", "log_softmax"])
        )
        params = {"dims": _draw_dims(draw, ndim), "keepdim": draw(st.booleans())}
        if name in ("max_dim", "softmax", "log_softmax"):
            params["dims"] = params["dims"][:1]
        return Step(kind, name, (first,), params)
    if kind == "matmul":
        transpose = draw(st.booleans()) and ndim >= 2
        inner = a[-1]
        partners = []
        for i, s in enumerate(shapes):
            if not s or (transpose and len(s) < 2):
                continue
            rows = s[-1] if transpose else (s[-2] if len(s) >= 2 else s[0])
            if rows == inner and (len(s) < 2 or ndim < 2 or _broadcastable(a[:-2], s[:-2])):
                partners.append(i)
        if not partners:
            return None
        return Step(kind, "matmul", (first, draw(st.sampled_from(partners))), {"transpose": transpose})
    if kind == "join":
        name = draw(st.sampled_from(["cat", "stack", "split", "chunk", "unbind"]))
        dim = draw(st.integers(0, ndim - 1))
        if name == "cat":
            partners = [
                i
                for i, s in enumerate(shapes)
                if len(s) == ndim and s[:dim] + s[dim + 1 :] == a[:dim] + a[dim + 1 :]
            ]
            chosen = draw(st.lists(st.sampled_from(partners), min_size=1, max_size=3))
            return Step(kind, name, (first, *chosen), {"dim": dim})
        if name == "stack":
            partners = [i for i, s in enumerate(shapes) if s == a]
            chosen = draw(st.lists(st.sampled_from(partners), min_size=0, max_size=2))
            return Step(kind, name, (first, *chosen), {"dim": draw(st.integers(-ndim - 1, ndim))})
        if name == "split":
            return Step(kind, name, (first,), {"size": draw(st.integers(1, max(a[dim], 1))), "dim": dim})
        if name == "chunk":
            return Step(kind, name, (first,), {"chunks": draw(st.integers(1, 3)), "dim": dim})
        return Step(kind, name, (first,), {"dim": dim})
    # movement
    name = draw(
        st.sampled_from(
            [
                *("reshape", "flatten", "unsqueeze", "squeeze", "permute", "transpose"),
                *("slice", "take", "select", "mask", "expand", "gather"),
            ]
        )
    )
    dim = draw(st.integers(0, ndim - 1))
    size = a[dim]
    if name == "reshape":
        return Step("move", name, (first,), {"shape": tuple(draw(st.permutations(list(a))))})
    if name == "unsqueeze":
        return Step("move", name, (first,), {"dim": draw(st.integers(-ndim - 1, ndim))})
    if name == "permute":
        return Step("move", name, (first,), {"order": tuple(draw(st.permutations(range(ndim))))})
    if name == "transpose":
        return Step("move", name, (first,), {"dims": (dim, draw(st.integers(-ndim, ndim - 1)))})
    if name == "slice":
        start = draw(st.integers(-size, size))
        stop = draw(st.integers(-size, size))
        step = draw(st.sampled_from([1, 1, 2, -1]))
        return Step("move", name, (first,), {"dim": dim, "start": start, "stop": stop, "step": step})
    if name in ("take", "gather"):
        if size == 0:
            return None
        if name == "take":
            positions = draw(st.lists(st.integers(-size, size - 1), min_size=1, max_size=4))  # repeats
            return Step("move", name, (first,), {"dim": dim, "positions": positions})
        index_shape = tuple(draw(st.integers(1, 3)) if i == dim else n for i, n in enumerate(a))
        seed = draw(st.integers(0, 2**16))
        index = np.random.default_rng(seed).integers(0, size, index_shape)
        return Step("move", name, (first,), {"dim": dim, "index": index})
    if name == "select":
        return Step("move", name, (first,), {"position": draw(st.integers(-a[0], a[0] - 1))})
    if name == "mask":
        seed = draw(st.integers(0, 2**16))
        return Step("move", name, (first,), {"mask": np.random.default_rng(seed).random(a) > 0.5})
    if name == "expand":
        target = tuple(draw(st.sampled_from([n, 2])) if n == 1 else n for n in a)
        lead = draw(st.lists(st.integers(1, 2), max_size=1))
        return Step("move", name, (first,), {"shape": (*lead, *target)})
    return Step("move", name, (first,), {})


def _draw_shape(draw: Callable, base: tuple) -> tuple:
    """A shape that broadcasts against ``base``: a suffix of it with some axes set to 1."""
    keep = draw(st.integers(0, len(base)))
    return tuple(draw(st.sampled_from([n, 1])) for n in base[len(base) - keep :])


# The kinds whose ops need a value with at least one axis; a leaf has one whenever one of them is required.
NEED_AN_AXIS = ("reduce", "move", "join", "matmul")


@st.composite
def programs(
    draw: Callable, kinds: tuple, min_steps: int = 1, max_steps: int = 8, required: tuple = ()
) -> tuple:
    """A random graph: float64 leaves (some not requiring grad) and a list of steps valid for them.

    Each kind in ``required`` ("reduce", "move", "join", "unary", "binary") opens the program with one
    step of that kind, not frozen, whose values the loss reads, so every graph drawn exercises those
    ops' gradients; the random steps that follow may read them too.
    """
    needs_axis = any(kind in NEED_AN_AXIS for kind in required)
    base = tuple(draw(st.lists(st.integers(1, 3), min_size=1 if needs_axis else 0, max_size=3)))
    n_leaves = draw(st.integers(1, 3))
    shapes = [base] + [_draw_shape(draw, base) for _ in range(n_leaves - 1)]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    leaves = [
        tg.tensor(rng.uniform(-2.0, 2.0, s), dtype=tg.float64, requires_grad=(i == 0 or draw(st.booleans())))
        for i, s in enumerate(shapes)
    ]
    steps: list[Step] = []
    pool = list(leaves)
    cache: dict = {}
    read = []  # pool positions made by the required steps
    for kind in required:
        shapes = [tuple(v.shape) for v in pool]
        # Leaf 0 always qualifies: it has the base shape, nonempty, with an axis when one is needed.
        fits = [i for i, shape in enumerate(shapes) if math.prod(shape) and (shape or not needs_axis)]
        step = _draw_step(draw, shapes, (kind,), first=draw(st.sampled_from(fits)))
        assert step is not None, f"no {kind} step fits {shapes}"
        steps.append(step)
        made = len(pool)
        pool = list(run_program(leaves, steps, cache))
        read += range(made, len(pool))
    for _ in range(draw(st.integers(min_steps, max_steps))):
        step = _draw_step(draw, [tuple(v.shape) for v in pool], kinds)
        if step is None:
            continue
        frozen = draw(st.integers(0, 9))  # one step in five is detached or runs under no_grad
        step.frozen = "detach" if frozen == 8 else "no_grad" if frozen == 9 else None
        steps.append(step)
        pool = list(run_program(leaves, steps, cache))
    # The values the loss reads: the last one and a random part of the rest, so some branches and some
    # outputs of split/unbind get no gradient at all.
    outputs = [i for i in range(len(pool) - 1) if i in read or draw(st.booleans())] + [len(pool) - 1]
    return leaves, steps, outputs


def check_program(leaves: list, steps: list, outputs: list | None = None) -> None:
    """Every leaf gradient of a random weighting of the output values equals its central difference."""
    cache: dict = {}
    GRAPHS_CHECKED[0] += 1

    def run(*xs: tg.Tensor) -> tuple:
        pool = run_program(list(xs), steps, cache)
        return pool if outputs is None else tuple(pool[i] for i in outputs)

    tg.gradcheck(run, leaves, eps=1e-6, atol=1e-6, rtol=1e-5)


ELEMENTWISE = ("unary", "binary")
# Repeats weight the draw: mostly arithmetic, with every other kind mixed in.
EVERYTHING = ("unary", "binary", "unary", "binary", "reduce", "move", "join", "matmul", "dropout")


@pytest.fixture(scope="module", autouse=True)
def _report_count():
    yield
    print(f"\nfuzzed {GRAPHS_CHECKED[0]} random graphs")


# Each fuzz test's strategy: the kinds it draws from, and those every graph it draws contains.
REQUIRED = {
    "elementwise": ("binary",),
    "reductions": ("reduce",),
    "movement": ("move", "join"),
    "everything": ("reduce", "move", "join"),
}
FUZZED = {
    "elementwise": programs(ELEMENTWISE, required=REQUIRED["elementwise"]),
    "reductions": programs(("unary", "reduce", "binary"), required=REQUIRED["reductions"]),
    "movement": programs(("move", "join", "binary", "unary"), required=REQUIRED["movement"]),
    "everything": programs(EVERYTHING, min_steps=4, max_steps=12, required=REQUIRED["everything"]),
}


@settings(max_examples=EXAMPLES)
@given(FUZZED["elementwise"])
def test_random_elementwise_graphs_with_broadcasting_match_finite_differences(program):
    check_program(*program)


@settings(max_examples=EXAMPLES)
@given(FUZZED["reductions"])
def test_random_graphs_with_reductions_match_finite_differences(program):
    check_program(*program)


@settings(max_examples=EXAMPLES)
@given(FUZZED["movement"])
def test_random_graphs_with_movement_indexing_and_splits_match_finite_differences(program):
    check_program(*program)


@settings(max_examples=EXAMPLES)
@given(FUZZED["everything"])
def test_random_graphs_of_every_op_with_detached_branches_match_finite_differences(program):
    check_program(*program)


@pytest.mark.parametrize("strategy", sorted(FUZZED))
@settings(max_examples=20)
@given(data=st.data())
def test_every_graph_drawn_contains_the_ops_its_test_names_and_its_loss_reads_them(strategy, data):
    leaves, steps, outputs = data.draw(FUZZED[strategy])
    kinds = set(REQUIRED[strategy])
    live = {step.kind for step in steps if step.frozen is None}
    assert kinds <= live, f"{strategy} drew a graph without {kinds - live}: {steps}"
    pool = run_program(leaves, steps, {})
    made = len(leaves)
    for step in steps:
        count = len(_apply(step, list(pool)))
        if step.kind in kinds and step.frozen is None:
            assert set(range(made, made + count)) <= set(outputs), f"the loss does not read {step}"
            kinds = kinds - {step.kind}
        made += count


def test_the_fuzzer_catches_a_wrong_gradient(monkeypatch):
    """The check is not vacuous: a backward that is off by 1% is caught on a graph that uses it."""
    correct = ops.Tanh.backward
    monkeypatch.setattr(ops.Tanh, "backward", lambda ctx, g: correct(ctx, g) * 1.01)
    x = tg.tensor(np.linspace(-1.0, 1.0, 4), dtype=tg.float64, requires_grad=True)
    steps = [Step("unary", "tanh", (0,)), Step("binary", "mul", (1, 0))]
    with pytest.raises(AssertionError, match="gradcheck"):
        check_program([x], steps)


def test_a_detached_branch_gets_no_gradient_while_its_sibling_does():
    x = tg.tensor([0.5, -1.0], dtype=tg.float64, requires_grad=True)
    steps = [Step("unary", "exp", (0,), frozen="detach"), Step("binary", "mul", (1, 0))]
    out = run_program([x], steps, {})[-1]
    out.sum().backward()
    expected = np.exp(np.tanh(x.numpy())) + FROZEN_SHIFT  # d(c * x)/dx with c = exp(tanh x) constant
    np.testing.assert_allclose(x.grad.numpy(), expected)
    assert math.isfinite(float(out.sum().item()))


@pytest.mark.parametrize(
    "move",
    [
        lambda x: x.reshape(x.shape),
        lambda x: x.permute(0, 1),
        lambda x: x.transpose(1, 1),
        lambda x: x.expand(2, 3),
        lambda x: x.squeeze(0),
    ],
    ids=["reshape", "permute", "transpose", "expand", "squeeze"],
)
def test_a_movement_that_changes_nothing_inside_no_grad_carries_no_gradient(move):
    # Found by the fuzzer: these returned the input itself, so a no_grad value still led back to x.
    x = tg.tensor(np.ones((2, 3)), dtype=tg.float64, requires_grad=True)
    with tg.no_grad():
        frozen = move(x)
    assert not frozen.requires_grad
    (x * frozen).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))


# ---- random recurrent stacks ------------------------------------------------------------------------


@st.composite
def recurrent_stacks(draw: Callable) -> dict:
    """A random recurrent layer configuration, input and (maybe) initial state."""
    return {
        "kind": draw(st.sampled_from(["RNN", "RNN_relu", "LSTM", "GRU"])),
        "input_size": draw(st.integers(1, 3)),
        "hidden_size": draw(st.integers(1, 3)),
        "num_layers": draw(st.integers(1, 2)),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "seq_len": draw(st.integers(1, 4)),
        "batch": draw(st.sampled_from([None, 1, 2])),  # None: an unbatched input
        "initial_state": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=max(settings.default.max_examples // 2, 5))
@given(recurrent_stacks())
def test_random_recurrent_stacks_match_finite_differences_for_input_state_and_weights(config):
    tg.manual_seed(config["seed"])
    kind = config["kind"]
    options = {
        "num_layers": config["num_layers"],
        "bidirectional": config["bidirectional"],
        "batch_first": config["batch_first"],
        "bias": config["bias"],
    }
    if kind == "RNN_relu":
        model = nn.RNN(config["input_size"], config["hidden_size"], nonlinearity="relu", **options)
    else:
        model = getattr(nn, kind)(config["input_size"], config["hidden_size"], **options)
    model = model.to(tg.float64)
    rng = np.random.default_rng(config["seed"])
    steps, batch = config["seq_len"], config["batch"]
    if batch is None:
        x_shape = (steps, config["input_size"])
    elif config["batch_first"]:
        x_shape = (batch, steps, config["input_size"])
    else:
        x_shape = (steps, batch, config["input_size"])
    x = tg.tensor(rng.standard_normal(x_shape), requires_grad=True)
    stacked = config["num_layers"] * (2 if config["bidirectional"] else 1)
    state_shape = (
        (stacked, config["hidden_size"]) if batch is None else (stacked, batch, config["hidden_size"])
    )
    states = []
    if config["initial_state"]:
        count = 2 if kind == "LSTM" else 1
        states = [tg.tensor(rng.standard_normal(state_shape) * 0.5, requires_grad=True) for _ in range(count)]

    def run(*_: tg.Tensor) -> tuple:
        # The inputs are perturbed in place, so the closure sees them; weights included.
        hidden = None if not states else (tuple(states) if kind == "LSTM" else states[0])
        out, last = model(x, hidden)
        return (out, *(last if isinstance(last, tuple) else (last,)))

    GRAPHS_CHECKED[0] += 1
    tg.gradcheck(run, [x, *states], eps=1e-6, atol=1e-6, rtol=1e-5)
    tg.gradcheck_projection(run, list(model.parameters()), eps=1e-6, rtol=1e-5, atol=1e-7, trials=2)


@settings(max_examples=EXAMPLES // 2)
@given(programs(EVERYTHING, min_steps=3, max_steps=10))
def test_random_graphs_backward_twice_with_retain_graph_gives_exactly_twice_the_gradients(program):
    # In-place accumulation into shared gradient buffers would show up here as a wrong second sum.
    leaves, steps, _ = program
    cache: dict = {}
    GRAPHS_CHECKED[0] += 1
    weights = np.random.default_rng(len(steps)).standard_normal(64)

    def total() -> tg.Tensor:
        outputs = [v for v in run_program(leaves, steps, cache) if v.requires_grad]
        return sum(((v * float(w)).sum() for v, w in zip(outputs, weights)), tg.tensor(0.0, dtype=tg.float64))

    for leaf in leaves:
        leaf.grad = None
    loss = total()
    if not loss.requires_grad:
        return
    loss.backward(retain_graph=True)
    once = [None if leaf.grad is None else leaf.grad.numpy().copy() for leaf in leaves]
    loss.backward()
    for leaf, first in zip(leaves, once):
        if first is not None:
            np.testing.assert_allclose(leaf.grad.numpy(), 2 * first, rtol=1e-12, atol=1e-300)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()


def _leaf_gradients(leaves: list, steps: list, outputs: list, cache: dict) -> list:
    for leaf in leaves:
        leaf.grad = None
    pool = run_program(leaves, steps, cache)
    loss = sum(((pool[i] * (1.0 + 0.1 * i)).sum() for i in outputs), tg.tensor(0.0, dtype=tg.float64))
    if loss.requires_grad:
        loss.backward()
    return [None if leaf.grad is None else leaf.grad.numpy().copy() for leaf in leaves]


@settings(max_examples=EXAMPLES // 4)
@given(programs(EVERYTHING, min_steps=3, max_steps=10))
def test_anomaly_mode_changes_no_gradient_and_raises_nothing_on_finite_random_graphs(program):
    leaves, steps, outputs = program
    cache: dict = {}
    GRAPHS_CHECKED[0] += 1
    plain = _leaf_gradients(leaves, steps, outputs, cache)
    with tg.autograd.detect_anomaly():
        watched = _leaf_gradients(leaves, steps, outputs, cache)
    for a, b in zip(plain, watched):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


@settings(max_examples=EXAMPLES // 4)
@given(programs(EVERYTHING, min_steps=2, max_steps=10), st.data())
def test_a_hook_scaling_a_random_value_s_gradient_acts_as_a_rescaled_branch(program, data):
    # A hook g -> c g on a value v gives the gradient of the graph with v replaced by v + w - w held
    # constant, w = (c - 1) v: the same forward value to the last bit, c times the gradient through v.
    leaves, steps, outputs = program
    cache: dict = {}
    candidates = [i for i, v in enumerate(run_program(leaves, steps, cache)) if v.requires_grad]
    if not candidates:
        return
    position = data.draw(st.sampled_from(candidates))
    c = data.draw(st.sampled_from([0.0, -1.5, 3.0]))
    GRAPHS_CHECKED[0] += 1
    removers = []

    def hooked(v: tg.Tensor) -> tg.Tensor:
        removers.append(v.register_hook(lambda g: g * c))
        return v

    def rescaled(v: tg.Tensor) -> tg.Tensor:
        w = v * (c - 1.0)
        return v + (w - w.detach())

    def gradients(transform) -> list:
        for leaf in leaves:
            leaf.grad = None
        pool = run_program(leaves, steps, cache, {position: transform})
        loss = sum(((pool[i] * (1.0 + 0.1 * i)).sum() for i in outputs), tg.tensor(0.0, dtype=tg.float64))
        if loss.requires_grad:
            loss.backward()
        return [np.zeros(leaf.shape) if leaf.grad is None else leaf.grad.numpy().copy() for leaf in leaves]

    with_hook = gradients(hooked)
    for remove in removers:
        remove()
    expected = gradients(rescaled)
    for got, want in zip(with_hook, expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "move",
    [
        lambda x: x.reshape(x.shape),
        lambda x: x.permute(0, 1),
        lambda x: x.expand(2, 3),
        lambda x: x.squeeze(0),
    ],
    ids=["reshape", "permute", "expand", "squeeze"],
)
def test_a_hook_on_a_movement_that_changes_nothing_sees_only_its_own_branch(move):
    # Found by the fuzzer: these returned the input itself, so the hook caught the input's whole gradient.
    x = tg.tensor(np.ones((2, 3)), dtype=tg.float64, requires_grad=True)
    y = move(x)
    assert y is not x and not y.is_leaf
    y.register_hook(lambda g: g * 0.0)
    (y * 3.0 + x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((2, 3)))  # only the direct path survives
