# Helpers shared by every term kind (the tape's TapeTerm and the pointer-based RcTerm and Term):
# number coercion and the checks on apply()'s callables, written once. Bodies in _common.pyx.

cdef bint is_real_number(object x) except -1   # numbers.Real but not bool (the slow path)


cdef inline bint is_real(object x) except -1:
    """Python and numpy real numbers, but not bool (True + x is almost always a mistake)."""
    if type(x) is float or type(x) is int:
        return True
    return is_real_number(x)


cdef bint anomaly_on() noexcept                # inside a rg.detect_anomaly() block

cdef double real(object x, str what) except? -1.0
cdef int check_name(object name, str what) except -1
cdef double callable_result(object result, str name, object node) except? -1.0
cdef int check_callables(str name, object f, object df) except -1
cdef object method_result(object result, str method, object other)
