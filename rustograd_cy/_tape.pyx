"""The tape engine: `Tape` owns the node buffers of src/rg_tape.h, `TapeTerm` is a (tape, index) proxy.

Sweeps run in C without the GIL; an apply() node (a Python callable) pauses the sweep, is run here
with the GIL, and the sweep resumes after it.
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject

cdef extern from "Python.h":
    void PyObject_GC_Track(void *op)
    void PyObject_GC_UnTrack(void *op)
from cpython.pythread cimport PyThread_get_thread_ident
from libc.math cimport copysign, isfinite
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, uint8_t

from rustograd_cy._common cimport anomaly_on, callable_result, check_callables, check_name, method_result
from rustograd_cy._common cimport is_real as _is_real, real as _real
from rustograd_cy._ctape cimport *

from rustograd_cy.errors import (
    NO_TRUTH_VALUE,
    NOT_A_CONDITION,
    branch_changed_error,
    TapeMismatchError,
    TermWasNotValueError,
    derive_non_leaf_error,
    non_finite_error,
    not_a_number_error,
    read_only_error,
    set_non_leaf_error,
    stale_value_error,
)
from rustograd_cy._ops import OP_CODES, OPS
from rustograd_cy._opspec import COMPARISONS
from rustograd_cy._recording import BY_THREAD as _RECORDINGS_BY_THREAD
from rustograd_cy.labels import expression_label
from rustograd_cy import dot as _dot

# How many outputs keep their cone cached; a training loop usually has one or two.
cdef enum:
    MAX_CACHED_CONES = 8

include "_batch.pxi"
include "_pickle.pxi"


# Cones of fewer nodes sweep in index order: their level order would save next to nothing.
cdef enum:
    LEVEL_ORDER_MIN_NODES = 64


cdef rg_index _level_order(const rg_tape *t, const rg_index *cone, rg_index n,
                           rg_index **order) noexcept nogil:
    """The cone's level order (rg_level_order) in a new block *order; returns its length, or -1 (and
    *order NULL) for a small cone or when there is no memory: the sweep then keeps index order."""
    cdef rg_index count = -1
    cdef rg_index *shrunk
    order[0] = NULL
    if n >= LEVEL_ORDER_MIN_NODES:
        order[0] = <rg_index *>malloc(<size_t>n * sizeof(rg_index))
        if order[0] != NULL:
            count = rg_level_order(t, cone, n, order[0])
            if count > 0:
                shrunk = <rg_index *>realloc(order[0], <size_t>count * sizeof(rg_index))
                if shrunk != NULL:
                    order[0] = shrunk
            else:
                free(order[0])
                order[0] = NULL
                count = -1
    return count


cdef class _Cone:
    """The cached list of nodes one output depends on (freed with the object)."""

    def __dealloc__(self):
        free(self.idx)
        free(self.first)
        free(self.guards)
        free(self.outcomes)
        free(self.runs)
        free(self.order)
        rg_plan_free(&self.plan)


# The docstring opens with the constructor's signature in CPython's text-signature form
# (`Name(args)\n--\n`), which inspect.signature(), help() and the API reference read.
@cython.final
cdef class Tape:
    """Tape()\n--\n
    An arena of nodes: leaves made by `term()`, operations appended by arithmetic on its terms.

    >>> tape = Tape()
    >>> a, b = tape.term("a", 2.0), tape.term("b", 3.0)
    >>> (a * b).eval()
    6.0
    """

    def __cinit__(self):
        memset(&self.c, 0, sizeof(self.c))
        self.c.epoch = 1
        self._names = {}
        self._funcs = {}
        self._cones = {}
        self._grad_output = -1
        self._busy = False
        self._array_leaves = set()
        self._split = 1
        self._fuse_sums = True
        self._push(RG_CONST, 0, 0, 0.0)
        self._push(RG_CONST, 0, 0, 1.0)
        self._names[0] = "0"
        self._names[1] = "1"

    def __init__(self):
        """An empty tape (it holds only the constants 0 and 1): add leaves with term(name, value)."""

    def __dealloc__(self):
        rg_tape_free(&self.c)
        rg_batch_free(&self.b)

    def __len__(self):
        return self.c.size

    def __repr__(self):
        return f"Tape(nodes={self.c.size})"

    def __reduce__(self):
        """Pickle support (multiprocessing, Dask): nodes, values, names, callables (by reference)
        and a format version; unpickling checks every field as Tape.load() does.

        Values computed by eval() survive in scalar mode; a batched tape keeps its array leaves but
        must be evaluated again. Unpickling runs code from the pickle: unpickle only what you trust,
        and use save()/load() for files.
        """
        cdef int took = self._begin_read()
        try:
            return _restore_tape, (_tape_state(self),)
        finally:
            self._end_read(took)

    def save(self, path):
        """Write this tape to `path` (a path or a binary file object) as an .npz of arrays plus JSON metadata, no pickle: loading
        it runs no code from it. Read it back with `Tape.load(path, functions=...)`.

        apply() callables are stored as `module:qualname` references, so they must be module-level
        functions (a lambda or a local function is refused, naming its node). Values computed by
        eval() are kept in scalar mode; a batched tape keeps its array leaves.
        """
        cdef int took = self._begin_read()
        try:
            _save_npz(self, path)
        finally:
            self._end_read(took)

    @staticmethod
    def load(path, *, functions=None, allow_pickle=False):
        """The tape that `save(path)` wrote; terms come back by index (node i is `tape._term_at(i)`).

        Every field is checked before anything is restored (a corrupt file raises ValueError
        naming the field). The file names its apply() callables; only those passed in `functions`
        (callables, or a dict {"module:qualname": callable}) are used, so a file cannot make
        load() call anything else. A pickle file is refused unless `allow_pickle=True`, as
        `numpy.load` does: unpickling runs code from the file.
        """
        return _load_file(path, allow_pickle, functions)

    # -- building ---------------------------------------------------------------------------------

    def term(self, name, value):
        """A new leaf (variable) called `name` holding `value`; change it later with `set()`."""
        check_name(name, "a leaf's name")
        cdef double v = _real(value, "a leaf's value")
        cdef rg_index i = self._push(RG_LEAF, 0, 0, v)
        self._names[i] = name
        return self._wrap(i)

    def constant(self, value, name=None):
        """A constant leaf (set() refuses it), named by its value unless `name` is given."""
        cdef rg_index i
        if name is None:
            return self._wrap(self._const(_real(value, "a constant")))
        check_name(name, "a constant's name")
        i = self._push(RG_CONST, 0, 0, _real(value, "a constant"))
        self._names[i] = name
        return self._wrap(i)

    def zero(self):
        """The preallocated constant 0."""
        return self._wrap(0)

    def one(self):
        """The preallocated constant 1."""
        return self._wrap(1)

    # -- state ------------------------------------------------------------------------------------

    def clear(self):
        """Drop every computed value (leaves keep theirs): eval() must run again before derivatives."""
        self._check_idle()
        self._next_epoch()  # gradients stay until clear_grad(), as after a set()

    def keep(self, *terms):
        """Name the nodes whose per-sample rows a streamed batch keeps (replacing the last call's;
        keep() with none clears them). A tape whose rows would exceed rg.get_row_limit() streams:
        eval() keeps B values only of the output it sweeps, backprop() B gradients only of the array
        leaves, so `.data` / `.grad` of another node that varies raise ValueError unless it is kept.
        Kept nodes cost B values (eval) or B gradients (backprop) each. No effect on full rows."""
        _keep(self, terms)

    def clear_grad(self):
        """Drop every gradient: `.grad` is None again until the next backprop()."""
        self._check_idle()
        memset(self.c.grad, 0, <size_t>self.c.size * sizeof(double))
        self._grad_output = -1

    @property
    def batch_size(self):
        """Samples per sweep: B while a leaf holds an array of length B (batch mode), else None."""
        return self.b.size if self.b.size else None

    @property
    def check_finite(self):
        """When True, every eval(), derive() and backprop() on this tape raises `NonFiniteError`
        (a FloatingPointError) naming the first node whose value, tangent or gradient is NaN or
        infinite. Off by default (IEEE results, no cost); `rg.detect_anomaly()` turns it on for
        every tape at once."""
        return self._check_finite

    @check_finite.setter
    def check_finite(self, value):
        if not isinstance(value, bool):
            raise TypeError(f"check_finite is True or False, not {type(value).__name__}")
        self._check_finite = value

    @property
    def nbytes(self):
        """Bytes held by the node buffers (allocated capacity) and the cached cones."""
        cdef _Cone cone
        cdef size_t total = <size_t>self.c.capacity * RG_BYTES_PER_NODE
        total += <size_t>self.b.rows * ((0 if self.b.streamed else 2 * sizeof(double) * <size_t>self.b.size) + 2)
        total += _stream_nbytes(self)
        total += (self.b.chunk_rows_cap + self.b.gemm_work_cap) * sizeof(double)  # sweeps' scratch
        for cone in self._cones.values():
            total += <size_t>cone.n * (sizeof(rg_index) + (1 if cone.first != NULL else 0))
            total += 2 * <size_t>max(cone.n_runs, 0) * sizeof(rg_index)
            total += <size_t>max(cone.n_order, 0) * sizeof(rg_index)
            total += rg_plan_bytes(&cone.plan, cone.n)
        return total

    # -- internals --------------------------------------------------------------------------------

    # The busy guard: one sweep, or one read, at a time. A sweep (and the cone search, and an
    # optimizer step) takes the tape with _take(); every accessor that reads node values or
    # gradients from Python (.data, .grad, drawing, pickling, save) holds it with _begin_read().
    # While it is held, anything from another thread raises _check_idle's RuntimeError, and so does
    # any change (a set(), a new node, a sweep) from the holder's own thread; reads from the
    # holder's thread (a sweep's callables and callbacks, a read inside a read) go ahead.

    cdef int _check_idle(self) except -1:
        if self._busy:
            raise RuntimeError(
                "this tape is in the middle of a sweep or of a read of its values (in another "
                "thread, or in a callable that the sweep called): it cannot change, start another "
                "sweep, or be read from another thread until that ends; give each thread its own "
                "tape (pickle.loads(pickle.dumps(tape)) copies one), or serialise access with a lock"
            )
        return 0

    cdef int _take(self) except -1:
        """Hold the tape for a sweep (after _check_idle(), with no Python run in between)."""
        self._busy = True
        self._reading = False
        self._owner = PyThread_get_thread_ident()
        return 0

    cdef int _begin_read(self) except -1:
        """Hold the tape for a read: 1 if this call took it (pass that to _end_read), 0 if this
        thread already holds it; RuntimeError if another thread does."""
        if self._busy:
            if self._owner == PyThread_get_thread_ident():
                return 0
            self._check_idle()
        self._busy = True
        self._reading = True
        self._owner = PyThread_get_thread_ident()
        return 1

    cdef void _end_read(self, int took) noexcept:
        if took:
            self._busy = False
            self._reading = False

    cdef rg_index _push(self, int op, rg_index lhs, rg_index rhs, double value) except -1:
        self._check_idle()
        cdef rg_index i = rg_tape_push(&self.c, op, lhs, rhs, value)
        if i == RG_EOVERFLOW:
            raise OverflowError(
                f"a tape holds at most {self.c.limit or RG_MAX_NODES} nodes (its node index is a "
                f"32-bit int) and this one is full: split the computation over several tapes"
            )
        if i < 0:
            raise MemoryError(f"no memory to grow the tape past {self.c.size} nodes")
        return i

    cdef rg_index _const(self, double value) except -1:
        if value == 0.0 and copysign(1.0, value) > 0:
            return 0
        if value == 1.0:
            return 1
        return self._push(RG_CONST, 0, 0, value)

    cdef rg_index _operand(self, object x) except -1:
        if type(x) is TapeTerm:
            if (<TapeTerm>x).tape is not self:
                raise TapeMismatchError(
                    "cannot combine terms of two different tapes: build the whole expression on one tape"
                )
            return (<TapeTerm>x).index
        return self._const(_real(x, "an operand"))

    cdef TapeTerm _wrap(self, rg_index index):
        cdef TapeTerm t = TapeTerm.__new__(TapeTerm)
        t.tape = self
        t.index = index
        # A proxy refers only to its tape, so it can close a reference cycle only through a Python
        # object the tape holds, and the only such objects are apply() callables (Tape is final, so
        # no subclass adds attributes). Until the tape holds one, the cyclic GC need not see its
        # proxies, and a model that keeps 10^6 of them is not rescanned by every full collection
        # (that was 3/4 of the build time). The tape lists them, to track them if callables come.
        if not self._funcs:
            PyObject_GC_UnTrack(<PyObject *>t)
            t._next = self._untracked
            if t._next != NULL:
                (<TapeTerm>t._next)._prev = <PyObject *>t
            self._untracked = <PyObject *>t
        return t

    cdef void _track_terms(self):
        """Hand every untracked proxy to the cyclic GC: the tape now holds callables, which may
        refer to them (tape -> callable -> term -> tape)."""
        cdef PyObject *p = self._untracked
        cdef PyObject *following
        while p != NULL:
            following = (<TapeTerm>p)._next
            (<TapeTerm>p)._prev = NULL
            (<TapeTerm>p)._next = NULL
            PyObject_GC_Track(p)
            p = following
        self._untracked = NULL

    cdef void _next_epoch(self):
        if self.c.epoch == <rg_stamp>-1:  # wrap around: forget every stamp rather than alias one
            rg_reset_stamps(&self.c)
            self._cones.clear()
            self.c.epoch = 0
        self.c.epoch += 1

    cdef _Cone _cone(self, rg_index output):
        # A node's operands never change, so an output's cone stays right however the tape grows.
        cdef _Cone cone = self._cones.get(output)
        if cone is not None:
            return cone
        cdef uint8_t *mark = <uint8_t *>calloc(<size_t>output + 1, 1)
        cdef rg_index *idx = <rg_index *>malloc((<size_t>output + 1) * sizeof(rg_index))
        if mark == NULL or idx == NULL:
            free(mark)
            free(idx)
            raise MemoryError("no memory to find the nodes the output depends on")
        cone = _Cone.__new__(_Cone)
        # The search reads the node buffers, which a push from another thread would move: run it
        # without the GIL only while holding the tape (_busy keeps every push out), else with it.
        if self._busy:
            cone.n = rg_cone(&self.c, output, mark, idx)
        else:
            self._take()
            with nogil:
                cone.n = rg_cone(&self.c, output, mark, idx)
            self._busy = False
        free(mark)
        cone.idx = <rg_index *>realloc(idx, <size_t>cone.n * sizeof(rg_index))
        if cone.idx == NULL:  # shrinking failed: keep the larger block
            cone.idx = idx
        cdef rg_index pos
        if self._funcs:
            for pos in range(cone.n):
                if self.c.op[cone.idx[pos]] == RG_APPLY:
                    cone.has_apply = True
                    break
        if len(self._cones) >= MAX_CACHED_CONES:
            del self._cones[next(iter(self._cones))]
        self._cones[output] = cone
        return cone

    cdef str _label(self, rg_index i):
        return expression_label(i, self._describe)

    # -- test hooks: reach states that are too big or too brief to reach honestly -----------------

    def _test_set_node_limit(self, rg_index limit):
        """TESTS ONLY: let this tape hold at most `limit` nodes (<= RG_MAX_NODES), so the growth
        path's overflow error can be reached without allocating 2^31 nodes."""
        if limit < self.c.size or limit > RG_MAX_NODES:
            raise ValueError(f"limit must be between {self.c.size} and {RG_MAX_NODES}")
        self.c.limit = limit

    def _test_is_busy(self):
        """TESTS ONLY: whether a sweep (or a cone search) holds this tape right now."""
        return self._busy

    # -- raw node access, for the derivative-graph builder (rustograd_cy/derivatives.py) ------------

    def _check_index(self, rg_index i):
        if i < 0 or i >= self.c.size:
            raise IndexError(f"node {i} is not on this tape of {self.c.size} nodes")

    def _nodes(self, rg_index start, rg_index stop):
        """[(op code, lhs, rhs, value)] of nodes start..stop-1 (a unary op has lhs == rhs)."""
        cdef rg_index i
        cdef int took = self._begin_read()
        try:
            start = max(start, 0)
            stop = min(stop, self.c.size)
            return [(self.c.op[i], self.c.lhs[i], self.c.rhs[i], self.c.value[i])
                    for i in range(start, stop)]
        finally:
            self._end_read(took)

    def _cone_indices(self, rg_index output):
        """Ascending indices of the nodes `output` depends on, itself last."""
        self._check_index(output)
        cdef _Cone cone = self._cone(output)
        cdef rg_index pos
        return [cone.idx[pos] for pos in range(cone.n)]

    def _term_at(self, rg_index i):
        """The term of node i."""
        self._check_index(i)
        return self._wrap(i)

    def _apply_info(self, rg_index i):
        """(name, f, df, grad_graph or None) of apply node i."""
        self._check_index(i)
        if self.c.op[i] != RG_APPLY:
            raise ValueError(f"node {i} is not an apply() node")
        return (self._names[i],) + tuple(self._funcs[i])

    def _push_node(self, int op, rg_index lhs, rg_index rhs):
        """Append a computing node by op code (operands are node indices); returns its index.

        Unary ops need lhs == rhs, except powc whose rhs is the exponent's constant node.
        """
        self._check_index(lhs)
        self._check_index(rhs)
        if op < 0 or op >= <int>RG_NUM_OPS or rg_is_leaf(op) or op == RG_APPLY:
            raise ValueError(f"_push_node() makes computing nodes; op code {op} is not one")
        if op == RG_POWC and self.c.op[rhs] != RG_CONST:
            raise ValueError("a powc node's rhs must be a constant node (its exponent)")
        if OPS[op][1] == 1 and op != RG_POWC and lhs != rhs:
            raise ValueError(f"unary op {OPS[op][0]!r} needs lhs == rhs")
        return self._push(op, lhs, rhs, 0.0)

    def _describe(self, rg_index i):
        """(name or None, op name, infix, operand indices) of node i, for labels and drawings."""
        if i < 0 or i >= self.c.size:
            raise IndexError(f"node {i} is not on this tape of {self.c.size} nodes")
        cdef int op = self.c.op[i]
        name, _, infix = OPS[op]
        if rg_is_leaf(op):
            label = self._names.get(i)
            return (label if label is not None else f"{self.c.value[i]:g}"), name, infix, ()
        if op == RG_APPLY:
            return None, self._names[i], "", (self.c.lhs[i],)
        if OPS[op][1] == 2 or op == RG_POWC:
            return None, name, infix, (self.c.lhs[i], self.c.rhs[i])
        return None, name, infix, (self.c.lhs[i],)

    cdef int _require_values(self, _Cone cone, str caller) except -1:
        cdef rg_index pos
        if cone.valid_epoch == self.c.epoch:
            return 0
        pos = rg_first_stale(&self.c, cone.idx, cone.n, self.c.epoch)
        if pos < 0:
            cone.valid_epoch = self.c.epoch  # e.g. evaluated as part of a bigger output
            return 0
        cdef rg_index i = cone.idx[pos]
        raise stale_value_error(caller, f"{self._label(i)!r} (node {i})", self.c.stamp[i] == 0)

    cdef int _forward(self, rg_index output, object callback) except -1:
        # With a callback the C sweep runs one node per call (the slow path, for animations).
        cdef _Cone cone = self._cone(output)
        cdef rg_stamp epoch = self.c.epoch
        cdef rg_index pos = 0, end, stop, i
        if self.b.size:
            return _forward_batch(self, output, callback)
        self._check_idle()
        self._take()
        # A replay (a sweep of a cone whose values were computed before) runs in level order: the
        # same values, faster (rg_level_order). A callback sees the nodes in index order, as the
        # tape holds them.
        cdef rg_index *nodes = cone.idx
        cdef rg_index *order
        cdef rg_index n = cone.n, count
        try:
            if callback is None and cone.valid_epoch != 0:
                if cone.n_order == 0:  # made once, without the GIL, and shown to readers whole
                    with nogil:
                        count = _level_order(&self.c, cone.idx, cone.n, &order)
                    cone.order, cone.n_order = order, count
                if cone.n_order > 0:
                    nodes, n = cone.order, cone.n_order
            while pos < n:
                end = n if callback is None else pos + 1
                with nogil:
                    stop = rg_forward(&self.c, nodes, pos, end, epoch)
                if stop < end:  # an apply node: run its callable here, with the GIL
                    i = nodes[stop]
                    f = self._funcs[i][0]
                    self.c.value[i] = self._callable_result(f(self.c.value[self.c.lhs[i]]), i)
                    self.c.stamp[i] = epoch
                    stop += 1
                pos = stop
                if callback is not None:
                    callback(self._wrap(nodes[pos - 1]))
        finally:
            self._busy = False
        cone.valid_epoch = epoch
        if self._check_finite or anomaly_on():
            self._scan(cone, self.c.value, 1, False, "eval()", "value")
        if self._guards is not None:
            self._check_guards(cone)
        return 0

    cdef int _backward(self, rg_index output, object callback) except -1:
        cdef _Cone cone = self._cone(output)
        cdef rg_index pos, last, stop, i, lhs
        cdef double g, d
        if self.b.size:
            return _backward_batch(self, output, callback)
        self._require_values(cone, "backprop()")
        self._check_idle()
        self._take()
        try:
            if self._grad_output >= 0 and self._grad_output != output:
                # Keep the invariant: gradients are zero outside the last output's cone.
                memset(self.c.grad, 0, (<size_t>self._grad_output + 1) * sizeof(double))
            rg_reverse_begin(&self.c, cone.idx, cone.n)
            self._grad_output = output  # gradients show as they are computed (to callbacks too)
            pos = cone.n - 1
            while pos >= 0:
                last = 0 if callback is None else pos
                with nogil:
                    stop = rg_reverse(&self.c, cone.idx, pos, last)
                if stop >= last:  # an apply node: run its derivative here, with the GIL
                    i = cone.idx[stop]
                    g = self.c.grad[i]
                    if g != 0.0:
                        lhs = self.c.lhs[i]
                        df = self._funcs[i][1]
                        d = self._callable_result(df(self.c.value[lhs]), i)
                        if d != 0.0:  # as in the C sweep: a zero partial contributes nothing
                            self.c.grad[lhs] += g * d
                    stop -= 1
                pos = stop
                if callback is not None:
                    callback(self._wrap(cone.idx[pos + 1]))
        except BaseException:
            # A callable raised: leave no half-accumulated gradients behind.
            memset(self.c.grad, 0, <size_t>self.c.size * sizeof(double))
            self._grad_output = -1
            raise
        finally:
            self._busy = False
        if self._check_finite or anomaly_on():  # the gradients stay, for a look at them
            self._scan(cone, self.c.value, 1, False, "backprop()", "value")
            self._scan(cone, self.c.grad, 1, True, "backprop()", "gradient")
        return 0

    cdef double _tangent(self, rg_index output, rg_index var) except? -1.0:
        cdef _Cone cone = self._cone(output)
        cdef rg_index pos = 0, n = cone.n, i, lhs
        cdef double d
        self._require_values(cone, "derive()")
        self._check_idle()
        cdef double *tangent = <double *>PyMem_Malloc((<size_t>output + 1) * sizeof(double))
        if tangent == NULL:
            raise MemoryError("no memory for derive()'s tangent sweep")
        self._take()
        try:
            while True:
                with nogil:
                    pos = rg_tangent(&self.c, cone.idx, pos, n, var, tangent)
                if pos == n:
                    break
                i = cone.idx[pos]
                lhs = self.c.lhs[i]
                d = 0.0
                if tangent[lhs] != 0.0:
                    df = self._funcs[i][1]
                    d = self._callable_result(df(self.c.value[lhs]), i)
                    d = d * tangent[lhs] if d != 0.0 else 0.0
                tangent[i] = d
                pos += 1
            if self._check_finite or anomaly_on():
                self._scan(cone, self.c.value, 1, False, "derive()", "value")
                self._scan(cone, tangent, 1, False, "derive()", "tangent")
            return tangent[output]
        finally:
            self._busy = False
            PyMem_Free(tangent)

    cdef object _jacobian(self, rg_index output, list indices):
        """jacobian() in scalar mode: d(output)/d(node) for each node index, by one reverse sweep
        into scratch space (the tape's gradients are left alone)."""
        cdef _Cone cone = self._cone(output)
        cdef rg_index pos, stop, i, lhs
        cdef Py_ssize_t j
        cdef double g, d
        cdef rg_tape view
        self._require_values(cone, "jacobian()")
        self._check_idle()
        cdef double *grads = <double *>calloc(<size_t>output + 1, sizeof(double))
        if grads == NULL:
            raise MemoryError("no memory for jacobian()'s reverse sweep")
        view = self.c
        view.grad = grads
        self._take()
        try:
            rg_reverse_begin(&view, cone.idx, cone.n)
            pos = cone.n - 1
            while pos >= 0:
                with nogil:
                    stop = rg_reverse(&view, cone.idx, pos, 0)
                if stop >= 0:  # an apply node: its derivative, with the GIL
                    i = cone.idx[stop]
                    g = grads[i]
                    if g != 0.0:
                        lhs = self.c.lhs[i]
                        d = self._callable_result(self._funcs[i][1](self.c.value[lhs]), i)
                        if d != 0.0:
                            grads[lhs] += g * d
                pos = stop - 1
            if self._check_finite or anomaly_on():
                self._scan(cone, self.c.value, 1, False, "jacobian()", "value")
                self._scan(cone, grads, 1, True, "jacobian()", "gradient")
            out = np.zeros(len(indices))
            for j in range(len(indices)):
                i = indices[j]
                if i <= output:
                    out[j] = grads[i]
            return out
        finally:
            self._busy = False
            free(grads)

    cdef int _scan(self, _Cone cone, const double *x, int64_t width, bint descending, str caller,
                   str quantity) except -1:
        # The anomaly check (rg.detect_anomaly(), check_finite) over rows of `width` values per node
        # (1, or the batch size). It keeps the GIL, so no other thread can grow the tape under it;
        # it runs only when asked for.
        cdef rg_index pos = rg_first_nonfinite(x, width, cone.idx, cone.n, descending)
        if pos < 0:
            return 0
        cdef rg_index i = cone.idx[pos]
        return self._raise_non_finite(i, x + <int64_t>i * width, width, caller, quantity)

    cdef int _raise_non_finite(self, rg_index i, const double *row, int64_t width, str where,
                               str quantity) except -1:
        """NonFiniteError for node i, whose `width` values `row` hold a NaN or infinity (a row of
        several is a batch's: the error names the first bad sample)."""
        cdef int64_t s = 0
        while isfinite(row[s]):
            s += 1
        cdef double number = row[s]  # read before any Python runs (another thread may grow the tape)
        op = OPS[self.c.op[i]][0] if self.c.op[i] != RG_APPLY else f"apply {self._names[i]!r}"
        if width > 1:
            where = f"{where} (sample {s} of the batch)"
        raise non_finite_error(where, quantity, i, self._label(i), op, number)

    cdef double _callable_result(self, object result, rg_index i) except? -1.0:
        return callable_result(result, self._names[i], i)

    cdef int _check_guards(self, _Cone cone) except -1:
        """BranchChangedError if a guard in the swept cone lost the outcome recorded for it (in
        batch mode: at the first sample that differs). A guard is a comparison node that bool() read
        while a transform recorded on this tape (_truth). The cone lists its guards once (again when
        guards were added); the check is then one comparison per guard (per sample, if varying)."""
        cdef Py_ssize_t k
        cdef rg_index g
        cdef int64_t s, size = self.b.size
        cdef const double *row
        cdef bint outcome
        if cone.guards_seen != len(self._guards):
            self._list_guards(cone)
        for k in range(cone.n_guards):
            g = cone.idx[cone.guards[k]]
            outcome = cone.outcomes[k]
            if size and _varies(self, g):
                row = self.b.value + <int64_t>g * size
                for s in range(size):
                    if (row[s] != 0.0) != outcome:
                        raise branch_changed_error(g, self._label(g), outcome, s, size)
            elif (self.c.value[g] != 0.0) != outcome:
                raise branch_changed_error(g, self._label(g), outcome, None, size)
        return 0

    cdef int _list_guards(self, _Cone cone) except -1:
        """Lists in the cone the positions and outcomes of the tape's guards it holds."""
        cdef Py_ssize_t m = len(self._guards), k = 0
        cdef rg_index g, lo, hi, mid, last = cone.idx[cone.n - 1]
        free(cone.guards)
        free(cone.outcomes)
        cone.n_guards = cone.guards_seen = 0
        cone.guards = <rg_index *>malloc(<size_t>m * sizeof(rg_index))
        cone.outcomes = <uint8_t *>malloc(<size_t>m)
        if cone.guards == NULL or cone.outcomes == NULL:
            raise MemoryError("no memory to list the guards of a cone")
        for key, value in self._guards.items():
            g = key
            if g > last:
                continue
            lo, hi = 0, cone.n - 1
            while lo < hi:  # the cone is ascending
                mid = (lo + hi) // 2
                if cone.idx[mid] < g:
                    lo = mid + 1
                else:
                    hi = mid
            if cone.idx[lo] == g:
                cone.guards[k] = lo
                cone.outcomes[k] = 1 if value else 0
                k += 1
        cone.n_guards = k
        cone.guards_seen = m
        return 0

    cdef int _set(self, rg_index index, object value) except -1:
        cdef int op = self.c.op[index]
        if op != RG_LEAF:
            what = "a constant" if op == RG_CONST else "an operation node"
            raise set_non_leaf_error("tape.term()", f"{self._label(index)!r} (node {index})", what)
        self._check_idle()
        _set_value(self, index, value)
        self._next_epoch()
        return 0


cdef int _check_row(Tape tape, rg_index i, int took) except -1:
    """A read from inside this thread's own sweep (a callable or a callback) must not grow the batch
    rows the paused sweep works in: node i needs a row already (every node up to the output has)."""
    if not took and not tape._reading and i >= tape.b.rows:
        raise RuntimeError(
            f"node {i} is read from inside a sweep of an output it does not feed (it has no batch "
            f"row yet): read it after the sweep"
        )
    return 0


cdef inline object _binary(int op, object x, object y):
    """x op y where at least one of them is a TapeTerm (operator methods land here)."""
    cdef Tape tape = (<TapeTerm>x).tape if type(x) is TapeTerm else (<TapeTerm>y).tape
    if not ((type(x) is TapeTerm or _is_real(x)) and (type(y) is TapeTerm or _is_real(y))):
        return NotImplemented
    cdef rg_index a = tape._operand(x)
    cdef rg_index b = tape._operand(y)
    return tape._wrap(tape._push(op, a, b, 0.0))


cdef inline object _power(object x, object y):
    """x ** y: a constant exponent makes a powc node (not differentiated in the exponent)."""
    if type(y) is not TapeTerm and _is_real(y):
        return _binary(RG_POWC, x, y)
    return _binary(RG_POW, x, y)


cdef inline object _unary(int op, TapeTerm x):
    """op(x), a unary op of the table."""
    return x.tape._wrap(x.tape._push(op, x.index, x.index, 0.0))


cdef frozenset _COMPARISONS = frozenset(OP_CODES[op.name] for op in COMPARISONS)


cdef bint _sweep_new_nodes(Tape tape, rg_index upto) except -1:
    """Scalar mode: computes nodes [first stale, upto] in index order (a topological order), so a
    recording that tests a value after every few new nodes (a loop) costs the new nodes, not the
    whole cone each time. The nodes below `_fresh_upto` are known computed in this epoch. Returns
    False, having computed what it could, if it meets an apply() node (the caller evaluates by the
    cone then)."""
    cdef rg_stamp epoch = tape.c.epoch
    cdef rg_index j = tape._fresh_upto if tape._fresh_epoch == epoch else 0
    cdef int o
    cdef bint done = True
    tape._check_idle()
    tape._take()
    try:
        with nogil:
            while j <= upto:
                o = tape.c.op[j]
                if not rg_is_leaf(o) and tape.c.stamp[j] != epoch:
                    if o == RG_APPLY:
                        done = False
                        break
                    tape.c.value[j] = rg_value(o, tape.c.value[tape.c.lhs[j]], tape.c.value[tape.c.rhs[j]])
                    tape.c.stamp[j] = epoch
                j += 1
    finally:
        tape._busy = False
    tape._fresh_upto = j
    tape._fresh_epoch = epoch
    return done


cdef object _truth(TapeTerm t):
    """bool(t): inside a transform's recording on t's tape in this thread, the current truth of a
    comparison, recorded in Tape._guards and in the thread's recordings (rustograd_cy._recording);
    otherwise a TypeError (errors.NO_TRUTH_VALUE)."""
    cdef Tape tape = t.tape
    cdef rg_index i = t.index
    # This thread's recordings (rustograd_cy._recording; threading.get_ident() is this ident).
    cdef list recordings = (<dict>_RECORDINGS_BY_THREAD).get(PyThread_get_thread_ident())
    cdef bint recorded = False
    if recordings is not None:
        for r in recordings:  # a plain loop: any(...) would make a generator at every bool()
            if r.tape is tape:
                recorded = True
                break
    if not recorded:
        raise TypeError(NO_TRUTH_VALUE)
    if tape.c.op[i] not in _COMPARISONS:
        raise TypeError(NOT_A_CONDITION)
    if tape.b.size or not _sweep_new_nodes(tape, i):
        t.eval()
    # The sweep has let go of the tape: read the value it computed under the read guard, as .data
    # does, so that no other thread sweeps (rewrites the rows) or grows or frees the buffers while
    # this reads them; if another thread holds the tape now, this raises the busy RuntimeError.
    cdef int took = tape._begin_read()
    try:
        outcome = _current_truth(tape, i)
    finally:
        tape._end_read(took)
    if tape._guards is None:
        tape._guards = {}
    tape._guards.setdefault(i, outcome)
    for r in recordings:  # each recording of this thread on this tape (nested ones: all depend on it)
        if r.tape is tape:
            (<dict>r.tested)[i] = None  # a dict's keys: each node once, in the order first tested
    return outcome


cdef bint _current_truth(Tape tape, rg_index i) except -1:
    """Whether comparison node i, just evaluated, holds (read it with the tape held for a read).
    In batch mode it must hold for every sample or for none (else BranchChangedError): a streamed
    tape has no rows, and eval() kept node i's B values, as it keeps every swept output's."""
    cdef int64_t s, size = tape.b.size
    cdef const double[::1] kept
    cdef const double *row
    cdef bint outcome
    if not (size and _varies(tape, i)):
        return tape.c.value[i] != 0.0
    if tape.b.streamed:
        kept = _kept_values(tape, i)
        row = &kept[0]  # kept arrays are B contiguous doubles, as the rows are
    else:
        row = tape.b.value + <int64_t>i * size
    outcome = row[0] != 0.0
    for s in range(1, size):
        if (row[s] != 0.0) != outcome:
            raise branch_changed_error(i, tape._label(i), outcome, s, size)
    return outcome


include "_tape_ops.pxi"


@cython.final
cdef class TapeTerm(_TapeOps):  # the freelist is _TapeOps's (see _tape.pxd)
    """A node of a `Tape`: combine terms with + - * / ** and the built-in functions, then
    `eval()`, `derive(var)` or `backprop()`. Made by `tape.term()`, never directly.

    >>> tape = Tape()
    >>> x = tape.term("x", 3.0)
    >>> y = x * x + 1
    >>> y.eval(), y.derive(x)
    (10.0, 6.0)
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("make terms with tape.term(name, value), not TapeTerm()")

    def __dealloc__(self):
        # Leave the tape's list of untracked proxies (self.tape is still set here).
        if self._prev != NULL:
            (<TapeTerm>self._prev)._next = self._next
        elif self.tape is not None and self.tape._untracked == <PyObject *>self:
            self.tape._untracked = self._next
        if self._next != NULL:
            (<TapeTerm>self._next)._prev = self._prev

    # -- the operators and built-in functions are _TapeOps's (one per op of the spec) ------------
    # `==` and the other comparisons build nodes, a term hashes by identity, and unary +, float(),
    # int() and round() are _TapeOps's too (src/opgen.py writes them once for every kind).

    def __reduce__(self):
        return _restore_term, (self.tape, self.index)

    def __bool__(self):
        """The truth of a comparison while a transform records on this tape (rg.grad and friends:
        recorded as a guard, checked on every replay); a TypeError anywhere else."""
        return _truth(self)

    def __repr__(self):
        return f"TapeTerm({self.name!r}, index={self.index}, data={self.data!r})"

    # -- user functions ---------------------------------------------------------------------------

    def apply(self, name, f, df, grad_graph=None):
        """A node computing f(self), with derivative df(self): any Python callables of one float.

        The sweeps run built-in nodes in C without the GIL and call f and df with the GIL held.
        They must not change this tape (build nodes or set leaves) while a sweep calls them.

        `grad_graph(term)`, if given, builds df as graph operations on its input term (returning a
        term, a number, or None for zero) so that `gen_graph()` can differentiate through this node,
        to any order; without it `gen_graph()` raises `GradGraphMissingError` at this node.

        >>> import math
        >>> tape = Tape()
        >>> tape.term("a", 0.0).apply("sin", math.sin, math.cos).eval()
        0.0
        """
        check_name(name, "apply()'s name")
        check_callables(name, f, df)
        if grad_graph is not None and not callable(grad_graph):
            raise TypeError(f"apply({name!r}, ...)'s grad_graph must be callable or None, "
                            f"not {type(grad_graph).__name__}")
        cdef Tape tape = self.tape
        cdef rg_index i = tape._push(RG_APPLY, self.index, self.index, 0.0)
        tape._names[i] = name
        tape._funcs[i] = (f, df, grad_graph)
        tape._track_terms()
        return tape._wrap(i)

    def gen_graph(self, var, optim=False):
        """d(self)/d(var) as new nodes on this tape: returns its term, or None if self does not
        depend on var. The result is a term like any other, so it can be derived again.

        `optim=True` reuses identical nodes already on the tape and folds IEEE-exact identities
        (x * 1, x ** 1, constant operands, ...). The rules live in rustograd_cy/derivatives.py.

        >>> tape = Tape()
        >>> x = tape.term("x", 0.0)
        >>> x.sin().gen_graph(x).gen_graph(x).eval()  # -sin(0)
        -0.0
        """
        from rustograd_cy.derivatives import gen_graph
        return gen_graph(self, var, optim)

    def _constant_like(self, value):
        """A constant on the same tape (lets rg.maximum(0.0, x) and friends lift numbers)."""
        return self.tape.constant(value)

    # -- evaluation and derivatives ---------------------------------------------------------------

    def eval(self, *, callback=None):
        """Compute the value of this term (and of every node it depends on) and return it.

        `callback(term)`, if given, is called after each node of the sweep, in order (slower).
        On a batched tape (see `set()`) the result is an ndarray of one value per sample, or a float
        for a term reduced over the batch (rg.mean, rg.sum).
        """
        cdef Tape tape = self.tape
        tape._forward(self.index, callback)
        # No Python ran since the sweep let go of the tape, so no other thread can hold it now:
        # the result is read under the guard, as .data would.
        cdef int took = tape._begin_read()
        try:
            if tape.b.size:
                return _eval_result(tape, self.index)
            return tape.c.value[self.index]
        finally:
            tape._end_read(took)

    def derive(self, var):
        """d(self)/d(var) by a forward-mode sweep, from the values of the last eval().

        `var` is a leaf of the same tape. The gradients of backprop() are left alone. On a batched
        tape the result is an ndarray: the derivative for each sample.
        """
        if type(var) is not TapeTerm:
            raise TypeError(f"derive() takes a TapeTerm leaf, not {type(var).__name__}")
        cdef TapeTerm v = <TapeTerm>var
        if v.tape is not self.tape:
            raise TapeMismatchError("derive() got a variable of another tape: use a leaf of this one")
        if self.tape.c.op[v.index] != RG_LEAF:
            raise derive_non_leaf_error("tape.term()", f"{v.name!r} (node {v.index})")
        if self.tape.b.size:
            return _tangent_batch(self.tape, self.index, v.index)
        return self.tape._tangent(self.index, v.index)

    def backprop(self, *, callback=None):
        """Compute d(self)/d(node) for every node at once; read them as `.grad`.

        Needs the values of the last eval(). Nodes this term does not depend on get gradient 0.
        `callback(term)`, if given, is called as each node's gradient becomes final, in order.
        On a batched tape it differentiates the sum over the samples: a leaf holding an array gets
        per-sample gradients (an ndarray), a leaf holding a number the sum over the batch (a float).
        """
        self.tape._backward(self.index, callback)

    def jacobian(self, leaves):
        """The derivatives of this term with respect to each leaf of `leaves` (a sequence of leaves
        of this tape), as an array, from one reverse sweep; `.grad` is left alone.

        On a batched tape: a (B, len(leaves)) array whose row s holds the derivatives of sample s's
        value (what least-squares solvers call the Jacobian of the residuals). A shared leaf (one
        holding a number) gets its per-sample derivatives here, where backprop() sums them; an
        array leaf the derivative with respect to its own sample's value. In scalar mode: a 1-D
        array of len(leaves). A leaf this term does not depend on gets zeros. Needs the values of
        the last eval(), as backprop() does.

        >>> tape = Tape()
        >>> x, w = tape.term("x", 0.0), tape.term("w", 3.0)
        >>> y = w * x * x
        >>> x.set([1.0, 2.0])
        >>> _ = y.eval()
        >>> y.jacobian([w, x])
        array([[ 1.,  6.],
               [ 4., 12.]])
        """
        cdef Tape tape = self.tape
        if type(leaves) is TapeTerm:
            raise TypeError("jacobian() takes a sequence of leaves, e.g. y.jacobian([a]) "
                            "(for one leaf, y.derive(a) gives the same numbers)")
        try:
            items = list(leaves)
        except TypeError:
            raise TypeError(f"jacobian() takes a sequence of TapeTerm leaves, not "
                            f"{type(leaves).__name__}") from None
        cdef list indices = []
        for k, leaf in enumerate(items):
            if type(leaf) is not TapeTerm:
                raise TypeError(f"jacobian() takes TapeTerm leaves; item {k} is a "
                                f"{type(leaf).__name__}")
            if (<TapeTerm>leaf).tape is not tape:
                raise TapeMismatchError(f"jacobian(): item {k} is a leaf of another tape; use "
                                        f"leaves of this term's tape")
            if tape.c.op[(<TapeTerm>leaf).index] != RG_LEAF:
                raise TermWasNotValueError(
                    f"jacobian() is with respect to leaves made by tape.term(); item {k}, "
                    f"{leaf.name!r} (node {(<TapeTerm>leaf).index}), is not one")
            indices.append((<TapeTerm>leaf).index)
        if tape.b.size:
            return _jacobian_batch(tape, self.index, indices)
        return tape._jacobian(self.index, indices)

    def set(self, value):
        """Give this leaf a new value; computed values become stale until the next eval().

        A 1-D array of B numbers puts the tape in batch mode: every sweep then runs B samples (leaves
        holding numbers are shared by all of them), eval() returns B values and backprop()
        differentiates their sum. Setting the last array leaf back to a number ends batch mode.
        """
        self.tape._set(self.index, value)

    def clear(self):
        """Drop the computed values of this term's tape (`tape.clear()`), as on the other kinds."""
        self.tape.clear()

    def clear_grad(self):
        """Drop the gradients of this term's tape (`tape.clear_grad()`), as on the other kinds."""
        self.tape.clear_grad()

    # -- drawing (rustograd_cy/dot.py, shared by every term kind) ---------------------------------

    def dot(self, file=None, **options):
        """Graphviz DOT of the graph this term depends on, written to `file` or returned.

        Options: show_values, vertical, highlight, connect_to, outputs, precision, label_depth;
        see `rustograd_cy.dot.dot`.
        """
        return _dot.dot(self, file, **options)

    def to_graphviz(self, **options):
        """The graph as a `graphviz.Source` (the graphviz package); options as `dot()`."""
        return _dot.to_graphviz(self, **options)

    def _repr_svg_(self):
        """Jupyter shows a term as its graph when Graphviz is installed."""
        return _dot.repr_svg(self)

    def _key(self):
        """This node's identity in `_graph()` records."""
        return self.index

    def _graph(self):
        """The nodes this term depends on, operands first, as records for drawing:
        (key, name or None, op, infix, operand keys, data, grad). An apply node has its function's
        name as op; a leaf its name as name."""
        cdef Tape tape = self.tape
        cdef int took = tape._begin_read()  # one consistent picture, however long it takes
        cdef _Cone cone
        cdef rg_index pos, i
        try:
            cone = tape._cone(self.index)
            records = []
            for pos in range(cone.n):
                i = cone.idx[pos]
                name, op, infix, operands = tape._describe(i)
                records.append((i, name, op, infix, operands, tape._wrap(i).data, tape._wrap(i).grad))
            return records
        finally:
            tape._end_read(took)

    @property
    def data(self):
        """The value: a leaf's own, else the one computed by eval(); None if never computed or stale.

        While another thread sweeps or reads this tape, RuntimeError (give each thread its own tape)."""
        cdef Tape tape = self.tape
        cdef rg_tape *c = &tape.c
        cdef int took = tape._begin_read()
        try:
            if tape.b.size:
                _check_row(tape, self.index, took)
                return _batch_data(tape, self.index)
            if rg_is_leaf(c.op[self.index]) or c.stamp[self.index] == c.epoch:
                return c.value[self.index]
            return None
        finally:
            tape._end_read(took)

    @property
    def grad(self):
        """d(output)/d(self) from the last backprop(), or None if there has been none since clear_grad().

        While another thread sweeps or reads this tape, RuntimeError (give each thread its own tape)."""
        cdef Tape tape = self.tape
        cdef int took = tape._begin_read()
        try:
            if tape.b.size:
                _check_row(tape, self.index, took)
                return _batch_grad(tape, self.index)
            if tape._grad_output < 0:
                return None
            return tape.c.grad[self.index]
        finally:
            tape._end_read(took)

    @data.setter
    def data(self, value):
        raise read_only_error("data")

    @grad.setter
    def grad(self, value):
        raise read_only_error("grad")

    @property
    def name(self):
        """The leaf's or function's name, or for an operation its expression, such as '(a + b) * c'."""
        cdef int op = self.tape.c.op[self.index]
        if rg_is_leaf(op):
            return self.tape._describe(self.index)[0]
        return self.tape._label(self.index)
