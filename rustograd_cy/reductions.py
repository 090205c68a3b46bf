"""Reductions over the samples of a batch: `rg.mean(term)` and `rg.sum(term)`.

On a batched tape (a leaf holds an array of B samples) the result is one number for the whole
batch, a uniform node: `loss = rg.mean(per_sample) + 1e-4 * penalty` counts the penalty once, as
in PyTorch or micrograd; `loss.eval()` returns a float and `loss.backprop()` differentiates the
loss itself (not its sum over the samples), so an array leaf's `.grad` holds each sample's share
(d loss / d x[s]) and a shared leaf's `.grad` is d loss / d w.

A tape in scalar mode is a batch of one sample: there both nodes are the identity (value and
gradient are the term's), so a graph built before the data arrives means the same thing once it
is replayed over a batch. The scalar-only kinds (`Term`, `RcTerm`) have no batches: for them
`rg.mean(x)` and `rg.sum(x)` return `x` itself.

>>> import numpy as np, rustograd_cy as rg
>>> tape = rg.Tape()
>>> x, w = tape.term("x", 0.0), tape.term("w", 2.0)
>>> loss = rg.mean(w * x) + w * w
>>> x.set(np.array([1.0, 2.0, 3.0]))
>>> loss.eval()
8.0
>>> loss.backprop(); w.grad, x.grad
(6.0, array([0.66666667, 0.66666667, 0.66666667]))
"""
from rustograd_cy._nodes import RcTerm, Term
from rustograd_cy._ops import OP_CODES
from rustograd_cy._tape import TapeTerm


def _reduce(op, term, fname):
    if type(term) is TapeTerm:
        tape = term.tape
        return tape._term_at(tape._push_node(OP_CODES[op], term.index, term.index))
    if isinstance(term, (Term, RcTerm)):
        return term  # a scalar-only kind: one sample, so the reduction is the identity
    raise TypeError(
        f"rg.{fname}() takes a term (a TapeTerm, or a Term / RcTerm), not {type(term).__name__}; "
        f"to reduce numbers or arrays use numpy.{fname}()"
    )


def mean(term):
    """The mean of `term` over the samples of a batch: a new node, one number for the batch.

    In scalar mode (and for Term / RcTerm) it equals `term` (a batch of one sample).
    """
    return _reduce("batch_mean", term, "mean")


def sum(term):  # noqa: A001  (rg.sum, like numpy.sum)
    """The sum of `term` over the samples of a batch: a new node, one number for the batch.

    A term that is the same for every sample sums to B times its value. In scalar mode (and for
    Term / RcTerm) it equals `term`.
    """
    return _reduce("batch_sum", term, "sum")
