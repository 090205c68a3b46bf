"""Optimizers (exported as rustograd_cy.optim): checks at the door, then one C loop (src/rg_optim.c)."""
from libc.stdint cimport uint64_t
from rustograd_cy._ctape cimport RG_LEAF, rg_index, rg_tape
from rustograd_cy._tape cimport Tape, TapeTerm

import numpy as np

from rustograd_cy.errors import TapeMismatchError, TermWasNotValueError, ValueNotDefinedError


cdef extern from "rg_optim.h" nogil:
    void rg_sgd_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double momentum,
                     double *velocity, const double *grads)
    void rg_adam_step(rg_tape *t, const rg_index *idx, rg_index n, double lr, double b1, double b2,
                      double eps, double c1, double c2, double *m, double *v, const double *grads)


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


cdef double[::1] _given_grads(object grads, Py_ssize_t n):
    """step(grads=...) as float64, one finite-or-not number per parameter (None: the tape's own)."""
    if grads is None:
        return None
    arr = np.asarray(grads)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"step()'s grads are real numbers, one per parameter; got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(
            f"step()'s grads hold one number per parameter, in the order the optimizer got them: "
            f"shape ({n},), not {arr.shape}"
        )
    return np.ascontiguousarray(arr, dtype=np.float64)


cdef int _ready(Tape tape, int[::1] idx, bint own_grads, uint64_t *checked) except -1:
    """Gradients exist and every parameter holds a number (not a batch of them). `checked`: the
    tape's split into varying and uniform nodes (Tape._split) the parameters were last found
    numbers in; the scan of them is skipped until set() changes which leaves hold arrays."""
    cdef Py_ssize_t k
    tape._check_idle()
    if own_grads and tape._grad_output < 0:
        raise ValueNotDefinedError("step() needs gradients: call loss.backprop() first")
    if tape.b.size and checked[0] != tape._split:
        for k in range(idx.shape[0]):
            if idx[k] < tape.b.rows and tape.b.fixed[idx[k]]:
                raise ValueError(
                    f"parameter {tape._names[idx[k]]!r} holds an array (set() it to a number): "
                    f"parameters are shared by every sample of a batch"
                )
        checked[0] = tape._split
    return 0


# The docstring opens with the constructor's signature in CPython's text-signature form
# (`Name(args)\n--\n`), which inspect.signature(), help() and the API reference read.
cdef class SGD:
    """SGD(params, lr, momentum=0.0)\n--\n
    Gradient descent with optional momentum, PyTorch's form: v = momentum * v + g; x -= lr * v.

    `params` are leaves of one tape; `lr` may be changed between steps (a schedule).
    """
    cdef readonly Tape tape         # the parameters' tape
    cdef int[::1] _idx              # their node indices
    cdef uint64_t _checked          # the tape's split they were last checked in (_ready)
    cdef double[::1] _velocity      # one per parameter (empty without momentum)
    cdef public double lr
    cdef readonly double momentum

    def __init__(self, params, double lr, double momentum=0.0):
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        self.tape, self._idx = gather(params)
        self.lr, self.momentum = lr, momentum
        self._velocity = np.zeros(self._idx.shape[0] if momentum else 1)

    def __reduce__(self):
        # Written out so that Cython generates no __reduce_cython__ (help() would list it).
        raise TypeError(f"a {type(self).__name__} does not pickle: pickle its tape, and make a new "
                        "optimizer over the loaded parameters")

    def step(self, grads=None):
        """Update every parameter from its gradient of the last backprop(); values become stale.

        `grads`, if given, is used instead: one number per parameter, in the order the optimizer got
        them (gradients summed outside this tape, as `rustograd_cy.dask.fit` does across workers).
        """
        cdef double[::1] given = _given_grads(grads, self._idx.shape[0])
        cdef const double *g = NULL if given is None else &given[0]
        _ready(self.tape, self._idx, given is None, &self._checked)
        self.tape._take()  # hold the tape: a push from another thread would move value[]
        try:
            with nogil:
                rg_sgd_step(&self.tape.c, <rg_index *>&self._idx[0], <rg_index>self._idx.shape[0],
                            self.lr, self.momentum, &self._velocity[0], g)
        finally:
            self.tape._busy = False
        self.tape._next_epoch()


cdef class Adam:
    """Adam(params, lr=0.001, betas=(0.9, 0.999), eps=1e-08)\n--\n
    Adam, PyTorch's form (bias-corrected): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
    x -= lr * m^ / (sqrt(v^) + eps), over leaves of one tape."""
    cdef readonly Tape tape         # the parameters' tape
    cdef int[::1] _idx              # their node indices
    cdef uint64_t _checked          # the tape's split they were last checked in (_ready)
    cdef double[::1] _m, _v         # first and second moments, one per parameter
    cdef public double lr, eps
    cdef readonly tuple betas
    cdef readonly long steps        # steps taken, for the bias corrections

    def __init__(self, params, double lr=1e-3, betas=(0.9, 0.999), double eps=1e-8):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.tape, self._idx = gather(params)
        self.lr, self.betas, self.eps = lr, (b1, b2), eps
        self._m = np.zeros(self._idx.shape[0])
        self._v = np.zeros(self._idx.shape[0])
        self.steps = 0

    def __reduce__(self):
        # Written out so that Cython generates no __reduce_cython__ (help() would list it).
        raise TypeError(f"a {type(self).__name__} does not pickle: pickle its tape, and make a new "
                        "optimizer over the loaded parameters")

    def step(self, grads=None):
        """Update every parameter from its gradient of the last backprop(); values become stale.

        `grads`, if given, is used instead: one number per parameter, in the order the optimizer got
        them (gradients summed outside this tape, as `rustograd_cy.dask.fit` does across workers).
        """
        cdef double b1 = self.betas[0], b2 = self.betas[1]
        cdef double[::1] given = _given_grads(grads, self._idx.shape[0])
        cdef const double *g = NULL if given is None else &given[0]
        _ready(self.tape, self._idx, given is None, &self._checked)
        self.steps += 1
        self.tape._take()  # hold the tape: a push from another thread would move value[]
        try:
            with nogil:
                rg_adam_step(&self.tape.c, <rg_index *>&self._idx[0], <rg_index>self._idx.shape[0],
                             self.lr, b1, b2, self.eps, 1.0 - b1 ** self.steps,
                             1.0 - b2 ** self.steps, &self._m[0], &self._v[0], g)
        finally:
            self.tape._busy = False
        self.tape._next_epoch()
