"""The engine's measured speed-ups, each next to the plain code it is equivalent to.

Read ``autograd.py`` first: the walk there is complete without this module, which only changes how
some gradients are represented while the walk runs, never their values. A speed-up stays here only
while the benchmark shows it earns at least 5 % at the medium or large size of
``benchmarks/bench_rnn.py`` (see docs/performance.md, "Engine rewrite"); each has a test in
``tests/test_fastpaths.py`` that it gives the plain path's gradients.

Ops call these by name (``fastpaths.outer_product(a, g)``), never by reading engine flags.

The one speed-up kept:

* :func:`outer_product` -- the weight gradient aᵀ g of a matrix product, summed lazily (for weights
  of at least ``DEFER_MIN_BYTES``). Plain code:
  ``return a.T @ g``. A recurrent weight used at T steps then receives T factor pairs that the walk
  multiplies once, [a_1; ...; a_T]ᵀ [g_1; ...; g_T], instead of T (M, N) products added one by one
  (what hand-written BPTT does after its loop).
"""

from __future__ import annotations

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
            out = lefts[0].T @ rights[0]
        else:
            xp = backend.get_array_module(rights[0])
            out = xp.concatenate(lefts).T @ xp.concatenate(rights)
        if self.dense is not None:
            out = out + self.dense
        return out


# Below this size of the (M, N) gradient, adding the per-use products while they sit in the CPU's
# cache beats one product of concatenated factors (measured with benchmarks/bench_rnn.py: the tanh RNN
# at the medium size, a 256 KB dW_hh, was 19 % slower deferred; the 768 KB-4 MB weights of the medium
# LSTM and GRU and the large RNN were 17-20 % and 6 % faster).
DEFER_MIN_BYTES = 512 * 1024


def outer_product(a: Any, g: Any) -> Any:
    """aᵀ g for matrices a (B, M) and g (B, N), summed lazily: the (M, N) weight gradient of ``a @ w``.

    Plain equivalent: ``a.T @ g``. For a gradient of at least ``DEFER_MIN_BYTES`` returns an
    :class:`OuterProductSum` that the walk sums with the other uses of the same weight and multiplies
    out once (:func:`dense`); smaller ones are computed at once.
    """
    if a.shape[-1] * g.shape[-1] * g.itemsize < DEFER_MIN_BYTES:
        return a.T @ g
    return OuterProductSum(a, g)


def dense(grad: Any) -> Any:
    """``grad`` as an array: a deferred :class:`OuterProductSum` is multiplied out, an array is returned
    as it is. Plain equivalent: the identity (with ``outer_product`` written as ``a.T @ g``)."""
    return grad.materialize() if type(grad) is OuterProductSum else grad
