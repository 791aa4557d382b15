"""Portability: the package runs on CuPy as it runs on NumPy, because no op is written twice.

Two checks. First, only ``backend.py`` imports NumPy or CuPy (a scan of every module's syntax tree).
Second, the whole engine (every op forward and backward, gradcheck, checkpointing, an LSTM training
step with truncated BPTT) runs on the "cuda" device of a strict CuPy stand-in (``fake_cupy``) that
refuses what CuPy lacks or does differently: implicit conversion to NumPy, NumPy arrays mixed into
device operations, ``np.add.at``-style ufunc methods, module-level random state, object arrays,
``ndarray.tolist``, functions and methods outside CuPy's API. Every result is compared with the CPU.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest
from fake_cupy import FakeArray, install

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import autograd, loss_ops, nn, ops, optim
from tinygrad_rnn.checkpoint import checkpoint
from tinygrad_rnn.nn.utils import clip_grad_norm_

PACKAGE = Path(tg.__file__).parent
ARRAY_LIBRARIES = {"numpy", "cupy", "cupyx"}


def array_library_imports(source: str) -> list[str]:
    """Every ``import numpy``/``from cupy import ...`` (at any depth, inside functions too) in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        else:
            continue
        found += [f"line {node.lineno}: {name}" for name in names if name.split(".")[0] in ARRAY_LIBRARIES]
    return found


def test_the_import_scan_finds_every_spelling_of_an_array_library_import():
    source = (
        "import numpy as np\nimport os\nfrom cupy import cuda\nfrom .backend import np\n"
        "def f():\n    import cupyx.scipy\n    return importlib.import_module('numpy')\n"
    )
    assert [entry.split(": ")[1] for entry in array_library_imports(source)] == [
        "numpy",
        "cupy",
        "cupyx.scipy",
        "numpy",
    ]


def test_only_backend_imports_numpy_or_cupy():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "backend.py":
            continue
        found = array_library_imports(path.read_text())
        if found:
            offenders[str(path.relative_to(PACKAGE.parent))] = found
    assert not offenders, f"only tinygrad_rnn/backend.py may import numpy/cupy; found {offenders}"


# ---- the whole engine on a strict CuPy -------------------------------------------------------------------


def _leaf(device, *shape, low=-2.0, high=2.0, seed=0):
    values = np.random.default_rng(seed + sum(shape)).uniform(low, high, shape)
    return tg.tensor(values, device=device, requires_grad=True)


def _indices(device, values):
    return tg.tensor(np.asarray(values), device=device)


# One entry per op: name -> (input builder, function of the inputs giving a tensor). Ops reached through
# the public API, the way users reach them.
class _ProductAndSum(tg.autograd.Function):
    """A PyTorch-style custom function (``custom_function.CustomNode`` underneath): (a * b, a + b)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b, a + b

    @staticmethod
    def backward(ctx, grad_product, grad_sum):
        a, b = ctx.saved_tensors
        return grad_product * b + grad_sum, grad_product * a + grad_sum


CASES = {
    "Add": (lambda d: [_leaf(d, 3, 4), _leaf(d, 4, seed=1)], lambda a, b: a + b + 1.5),
    "Sub": (lambda d: [_leaf(d, 3, 4), _leaf(d, 3, 1, seed=1)], lambda a, b: a - b - 2),
    "Mul": (lambda d: [_leaf(d, 3, 4), _leaf(d, 4, seed=1)], lambda a, b: a * b * 3),
    "Div": (lambda d: [_leaf(d, 3, 4), _leaf(d, 4, low=1.0, seed=1)], lambda a, b: a / b / 2 + 1 / b),
    "Pow": (lambda d: [_leaf(d, 3, low=0.5), _leaf(d, 3, seed=1)], lambda a, b: a**b + 2**b),
    "PowConstant": (lambda d: [_leaf(d, 3, 2)], lambda a: a**3 + a**2 + (a * a + 1) ** 0.5 + a**0),
    "Neg": (lambda d: [_leaf(d, 3)], lambda a: -a),
    "Maximum": (lambda d: [_leaf(d, 2, 3), _leaf(d, 3, seed=1)], lambda a, b: tg.maximum(a, b)),
    "Minimum": (lambda d: [_leaf(d, 2, 3), _leaf(d, 3, seed=1)], lambda a, b: tg.minimum(a, b)),
    "Where": (lambda d: [_leaf(d, 2, 3), _leaf(d, 2, 3, seed=1)], lambda a, b: tg.where(a > 0, a, b)),
    "Exp": (lambda d: [_leaf(d, 3)], lambda a: a.exp()),
    "Log": (lambda d: [_leaf(d, 3, low=0.5)], lambda a: a.log()),
    "Tanh": (lambda d: [_leaf(d, 3)], lambda a: a.tanh()),
    "Sigmoid": (lambda d: [_leaf(d, 3, low=-50.0, high=50.0)], lambda a: a.sigmoid()),
    "Relu": (lambda d: [_leaf(d, 5)], lambda a: a.relu()),
    "Sqrt": (lambda d: [_leaf(d, 3, low=0.5)], lambda a: a.sqrt()),
    "Abs": (lambda d: [_leaf(d, 3)], lambda a: a.abs()),
    "Clamp": (lambda d: [_leaf(d, 6)], lambda a: a.clamp(-1, 0.5) + a.clamp(min=0.0)),
    "Cast": (lambda d: [_leaf(d, 3)], lambda a: a.float().double()),
    "Copy": (lambda d: [_leaf(d, 3)], lambda a: a.clone()),
    "MatMul": (
        lambda d: [_leaf(d, 2, 3, 4), _leaf(d, 4, 5, seed=1), _leaf(d, 4, seed=2)],
        lambda a, b, v: (a @ b).sum() + (a @ v).sum() + (v @ b).sum() + v @ v,
    ),
    "AddMatMul": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 4, 2, seed=1), _leaf(d, 2, seed=2)],
        lambda a, b, c: ops.AddMatMul.apply(a, b, c) + ops.AddMatMul.apply(a, b, c * a[:, :2]),
    ),
    "TanhAddMatMul": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 4, 2, seed=1), _leaf(d, 2, seed=2)],
        lambda a, b, c: ops.TanhAddMatMul.apply(a, b, c) * ops.TanhAddMatMul.apply(a, b, c * a[:, :2]),
    ),
    "Sum": (
        lambda d: [_leaf(d, 2, 3, 4)],
        lambda a: a.sum() + a.sum(dim=(0, 2)).sum() + a.sum(1, keepdim=True),
    ),
    "Mean": (lambda d: [_leaf(d, 2, 3)], lambda a: a.mean() + a.mean(dim=1)),
    "Amax": (lambda d: [_leaf(d, 3, 4)], lambda a: a.amax(dim=1) + a.max()),
    "LogSumExp": (lambda d: [_leaf(d, 3, 4)], lambda a: a.logsumexp(dim=1)),
    "Softmax": (lambda d: [_leaf(d, 3, 4)], lambda a: a.softmax(dim=1)),
    "LogSoftmax": (lambda d: [_leaf(d, 3, 4)], lambda a: a.log_softmax(dim=-1)),
    "Reshape": (lambda d: [_leaf(d, 2, 6)], lambda a: a.reshape(3, 4).reshape(-1)),
    "Permute": (lambda d: [_leaf(d, 2, 3, 4)], lambda a: a.permute(2, 0, 1).transpose(0, 1)),
    "Expand": (lambda d: [_leaf(d, 3, 1)], lambda a: a.expand(3, 4)),
    "GetItem": (
        lambda d: [_leaf(d, 4, 5)],
        lambda a: (
            a[1:3, ::2].sum() + a[_indices(a.device, [0, 2, 2])].sum() + a[a > 0].sum() + a[[3, 3]].sum()
        ),
    ),
    "Gather": (
        lambda d: [_leaf(d, 3, 4)],
        lambda a: a.gather(1, _indices(a.device, [[0, 0], [3, 1], [2, 2]])),
    ),
    "Cat": (lambda d: [_leaf(d, 2, 3), _leaf(d, 2, 2, seed=1)], lambda a, b: tg.cat([a, b, a], dim=1)),
    "Stack": (lambda d: [_leaf(d, 2, 3), _leaf(d, 2, 3, seed=1)], lambda a, b: tg.stack([a, b], dim=1)),
    "Split": (lambda d: [_leaf(d, 6, 2)], lambda a: a.split(2)[0] * a.chunk(3)[2]),
    "Unbind": (lambda d: [_leaf(d, 3, 2)], lambda a: a.unbind(0)[0] * a.unbind(1)[1][1]),
    "CrossEntropy": (
        lambda d: [_leaf(d, 4, 5)],
        lambda a: F.cross_entropy(a, _indices(a.device, [0, 4, 4, 1])),
    ),
    "NLLLoss": (
        lambda d: [_leaf(d, 4, 5)],
        lambda a: F.nll_loss(a.log_softmax(1), _indices(a.device, [1, 2, 3, 0])),
    ),
    "Softplus": (
        lambda d: [_leaf(d, 5), _leaf(d, 5, low=0.0, high=1.0, seed=1)],
        lambda a, t: F.binary_cross_entropy_with_logits(a, t.detach()),
    ),
    "Embedding": (
        lambda d: [_leaf(d, 6, 3)],
        lambda w: F.embedding(_indices(w.device, [[1, 5], [1, 0]]), w),
    ),
    # nn.Linear's one-node read-out, with and without a bias, on a (2, 3, in) input folded into rows
    "Linear": (
        lambda d: [_leaf(d, 2, 3, 4), _leaf(d, 5, 4, seed=1), _leaf(d, 5, seed=2)],
        lambda x, w, b: loss_ops.Linear.apply(x, w, b) * loss_ops.Linear.apply(x, w),
    ),
    "LSTMCellPointwise": (
        lambda d: [_leaf(d, 2, 8), _leaf(d, 2, 2, seed=1)],
        lambda g, c: ops.LSTMCellPointwise.apply(g, c)[0] * ops.LSTMCellPointwise.apply(g, c)[1],
    ),
    "GRUCellPointwise": (
        lambda d: [_leaf(d, 2, 6), _leaf(d, 2, 6, seed=1), _leaf(d, 2, 2, seed=2)],
        lambda x, h, s: ops.GRUCellPointwise.apply(x, h, s),
    ),
    "ToDevice": (lambda d: [_leaf(d, 3)], lambda a: a.to("cuda:1").to("cpu") * 2),
    "Checkpoint": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 4, 4, seed=1)],
        lambda x, w: checkpoint(lambda u: (u @ w).tanh() @ w, x),
    ),
    # Activations and the probability-input binary cross-entropy (loss_ops)
    "Gelu": (lambda d: [_leaf(d, 3, 4)], lambda a: F.gelu(a) + F.gelu(a, approximate="tanh")),
    "Elu": (lambda d: [_leaf(d, 3, 4)], lambda a: F.elu(a, alpha=0.7)),
    "LeakyRelu": (lambda d: [_leaf(d, 3, 4)], lambda a: F.leaky_relu(a, 0.2)),
    "BinaryCrossEntropy": (
        lambda d: [_leaf(d, 5, low=0.05, high=0.95), _leaf(d, 5, low=0.0, high=1.0, seed=1)],
        lambda p, t: F.binary_cross_entropy(p, t, reduction="none"),
    ),
    # Products, log1p and remainders (math_ops)
    "Log1p": (lambda d: [_leaf(d, 3, 4, low=-0.5)], lambda a: a.log1p()),
    "Prod": (lambda d: [_leaf(d, 3, 4)], lambda a: a.prod(1) + a.prod()),
    "CumProd": (lambda d: [_leaf(d, 3, 4)], lambda a: a.cumprod(1)),
    "Remainder": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 4, low=0.5, seed=1)],
        lambda a, b: a.fmod(b) + a.remainder(b) + a % 0.7,
    ),
    # Trigonometry, running sums, norms and einsum (math_ops)
    "Sin": (lambda d: [_leaf(d, 3, 4)], lambda a: a.sin()),
    "Cos": (lambda d: [_leaf(d, 3, 4)], lambda a: a.cos()),
    "CumSum": (lambda d: [_leaf(d, 3, 4)], lambda a: a.cumsum(1)),
    "VectorNorm": (lambda d: [_leaf(d, 3, 4)], lambda a: a.norm(dim=1) + a.norm(p=3)),
    "Einsum": (lambda d: [_leaf(d, 2, 3), _leaf(d, 3, 4, seed=1)], lambda a, b: tg.einsum("ij,jk->ik", a, b)),
    # Scatters and in-place writes recorded on the tape (selection, index_ops)
    "Scatter": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 3, 2, seed=1)],
        lambda a, v: a.scatter(1, _indices(a.device, [[0, 2], [1, 3], [3, 0]]), v),
    ),
    "IndexPut": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 4, seed=1)],
        lambda a, v: _written(a, lambda b: b.__setitem__(1, v)),
    ),
    "CopySlices": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 3, seed=1)],
        lambda a, v: _written(a, lambda b: b[:, 2].copy_(v)),
    ),
    "ViewOf": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 3, seed=1)],
        lambda a, v: _view_after_write(a, v),
    ),
    "CustomNode": (
        lambda d: [_leaf(d, 3, 4), _leaf(d, 3, 4, seed=1)],
        lambda a, b: _ProductAndSum.apply(a, b)[0] * _ProductAndSum.apply(a, b)[1],
    ),
}
RANDOM_CASES = {"Dropout": (lambda d: [_leaf(d, 50)], lambda a: tg.dropout(a, p=0.4))}


def _written(a, write):
    """``a``'s values in a fresh interior tensor after ``write`` changed it in place on the tape."""
    b = a * 1.0
    write(b)
    return b


def _view_after_write(a, v):
    """A view taken before its base is written, read after: re-derived from the written base."""
    b = a * 1.0
    column = b[:, 1]
    b[:, 1] = v
    return column * 2.0


def _run(case, device):
    """Output and input gradients (host arrays) of Σ w ⊙ f(inputs) with fixed weights w."""
    build, function = case
    inputs = build(device)
    out = function(*inputs)
    weights = np.random.default_rng(3).standard_normal(out.shape)
    (out * tg.tensor(weights, device=out.device)).sum().backward()
    return out.numpy(), [None if t.grad is None else t.grad.numpy() for t in inputs]


@pytest.fixture
def strict_cuda(monkeypatch):
    """The backend's CuPy replaced by the strict stand-in; ops applied on it are recorded by name."""
    fake = install(monkeypatch, device_count=2)
    applied = set()
    original = autograd.Function.apply.__func__

    def recording_apply(cls, *inputs, **constants):
        applied.add(cls.__name__)
        return original(cls, *inputs, **constants)

    monkeypatch.setattr(autograd.Function, "apply", classmethod(recording_apply))
    fake.applied = applied
    return fake


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_op_runs_on_strict_cupy_and_matches_numpy(strict_cuda, name):
    expected_out, expected_grads = _run(CASES[name], "cpu")
    out, grads = _run(CASES[name], "cuda")
    assert name in strict_cuda.applied, f"the case for {name} never applied it"
    np.testing.assert_allclose(out, expected_out, rtol=1e-12, atol=1e-12)
    for got, expected in zip(grads, expected_grads):
        assert (got is None) == (expected is None)
        if expected is not None:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_dropout_runs_on_strict_cupy_with_the_devices_own_generator(strict_cuda):
    out, (grad,) = _run(RANDOM_CASES["Dropout"], "cuda")
    kept = out != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_array_equal(grad == 0, ~kept)


def _all_functions():
    for module in pkgutil.walk_packages(tg.__path__, "tinygrad_rnn."):
        importlib.import_module(module.name)
    found, stack = set(), [autograd.Function]
    while stack:
        for subclass in stack.pop().__subclasses__():
            if subclass.__module__.startswith("tinygrad_rnn."):
                found.add(subclass.__name__)
            stack.append(subclass)
    return found


def test_the_portability_cases_cover_every_op_of_the_package():
    missing = _all_functions() - set(CASES) - set(RANDOM_CASES)
    assert not missing, f"add these ops to CASES in tests/test_portability.py: {sorted(missing)}"


def test_gradcheck_runs_on_device_tensors(strict_cuda):
    a, b = _leaf("cuda", 2, 3), _leaf("cuda", 3, 2, seed=1)
    assert isinstance(a._data, FakeArray)
    assert tg.gradcheck(lambda x, y: (x @ y).tanh(), [a, b])
    assert tg.gradcheck_projection(lambda x, y: (x @ y).sigmoid(), [a, b])


def test_an_lstm_trains_with_truncated_bptt_on_strict_cupy_as_on_numpy(strict_cuda):
    """Two TBPTT windows (the hidden state detached between them), clipping and Adam: same numbers."""
    data = np.random.default_rng(0).standard_normal((8, 3, 4))
    targets = np.random.default_rng(1).integers(0, 5, (8, 3))
    results = {}
    for device in ("cpu", "cuda"):
        tg.manual_seed(0)
        lstm, head = nn.LSTM(4, 6, num_layers=2).double().to(device), nn.Linear(6, 5).double().to(device)
        parameters = [*lstm.parameters(), *head.parameters()]
        optimizer = optim.Adam(parameters, lr=0.05)
        hidden, losses = None, []
        for start in (0, 4):
            x = tg.tensor(data[start : start + 4], device=device)
            y = tg.tensor(targets[start : start + 4], device=device)
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            out, hidden = lstm(x, hidden)
            loss = F.cross_entropy(head(out).reshape(-1, 5), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            losses.append(loss.item())
        results[device] = (losses, {**lstm.state_dict(), **head.state_dict()})
    assert {"LSTMCellPointwise", "Linear", "CrossEntropy"} <= strict_cuda.applied
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-12)
    for name, value in results["cpu"][1].items():
        np.testing.assert_allclose(results["cuda"][1][name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_strict_stand_in_refuses_what_cupy_refuses(strict_cuda):
    """The stand-in is only worth running if it fails on NumPy-only code; these are the checks it makes."""
    x = tg.ones(3, device="cuda")._data
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        x + np.ones(3)
    with pytest.raises(AttributeError, match=r"add\.at is refused"):
        strict_cuda.add.at(x, [0], 1.0)
    with pytest.raises(AttributeError, match="module-level random state"):
        strict_cuda.random.seed(0)
    with pytest.raises(AttributeError, match="tolist is refused"):
        x.tolist()
    with pytest.raises(TypeError, match="no sparse"):
        strict_cuda.indices((2, 2), sparse=True)
    with pytest.raises(TypeError, match="object arrays"):
        strict_cuda.asarray(np.array([None]))
    with pytest.raises(ValueError, match=r"devices \[0, 1\]"):
        x + tg.ones(3, device="cuda:1")._data


def test_the_stand_in_offers_only_what_real_cupy_has():
    """Where CuPy is installed (the GPU check), the stand-in's allow-lists are checked against it."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed here; the GPU check runs this")
    import fake_cupy

    assert sorted(n for n in fake_cupy.FUNCTIONS | fake_cupy.CONSTANTS if not hasattr(cupy, n)) == []
    assert sorted(n for n in fake_cupy.LINALG if not hasattr(cupy.linalg, n)) == []
    assert sorted(n for n in fake_cupy.METHODS if not hasattr(cupy.ndarray, n)) == []
