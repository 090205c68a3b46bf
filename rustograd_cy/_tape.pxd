# The tape and its term proxy. Bodies in _tape.pyx; shipped so other Cython code can cimport them.
from rustograd_cy._ctape cimport rg_batch, rg_index, rg_plan, rg_stamp, rg_tape
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint64_t


cdef class _Cone:
    cdef rg_index *idx              # ascending indices of the nodes the output depends on
    cdef rg_index n                 # their count; idx[n - 1] is the output itself
    cdef rg_stamp valid_epoch       # epoch in which all of the cone's values were last known current
    cdef bint has_apply             # an apply() node (a Python callable) is among them
    cdef uint8_t *first             # rg_first_reach's flags, made by the first batched backprop()
    cdef rg_plan plan               # how the C sweeps run it in batch mode (src/rg_plan.h)
    cdef uint64_t plan_key          # what the plan was made for (_plan()); 0: none made
    cdef rg_index *guards           # cone positions of the tape's guards in this cone (_check_guards)
    cdef uint8_t *outcomes          # ... and the outcome recorded for each
    cdef Py_ssize_t n_guards        # their count
    cdef Py_ssize_t guards_seen     # len(tape._guards) when they were listed (guards are only added)
    cdef rg_index *runs             # its runs of consecutive nodes (rg_cone_runs), for _stamp()
    cdef rg_index n_runs            # their count; 0: not made yet; -1: too many to be worth keeping
    cdef rg_index *order            # its computing nodes in level order (rg_level_order), for replays
    cdef rg_index n_order           # their count; 0: not made yet; -1: none (a small cone, no memory)


cdef class Tape:
    cdef rg_tape c                  # the node buffers and the epoch (src/rg_tape.h)
    cdef dict _names                # node index -> name, for leaves, named constants and apply nodes
    cdef dict _funcs                # node index -> (f, df) of an apply node
    cdef dict _cones                # output index -> _Cone, the few most recently built
    cdef rg_index _grad_output      # output of the last backprop(), -1 when there are no gradients
    cdef bint _busy                 # held by a sweep or a read (_take, _begin_read): see _check_idle
    cdef bint _reading              # ... and the holder is a read, not a sweep
    cdef unsigned long _owner       # the thread holding it (PyThread_get_thread_ident)
    cdef rg_batch b                 # batch rows (src/rg_batch.h); b.size == 0 in scalar mode
    cdef set _array_leaves          # leaves holding an array; the tape is batched while non-empty
    cdef uint64_t _split            # counts changes of which nodes vary (plans depend on it)
    cdef _Cone _hollow_values       # the cone whose fused eval() left its inner nodes' rows unwritten
    cdef _Cone _hollow_grads        # the cone whose fused backprop() did (src/rg_plan.h)
    cdef object _stream             # _Stream (_batch.pxi): leaves' data, rows kept when streaming
    cdef public bint _fuse_sums     # TESTS AND BENCHMARKS: False sweeps sums node by node
    cdef bint _check_finite         # scan each sweep's cone for NaN/inf (also on in detect_anomaly())
    cdef PyObject *_untracked       # first of the live proxies the cyclic GC does not track (_wrap())
    cdef public dict _guards        # comparison node -> outcome that bool() gave while recording, or None
    cdef rg_index _fresh_upto       # nodes below it hold values of epoch _fresh_epoch (_truth's sweep)
    cdef rg_stamp _fresh_epoch
    cdef object __weakref__

    cdef int _check_idle(self) except -1
    cdef int _take(self) except -1
    cdef int _begin_read(self) except -1
    cdef void _end_read(self, int took) noexcept
    cdef rg_index _push(self, int op, rg_index lhs, rg_index rhs, double value) except -1
    cdef rg_index _const(self, double value) except -1
    cdef rg_index _operand(self, object x) except -1
    cdef TapeTerm _wrap(self, rg_index index)
    cdef void _track_terms(self)
    cdef void _next_epoch(self)
    cdef str _label(self, rg_index i)
    cdef double _callable_result(self, object result, rg_index i) except? -1.0
    cdef _Cone _cone(self, rg_index output)
    cdef int _require_values(self, _Cone cone, str caller) except -1
    cdef int _forward(self, rg_index output, object callback) except -1
    cdef int _backward(self, rg_index output, object callback) except -1
    cdef double _tangent(self, rg_index output, rg_index var) except? -1.0
    cdef object _jacobian(self, rg_index output, list indices)
    cdef int _set(self, rg_index index, object value) except -1
    cdef int _check_guards(self, _Cone cone) except -1
    cdef int _list_guards(self, _Cone cone) except -1
    cdef int _scan(self, _Cone cone, const double *x, int64_t width, bint descending, str caller,
                   str quantity) except -1
    cdef int _raise_non_finite(self, rg_index i, const double *row, int64_t width, str where,
                               str quantity) except -1


# A TapeTerm's fields live in its base _TapeOps (the op methods, generated from
# rustograd_cy/_opspec.py), which holds the freelist: Cython keeps freelists on base classes only,
# and TapeTerm adds no field, so the freelist serves every TapeTerm.
cdef class _TapeOps:
    cdef readonly Tape tape         # the tape holding the node
    cdef readonly rg_index index    # the node's position on the tape
    cdef PyObject *_prev            # neighbours in the tape's list of untracked proxies (borrowed);
    cdef PyObject *_next            # both NULL while the proxy is tracked or first/last in the list


cdef class TapeTerm(_TapeOps):      # its __dealloc__ leaves the tape's list of untracked proxies
    pass
