# The pointer-based term kinds: every node its own object holding its operands. Bodies in _nodes.pyx.
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t


cdef class _Order:
    cdef PyObject **items           # borrowed nodes (the traversal's root keeps them alive)
    cdef Py_ssize_t n               # how many are held
    cdef Py_ssize_t cap             # how many fit before the next doubling

    cdef int push(self, PyObject *node) except -1


cdef class _GradRun:
    cdef bint superseded            # a later backprop() reached some node this one reached


cdef class _NodeOps:              # the op methods (generated from rustograd_cy/_opspec.py)
    pass


cdef class _Node(_NodeOps):
    cdef int op                     # op code of src/rg_ops.h
    cdef _Node a                    # first operand; None for leaves
    cdef _Node b                    # second operand; a again for unary ops, the exponent of powc
    cdef double value               # a leaf's value, else the last computed one
    cdef double grad                # d(output)/d(self) from the last backprop() that reached it
    cdef double tangent             # derive()'s scratch: d(self)/d(var)
    cdef uint64_t stamp             # clock time at which value was last known current (0: not now)
    cdef uint64_t changed           # clock time at which value last changed (0: never computed)
    cdef uint64_t visit             # mark of the last traversal that reached the node
    cdef uint64_t serial            # creation number, the node's key in drawings
    cdef _GradRun run               # the backprop() that set grad; None: no gradient
    cdef object label               # the name of a leaf, a named constant or an apply node
    cdef object funcs               # (f, df) of an apply node

    cdef _Node _new(self)
    cdef bint _lazy(self)
    cdef str _maker(self)
    cdef _Node _make(self, int op, _Node a, _Node b, object label=*, object funcs=*)
    cdef _Node _operand(self, object x)
    cdef _Node _constant(self, double value)


cdef class RcTerm(_Node):
    pass


cdef class Term(_Node):
    pass
