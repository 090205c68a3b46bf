# Batched replay: included by _tape.pyx, whose Tape methods hand over to these functions when the
# tape is batched (tape.b.size > 0). The sweeps themselves are src/rg_batch.c.
#
# The rule: a leaf set() to a 1-D array of length B puts the tape in batch mode with B samples; every
# leaf not holding an array is broadcast. Nodes that do not depend on an array leaf ("uniform" ones,
# such as a penalty on the weights) are computed once per sweep, as numbers; their .data and .grad
# are numbers (the gradient summed over the batch), like a scalar leaf's. The tape is batched while
# at least one leaf holds an array: setting the last one back to a number returns it to scalar mode
# and frees the rows. Changing which leaves hold arrays (so also switching mode) or the batch size
# drops gradients (`.grad` is None until the next backprop()).
import os
import warnings

import numpy as np
from rustograd_cy.errors import NonFiniteError as _NonFiniteError
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer

cdef int _num_threads = 1

# -- streaming (rg_stream_batch in src/rg_batch.c) -------------------------------------------------
# A tape whose rows for all its nodes (nodes x B x 16 bytes: a value and a gradient per sample) would
# take more than _row_limit bytes holds no rows: eval() and backprop() stream the batch chunk by
# chunk, and B-long arrays are kept only for what the user reads (see _Stream).
cdef double _row_limit = 256.0 * 1024 * 1024
cdef int64_t _stream_chunk = 0  # TESTS: samples per streamed chunk (0: chosen by the C sweep)


def set_row_limit(nbytes):
    """The most bytes a batched tape's rows may take: every node's B values and B gradients,
    nodes x B x 16 bytes (default 256 MiB). A tape over it streams: eval() and backprop() run the
    batch a chunk of samples at a time (about a thousand; each thread holds one chunk's rows), and
    keep B-long arrays only for the swept output's values, the array leaves' gradients and the nodes
    named by tape.keep(). 0 streams every batch; float("inf") never. Returns the previous limit.

    See docs/batch.md ("Streaming") for what a streamed tape can and cannot read.
    """
    global _row_limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, float)):
        raise TypeError(f"set_row_limit() takes a number of bytes, not {type(nbytes).__name__}")
    if not nbytes >= 0:
        raise ValueError(f"set_row_limit() needs nbytes >= 0, got {nbytes}")
    before = get_row_limit()
    _row_limit = nbytes
    return before


def get_row_limit():
    """The row limit in bytes (set_row_limit()): an int, or inf."""
    return int(_row_limit) if _row_limit < float("inf") else _row_limit


def _test_stream_chunk(int64_t n):
    """TESTS ONLY: samples per chunk of streamed sweeps (0: the sweep's own choice)."""
    global _stream_chunk
    if n < 0:
        raise ValueError("chunk >= 0")
    _stream_chunk = n


def _test_streamed(Tape tape):
    """TESTS ONLY: (whether the tape's batch is streamed, samples per chunk of its last streamed
    sweep or None)."""
    st = tape._stream
    return bool(tape.b.streamed), (st.chunk if st is not None else None)


def _test_scratch_bytes(Tape tape):
    """TESTS ONLY: bytes of the scratch space the batched sweeps keep from one sweep to the next
    (a chunk's rows per thread, the dense groups' space), counted in nbytes."""
    return (tape.b.chunk_rows_cap + tape.b.gemm_work_cap) * sizeof(double)


def _test_retained(Tape tape):
    """TESTS ONLY: (whether the last streamed eval() retained its rows, whether the last streamed
    backprop() read them instead of sweeping forward)."""
    st = tape._stream
    return (st is not None and st.retained is not None), (st is not None and st.reused)


class _Stream:
    """A batched tape's arrays outside the rows: `leaf` (node -> its data, a private copy of what
    set() got), and, while the tape streams, `values` (node -> (epoch, B values) kept by eval()),
    `grads` (node -> B gradients kept by the last backprop()), `grad_cone` (that backprop's cone);
    `keep` the nodes tape.keep() named; `chunk` the last streamed sweep's samples per chunk;
    `retained` (cone, epoch) when the last streamed sweep was an eval() of that cone that kept its
    rows in C (rg_stream.retain), for the backprop() after it, else None; `reused` whether the last
    streamed backprop() read them."""
    __slots__ = ("leaf", "values", "grads", "grad_cone", "keep", "chunk", "retained", "reused")

    def __init__(self):
        self.leaf = {}
        self.values = {}
        self.grads = {}
        self.grad_cone = None
        self.keep = set()
        self.chunk = None
        self.retained = None
        self.reused = False


cdef int _new_stream(Tape tape) except -1:
    """A fresh _Stream for a new batch (or scalar mode); tape.keep()'s nodes stay named."""
    keep = tape._stream.keep if tape._stream is not None else set()
    tape._stream = _Stream()
    tape._stream.keep = keep
    return 0


cdef object _st(Tape tape):
    if tape._stream is None:
        tape._stream = _Stream()
    return tape._stream


cdef bint _stream_wanted(Tape tape, int64_t size, int64_t nodes):
    """Whether rows of `nodes` nodes for `size` samples exceed the limit (the tape then streams)."""
    return <double>size * 16.0 * <double>nodes > _row_limit


cdef int _go_streamed(Tape tape) except -1:
    """Drops the rows (the leaves' data stay in _Stream.leaf). Every computed value is stale
    after, as after a set(), and the gradients are dropped."""
    rg_batch_set_streamed(&tape.b, 1)
    tape._hollow_values = None
    tape._hollow_grads = None
    tape._next_epoch()
    _drop_grads(tape)
    return 0


cdef int _go_full(Tape tape, str why) except -1:
    """Allocates every reserved node's rows and copies the leaves' data in; values are stale
    after, gradients dropped. MemoryError (saying `why` rows are needed) if they do not fit."""
    cdef int err = rg_batch_set_streamed(&tape.b, 0)
    cdef const double[::1] view
    if err:
        need = tape.b.rows * tape.b.size * 16 / 2**30
        raise MemoryError(
            f"{why} needs every node's row of {tape.b.size} samples ({need:.2f} GiB for "
            f"{tape.b.rows} nodes), which could not be allocated; streaming (rg.set_row_limit()) "
            f"covers eval() and backprop() of outputs without apply() nodes or callbacks")
    for i, arr in _st(tape).leaf.items():
        if i < tape.b.rows:
            view = arr
            memcpy(tape.b.value + <int64_t>i * tape.b.size, &view[0],
                   <size_t>tape.b.size * sizeof(double))
    tape._next_epoch()
    _drop_grads(tape)
    return 0


cdef int _refuse_streamed(Tape tape, str what) except -1:
    if tape.b.streamed:
        raise ValueError(
            f"{what} needs every node's row of the batch, and this tape streams its {tape.b.size} "
            f"samples (its rows would take {tape.c.size * tape.b.size * 16 / 2**20:.0f} MiB, over "
            f"rg.get_row_limit() = {get_row_limit()}); raise the limit with rg.set_row_limit() "
            f"(then eval() again), or use eval()/backprop()")
    return 0


def _keep(Tape tape, terms):
    """tape.keep()'s body: the nodes whose rows streamed sweeps keep."""
    tape._check_idle()  # first: a sweep of another thread reads the set this replaces
    cdef TapeTerm term
    nodes = set()
    for x in terms:
        if type(x) is not TapeTerm:
            raise TypeError(f"keep() takes terms of this tape, not {type(x).__name__}")
        term = x
        if term.tape is not tape:
            raise TapeMismatchError("keep() got a term of another tape")
        nodes.add(term.index)
    _st(tape).keep = nodes


cdef int _raise_stream_bad(Tape tape, _Cone cone, rg_stream *st, str caller) except -1:
    """The anomaly check's NonFiniteError for what a streamed sweep found (st.bad_pos >= 0),
    worded as _scan_batch words it for full rows."""
    cdef rg_index i = cone.idx[st.bad_pos]
    quantity = "gradient" if st.bad_grad else "value"
    if st.bad_sample >= 0:
        where = f"{caller} (sample {st.bad_sample} of the batch)"
    else:
        where = f"{caller} ({'the same for every sample' if quantity == 'value' else 'summed over the batch'})"
    op = OPS[tape.c.op[i]][0]
    raise non_finite_error(where, quantity, i, tape._label(i), op, st.bad_value)


cdef object _stream_rows(Tape tape, _Cone cone, list nodes, rg_stream_row **out):
    """B-long float64 arrays for `nodes` (new ones, or the leaves' data), as rg_stream_rows in
    *out (malloc'ed; the caller frees it); returns the arrays (keep them alive while C reads them)."""
    cdef Py_ssize_t k, n = len(nodes)
    cdef double[::1] view
    cdef rg_stream_row *rows = <rg_stream_row *>malloc(<size_t>(n if n > 0 else 1) * sizeof(rg_stream_row))
    if rows == NULL:
        raise MemoryError("no memory for the streamed sweep's list of rows")
    arrays = []
    try:
        for k in range(n):
            arr = nodes[k][1]
            view = arr
            rows[k].node = nodes[k][0]
            rows[k].data = &view[0]
            arrays.append(arr)
    except BaseException:
        free(rows)
        raise
    out[0] = rows
    return arrays


cdef int _stream_sweep(Tape tape, _Cone cone, rg_index output, bint reverse, int threads) except -1:
    """eval() (reverse False) or backprop() of a streamed tape's apply-free, unstaged cone."""
    cdef const rg_plan *plan = _plan(tape, cone)
    cdef rg_stream st
    cdef rg_stream_row *inputs = NULL
    cdef rg_stream_row *values = NULL
    cdef rg_stream_row *grads = NULL
    cdef int64_t size = tape.b.size
    cdef int err = 0
    cdef rg_index i
    cdef bint check = tape._check_finite or anomaly_on()
    state = _st(tape)
    leaves = [(i, state.leaf[i]) for i in sorted(tape._array_leaves) if _in_cone(cone, i)]
    kept = [i for i in sorted(state.keep) if _in_cone(cone, i) and tape.b.varying[i]
            and i not in tape._array_leaves]
    wanted_values = [] if reverse else sorted(set(kept) | ({output} if tape.b.varying[output] and
                                                            output not in tape._array_leaves else set()))
    wanted_grads = sorted(set(kept) | {i for i, _ in leaves}) if reverse else []
    value_rows = [(i, np.empty(size)) for i in wanted_values]
    grad_rows = [(i, np.empty(size)) for i in wanted_grads]
    memset(&st, 0, sizeof(st))
    try:
        keep_in = _stream_rows(tape, cone, leaves, &inputs)
        keep_v = _stream_rows(tape, cone, value_rows, &values)
        keep_g = _stream_rows(tape, cone, grad_rows, &grads)
        st.inputs = inputs
        st.values = values
        st.grads = grads
        st.n_inputs = len(leaves)
        st.n_values = len(value_rows)
        st.n_grads = len(grad_rows)
        st.chunk = _stream_chunk
        st.fill_inner = len(kept) > 0
        st.check = check
        # An eval() of a loss (an output reduced over the batch, which is what a training step
        # backprops) keeps its value rows when they fit in the row limit (a chunk's rows are a few
        # per layer output, far fewer than the tape's), and the backprop() after it reads them
        # instead of running each chunk forward again. A prediction (a varying output) keeps none.
        st.retain_bytes = 0.0 if tape.b.varying[output] else _row_limit
        st.reuse = (reverse and state.retained is not None and state.retained[0] is cone
                    and state.retained[1] == tape.c.epoch)
        if not reverse:
            state.retained = None  # (this sweep overwrites them; if it fails, none are left to read)
        if reverse:
            _first_reach(tape, cone)
        with nogil:
            err = rg_stream_batch(&tape.c, &tape.b, plan, cone.idx, cone.first if reverse else NULL,
                                  cone.n, threads, &st, reverse)
        if err:
            raise MemoryError("no memory for the streamed sweep's rows and scratch space")
    finally:
        free(inputs)
        free(values)
        free(grads)
    state.chunk = st.chunk_used if st.chunk_used > 0 else None
    if not reverse:
        state.retained = (cone, tape.c.epoch) if st.retained else None
    else:
        state.reused = bool(st.retained)
        if not st.retained:
            state.retained = None
    if reverse:
        state.grads = dict(grad_rows)
        state.grad_cone = cone
    else:
        # (values of an older epoch are stale: drop them, so a loop over outputs holds no more)
        state.values = {i: v for i, v in state.values.items() if v[0] == tape.c.epoch}
        for i, arr in value_rows:
            state.values[i] = (tape.c.epoch, arr)
        _stamp(tape, cone, tape.c.epoch)
        cone.valid_epoch = tape.c.epoch
    if check and st.bad_pos >= 0:
        _raise_stream_bad(tape, cone, &st, "backprop()" if reverse else "eval()")
    return 0


# -- the BLAS for dense layers (src/rg_plan.h's dense groups) --------------------------------------
# scipy.linalg.cython_blas exports its BLAS's dgemm as a C function pointer (a capsule); the C sweeps
# get that pointer, so they call the BLAS without Python. Loaded when this module is imported.

cdef bint _blas_on = True  # set_blas(); lowering also needs the BLAS loaded
_blas = {"library": None, "reason": None, "warned": False, "threads_fn": None}


def _load_blas(module="scipy.linalg.cython_blas"):
    """Loads dgemm from `module` (a Cython module exporting it, as scipy.linalg.cython_blas does)
    into the C sweeps; True on success. On failure the sweeps use the loops and the reason is kept
    for the warning (see _blas_warn)."""
    import importlib
    rg_set_dgemm(NULL)
    _blas.update(library=None, reason=None, warned=False, threads_fn=None)
    try:
        capsule = importlib.import_module(module).__pyx_capi__["dgemm"]
        ptr = PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))
    except Exception as exc:  # not installed, or broken: the loops still work
        _blas["reason"] = f"{module}'s dgemm could not be loaded ({type(exc).__name__}: {exc})"
        return False
    rg_set_dgemm(<rg_dgemm_fn>ptr)
    _blas["library"] = _blas_name(module)
    _blas["threads_fn"] = _load_blas_threads(module)
    return True


def _load_blas_threads(module):
    """Hands the C sweeps scipy's OpenBLAS openblas_set_num_threads_local (OpenBLAS >= 0.3.27), so
    their products run on one BLAS thread in each sweep thread; the name found, or None (then the
    BLAS runs as many threads as it is configured to)."""
    import ctypes
    import glob
    rg_set_blas_threads_fn(NULL)
    if module != "scipy.linalg.cython_blas":
        return None
    try:
        import scipy
        libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)),
                                      "scipy.libs", "libscipy_openblas*.so*"))
        for path in libs:
            lib = ctypes.CDLL(path)
            fn = getattr(lib, "openblas_set_num_threads_local", None)
            if fn is not None:
                address = ctypes.cast(fn, ctypes.c_void_p).value
                rg_set_blas_threads_fn(<rg_blas_threads_fn><size_t>address)
                return "openblas_set_num_threads_local"
    except Exception:
        pass
    return None


def _blas_name(module):
    if module != "scipy.linalg.cython_blas":
        return module
    try:
        import scipy
        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')} (through scipy {scipy.__version__})".strip()
    except Exception:
        return "scipy's BLAS"


cdef int _blas_warn() except -1:
    """Once per loading: a sweep that would use matrix products runs the loops instead."""
    if _blas_on and not rg_have_dgemm() and not _blas["warned"]:
        _blas["warned"] = True
        warnings.warn(
            f"rustograd_cy: no BLAS for dense layers: {_blas['reason']}; batched sweeps run them "
            f"as loops (correct, slower). Install scipy (pip install scipy) for matrix products, "
            f"or call rg.set_blas(False) to choose the loops and silence this.",
            RuntimeWarning, stacklevel=3)
    return 0


def set_blas(bint on):
    """Run dense layers (groups of chains b + w1*x1 + ... that read the same rows, as rg.nn.Linear
    makes) as BLAS matrix products in batched sweeps (on by default), or off: the exact path, each
    chain summed in a per-sample loop's order. Returns whether products are now used (False when
    no BLAS could be loaded: see blas_info()).

    Matrix products sum in another order, so with them values and gradients agree with the exact
    path to rounding (docs/batch.md says how closely), not bit for bit.
    """
    global _blas_on
    _blas_on = on
    return bool(on and rg_have_dgemm())


def get_blas():
    """Whether batched sweeps run dense layers as BLAS matrix products (see set_blas())."""
    return bool(_blas_on and rg_have_dgemm())


def blas_info():
    """{"library", "threads", "on", "reason"}: the BLAS the batched sweeps call for dense layers
    (None if none loaded, with the reason), its thread count where it can be read, and set_blas()."""
    threads = None
    if _blas["threads_fn"] is not None:
        threads = "1 per sweep thread (rg.set_num_threads splits the samples)"
    elif _blas["library"] is not None:
        env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
        threads = int(env) if env and env.isdigit() else f"the BLAS's default (often one per core: {os.cpu_count()})"
    return {"library": _blas["library"], "threads": threads, "on": get_blas(),
            "reason": _blas["reason"]}


_load_blas()


def set_num_threads(int n):
    """Split long batches of apply-free tapes across `n` threads (default 1); results do not depend on n.

    A sweep uses a thread per ~5 x 10^5 loop-samples at most (each varying node, or term of a fused
    sum, is a loop over the samples), so short batches stay in one thread: the moons MLP (374 such
    loops) needs about 3000 samples before two threads pay.
    """
    global _num_threads
    if n < 1:
        raise ValueError(f"set_num_threads() needs n >= 1, got {n}")
    _num_threads = n


def get_num_threads():
    """The number of threads batched sweeps may use (set_num_threads())."""
    return _num_threads


def set_vector_math(bint on):
    """Compute exp, log, sin, cos and tanh in batched sweeps with vector math (glibc's libmvec, 2-8
    samples per call), or with libm one sample at a time. Returns whether it is now on.

    On by default where the library was built with libmvec (glibc on x86-64). It is within 4 ulp of
    libm, so with it on these ops' values agree with a per-sample loop to that accuracy; off, batched
    values are bit-identical to a per-sample loop's.
    """
    return bool(rg_set_vector_math(on))


def get_vector_math():
    """Whether batched sweeps use vector math (see set_vector_math())."""
    return bool(rg_vector_math())


def _test_plan(TapeTerm term):
    """TESTS ONLY: how the batched C sweeps run term's cone (src/rg_plan.h): the counts of fused
    chains, of their links, of varying steps, of uniform nodes and of the uniform steps left after
    fusing (and their runs of consecutive nodes), of uniform chains of squares run by strides
    (squares), of dense groups (those whose weights are read in place: in_place) and their chains.
    Batch mode only."""
    cdef Tape tape = term.tape
    cdef int32_t g
    if not tape.b.size:
        raise ValueError("plans are made in batch mode only")
    _prepare(tape, term.index)
    cdef const rg_plan *plan = _plan(tape, tape._cone(term.index))
    return {"chains": plan.n_chains, "links": plan.n_links, "steps": plan.n_steps,
            "uniform": plan.n_uniform, "groups": plan.n_groups, "grouped": plan.n_group_chains,
            "reductions": plan.n_reductions, "staged": bool(plan.staged),
            "uniform_steps": plan.n_uniform_steps, "uniform_runs": plan.n_uniform_runs,
            "in_place": sum(1 for g in range(plan.n_groups) if plan.groups[g].w_ld > 0),
            "squares": sum(1 for g in range(plan.n_chains) if plan.chains[g].squares)}


def _test_force_vector_level(int level):
    """TESTS ONLY: run vector math through libmvec's SSE2 (0), AVX2 (1) or AVX-512 (2) entry points,
    or the CPU's widest (-1), so each can be checked on one machine. False if the CPU lacks it."""
    return bool(rg_vmath_force_level(level))


cdef object _row(double *buf, int64_t size, rg_index i):
    """A copy of row i as a new ndarray (rows move when the batch grows, so no views are handed out)."""
    out = np.empty(size, dtype=np.float64)
    cdef double[::1] view = out
    memcpy(&view[0], buf + <int64_t>i * size, <size_t>size * sizeof(double))
    return out


cdef inline bint _any_nonzero(const double *x, int64_t n) noexcept nogil:
    cdef int64_t s
    for s in range(n):
        if x[s] != 0.0:
            return True
    return False


cdef object _as_batch(object value, str what):
    """`value` as a contiguous float64 array, checked to be numeric and 0-D or 1-D and non-empty."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise TypeError(f"{what} takes a real number or a 1-D array of them, not {type(value).__name__}") from exc
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{what} takes a real number or a 1-D array of real numbers; got an array of dtype "
            f"{arr.dtype} (a {type(value).__name__})"
        )
    if arr.ndim > 1:
        raise ValueError(f"{what} takes a 1-D array (one value per sample); got shape {arr.shape}")
    if arr.ndim == 0:
        return arr.astype(np.float64)  # (ascontiguousarray would make it 1-D)
    if arr.shape[0] == 0:
        raise ValueError(f"{what} got an empty array: a batch needs at least one sample")
    return np.ascontiguousarray(arr, dtype=np.float64)


cdef int _drop_grads(Tape tape) except -1:
    memset(tape.c.grad, 0, <size_t>tape.c.size * sizeof(double))
    tape._grad_output = -1
    tape._hollow_grads = None
    if tape._stream is not None:
        tape._stream.grads = {}
        tape._stream.grad_cone = None
    return 0


cdef int _reserve_in(rg_batch *b, int64_t rows) except -1:
    cdef int err = rg_batch_reserve(b, rows)
    if err == RG_EOVERFLOW:
        raise OverflowError(f"{rows} nodes x {b.size} samples do not fit in memory addresses")
    if err:
        raise MemoryError(f"no memory for {rows} nodes x {b.size} samples of batch rows")
    return 0


cdef int _reserve_rows(Tape tape, int64_t rows) except -1:
    return _reserve_in(&tape.b, rows)


cdef int _prepare(Tape tape, rg_index output) except -1:
    """Rows for nodes up to `output` (some may be new since the last sweep), each known to be varying
    or uniform."""
    _reserve_rows(tape, <int64_t>output + 1)
    rg_batch_classify(&tape.c, &tape.b, output + 1)
    return 0


cdef inline bint _varies(Tape tape, rg_index i):
    """Whether node i has per-sample values (call _prepare(tape, i) first)."""
    return tape.b.varying[i] != 0


cdef object _batch_values(Tape tape, rg_index i):
    """Node i's B values as a new ndarray: its row, or its one value repeated (eval()'s result, and
    what a callable gets). A streamed tape's: its kept array (ValueError if none)."""
    if _varies(tape, i) and tape.b.streamed:
        return _kept_values(tape, i).copy()
    if _varies(tape, i):
        return _row(tape.b.value, tape.b.size, i)
    return np.full(tape.b.size, tape.c.value[i])


cdef object _kept_values(Tape tape, rg_index i):
    """A streamed tape's B values of varying node i (current: check its stamp first)."""
    state = _st(tape)
    if i in state.leaf:
        return state.leaf[i]
    kept = state.values.get(i)
    if kept is not None and kept[0] == tape.c.epoch:
        return kept[1]
    raise ValueError(
        f"{tape._label(i)!r} (node {i}) has no per-sample values to read: this tape streams its "
        f"{tape.b.size} samples (rows over rg.get_row_limit()), and keeps B values only of the "
        f"outputs eval() swept, the array leaves and the nodes named by tape.keep(); call "
        f"tape.keep(term) and eval() again, or raise the limit with rg.set_row_limit()")


cdef bint _reduced(Tape tape, rg_index i) except -1:
    """Whether node i is one number for the batch because it reduces over it (rg.mean, rg.sum): a
    uniform node with a reduction in its cone (call _prepare(tape, i) first)."""
    if _varies(tape, i):
        return False
    return _plan(tape, tape._cone(i)).n_reductions > 0


cdef object _eval_result(Tape tape, rg_index i):
    """eval()'s result in batch mode: a float for a reduced node, else the node's B values."""
    _prepare(tape, i)
    if _reduced(tape, i):
        return tape.c.value[i]
    return _batch_values(tape, i)


cdef int _ndim(object value):
    try:
        return np.ndim(value)
    except ValueError:  # ragged nesting: an array-like, though a bad one (_as_batch says why)
        return 1


cdef int _set_value(Tape tape, rg_index index, object value) except -1:
    """set() of a leaf: a number, or an array-like of them (a batch; a 0-D array is a number)."""
    if _is_real(value):
        return _set_scalar(tape, index, _real(value, "set()'s value"))
    if isinstance(value, np.ndarray) or (not isinstance(value, (str, bytes)) and _ndim(value) > 0):
        return _set_array(tape, index, value)
    return _set_scalar(tape, index, _real(value, "set()'s value"))  # raises the usual TypeError


cdef int _set_array(Tape tape, rg_index index, object value) except -1:
    """set() of a leaf to an array (or a 0-D array, which is a number)."""
    arr = _as_batch(value, "set()")
    if arr.ndim == 0:
        return _set_scalar(tape, index, float(arr))
    cdef int64_t size = arr.shape[0]
    cdef rg_batch fresh
    # Only read (a read-only, broadcast or frombuffer array is fine), and taken before anything
    # changes: every check and allocation that can fail comes first, so a failing set() leaves the
    # tape as it was.
    cdef const double[::1] view = arr
    if tape.b.size == 0 or size != tape.b.size:
        others = tape._array_leaves - {index}
        if others:
            other = min(others)
            raise ValueError(
                f"this tape is batched with {tape.b.size} samples ({tape._label(other)!r} holds an "
                f"array of that length), so set() needs an array of {tape.b.size}, not {size}; to "
                f"change the batch size, set every array leaf to a number first"
            )
        # Allocate the new rows before dropping anything, so a failure leaves the tape as it was.
        # Rows over the limit are not allocated: the batch streams.
        memset(&fresh, 0, sizeof(fresh))
        fresh.size = size
        fresh.streamed = _stream_wanted(tape, size, tape.c.size)
        _reserve_in(&fresh, tape.c.size)
        data = np.array(arr, dtype=np.float64, copy=True)  # (before the tape changes: may fail)
        rg_batch_free(&tape.b)
        tape.b = fresh
        _new_stream(tape)
        _drop_grads(tape)
    else:
        _reserve_rows(tape, tape.c.size)
        data = np.array(arr, dtype=np.float64, copy=True)
    # The leaf's data, kept outside the rows too (a streamed tape has none; _go_full copies back).
    _st(tape).leaf[index] = data
    if not tape.b.streamed:
        memcpy(tape.b.value + <int64_t>index * size, &view[0], <size_t>size * sizeof(double))
    if not tape.b.fixed[index]:
        tape.b.fixed[index] = 1
        _array_leaves_changed(tape)
    tape._array_leaves.add(index)
    return 0


cdef int _array_leaves_changed(Tape tape) except -1:
    """Which nodes vary has changed: classify them again, and drop the gradients, which were computed
    with the old split into rows and numbers."""
    tape.b.classified = 0
    tape._split += 1
    tape._hollow_values = None  # every value is stale now (set() moved the epoch)
    return _drop_grads(tape)


cdef int _set_scalar(Tape tape, rg_index index, double v) except -1:
    tape.c.value[index] = v
    if index in tape._array_leaves:
        tape._array_leaves.discard(index)
        tape.b.fixed[index] = 0
        _st(tape).leaf.pop(index, None)
        _array_leaves_changed(tape)
        if not tape._array_leaves:  # the last array leaf: back to scalar mode
            rg_batch_free(&tape.b)
            _drop_grads(tape)
            _new_stream(tape)
    return 0


cdef object _callable_row(Tape tape, rg_index i, object result, str what):
    """apply node i's callable result (a number or B numbers) as B float64s; a wrong shape names
    the node. `what` is "function" or "derivative"."""
    cdef int64_t size = tape.b.size
    where = f"the {what} of apply({tape._names[i]!r}) (node {i})"
    try:
        arr = _as_batch(result, where)
    except TypeError as exc:
        raise TypeError(f"{exc}; in batch mode it gets a 1-D array and must return one") from None
    if arr.ndim == 0:
        return np.full(size, float(arr))
    if arr.shape[0] != size:
        raise ValueError(f"{where} returned {arr.shape[0]} values for a batch of {size}")
    return arr


cdef int _write_row(Tape tape, rg_index i, object result, str what) except -1:
    """Stores a callable's result as row i (see _callable_row)."""
    cdef int64_t size = tape.b.size
    cdef const double[::1] view = _callable_row(tape, i, result, what)
    memcpy(tape.b.value + <int64_t>i * size, &view[0], <size_t>size * sizeof(double))
    return 0


cdef const rg_plan *_plan(Tape tape, _Cone cone) except NULL:
    """The cone's plan (src/rg_plan.h): the steps the C sweeps run, and the list of its uniform
    nodes, which every reverse sweep zeroes. Made once per split of the nodes into varying and
    uniform ones. Call _prepare() first."""
    cdef bint gemm = tape._fuse_sums and _blas_on and rg_have_dgemm()
    cdef uint64_t key = tape._split * 4 + tape._fuse_sums * 2 + gemm
    if cone.plan_key != key:
        if tape._hollow_values is cone:  # rows the old plan left unwritten
            _fill_values(tape)
        if tape._hollow_grads is cone:
            _fill_grads(tape)
        rg_plan_free(&cone.plan)
        cone.plan_key = 0
        if rg_plan_build(&cone.plan, &tape.c, tape.b.varying, cone.idx, cone.n,
                         (RG_PLAN_FUSE if tape._fuse_sums else 0) | (RG_PLAN_GEMM if gemm else 0)):
            raise MemoryError("no memory to plan the batched sweeps")
        cone.plan_key = key
        if tape._fuse_sums and not gemm:
            _blas_warn()
    return &cone.plan


cdef int _fill_values(Tape tape, _Cone unless=None) except -1:
    """Writes the value rows a fused eval() left unwritten (unless that was `unless`'s eval), before
    they are read or their chains' operands change."""
    if tape.b.streamed:
        tape._hollow_values = None
        return 0
    if tape._hollow_values is not None and tape._hollow_values is not unless:
        rg_fill_inner_values(&tape.c, &tape._hollow_values.plan, &tape.b)
        tape._hollow_values = None
    return 0


cdef int _fill_grads(Tape tape) except -1:
    """Writes the gradient rows a fused backprop() left unwritten, before they are read."""
    if tape.b.streamed:
        tape._hollow_grads = None
        return 0
    if tape._hollow_grads is not None:
        rg_fill_inner_grads(&tape._hollow_grads.plan, &tape.b)
        tape._hollow_grads = None
    return 0


cdef int _forward_batch(Tape tape, rg_index output, object callback) except -1:
    cdef _Cone cone = tape._cone(output)
    cdef const rg_plan *plan
    cdef rg_stamp epoch = tape.c.epoch
    cdef rg_index pos = 0, end, stop, i
    cdef int64_t size = tape.b.size
    cdef int threads = _num_threads
    cdef int err = 0
    tape._check_idle()
    _prepare(tape, output)
    # Streamed or full rows (set_row_limit()): a cone the C sweeps run alone, on a tape whose rows
    # would exceed the limit, streams; any other needs full rows. A switch makes values stale.
    cdef bint streamable = callback is None and not cone.has_apply and not _plan(tape, cone).staged
    if streamable and _stream_wanted(tape, size, tape.c.size):
        if not tape.b.streamed:
            _go_streamed(tape)
        tape._take()
        try:
            _stream_sweep(tape, cone, output, False, threads)
        finally:
            tape._busy = False
        return 0
    if tape.b.streamed:
        _go_full(tape, "eval() with a callback" if callback is not None else
                 "eval() of an output with apply() nodes" if cone.has_apply else
                 "eval() of a node that varies and reads rg.mean()/rg.sum()" if not streamable
                 else "eval()")
    epoch = tape.c.epoch
    _fill_values(tape, unless=cone)  # (this cone's own are written by this sweep, or stay unwritten)
    tape._take()
    try:
        if callback is None and not cone.has_apply:  # all in C: chunked, maybe threaded
            plan = _plan(tape, cone)
            with nogil:
                err = rg_forward_batch_all(&tape.c, &tape.b, plan, cone.idx, cone.n, threads)
            if err:
                raise MemoryError("no memory for the batched sweep's scratch space")
            tape._hollow_values = cone if plan.n_chains > 0 else None
        else:  # one chunk of all samples, so a callable sees the whole batch at once
            while pos < cone.n:
                end = cone.n if callback is None else pos + 1
                with nogil:
                    stop = rg_forward_batch(&tape.c, &tape.b, cone.idx, pos, end, 0, size,
                                            RG_SWEEP_BOTH)
                if stop < end:
                    i = cone.idx[stop]
                    f = tape._funcs[i][0]
                    _write_row(tape, i, f(_batch_values(tape, tape.c.lhs[i])), "function")
                    stop += 1
                pos = stop
                if callback is not None:
                    callback(tape._wrap(cone.idx[pos - 1]))
            tape._hollow_values = None  # every row is written now
        _stamp(tape, cone, epoch)
    finally:
        tape._busy = False
    cone.valid_epoch = epoch
    if tape._check_finite or anomaly_on():
        _fill_values(tape)
        _scan_batch(tape, cone, tape.b.value, tape.c.value, False, "eval()", "value")
    if tape._guards is not None:  # (comparisons are never a chain's unwritten inner rows)
        tape._check_guards(cone)
    return 0


cdef int _stamp(Tape tape, _Cone cone, rg_stamp epoch) except -1:
    """Marks the cone's values current after a batched sweep (which stamps nothing itself): by its
    runs of consecutive nodes, listed once, where they are worth keeping (a model's cone is a few
    long runs); else node by node."""
    cdef rg_index count
    if cone.n_runs == 0:
        count = rg_cone_runs(cone.idx, NULL, cone.n, NULL)
        if not rg_runs_worth_keeping(count, cone.n):
            cone.n_runs = -1
        else:
            cone.runs = <rg_index *>malloc(2 * <size_t>count * sizeof(rg_index))
            if cone.runs == NULL:
                raise MemoryError("no memory for the cone's runs of nodes")
            cone.n_runs = rg_cone_runs(cone.idx, NULL, cone.n, cone.runs)
    with nogil:
        if cone.n_runs > 0:
            rg_stamp_runs(&tape.c, cone.runs, cone.n_runs, epoch)
        else:
            rg_stamp_cone(&tape.c, cone.idx, cone.n, epoch)
    return 0


cdef int _scan_batch(Tape tape, _Cone cone, const double *rows, const double *scalars,
                     bint descending, str caller, str quantity) except -1:
    """The anomaly check over a batched sweep's results: rows of varying nodes, numbers of uniform ones."""
    cdef rg_index pos = rg_first_nonfinite_batch(&tape.b, rows, scalars, cone.idx, cone.n, descending)
    if pos < 0:
        return 0
    cdef rg_index i = cone.idx[pos]
    if _varies(tape, i):
        return tape._raise_non_finite(i, rows + <int64_t>i * tape.b.size, tape.b.size, caller, quantity)
    where = "the same for every sample" if quantity == "value" else "summed over the batch"
    return tape._raise_non_finite(i, scalars + i, 1, f"{caller} ({where})", quantity)


cdef int _apply_reverse(Tape tape, rg_index i) except -1:
    """Adds an apply node's adjoint row times its derivative (called on the whole batch) to its operand's."""
    cdef int64_t size = tape.b.size, s
    cdef rg_index lhs = tape.c.lhs[i]
    cdef double *g = tape.b.grad + <int64_t>i * size
    cdef double *gl = tape.b.grad + <int64_t>lhs * size
    cdef const double[::1] d
    cdef double total = 0.0
    cdef bint varies = _varies(tape, lhs)
    if not _any_nonzero(g, size):
        return 0  # as in the scalar sweep, df is not called when the adjoint is 0
    df = tape._funcs[i][1]
    result = df(_batch_values(tape, lhs))
    arr = _callable_row(tape, i, result, "derivative")
    d = arr
    g = tape.b.grad + <int64_t>i * size  # again: df may have read rows (and so moved them)
    gl = tape.b.grad + <int64_t>lhs * size
    for s in range(size):
        if g[s] != 0.0 and d[s] != 0.0:  # as in the C sweeps: zero adjoints and partials add nothing
            if varies:
                gl[s] += g[s] * d[s]
            else:
                total += g[s] * d[s]
    if not varies:
        tape.c.grad[lhs] += total  # a uniform operand's gradient is the sum over the batch
    return 0


cdef int _backward_batch(Tape tape, rg_index output, object callback) except -1:
    cdef _Cone cone = tape._cone(output)
    cdef rg_index pos, last, stop
    cdef int64_t size = tape.b.size
    cdef int threads = _num_threads
    cdef int err = 0
    cdef double *scratch = NULL
    cdef const rg_plan *plan
    tape._require_values(cone, "backprop()")
    tape._check_idle()
    _prepare(tape, output)
    if tape.b.streamed:
        return _backward_streamed(tape, cone, output, callback, threads)
    _fill_values(tape, unless=cone)
    tape._hollow_grads = None
    tape._take()
    try:
        if tape._grad_output != output:
            # Keep the invariant: gradients are zero outside the last output's cone.
            memset(tape.c.grad, 0, <size_t>tape.c.size * sizeof(double))
            memset(tape.b.grad, 0, <size_t>tape.b.rows * <size_t>size * sizeof(double))
        tape._grad_output = output
        plan = _plan(tape, cone)
        if callback is None and not cone.has_apply:
            _first_reach(tape, cone)
            with nogil:
                err = rg_reverse_batch_all(&tape.c, &tape.b, plan, cone.idx, cone.first, cone.n,
                                           threads)
            if err:
                raise MemoryError("no memory for the batched sweep's scratch space")
            tape._hollow_grads = cone if plan.n_chains > 0 else None
        else:
            scratch = <double *>PyMem_Malloc(<size_t>size * sizeof(double))
            if scratch == NULL:
                raise MemoryError("no memory for the batched sweep's scratch space")
            with nogil:
                rg_reverse_begin_uniform(&tape.c, &tape.b, plan, cone.idx, cone.n)
                rg_reverse_begin_batch(&tape.b, cone.idx, cone.n, 0, size, True)
            pos = cone.n - 1
            while pos >= 0:
                last = 0 if callback is None else pos
                with nogil:
                    stop = rg_reverse_batch(&tape.c, &tape.b, cone.idx, NULL, pos, last, 0, size,
                                            tape.c.grad, scratch, RG_SWEEP_BOTH)
                if stop >= last:
                    _apply_reverse(tape, cone.idx[stop])
                    stop -= 1
                pos = stop
                if callback is not None:
                    callback(tape._wrap(cone.idx[pos + 1]))
    except BaseException:
        # A callable raised: leave no half-accumulated gradients behind.
        memset(tape.b.grad, 0, <size_t>tape.b.rows * <size_t>size * sizeof(double))
        _drop_grads(tape)
        raise
    finally:
        tape._busy = False
        PyMem_Free(scratch)
    if tape._check_finite or anomaly_on():  # the gradients stay, for a look at them
        _fill_values(tape)
        _fill_grads(tape)
        _scan_batch(tape, cone, tape.b.value, tape.c.value, False, "backprop()", "value")
        _scan_batch(tape, cone, tape.b.grad, tape.c.grad, True, "backprop()", "gradient")
    return 0


cdef int _backward_streamed(Tape tape, _Cone cone, rg_index output, object callback,
                            int threads) except -1:
    """backprop() of a streamed tape: each chunk forward and back (rg_stream_batch)."""
    if callback is not None or cone.has_apply or _plan(tape, cone).staged:
        _refuse_streamed(tape, "backprop() with a callback" if callback is not None else "backprop()")
    tape._take()
    try:
        if tape._grad_output != output:
            memset(tape.c.grad, 0, <size_t>tape.c.size * sizeof(double))
        tape._grad_output = output
        _stream_sweep(tape, cone, output, True, threads)
    except _NonFiniteError:
        raise  # the gradients stay, for a look at them
    except BaseException:
        _drop_grads(tape)
        raise
    finally:
        tape._busy = False
    return 0


cdef int _first_reach(Tape tape, _Cone cone) except -1:
    """The cone's rg_first_reach flags, made once (a cone's nodes never change)."""
    if cone.first != NULL:
        return 0
    cdef rg_index output = cone.idx[cone.n - 1]
    cdef uint8_t *mark = <uint8_t *>calloc(<size_t>output + 1, 1)
    cdef uint8_t *first = <uint8_t *>malloc(<size_t>cone.n)
    if mark == NULL or first == NULL:
        free(mark)
        free(first)
        raise MemoryError("no memory for the batched reverse sweep's flags")
    rg_first_reach(&tape.c, cone.idx, cone.n, mark, first)
    free(mark)
    cone.first = first
    return 0


cdef object _tangent_batch(Tape tape, rg_index output, rg_index var):
    """derive() in batch mode: d(output)/d(var) for each sample, as an ndarray."""
    cdef _Cone cone = tape._cone(output)
    cdef rg_index pos = 0, n = cone.n, i, lhs
    cdef int64_t size = tape.b.size, s
    cdef double *tl
    cdef double *ti
    cdef const double[::1] d
    tape._require_values(cone, "derive()")
    tape._check_idle()
    _prepare(tape, output)
    _refuse_streamed(tape, "derive()")
    if _plan(tape, cone).n_reductions > 0:
        raise NotImplementedError(
            f"derive() of {tape._label(output)!r} goes through a reduction over the batch "
            f"(rg.mean / rg.sum), which the batched tangent sweep does not follow; use backprop()"
        )
    _fill_values(tape)
    rg_fill_uniform_rows(&tape.c, &tape.b, cone.idx, cone.n)  # the tangent sweep reads every row
    cdef double *tangent = <double *>PyMem_Malloc((<size_t>output + 1) * <size_t>size * sizeof(double))
    if tangent == NULL:
        raise MemoryError("no memory for derive()'s tangent rows")
    tape._take()
    try:
        while True:
            with nogil:
                pos = rg_tangent_batch(&tape.c, &tape.b, cone.idx, pos, n, var, tangent, 0, size)
            if pos == n:
                break
            i = cone.idx[pos]  # an apply node: df on the whole batch, where a tangent is non-zero
            lhs = tape.c.lhs[i]
            tl = tangent + <int64_t>lhs * size
            ti = tangent + <int64_t>i * size
            memset(ti, 0, <size_t>size * sizeof(double))
            if _any_nonzero(tl, size):  # as in the scalar sweep, df is not called otherwise
                d = _callable_row(tape, i, tape._funcs[i][1](_row(tape.b.value, size, lhs)),
                                  "derivative")
                for s in range(size):
                    if tl[s] != 0.0 and d[s] != 0.0:
                        ti[s] = d[s] * tl[s]
            pos += 1
        if tape._check_finite or anomaly_on():
            _scan_batch(tape, cone, tape.b.value, tape.c.value, False, "derive()", "value")
            tape._scan(cone, tangent, size, False, "derive()", "tangent")
        return _row(tangent, size, output)
    finally:
        tape._busy = False
        PyMem_Free(tangent)


cdef object _batch_data(Tape tape, rg_index i):
    """A node's `.data` in batch mode: an ndarray for a node that varies across the batch, a number
    for one that does not (None while stale)."""
    _prepare(tape, i)
    cdef int op = tape.c.op[i]
    if not rg_is_leaf(op) and tape.c.stamp[i] != tape.c.epoch:
        return None
    if _varies(tape, i) and tape.b.streamed:
        return _kept_values(tape, i).copy()
    if _varies(tape, i):
        _fill_values(tape)
        return _row(tape.b.value, tape.b.size, i)
    return tape.c.value[i]


cdef object _batch_grad(Tape tape, rg_index i):
    """A node's `.grad` in batch mode: per sample for a node that varies across the batch, else the
    sum over the batch."""
    if tape._grad_output < 0:
        return None
    _prepare(tape, i)
    if _varies(tape, i) and tape.b.streamed:
        return _kept_grads(tape, i)
    if _varies(tape, i):
        _fill_grads(tape)
        return _row(tape.b.grad, tape.b.size, i)
    return tape.c.grad[i]


cdef object _kept_grads(Tape tape, rg_index i):
    """A streamed tape's B gradients of varying node i from the last backprop()."""
    state = _st(tape)
    if i in state.grads:
        return state.grads[i].copy()
    if state.grad_cone is None or not _in_cone(state.grad_cone, i):
        return np.zeros(tape.b.size)  # not in the last output's cone: 0, as with full rows
    raise ValueError(
        f"{tape._label(i)!r} (node {i}) has no per-sample gradients to read: this tape streams its "
        f"{tape.b.size} samples (rows over rg.get_row_limit()), and backprop() keeps B gradients "
        f"only of the array leaves and the nodes named by tape.keep(); call tape.keep(term) and "
        f"backprop() again, or raise the limit with rg.set_row_limit()")


cdef object _jacobian_batch(Tape tape, rg_index output, list indices):
    """jacobian() in batch mode: a (B, len(indices)) array whose row s holds d(output at sample s)/d
    (leaf) for each leaf, shared leaves included (their per-sample shares, not their sum).

    The node-by-node reverse sweep of rg_batch.c, run on a view of the batch in which every node
    varies: a chunk of samples at a time, each cone node's values (a uniform node's one value
    repeated) are copied into rows of the chunk's length, and the adjoints go to rows of their own,
    so a shared leaf's per-sample shares stay in its row instead of being summed in lanes. Neither
    .grad nor the plan is touched. Chunks fit in about 512 KiB (the whole batch at once when an
    apply() node must see it)."""
    cdef _Cone cone = tape._cone(output)
    cdef int64_t size = tape.b.size, s0, s1, chunk, s, width
    cdef rg_index pos, stop, i, lhs
    cdef Py_ssize_t j, count = len(indices)
    cdef rg_batch view
    cdef double *values = NULL
    cdef double *rows = NULL
    cdef uint8_t *every = NULL
    cdef const uint8_t *first = NULL
    cdef double *g
    cdef double *gl
    cdef double x
    cdef double[::1] d
    cdef double[:, ::1] cols
    tape._require_values(cone, "jacobian()")
    tape._check_idle()
    _prepare(tape, output)
    _refuse_streamed(tape, "jacobian()")
    _fill_values(tape)  # the rows a fused eval() left unwritten are read here
    if not cone.has_apply:
        _first_reach(tape, cone)  # so the chunk's adjoint rows need no zeroing
        first = cone.first
    chunk = size if cone.has_apply else min(size, max(<int64_t>1024, (512 * 1024) // (16 * <int64_t>cone.n)))
    cdef bint whole = chunk == size  # one chunk: read the batch's own value rows, no copies
    cdef size_t cells = (<size_t>output + 1) * <size_t>chunk
    if whole:
        rg_fill_uniform_rows(&tape.c, &tape.b, cone.idx, cone.n)
        rows = <double *>calloc(cells, sizeof(double))  # (zero pages: no need of `first`)
        first = NULL
    else:
        values = <double *>malloc(cells * sizeof(double))
        rows = <double *>malloc(cells * sizeof(double))
    every = <uint8_t *>malloc(<size_t>output + 1)
    if (values == NULL and not whole) or rows == NULL or every == NULL:
        free(values)
        free(rows)
        free(every)
        raise MemoryError(f"no memory for jacobian()'s {output + 1} x {chunk} rows")
    memset(every, 1, <size_t>output + 1)
    memcpy(&view, &tape.b, sizeof(rg_batch))
    view.value = tape.b.value if whole else values
    view.grad = rows
    view.varying = every
    out = np.zeros((count, size))
    cols = out
    tape._take()
    try:
        s0 = 0
        while s0 < size:
            s1 = min(size, s0 + chunk)
            width = s1 - s0
            view.size = width  # the rows' stride: the chunk's samples
            with nogil:
                for pos in range(0 if whole else cone.n):
                    i = cone.idx[pos]
                    if tape.b.varying[i]:
                        memcpy(values + <int64_t>i * width, tape.b.value + <int64_t>i * size + s0,
                               <size_t>width * sizeof(double))
                    else:
                        x = tape.c.value[i]
                        for s in range(width):
                            values[<int64_t>i * width + s] = x
                rg_reverse_begin_batch(&view, cone.idx, cone.n, 0, width, not whole and first == NULL)
            pos = cone.n - 1
            while pos >= 0:
                with nogil:
                    stop = rg_reverse_batch(&tape.c, &view, cone.idx, first, pos, 0, 0, width, NULL,
                                            NULL, RG_SWEEP_VARYING)
                if stop >= 0:  # an apply node (then the chunk is the whole batch): df on it
                    i = cone.idx[stop]
                    lhs = tape.c.lhs[i]
                    g = rows + <int64_t>i * width
                    gl = rows + <int64_t>lhs * width
                    if _any_nonzero(g, width):
                        d = _callable_row(tape, i, tape._funcs[i][1](_batch_values(tape, lhs)),
                                          "derivative")
                        for s in range(width):
                            if g[s] != 0.0 and d[s] != 0.0:
                                gl[s] += g[s] * d[s]
                pos = stop - 1
            if tape._check_finite or anomaly_on():
                _scan_chunk(tape, cone, rows, width, s0, "jacobian()", "gradient")
            for j in range(count):
                i = indices[j]
                if _in_cone(cone, i):
                    memcpy(&cols[j, s0], rows + <int64_t>i * width, <size_t>width * sizeof(double))
            s0 = s1
        return out.T  # (B, P), each column contiguous
    finally:
        tape._busy = False
        free(values)
        free(rows)
        free(every)


cdef int _scan_chunk(Tape tape, _Cone cone, const double *rows, int64_t width, int64_t s0,
                     str caller, str quantity) except -1:
    """The anomaly check (descending, as a reverse sweep's) over a chunk's rows of `width` samples
    starting at sample s0 of the batch: the error names the sample's index in the whole batch."""
    cdef rg_index pos = rg_first_nonfinite(rows, width, cone.idx, cone.n, True)
    if pos < 0:
        return 0
    cdef rg_index i = cone.idx[pos]
    cdef const double *row = rows + <int64_t>i * width
    cdef int64_t s = 0
    while isfinite(row[s]):
        s += 1
    cdef double number = row[s]
    op = OPS[tape.c.op[i]][0] if tape.c.op[i] != RG_APPLY else f"apply {tape._names[i]!r}"
    raise non_finite_error(f"{caller} (sample {s0 + s} of the batch)", quantity, i, tape._label(i),
                           op, number)


cdef bint _in_cone(_Cone cone, rg_index i) noexcept:
    """Whether node i is in the cone (its indices ascend: a binary search)."""
    cdef rg_index lo = 0, hi = cone.n - 1, mid
    while lo <= hi:
        mid = lo + (hi - lo) // 2
        if cone.idx[mid] == i:
            return True
        if cone.idx[mid] < i:
            lo = mid + 1
        else:
            hi = mid - 1
    return False


cdef size_t _stream_nbytes(Tape tape):
    """Bytes of the arrays a batched tape keeps outside its rows (leaves' data, kept rows, the
    value rows a streamed eval() retained for backprop())."""
    state = tape._stream
    if state is None:
        return 0
    cdef size_t total = sum(a.nbytes for a in state.leaf.values())
    total += tape.b.retained_cap * sizeof(double)
    total += sum(v[1].nbytes for v in state.values.values())
    total += sum(a.nbytes for a in state.grads.values())
    return total
