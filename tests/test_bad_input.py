"""Bad input at every public entry: one table of calls with wrong shapes, dtypes, devices, out-of-range
indices and dims, negative or zero sizes, NaN options and wrong hidden states. Each must raise the
stated error class with a message that names the function and the argument at fault, from the
package's own checks (never a NumPy traceback), and never return a result."""

import math
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from fake_cupy import install
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
import tinygrad_rnn.nn.functional as F
from tinygrad_rnn import bptt, checkpoint, data, gradflow, nn, optim

NAN = float("nan")
PACKAGE_DIR = os.path.dirname(os.path.abspath(tg.__file__))


@dataclass
class Case:
    """One bad call: ``call()`` must raise ``error`` with a message matching ``message``."""

    id: str
    call: Callable[[], object]
    error: type | tuple
    message: str


def x34() -> tg.Tensor:
    return tg.tensor(np.arange(12.0).reshape(3, 4), dtype=tg.float32)


def leaf(*shape: int) -> tg.Tensor:
    return tg.zeros(*shape, requires_grad=True)


def sequence(seq_len: int = 6, batch: int = 2, features: int = 4) -> tg.Tensor:
    return tg.zeros(seq_len, batch, features)


def parameter() -> nn.Parameter:
    return nn.Parameter(tg.zeros(3))


def stepped(optimizer_class: type, grad: tg.Tensor, **options) -> None:
    p = parameter()
    p.grad = grad
    optimizer_class([p], **options).step()


def cuda_case() -> Case:
    """Without a GPU, asking for one names CuPy/the GPU; with one, mixing devices is refused."""
    if not tg.cuda.is_available():
        return Case(
            "device-cuda-missing", lambda: tg.zeros(2, device="cuda"), RuntimeError, r"cuda.*CuPy|GPU"
        )
    return Case(
        "device-mixed", lambda: tg.ones(2) + tg.ones(2, device="cuda"), RuntimeError, r"Add.*same device"
    )


CASES = [
    # ---- factories and tensor construction ------------------------------------------------------------
    Case("zeros-negative-size", lambda: tg.zeros(-1, 3), ValueError, r"non-negative.*\(-1, 3\)"),
    Case("ones-float-size", lambda: tg.ones(2.5), ValueError, r"non-negative ints.*2\.5"),
    Case("randn-negative-size", lambda: tg.randn(3, -2), ValueError, r"non-negative.*-2"),
    Case("rand-negative-size", lambda: tg.rand(-4), ValueError, r"non-negative.*-4"),
    Case("full-negative-size", lambda: tg.full((-1,), 2.0), ValueError, r"non-negative.*-1"),
    Case("eye-negative", lambda: tg.eye(-2), ValueError, r"non-negative.*-2"),
    Case("arange-zero-step", lambda: tg.arange(0, 5, 0), ValueError, r"arange: step must be nonzero"),
    Case("arange-nan-end", lambda: tg.arange(0, NAN), ValueError, r"arange: end must be a finite number"),
    Case(
        "arange-inf-start",
        lambda: tg.arange(-math.inf, 3.0),
        ValueError,
        r"arange: start must be a finite number",
    ),
    Case("randint-empty-range", lambda: tg.randint(5, 2, (3,)), ValueError, r"randint: high.*low=5, high=2"),
    Case("tensor-bad-dtype", lambda: tg.tensor([1.0], dtype="float99"), TypeError, r"not a dtype: 'float99'"),
    Case("tensor-of-strings", lambda: tg.tensor(["a", "b"]), TypeError, r"non-numbers"),
    Case("tensor-of-objects", lambda: tg.tensor([object()]), TypeError, r"non-numbers"),
    Case("tensor-ragged", lambda: tg.tensor([[1.0], [1.0, 2.0]]), ValueError, r"ragged"),
    Case("tensor-complex-array", lambda: tg.tensor(np.array([1j])), TypeError, r"dtype complex128"),
    Case("tensor-unknown-device", lambda: tg.zeros(3, device="gpu"), ValueError, r"unknown device 'gpu'"),
    Case("tensor-bad-device-index", lambda: tg.zeros(3, device="cuda:x"), ValueError, r"'cuda:x'.*number"),
    Case("to-unknown-device", lambda: x34().to("tpu"), ValueError, r"unknown device 'tpu'"),
    cuda_case(),
    Case("int-requires-grad", lambda: tg.tensor([1, 2], requires_grad=True), ValueError, r"floating.*int64"),
    Case("default-dtype-int", lambda: tg.set_default_dtype(tg.int64), TypeError, r"default dtype.*int64"),
    Case("manual-seed-string", lambda: tg.manual_seed("a"), TypeError, r"manual_seed: seed must be an int"),
    Case("item-of-many", lambda: x34().item(), ValueError, r"item\(\).*one element.*\(3, 4\)"),
    Case("bool-of-many", lambda: bool(x34()), RuntimeError, r"truth value.*\(3, 4\)"),
    Case("len-of-scalar", lambda: len(tg.tensor(1.0)), TypeError, r"len\(\) of a 0-d tensor"),
    # ---- joining, splitting, movement ----------------------------------------------------------------
    Case(
        "cat-shapes", lambda: tg.cat([x34(), tg.zeros(2, 5)]), ValueError, r"cat: sizes must match.*\(2, 5\)"
    ),
    Case("cat-dim", lambda: tg.cat([x34(), x34()], dim=2), IndexError, r"cat: dim 2 is out of range"),
    Case("cat-empty", lambda: tg.cat([]), ValueError, r"cat: expected a non-empty sequence"),
    Case("cat-array", lambda: tg.cat([x34(), np.ones((3, 4))]), TypeError, r"cat: element 1 is a ndarray"),
    Case(
        "stack-shapes", lambda: tg.stack([x34(), tg.zeros(4, 3)]), ValueError, r"stack: all tensors.*\(4, 3\)"
    ),
    Case("stack-dim", lambda: tg.stack([x34(), x34()], dim=3), IndexError, r"stack: dim 3 is out of range"),
    Case("split-zero", lambda: x34().split(0, 1), ValueError, r"split: split_size must be positive, got 0"),
    Case("split-negative", lambda: x34().split(-2, 1), ValueError, r"split: split_size must be positive"),
    Case("split-sections", lambda: x34().split([1, 2], 1), ValueError, r"split: sections \[1, 2\].*size 4"),
    Case("split-dim", lambda: x34().split(1, 2), IndexError, r"split: dim 2 is out of range"),
    Case("chunk-zero", lambda: x34().chunk(0), ValueError, r"chunk: chunks must be positive, got 0"),
    Case("unbind-dim", lambda: x34().unbind(2), IndexError, r"unbind: dim 2 is out of range"),
    Case("reshape-count", lambda: x34().reshape(5, 2), ValueError, r"reshape.*\(3, 4\).*\(5, 2\)"),
    Case("reshape-negative", lambda: x34().reshape(-2, 6), ValueError, r"reshape.*\(-2, 6\)"),
    Case("view-two-minus-one", lambda: x34().view(-1, -1), ValueError, r"only one dimension can be -1"),
    Case("reshape-float", lambda: x34().reshape(2.0, 6), TypeError, r"reshape: sizes must be ints"),
    Case("permute-repeat", lambda: x34().permute(0, 0), ValueError, r"permute: dims \(0, 0\)"),
    Case("permute-too-many", lambda: x34().permute(0, 1, 2), IndexError, r"permute: dim 2"),
    Case("transpose-dim", lambda: x34().transpose(0, 2), IndexError, r"transpose: dim 2 is out of range"),
    Case("squeeze-dim", lambda: x34().squeeze(3), IndexError, r"squeeze: dim 3 is out of range"),
    Case("unsqueeze-dim", lambda: x34().unsqueeze(4), IndexError, r"unsqueeze: dim 4 is out of range"),
    Case("flatten-dim", lambda: x34().flatten(3), IndexError, r"flatten: dim 3 is out of range"),
    Case("size-dim", lambda: x34().size(5), IndexError, r"size: dim 5 is out of range"),
    Case("dim-not-int", lambda: x34().sum("0"), TypeError, r"sum: dim must be an int, got str"),
    Case("expand-shape", lambda: x34().expand(2, 4), ValueError, r"expand.*\(3, 4\).*\(2, 4\)"),
    Case("expand-fewer", lambda: x34().expand(4), ValueError, r"expand.*fewer dims"),
    Case("t-of-3d", lambda: tg.zeros(2, 2, 2).t(), ValueError, r"t\(\) expects.*\(2, 2, 2\)"),
    # ---- reductions ----------------------------------------------------------------------------------
    Case("sum-dim", lambda: x34().sum(2), IndexError, r"sum: dim 2 is out of range.*\(3, 4\)"),
    Case("sum-dim-twice", lambda: x34().sum((0, -2)), ValueError, r"sum: dim \(0, -2\) names an axis twice"),
    Case("mean-dim", lambda: x34().mean(-3), IndexError, r"mean: dim -3 is out of range"),
    Case("mean-of-int", lambda: tg.tensor([1, 2]).mean(), TypeError, r"mean: needs a floating tensor"),
    Case("max-dim", lambda: x34().max(5), IndexError, r"max: dim 5 is out of range"),
    Case("argmax-dim", lambda: x34().argmax(2), IndexError, r"argmax: dim 2 is out of range"),
    Case("amax-empty", lambda: tg.zeros(0).amax(), ValueError, r"amax: cannot reduce an empty tensor"),
    Case("logsumexp-dim", lambda: tg.logsumexp(x34(), 2), IndexError, r"logsumexp: dim 2 is out of range"),
    Case("softmax-dim", lambda: x34().softmax(2), IndexError, r"softmax: dim 2 is out of range"),
    Case("log-softmax-dim", lambda: tg.log_softmax(x34(), -3), IndexError, r"log_softmax: dim -3"),
    Case("var-dim", lambda: x34().var(3), IndexError, r"var: dim 3 is out of range"),
    # ---- elementwise and matmul ----------------------------------------------------------------------
    Case("add-shapes", lambda: x34() + tg.zeros(4, 3), ValueError, r"Add:.*\(3, 4\), \(4, 3\)"),
    Case("mul-shapes", lambda: x34() * tg.zeros(2, 4), ValueError, r"Mul:.*\(3, 4\), \(2, 4\)"),
    Case("where-shapes", lambda: tg.where(tg.ones(3) > 0, x34(), tg.zeros(5)), ValueError, r"Where:.*\(5,\)"),
    Case("matmul-inner", lambda: x34() @ x34(), ValueError, r"matmul: inner sizes differ.*\(3, 4\)"),
    Case("matmul-scalar", lambda: tg.tensor(2.0) @ x34(), ValueError, r"matmul: both operands.*\(\)"),
    Case(
        "matmul-batch", lambda: tg.zeros(2, 3, 4) @ tg.zeros(3, 4, 5), ValueError, r"(?i)matmul:.*\(2, 3, 4\)"
    ),
    Case("clamp-nothing", lambda: x34().clamp(), ValueError, r"clamp: at least one of min and max"),
    Case("dropout-p-big", lambda: tg.dropout(x34(), 1.5), ValueError, r"dropout: probability p.*1\.5"),
    Case("dropout-p-nan", lambda: tg.dropout(x34(), NAN), ValueError, r"dropout: probability p.*nan"),
    Case("int-negative-power", lambda: tg.tensor([2]) ** -1, ValueError, r"PowConstant:.*negative"),
    # ---- indexing and gather -------------------------------------------------------------------------
    Case("index-row", lambda: x34()[3], IndexError, r"index 3 is out of range for dim 0 of size 3"),
    Case("index-negative", lambda: x34()[:, -5], IndexError, r"index -5 is out of range for dim 1 of size 4"),
    Case("index-array", lambda: x34()[tg.tensor([0, 3])], IndexError, r"index 3 is out of range for dim 0"),
    Case("index-float", lambda: x34()[tg.tensor([0.0])], IndexError, r"GetItem: arrays used as indices"),
    Case("index-too-many", lambda: x34()[0, 0, 0], IndexError, r"too many indices.*\(3, 4\)"),
    Case("index-mask-shape", lambda: x34()[tg.tensor([True, False])], IndexError, r"GetItem: boolean index"),
    Case(
        "gather-range", lambda: x34().gather(1, tg.tensor([[4], [0], [0]])), IndexError, r"gather: index.*4"
    ),
    Case(
        "gather-float",
        lambda: x34().gather(1, tg.tensor([[1.0]])),
        TypeError,
        r"gather: index must be an int",
    ),
    Case("gather-rank", lambda: x34().gather(1, tg.tensor([0, 1])), ValueError, r"gather: index has 1 dims"),
    Case(
        "gather-dim", lambda: x34().gather(2, tg.tensor([[0]])), IndexError, r"gather: dim 2 is out of range"
    ),
    # ---- in-place updates ----------------------------------------------------------------------------
    Case("setitem-range", lambda: x34().__setitem__(5, 1.0), IndexError, r"index 5 is out of range"),
    Case("copy-shape", lambda: x34().copy_(tg.ones(2, 2)), ValueError, r"copy_:.*\(3, 4\)"),
    Case("fill-string", lambda: x34().fill_("a"), ValueError, r"fill_:"),
    Case("add-in-place-shape", lambda: x34().add_(tg.ones(5)), ValueError, r"add_:.*\(5,\).*\(3, 4\)"),
    Case("mul-in-place-shape", lambda: x34().mul_(tg.ones(2, 4)), ValueError, r"mul_:.*\(3, 4\)"),
    Case("div-in-place-shape", lambda: x34().div_(tg.ones(5)), ValueError, r"div_:.*\(3, 4\)"),
    Case("setitem-shape", lambda: x34().__setitem__(0, tg.ones(5)), ValueError, r"__setitem__:.*\(5,\)"),
    Case("zeros-like-list", lambda: tg.zeros_like([1, 2]), TypeError, r"zeros_like: input must be a Tensor"),
    Case("randn-like-array", lambda: tg.randn_like(np.ones(3)), TypeError, r"randn_like: input must be"),
    Case(
        "leaf-in-place",
        lambda: leaf(3).add_(1.0),
        RuntimeError,
        r"add_: a leaf Variable that requires grad is being used in an in-place operation",
    ),
    # ---- backward ------------------------------------------------------------------------------------
    Case("backward-vector", lambda: (leaf(3) * 2).backward(), RuntimeError, r"backward\(\).*scalar.*\(3,\)"),
    Case(
        "backward-grad-shape", lambda: (leaf(3) * 2).backward(tg.ones(4)), RuntimeError, r"gradient.*\(4,\)"
    ),
    Case("backward-no-grad", lambda: x34().sum().backward(), RuntimeError, r"does not require grad"),
    Case("hook-no-grad", lambda: x34().register_hook(lambda g: g), RuntimeError, r"hook.*does not require"),
    Case(
        "gradcheck-float32", lambda: tg.gradcheck(lambda a: a * 2, [leaf(2)]), TypeError, r"input 0.*float32"
    ),
    Case(
        "gradcheck-array", lambda: tg.gradcheck(lambda a: a, [np.ones(2)]), TypeError, r"input 0 is a ndarray"
    ),
    # ---- layers --------------------------------------------------------------------------------------
    Case("linear-negative", lambda: nn.Linear(-1, 3), ValueError, r"Linear: in_features.*-1"),
    Case("linear-float-size", lambda: nn.Linear(2.5, 3), ValueError, r"Linear: in_features.*2\.5"),
    Case("linear-features", lambda: nn.Linear(4, 3)(tg.zeros(2, 5)), ValueError, r"linear: input's last.*4"),
    Case("linear-scalar", lambda: nn.Linear(4, 3)(tg.tensor(1.0)), ValueError, r"linear: input's last"),
    Case(
        "linear-int-input",
        lambda: nn.Linear(4, 3)(tg.tensor([[1, 2, 3, 4]])),
        TypeError,
        r"linear: input.*int64",
    ),
    Case("linear-array", lambda: nn.Linear(4, 3)(np.ones((2, 4))), TypeError, r"input must be a Tensor"),
    Case("F-linear-weight", lambda: F.linear(x34(), tg.zeros(3, 5)), ValueError, r"linear:.*\(3, 5\)"),
    Case(
        "F-linear-weight-1d", lambda: F.linear(x34(), tg.zeros(4)), ValueError, r"linear: weight must be 2-D"
    ),
    Case("F-linear-bias", lambda: F.linear(x34(), tg.zeros(2, 4), tg.zeros(3)), ValueError, r"linear: bias"),
    Case("embedding-high", lambda: nn.Embedding(10, 4)(tg.tensor([10])), IndexError, r"embedding: index 10"),
    Case(
        "embedding-negative", lambda: nn.Embedding(10, 4)(tg.tensor([-1])), IndexError, r"embedding: index -1"
    ),
    Case("embedding-float", lambda: nn.Embedding(10, 4)(tg.tensor([1.0])), TypeError, r"embedding: input"),
    Case("embedding-padding", lambda: nn.Embedding(5, 2, padding_idx=7), ValueError, r"padding_idx=7"),
    Case("embedding-size", lambda: nn.Embedding(-5, 2), ValueError, r"non-negative.*-5"),
    Case("F-embedding-range", lambda: F.embedding(tg.tensor([5]), tg.zeros(5, 2)), IndexError, r"index 5"),
    Case(
        "F-embedding-padding", lambda: F.embedding(tg.tensor([1]), tg.zeros(5, 2), 9), ValueError, r"padding"
    ),
    Case(
        "F-embedding-weight",
        lambda: F.embedding(tg.tensor([1]), tg.zeros(5)),
        ValueError,
        r"weight must be 2-D",
    ),
    Case("dropout-module-p", lambda: nn.Dropout(1.5), ValueError, r"Dropout: probability p.*1\.5"),
    Case("dropout-module-nan", lambda: nn.Dropout(NAN), ValueError, r"Dropout: probability p.*nan"),
    Case("sequential-function", lambda: nn.Sequential(lambda a: a), TypeError, r"must be a Module"),
    Case("sequential-index", lambda: nn.Sequential(nn.Tanh())[3], IndexError, r"index 3 is out of range"),
    Case("module-to-int", lambda: nn.Linear(2, 2).to(tg.int64), TypeError, r"floating dtypes.*int64"),
    Case("module-to-device", lambda: nn.Linear(2, 2).to("tpu"), ValueError, r"unknown device 'tpu'"),
    Case(
        "load-state-dict-list", lambda: nn.Linear(2, 2).load_state_dict([1]), TypeError, r"expected a mapping"
    ),
    # ---- recurrent layers and cells --------------------------------------------------------------------
    Case(
        "lstm-input-size", lambda: nn.LSTM(4, 5)(sequence(features=3)), ValueError, r"LSTM: input\.size\(-1\)"
    ),
    Case(
        "lstm-rank-4", lambda: nn.LSTM(4, 5)(tg.zeros(6, 2, 4, 1)), ValueError, r"LSTM: expected a 3-D input"
    ),
    Case(
        "lstm-rank-1", lambda: nn.LSTM(4, 5)(tg.zeros(4)), ValueError, r"LSTM: expected a 3-D input.*\(4,\)"
    ),
    Case("lstm-no-steps", lambda: nn.LSTM(4, 5)(sequence(seq_len=0)), ValueError, r"LSTM: input has no time"),
    Case(
        "lstm-batch-first-no-steps",
        lambda: nn.LSTM(4, 5, batch_first=True)(tg.zeros(2, 0, 4)),
        ValueError,
        r"LSTM: input has no time",
    ),
    Case("lstm-array-input", lambda: nn.LSTM(4, 5)(np.zeros((6, 2, 4))), TypeError, r"LSTM: input must be a"),
    Case(
        "lstm-int-input", lambda: nn.LSTM(4, 5)(tg.zeros(6, 2, 4, dtype=tg.int64)), TypeError, r"LSTM: input"
    ),
    Case("lstm-double-input", lambda: nn.LSTM(4, 5)(sequence().double()), TypeError, r"LSTM: input.*float64"),
    Case(
        "lstm-h0-batch",
        lambda: nn.LSTM(4, 5)(sequence(), (tg.zeros(1, 3, 5), tg.zeros(1, 2, 5))),
        ValueError,
        r"LSTM: expected h_0 of shape \(1, 2, 5\).*got \(1, 3, 5\)",
    ),
    Case(
        "lstm-c0-size",
        lambda: nn.LSTM(4, 5)(sequence(), (tg.zeros(1, 2, 5), tg.zeros(1, 2, 4))),
        ValueError,
        r"LSTM: expected c_0 of shape \(1, 2, 5\)",
    ),
    Case(
        "lstm-h0-layers",
        lambda: nn.LSTM(4, 5, num_layers=2)(sequence(), (tg.zeros(1, 2, 5), tg.zeros(1, 2, 5))),
        ValueError,
        r"LSTM: expected h_0 of shape \(2, 2, 5\)",
    ),
    Case(
        "lstm-h0-int",
        lambda: nn.LSTM(4, 5)(sequence(), (tg.zeros(1, 2, 5, dtype=tg.int64), tg.zeros(1, 2, 5))),
        TypeError,
        r"LSTM: h_0 has dtype int64",
    ),
    Case("lstm-hidden-tensor", lambda: nn.LSTM(4, 5)(sequence(), tg.zeros(1, 2, 5)), TypeError, r"LSTM: hx"),
    Case("lstm-hidden-one", lambda: nn.LSTM(4, 5)(sequence(), (tg.zeros(1, 2, 5),)), TypeError, r"LSTM: hx"),
    Case(
        "lstm-hidden-none", lambda: nn.LSTM(4, 5)(sequence(), (None, None)), TypeError, r"LSTM: h_0 must be"
    ),
    Case(
        "gru-hidden-size",
        lambda: nn.GRU(4, 5)(sequence(), tg.zeros(1, 2, 4)),
        ValueError,
        r"GRU: expected hx",
    ),
    Case(
        "gru-hidden-tuple",
        lambda: nn.GRU(4, 5)(sequence(), (tg.zeros(1, 2, 5), tg.zeros(1, 2, 5))),
        TypeError,
        r"GRU: hx must be a Tensor",
    ),
    Case(
        "gru-bidirectional-hidden",
        lambda: nn.GRU(4, 5, bidirectional=True)(sequence(), tg.zeros(1, 2, 5)),
        ValueError,
        r"GRU: expected hx of shape \(2, 2, 5\)",
    ),
    Case("rnn-hidden-2d", lambda: nn.RNN(4, 5)(sequence(), tg.zeros(2, 5)), ValueError, r"RNN: expected hx"),
    Case(
        "rnn-unbatched-hidden-3d",
        lambda: nn.RNN(4, 5)(tg.zeros(6, 4), tg.zeros(1, 2, 5)),
        ValueError,
        r"RNN: expected hx of shape \(1, 5\)",
    ),
    Case(
        "rnn-nonlinearity", lambda: nn.RNN(4, 5, nonlinearity="sigmoid"), ValueError, r"nonlinearity.*sigmoid"
    ),
    Case("lstm-hidden-zero", lambda: nn.LSTM(4, 0), ValueError, r"LSTM: hidden_size must be a positive int"),
    Case("gru-input-negative", lambda: nn.GRU(-4, 5), ValueError, r"GRU: input_size"),
    Case("lstm-layers-zero", lambda: nn.LSTM(4, 5, num_layers=0), ValueError, r"LSTM: num_layers"),
    Case("lstm-dropout-nan", lambda: nn.LSTM(4, 5, dropout=NAN), ValueError, r"LSTM: dropout.*nan"),
    Case("lstm-dropout-two", lambda: nn.LSTM(4, 5, dropout=2), ValueError, r"LSTM: dropout.*2"),
    Case(
        "lstm-cell-hidden",
        lambda: nn.LSTMCell(4, 5)(tg.zeros(2, 4), (tg.zeros(2, 4), tg.zeros(2, 5))),
        ValueError,
        r"LSTMCell: expected h of shape \(2, 5\)",
    ),
    Case(
        "lstm-cell-input", lambda: nn.LSTMCell(4, 5)(tg.zeros(2, 3)), ValueError, r"LSTMCell: expected input"
    ),
    Case(
        "gru-cell-hidden",
        lambda: nn.GRUCell(4, 5)(tg.zeros(2, 4), tg.zeros(3, 5)),
        ValueError,
        r"GRUCell: .*hx",
    ),
    Case(
        "rnn-cell-hidden",
        lambda: nn.RNNCell(4, 5)(tg.zeros(2, 4), tg.zeros(2, 6)),
        ValueError,
        r"RNNCell: .*hx",
    ),
    Case(
        "rnn-cell-rank", lambda: nn.RNNCell(4, 5)(tg.zeros(1, 2, 4)), ValueError, r"RNNCell: expected input"
    ),
    # ---- losses --------------------------------------------------------------------------------------
    Case(
        "ce-target-high",
        lambda: F.cross_entropy(x34(), tg.tensor([0, 1, 4])),
        IndexError,
        r"target 4.*4 classes",
    ),
    Case(
        "ce-target-negative", lambda: F.cross_entropy(x34(), tg.tensor([0, -1, 1])), IndexError, r"target -1"
    ),
    Case(
        "ce-target-float",
        lambda: F.cross_entropy(x34(), tg.tensor([0.0, 1.0, 2.0])),
        TypeError,
        r"target must",
    ),
    Case(
        "ce-target-shape",
        lambda: F.cross_entropy(x34(), tg.tensor([0, 1])),
        ValueError,
        r"target must have shape",
    ),
    Case(
        "ce-target-shape-3d",
        lambda: F.cross_entropy(tg.zeros(2, 4, 5), tg.zeros(2, 4, dtype=tg.int64)),
        ValueError,
        r"target must have shape \(2, 5\)",
    ),
    Case(
        "ce-int-logits",
        lambda: F.cross_entropy(tg.tensor([[1, 2]]), tg.tensor([0])),
        TypeError,
        r"input must be",
    ),
    Case(
        "ce-scalar-logits",
        lambda: F.cross_entropy(tg.tensor(1.0), tg.tensor(0)),
        ValueError,
        r"class dimension",
    ),
    Case(
        "ce-reduction",
        lambda: F.cross_entropy(x34(), tg.tensor([0, 1, 2]), reduction="avg"),
        ValueError,
        r"'avg'",
    ),
    Case(
        "ce-smoothing-nan",
        lambda: F.cross_entropy(x34(), tg.tensor([0, 1, 2]), label_smoothing=NAN),
        ValueError,
        r"label_smoothing.*nan",
    ),
    Case(
        "ce-weight-shape",
        lambda: F.cross_entropy(x34(), tg.tensor([0, 1, 2]), weight=tg.ones(3)),
        ValueError,
        r"weight must have shape \(4,\)",
    ),
    Case(
        "ce-array-input", lambda: F.cross_entropy(np.ones((3, 4)), tg.tensor([0, 1, 2])), TypeError, r"input"
    ),
    Case(
        "nll-target-high", lambda: F.nll_loss(x34(), tg.tensor([0, 1, 9])), IndexError, r"nll_loss: target 9"
    ),
    Case(
        "nll-target-float", lambda: F.nll_loss(x34(), tg.tensor([0.5, 1, 2])), TypeError, r"nll_loss: target"
    ),
    Case("mse-shapes", lambda: F.mse_loss(x34(), tg.zeros(4, 3)), ValueError, r"mse_loss:.*do not broadcast"),
    Case(
        "mse-array",
        lambda: F.mse_loss(np.ones(3), tg.ones(3)),
        TypeError,
        r"mse_loss: input must be a Tensor",
    ),
    Case(
        "bce-shape",
        lambda: F.binary_cross_entropy_with_logits(x34(), tg.zeros(3)),
        ValueError,
        r"target shape \(3,\) must equal input shape \(3, 4\)",
    ),
    Case("softmax-F-dim", lambda: F.softmax(x34(), dim=3), IndexError, r"softmax: dim 3"),
    Case("log-softmax-F-dim", lambda: F.log_softmax(x34(), dim=-4), IndexError, r"log_softmax: dim -4"),
    # ---- optimizers and clipping -----------------------------------------------------------------------
    Case("sgd-lr-negative", lambda: optim.SGD([parameter()], lr=-1), ValueError, r"learning rate: -1"),
    Case("sgd-lr-nan", lambda: optim.SGD([parameter()], lr=NAN), TypeError, r"learning rate.*nan"),
    Case("sgd-momentum", lambda: optim.SGD([parameter()], lr=0.1, momentum=-0.5), ValueError, r"momentum"),
    Case("adam-beta-one", lambda: optim.Adam([parameter()], betas=(1.0, 0.9)), ValueError, r"beta.*index 0"),
    Case("adam-beta-nan", lambda: optim.Adam([parameter()], betas=(0.9, NAN)), TypeError, r"beta.*index 1"),
    Case("adam-eps", lambda: optim.Adam([parameter()], eps=-1e-8), ValueError, r"epsilon"),
    Case(
        "adam-weight-decay", lambda: optim.Adam([parameter()], weight_decay=-1), ValueError, r"weight_decay"
    ),
    Case("adam-lr-nan", lambda: optim.Adam([parameter()], lr=NAN), TypeError, r"learning rate"),
    Case("adamw-lr-negative", lambda: optim.AdamW([parameter()], lr=-0.1), ValueError, r"learning rate"),
    Case("rmsprop-alpha", lambda: optim.RMSprop([parameter()], alpha=-1.0), ValueError, r"alpha"),
    Case("adagrad-lr-nan", lambda: optim.Adagrad([parameter()], lr=NAN), TypeError, r"learning rate"),
    Case("adam-no-params", lambda: optim.Adam([]), ValueError, r"Adam got an empty parameter list"),
    Case("adam-single-tensor", lambda: optim.Adam(parameter()), TypeError, r"single Tensor; pass \[tensor\]"),
    Case(
        "adam-non-leaf", lambda: optim.Adam([parameter() * 2]), ValueError, r"non-leaf Tensor \(parameter 0\)"
    ),
    Case(
        "adam-int-param", lambda: optim.Adam([tg.tensor([1, 2])]), TypeError, r"parameter 0 has dtype int64"
    ),
    Case(
        "adam-duplicate",
        lambda: (lambda p: optim.Adam([p, p]))(parameter()),
        ValueError,
        r"parameter 1 appears",
    ),
    Case(
        "sgd-grad-shape",
        lambda: stepped(optim.SGD, tg.ones(1), lr=1.0),
        RuntimeError,
        r"SGD: a gradient.*\(1,\)",
    ),
    Case(
        "adam-grad-shape", lambda: stepped(optim.Adam, tg.ones(4)), RuntimeError, r"Adam: a gradient.*\(4,\)"
    ),
    Case(
        "optimizer-state-dict",
        lambda: optim.SGD([parameter()], lr=0.1).load_state_dict({"x": 1}),
        ValueError,
        r"SGD\.load_state_dict: expected a dict with keys 'state' and 'param_groups'",
    ),
    Case("clip-nan", lambda: nn.utils.clip_grad_norm_([parameter()], NAN), ValueError, r"max_norm.*nan"),
    Case("clip-negative", lambda: nn.utils.clip_grad_norm_([parameter()], -1.0), ValueError, r"max_norm.*-1"),
    Case("clip-norm-type", lambda: nn.utils.clip_grad_norm_([parameter()], 1.0, 0), ValueError, r"norm_type"),
    Case(
        "clip-array",
        lambda: nn.utils.clip_grad_norm_([np.ones(2)], 1.0),
        TypeError,
        r"parameter 0 is a ndarray",
    ),
    Case(
        "clip-value-negative",
        lambda: nn.utils.clip_grad_value_([parameter()], -1.0),
        ValueError,
        r"clip_value",
    ),
    # ---- saving, truncated BPTT, data and analysis helpers ---------------------------------------------
    Case(
        "save-object",
        lambda: tg.save({"a": object()}, "unused.npz"),
        TypeError,
        r"save: state\['a'\] is a object",
    ),
    Case(
        "save-directory",
        lambda: tg.save({"a": np.ones(1)}, os.getcwd()),
        IsADirectoryError,
        r"save:.*directory",
    ),
    Case(
        "save-missing-dir",
        lambda: tg.save({}, "/no/such/dir/x.npz"),
        FileNotFoundError,
        r"save:.*does not exist",
    ),
    Case("load-missing", lambda: tg.load("no-such-file.npz"), FileNotFoundError, r"load: no such file"),
    Case("tbptt-k1", lambda: bptt.TBPTT(nn.LSTM(4, 5), F.mse_loss, k1=0, k2=1), ValueError, r"TBPTT: k1"),
    Case(
        "tbptt-k2-float",
        lambda: bptt.TBPTT(nn.LSTM(4, 5), F.mse_loss, k1=2, k2=2.5),
        ValueError,
        r"TBPTT: k2",
    ),
    Case(
        "tbptt-window-k2", lambda: bptt.TBPTT(nn.LSTM(4, 5), F.mse_loss, k1=4, k2=2), ValueError, r"k2 >= k1"
    ),
    Case(
        "tbptt-semantics",
        lambda: bptt.TBPTT(nn.LSTM(4, 5), F.mse_loss, k1=1, k2=1, semantics="x"),
        ValueError,
        r"TBPTT: semantics",
    ),
    Case(
        "tbptt-steps-mismatch",
        lambda: next(
            bptt.TBPTT(nn.RNN(2, 3), F.mse_loss, 2, 2).updates(tg.zeros(5, 1, 2), tg.zeros(4, 1, 3))
        ),
        ValueError,
        r"TBPTT: inputs have 5 steps on axis 0 but targets 4",
    ),
    Case(
        "tbptt-no-time-axis",
        lambda: next(bptt.TBPTT(nn.RNN(2, 3), F.mse_loss, 2, 2).updates(tg.zeros(()), tg.zeros(()))),
        ValueError,
        r"TBPTT: inputs \(\) and targets \(\) need a time axis",
    ),
    Case(
        "state-gradients-input-size",
        lambda: gradflow.state_gradients(nn.RNN(2, 3), F.mse_loss, tg.zeros(5, 1, 7), tg.zeros(5, 1, 3)),
        ValueError,
        r"RNN: input\.size\(-1\) must be equal to input_size: expected 2, got 7",
    ),
    Case(
        "jacobian-products-input-size",
        lambda: gradflow.jacobian_products(nn.RNN(2, 3), tg.zeros(5, 1, 7)),
        ValueError,
        r"RNN: input\.size\(-1\)",
    ),
    Case(
        "ledger-target-steps",
        lambda: gradflow.contribution_ledger(nn.RNN(2, 3), F.mse_loss, tg.zeros(5, 1, 2), tg.zeros(4, 1, 3)),
        ValueError,
        r"mse_loss: input shape \(5, 1, 3\) and target shape \(4, 1, 3\)",
    ),
    Case(
        "checkpoint-segment-zero",
        lambda: checkpoint.checkpoint_sequence(
            lambda x, h: (x, h), tg.zeros(4, 2), tg.zeros(2), segment_size=0
        ),
        ValueError,
        r"checkpoint_sequence: segment_size must be a positive int, got 0",
    ),
    Case(
        "checkpoint-no-inputs",
        lambda: checkpoint.checkpoint_sequence(lambda x, h: (x, h), [], tg.zeros(2)),
        TypeError,
        r"checkpoint_sequence: inputs must be",
    ),
    Case(
        "effective-memory-empty", lambda: gradflow.effective_memory([], 0.01), ValueError, r"no norms given"
    ),
    Case("copy-task-delay", lambda: data.copy_task(2, 5, delay=-1), ValueError, r"copy_task:.*delay.*-1"),
    Case("detach-hidden-list-of-str", lambda: bptt.detach_hidden(["h"]), TypeError, r"detach_hidden"),
    Case(
        "adding-problem-batch", lambda: data.adding_problem(-1, 5), ValueError, r"adding_problem.*batch_size"
    ),
    Case("copy-task-batch", lambda: data.copy_task(-1, 5), ValueError, r"copy_task:.*batch_size"),
    Case("batchify-zero", lambda: data.batchify(np.arange(10), 0), ValueError, r"batchify:.*batch_size=0"),
    Case(
        "batchify-too-many", lambda: data.batchify(np.arange(10), 20), ValueError, r"batchify:.*batch_size=20"
    ),
    Case(
        "chunks-zero",
        lambda: list(data.chunks(tg.zeros(5, 2), tg.zeros(5, 2), 0)),
        ValueError,
        r"chunks: length",
    ),
    Case(
        "num-chunks-zero", lambda: data.num_chunks(10, 0), ValueError, r"num_chunks: length must be positive"
    ),
    Case(
        "unigram-ids-range",
        lambda: data.unigram_bits_per_char(np.array([0, 5]), np.array([1]), 3),
        ValueError,
        r"unigram_bits_per_char: train_ids.*vocab_size=3",
    ),
    Case("split-text-nan", lambda: data.split_text("hello world", NAN), ValueError, r"valid_fraction.*nan"),
    Case("vocabulary-empty", lambda: data.CharVocabulary(""), ValueError, r"CharVocabulary"),
    Case("corpus-unknown", lambda: data.load_corpus("no-such-corpus"), FileNotFoundError, r"no-such-corpus"),
    Case(
        "effective-memory-nan",
        lambda: gradflow.effective_memory([1.0, 0.5], NAN),
        ValueError,
        r"fraction.*nan",
    ),
]


def _innermost_frame(error: BaseException) -> str:
    return traceback.extract_tb(error.__traceback__)[-1].filename


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_raises_a_clear_error_naming_the_argument(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a case might write lands outside the test's directory
    with pytest.raises(case.error, match=case.message) as info:
        case.call()
    # The package raised it (with its own message), not NumPy from deep inside an op.
    assert _innermost_frame(info.value).startswith(PACKAGE_DIR)
    assert list(tmp_path.iterdir()) == []


def test_every_case_has_its_own_name():
    ids = [case.id for case in CASES + DEVICE_CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


# ---- devices: two stand-in GPUs (tests/fake_cupy.py), so this runs without a GPU -------------------------


def _grad_on_cpu(optimizer_class: type, **options) -> None:
    p = nn.Parameter(tg.zeros(3, device="cuda"))
    p.grad = tg.ones(3)
    optimizer_class([p], **options).step()


SAME_DEVICE = r"expected all tensors on the same device, got tensors on"
DEVICE_CASES = [
    Case("add-cpu-cuda", lambda: tg.ones(2) + tg.ones(2, device="cuda"), RuntimeError, "Add: " + SAME_DEVICE),
    Case(
        "matmul-two-gpus",
        lambda: tg.ones(2, 2, device="cuda:0") @ tg.ones(2, 2, device="cuda:1"),
        RuntimeError,
        r"MatMul: .*cuda:0, cuda:1",
    ),
    Case(
        "cat-devices",
        lambda: tg.cat([tg.ones(2), tg.ones(2, device="cuda")]),
        RuntimeError,
        "Cat: " + SAME_DEVICE,
    ),
    Case("stack-devices", lambda: tg.stack([tg.ones(2), tg.ones(2, device="cuda")]), RuntimeError, "Stack: "),
    Case(
        "where-devices",
        lambda: tg.where(tg.ones(2) > 0, tg.ones(2, device="cuda"), tg.ones(2, device="cuda")),
        RuntimeError,
        "Where: " + SAME_DEVICE,
    ),
    Case(
        "gather-index-device",
        lambda: tg.ones(2, 2, device="cuda").gather(1, tg.tensor([[0], [1]])),
        RuntimeError,
        "Gather: " + SAME_DEVICE,
    ),
    Case("linear-devices", lambda: nn.Linear(2, 2).to("cuda")(tg.ones(1, 2)), RuntimeError, r"cpu, cuda:0"),
    Case(
        "lstm-input-device",
        lambda: nn.LSTM(2, 3).to("cuda")(tg.ones(4, 1, 2)),
        RuntimeError,
        r"LSTM: input is on cpu but the parameters are on cuda:0",
    ),
    Case(
        "lstm-state-device",
        lambda: nn.LSTM(2, 3)(tg.ones(4, 1, 2), (tg.zeros(1, 1, 3, device="cuda"), tg.zeros(1, 1, 3))),
        RuntimeError,
        r"cuda:0, cpu",
    ),
    Case(
        "gru-state-device",
        lambda: nn.GRU(2, 3)(tg.ones(4, 1, 2), tg.zeros(1, 1, 3, device="cuda")),
        RuntimeError,
        r"cuda:0, cpu",
    ),
    Case(
        "embedding-device",
        lambda: nn.Embedding(5, 2).to("cuda")(tg.tensor([1])),
        RuntimeError,
        r"embedding: input is on cpu but weight is on cuda:0",
    ),
    Case(
        "ce-target-device",
        lambda: F.cross_entropy(tg.ones(2, 3, device="cuda"), tg.tensor([0, 1])),
        RuntimeError,
        r"cross_entropy: input is on cuda:0 but target is on cpu",
    ),
    Case(
        "ce-weight-device",
        lambda: F.cross_entropy(tg.ones(2, 3), tg.tensor([0, 1]), weight=tg.ones(3, device="cuda")),
        RuntimeError,
        r"cross_entropy: input is on cpu but weight is on cuda:0",
    ),
    Case("mse-devices", lambda: F.mse_loss(tg.ones(2, device="cuda"), tg.ones(2)), RuntimeError, SAME_DEVICE),
    Case("adam-grad-device", lambda: _grad_on_cpu(optim.Adam), RuntimeError, r"Adam: a gradient on cpu"),
    Case("sgd-grad-device", lambda: _grad_on_cpu(optim.SGD, lr=0.1), RuntimeError, r"SGD: a gradient on cpu"),
    Case(
        "add-in-place-device",
        lambda: tg.zeros(2, device="cuda").add_(tg.ones(2)),
        RuntimeError,
        r"add_: expected a tensor on cuda:0, got one on cpu",
    ),
    Case(
        "missing-gpu-index", lambda: tg.zeros(2, device="cuda:5"), RuntimeError, r"cuda:5.*only 2 CUDA device"
    ),
]


@pytest.mark.parametrize("case", DEVICE_CASES, ids=[case.id for case in DEVICE_CASES])
def test_tensors_on_different_devices_raise_a_clear_error(case, monkeypatch):
    install(monkeypatch, device_count=2)
    with pytest.raises(case.error, match=case.message) as info:
        case.call()
    assert _innermost_frame(info.value).startswith(PACKAGE_DIR)


# ---- any dim: the right answer or an IndexError, never a wrong result ---------------------------------

DIM_OPS = {
    "sum": (lambda t, d: t.sum(d), lambda a, d: a.sum(axis=d)),
    "mean": (lambda t, d: t.mean(d), lambda a, d: a.mean(axis=d)),
    "amax": (lambda t, d: t.amax(d), lambda a, d: a.max(axis=d)),
    "argmax": (lambda t, d: t.argmax(d), lambda a, d: a.argmax(axis=d)),
    "softmax": (
        lambda t, d: t.softmax(d),
        lambda a, d: (
            np.exp(a - a.max(axis=d, keepdims=True))
            / np.exp(a - a.max(axis=d, keepdims=True)).sum(axis=d, keepdims=True)
        ),
    ),
    "unsqueeze": (lambda t, d: t.unsqueeze(d), None),
    "squeeze": (lambda t, d: t.squeeze(d), None),
    "flatten": (lambda t, d: t.flatten(d), None),
    "cat": (lambda t, d: tg.cat([t, t], d), lambda a, d: np.concatenate([a, a], axis=d)),
    "stack": (lambda t, d: tg.stack([t, t], d), None),
    "unbind": (lambda t, d: tg.stack(t.unbind(d)), lambda a, d: np.stack(list(np.moveaxis(a, d, 0)))),
    "transpose": (lambda t, d: t.transpose(0, d), lambda a, d: np.swapaxes(a, 0, d)),
}
# Ops that take a position for a new axis accept one more dim than the tensor has.
NEW_AXIS = {"unsqueeze": 1, "stack": 1}
REFERENCE_BY_NUMPY = {
    "unsqueeze": lambda a, d: np.expand_dims(a, d),
    "squeeze": lambda a, d: np.squeeze(a, d) if a.shape[d] == 1 else a,
    "flatten": lambda a, d: a.reshape(*a.shape[:d], -1) if a.ndim else a.reshape(1),
    "stack": lambda a, d: np.stack([a, a], axis=d),
}


@given(
    op=st.sampled_from(sorted(DIM_OPS)),
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    dim=st.integers(-5, 5),
)
def test_any_dim_gives_numpys_answer_or_an_index_error(op, shape, dim):
    array = np.random.default_rng(len(shape)).standard_normal(shape)
    call, reference = DIM_OPS[op]
    reference = reference or REFERENCE_BY_NUMPY[op]
    rank = len(shape) + NEW_AXIS.get(op, 0)
    if not -rank <= dim < rank:
        with pytest.raises(IndexError, match=rf"dim {dim} is out of range"):
            call(tg.tensor(array), dim)
        return
    np.testing.assert_allclose(call(tg.tensor(array), dim).numpy(), reference(array, dim % rank), rtol=1e-12)
