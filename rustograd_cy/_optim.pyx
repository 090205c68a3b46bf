"""The compiled half of rustograd_cy.optim: checks at the door, then one C loop (src/rg_optim.c)."""
from rustograd_cy._ctape cimport RG_LEAF, rg_index, rg_tape
from rustograd_cy._tape cimport Tape, TapeTerm

import numpy as np

from rustograd_cy.errors import TapeMismatchError, TermWasNotValueError, ValueNotDefinedError


cdef extern from "rg_optim.h" nogil:
    void rg_sgd_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double momentum,
                     double *velocity)
    void rg_adam_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double b1, double b2,
                      double eps, double c1, double c2, double *m, double *v)


def gather(params):
    """(tape, int32 array of node indices) of a non-empty list of leaves of one tape."""
    params = list(params)
    if not params:
        raise ValueError("an optimizer needs at least one parameter")
    cdef TapeTerm p
    cdef Tape tape = None
    for obj in params:
        if type(obj) is not TapeTerm:
            raise TypeError(f"parameters are leaves made by tape.term(), not {type(obj).__name__}")
        p = <TapeTerm>obj
        if tape is None:
            tape = p.tape
        elif p.tape is not tape:
            raise TapeMismatchError("all of an optimizer's parameters must be on one tape")
        if p.tape.c.op[p.index] != RG_LEAF:
            raise TermWasNotValueError(
                f"parameters are leaves made by tape.term(); {p.name!r} (node {p.index}) is not one"
            )
    idx = np.array([(<TapeTerm>obj).index for obj in params], dtype=np.int32)
    if len(np.unique(idx)) != len(idx):
        raise ValueError("a parameter is listed twice: it would be updated twice per step")
    return tape, idx


cdef int _ready(Tape tape, int[::1] idx) except -1:
    """Gradients exist and every parameter holds a number (not a batch of them)."""
    tape._check_idle()
    if tape._grad_output < 0:
        raise ValueNotDefinedError("step() needs gradients: call loss.backprop() first")
    if tape._array_leaves and not tape._array_leaves.isdisjoint(np.asarray(idx).tolist()):
        raise ValueError("a parameter holds an array (set() it to a number): parameters are shared "
                         "by every sample of a batch")
    return 0


def sgd_step(Tape tape, int[::1] idx, double lr, double momentum, double[::1] velocity):
    """x -= lr * (momentum-smoothed) gradient for each parameter; values become stale."""
    _ready(tape, idx)
    with nogil:
        rg_sgd_step(&tape.c, <rg_index *>&idx[0], <rg_index>idx.shape[0], lr, momentum,
                    &velocity[0] if velocity.shape[0] else NULL)
    tape._next_epoch()


def adam_step(Tape tape, int[::1] idx, double lr, double b1, double b2, double eps, double c1,
              double c2, double[::1] m, double[::1] v):
    """One Adam update of every parameter (bias corrections c1, c2 given); values become stale."""
    _ready(tape, idx)
    with nogil:
        rg_adam_step(&tape.c, <rg_index *>&idx[0], <rg_index>idx.shape[0], lr, b1, b2, eps, c1, c2,
                     &m[0], &v[0])
    tape._next_epoch()
