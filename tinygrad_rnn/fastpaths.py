"""The engine's measured speed-ups, each next to the plain code it is equivalent to.

Read ``autograd.py`` first: the walk there is complete without this module, which only changes how
some gradients are represented while the walk runs (and how the LSTM cell's NumPy arithmetic is
arranged), never their values. A speed-up stays here only
while the benchmark shows it earns at least 5 % at the medium or large size of
``benchmarks/bench_rnn.py`` or in the main job's update (``benchmarks/bench_charlm.py``; see
docs/performance.md, "Engine rewrite" and "The main job's update"); each has a test in
``tests/test_fastpaths.py`` or ``tests/test_fastpaths_lstm.py`` that it gives the plain path's gradients.

Ops call these by name (``fastpaths.outer_product(a, g)``), never by reading engine flags.

The speed-ups kept:

* :func:`outer_product` -- the weight gradient aᵀ g of a matrix product, summed lazily (for weights
  of at least ``DEFER_MIN_BYTES``). Plain code:
  ``return a.T @ g``. A recurrent weight used at T steps then receives T factor pairs that the walk
  multiplies once, [a_1; ...; a_T]ᵀ [g_1; ...; g_T], instead of T (M, N) products added one by one
  (what hand-written BPTT does after its loop). It is multiplied out as (gᵀa)ᵀ
  (:func:`transposed_product`), so that a weight used transposed gets a row-major ``.grad``: 7-9 %
  off the main job's model at H = 256 x 2 and 512 (Adam no longer runs strided).
* :func:`lstm_cell_forward` / :func:`lstm_cell_backward` -- ``LSTMCellPointwise`` on NumPy. Plain
  code: the cell's formulas with one array per gate and σ(a) = ½(1 + tanh(a/2)). Here the gates sit
  gate-major in one contiguous (4, B, H) buffer and one ``exp`` evaluates all four nonlinearities;
  6 % off the main job's update at H = 128.
"""

from __future__ import annotations

import contextlib
from typing import Any

from . import backend


class OuterProductSum:
    """A gradient Σ_k a_kᵀ g_k (plus an optional dense term) kept as its factors until it is needed.

    Plain equivalent: the array ``sum(a.T @ g for a, g in pairs) + dense``. Adding an array or
    another ``OuterProductSum`` to it extends it in place: only the backward walk ever holds one
    (it is made dense by :func:`dense` before any op's backward, hook or user sees it), so no one
    else can observe the mutation.
    """

    __slots__ = ("dense", "lefts", "rights", "shape")
    __array_ufunc__ = None  # ndarray + this returns NotImplemented, so Python calls our __radd__

    def __init__(self, left: Any, right: Any) -> None:
        self.lefts, self.rights, self.dense = [left], [right], None
        self.shape = (left.shape[-1], right.shape[-1])

    def __add__(self, other: Any) -> OuterProductSum:
        if type(other) is OuterProductSum:
            self.lefts += other.lefts
            self.rights += other.rights
            other = other.dense
            if other is None:
                return self
        self.dense = other if self.dense is None else self.dense + other
        return self

    __radd__ = __add__

    def materialize(self) -> Any:
        """The sum as one array: one product of the stacked factors, plus the dense term."""
        lefts, rights = self.lefts, self.rights
        if len(lefts) == 1:
            out = transposed_product(lefts[0], rights[0])
        else:
            xp = backend.get_array_module(rights[0])
            out = transposed_product(xp.concatenate(lefts), xp.concatenate(rights))
        if self.dense is not None:
            out = out + self.dense
        return out


# Below this size of the (M, N) gradient, adding the per-use products while they sit in the CPU's
# cache beats one product of concatenated factors (measured with benchmarks/bench_rnn.py: the tanh RNN
# at the medium size, a 256 KB dW_hh, was 19 % slower deferred; the 768 KB-4 MB weights of the medium
# LSTM and GRU and the large RNN were 17-20 % and 6 % faster).
DEFER_MIN_BYTES = 512 * 1024
# ... and below this size too: a 16 KB dW_hh (the small tanh RNN of bench_rnn, H = 64, B = 8) is summed
# faster from one product of the concatenated factors than from 50 tiny products and their additions,
# whose per-call cost dominates (tape / hand-written 2.07 -> 1.91 in process, 30 rounds).
DEFER_BELOW_BYTES = 64 * 1024
# ... and from this size when the gradient is at least three times as wide as tall: the gate weights of
# LSTM and GRU layers, (H, 4H) and (H, 3H), used at every step. Measured in process (40 interleaved
# rounds of bench_charlm's update): deferring the main job's (128, 512) dW_hh, 256 KB, took 0.951x the
# time (0.93-0.99), the GRU's (128, 384) 0.980x; a square (256, 256) tanh RNN weight of the same size
# was slower deferred (bench_rnn medium, tape / hand-written 0.86-0.91 -> 1.10), hence the shape rule.
DEFER_GATES_MIN_BYTES = 128 * 1024


def outer_product(a: Any, g: Any) -> Any:
    """aᵀ g for matrices a (B, M) and g (B, N), summed lazily: the (M, N) weight gradient of ``a @ w``.

    Plain equivalent: ``a.T @ g``. For a gradient of at least ``DEFER_MIN_BYTES``, under
    ``DEFER_BELOW_BYTES``, or a gate weight's (N ≥ 3M) of at least ``DEFER_GATES_MIN_BYTES``, returns an
    :class:`OuterProductSum` that the walk sums with the other uses of the same weight and multiplies
    out once (:func:`dense`); the others are computed at once.
    """
    rows, columns = a.shape[-1], g.shape[-1]
    size = rows * columns * g.itemsize
    if DEFER_BELOW_BYTES <= size < DEFER_MIN_BYTES and (size < DEFER_GATES_MIN_BYTES or columns < 3 * rows):
        return a.T @ g
    return OuterProductSum(a, g)


def transposed_product(a: Any, g: Any) -> Any:
    """aᵀ g computed as (gᵀ a)ᵀ: the same values, laid out column-major.

    Plain equivalent: ``a.T @ g``. The weights of ``nn.Linear`` and the recurrent layers are used
    transposed (PyTorch's (out, in) layout, y = x wᵀ), so their gradient is the transpose of this one:
    computed this way it reaches ``.grad`` row-major like the weight, and the optimizer's elementwise
    update runs on contiguous arrays (strided, Adam took 32 ms instead of 11 ms per update of the main
    job's model at H = 512). Used for the deferred (large) products only: the small per-step ones,
    summed step by step, measured 2 % slower this way on the tanh RNN at H = 128.
    """
    return (g.T @ a).T


def dense(grad: Any) -> Any:
    """``grad`` as an array: a deferred :class:`OuterProductSum` is multiplied out, an array is returned
    as it is. Plain equivalent: the identity (with ``outer_product`` written as ``a.T @ g``)."""
    return grad.materialize() if type(grad) is OuterProductSum else grad


# ---- the LSTM cell's elementwise step on NumPy, in few passes ------------------------------------------
#
# Measured per step at B = 32, H = 128, float32: NumPy's tanh costs about 7 ns an element, exp about 4,
# a multiply 0.25; an in-place op on a (B, H) block of a (B, 4H) array costs 2.5-3x the same op on a
# contiguous (B, H) array. So the cell works on its gates laid out gate-major, (4, B, H), one contiguous
# array per gate, and evaluates the three sigmoids and tanh(a_g) with one exp over all four blocks.


def lstm_cell_forward(gates: Any, c_prev: Any) -> tuple:
    """The LSTM cell's elementwise forward, as ``fused_ops.LSTMCellPointwise`` defines it.

    Plain equivalent (PyTorch's gate order i, f, g, o)::

        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o);  c' = f c + i g;  h' = o tanh(c')

    with σ(a) = 1 / (1 + exp(-a)) and tanh(a) = 2 σ(2a) - 1, so that one ``exp`` call evaluates all
    four gates (exp overflowing to inf gives σ = 0 exactly, as it should). ``gates`` (..., 4H),
    ``c_prev`` (..., H). Returns ``(h', c', activations, tanh(c'))``, ``activations`` (4, N, H) the
    gates i, f, g, o over the N = prod(...) rows, each block contiguous.
    """
    xp = backend.get_array_module(gates)
    hidden = c_prev.shape[-1]
    lead = c_prev.shape[:-1]
    activations = xp.empty((4, gates.size // (4 * hidden), hidden), dtype=gates.dtype)
    # -a, gate-major: one pass that also makes every gate's block contiguous
    xp.negative(gates.reshape(-1, 4, hidden).transpose(1, 0, 2), out=activations)
    activations[2] *= 2
    with _overflow_ignored(xp):
        xp.exp(activations, out=activations)
    activations += 1
    xp.reciprocal(activations, out=activations)
    cell_gate = activations[2]
    cell_gate *= 2
    cell_gate -= 1
    in_gate, forget_gate, out_gate = activations[0], activations[1], activations[3]
    c_new = forget_gate * c_prev.reshape(in_gate.shape)
    product = in_gate * cell_gate
    c_new += product
    tanh_c = xp.tanh(c_new)
    h_new = xp.multiply(out_gate, tanh_c, out=product)
    return h_new.reshape(*lead, hidden), c_new.reshape(*lead, hidden), activations, tanh_c


def lstm_cell_backward(activations: Any, c_prev: Any, tanh_c: Any, grad_h: Any, grad_c: Any) -> tuple:
    """The LSTM cell's elementwise backward, from what :func:`lstm_cell_forward` returned.

    Plain equivalent (``fused_ops.LSTMCellPointwise.backward``), with gh, gc the gradients of h', c'
    (``None`` for zero)::

        dc = gc + gh o (1 - tanh²c');  da_i = dc g i(1 - i);  da_f = dc c f(1 - f);
        da_g = dc i (1 - g²);  da_o = gh tanh(c') o(1 - o);  dc_prev = dc f

    Returns ``(grad_gates (..., 4H), grad_c_prev (..., H))``. Every product runs on contiguous
    gate-major blocks; one transposing copy lays the four gradients out as (..., 4H).
    """
    xp = backend.get_array_module(activations)
    hidden = tanh_c.shape[-1]
    shape = c_prev.shape
    rows = tanh_c.shape
    in_gate, forget_gate, cell_gate, out_gate = activations
    grad = xp.empty_like(activations)  # gate-major gradients of a_i, a_f, a_g, a_o
    if grad_h is None:
        grad_c_total = grad_c.reshape(rows).copy()
        grad[3] = 0
    else:
        grad_h = grad_h.reshape(rows)
        grad_c_total = xp.multiply(tanh_c, tanh_c)
        xp.subtract(1, grad_c_total, out=grad_c_total)
        grad_c_total *= out_gate
        grad_c_total *= grad_h
        if grad_c is not None:
            grad_c_total += grad_c.reshape(rows)
        xp.subtract(1, out_gate, out=grad[3])
        grad[3] *= out_gate
        grad[3] *= tanh_c
        grad[3] *= grad_h
    xp.subtract(1, activations[:2], out=grad[:2])  # i(1 - i) and f(1 - f) in one pass
    grad[:2] *= activations[:2]
    grad[:2] *= grad_c_total
    grad[0] *= cell_gate
    grad[1] *= c_prev.reshape(rows)
    xp.multiply(cell_gate, cell_gate, out=grad[2])
    xp.subtract(1, grad[2], out=grad[2])
    grad[2] *= grad_c_total
    grad[2] *= in_gate
    grad_c_total *= forget_gate
    grad_gates = grad.transpose(1, 0, 2).reshape(*shape[:-1], 4 * hidden)
    return grad_gates, grad_c_total.reshape(shape)


def _overflow_ignored(xp: Any) -> Any:
    """NumPy's ``errstate`` ignoring exp's overflow and underflow (exp(-a) = inf is the intended limit
    σ(a) = 0, exp(-a) = 0 the limit σ(a) = 1); a no-op
    context for other array modules, which do not warn."""
    return (
        backend.np.errstate(over="ignore", under="ignore") if xp is backend.np else contextlib.nullcontext()
    )
