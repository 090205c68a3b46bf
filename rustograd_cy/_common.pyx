"""Helpers shared by every term kind: number coercion and the checks on apply()'s callables.

Declared in _common.pxd and cimported by _tape.pyx and _nodes.pyx, so each rule and each message
exists once.
"""
import numbers

import numpy as np

cdef int _anomaly_depth = 0  # open rg.detect_anomaly() blocks, in any thread


cdef bint anomaly_on() noexcept:
    return _anomaly_depth > 0


def _anomaly_enter():
    """Start a rg.detect_anomaly() block (they nest; the check is on while any is open)."""
    global _anomaly_depth
    _anomaly_depth += 1


def _anomaly_exit():
    """End a rg.detect_anomaly() block."""
    global _anomaly_depth
    if _anomaly_depth > 0:
        _anomaly_depth -= 1


def _anomaly_enabled():
    """Whether the anomaly check is on (a rg.detect_anomaly() block is open)."""
    return _anomaly_depth > 0


cdef bint is_real_number(object x) except -1:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


cdef double real(object x, str what) except? -1.0:
    """x as a double, or TypeError naming `what` (e.g. "set()'s value"). A 0-d numpy array of
    integers or floats is a number here, as float(a) reads it (the one rule for leaf values:
    term(), constant(), set() and RcTerm/Term(name, value)); a 0-d bool array is refused as bool."""
    if type(x) is np.ndarray and x.ndim == 0 and x.dtype.kind in "iuf":
        x = x[()]
    if not is_real(x):
        raise TypeError(f"{what} must be a real number (int or float), not {type(x).__name__}")
    try:
        return float(x)
    except OverflowError:
        raise OverflowError(
            f"{what} is an int too large for a float (|x| < 1.8e308); pass a float, "
            f"e.g. float('inf'), if that is what you mean"
        ) from None


cdef int check_name(object name, str what) except -1:
    """TypeError unless `name` (of a leaf, a constant or an apply() function) is a str."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    return 0


cdef double callable_result(object result, str name, object node) except? -1.0:
    """The float returned by the function or derivative of apply(name); `node` (a tape index or
    None) is named in the error."""
    if type(result) is float:
        return <double>result
    if not is_real(result):
        where = "" if node is None else f" (node {node})"
        raise TypeError(
            f"the function of apply({name!r}){where} returned {type(result).__name__}; "
            f"it must return a real number"
        )
    return float(result)


cdef object method_result(object result, str method, object other):
    """The result of term.method(other); operators may return NotImplemented, methods raise."""
    if result is NotImplemented:
        raise TypeError(
            f"{method}() takes a term of the same kind or a real number, not {type(other).__name__}"
        )
    return result


cdef int check_callables(str name, object f, object df) except -1:
    if not callable(f) or not callable(df):
        raise TypeError(f"apply({name!r}, f, df) needs two callables, got {type(f).__name__} "
                        f"and {type(df).__name__}")
    return 0
