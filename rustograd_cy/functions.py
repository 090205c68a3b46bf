"""Module-level built-in functions: rg.sin(x) is x.sin() for a term and a float for a number.

One function per row of the op spec (rustograd_cy/_opspec.py) marked `function`, made here when
the module is imported; the numbers come from the same C table (src/rg_ops.h) that the sweeps use.
Their stubs (functions.pyi) are generated from the same rows.
"""
import numbers

from rustograd_cy._ops import op_value
from rustograd_cy._opspec import SPEC

__all__ = []


def _is_term(x):
    return hasattr(x, "_constant_like")


def is_real(x):
    """Python and numpy real numbers, but not bool (True + x is almost always a mistake)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _number(x, fname):
    if is_real(x):
        return float(x)
    raise TypeError(f"{fname}() takes a term or a real number, not {type(x).__name__}")


def _unary(name, x):
    if _is_term(x):
        return getattr(x, name)()
    return op_value(name, _number(x, name))


def _binary(name, x, y):
    if _is_term(x):
        return getattr(x, name)(y)
    if _is_term(y):
        return getattr(y._constant_like(_number(x, name)), name)(y)
    return op_value(name, _number(x, name), _number(y, name))


def _power(x, y):
    """x ** y where either may be a term (a number exponent of a term makes powc)."""
    if _is_term(x):
        return x.pow(y)
    if _is_term(y):
        return _number(x, "pow") ** y
    return op_value("pow", _number(x, "pow"), _number(y, "pow"))


def _function(op):
    """The module function of spec row `op`."""
    name = op.name
    kind = "of a term (a new node) or of a number (a float)" if op.arity == 1 else \
        "where either may be a term (a new node) or both numbers (a float)"
    if op.method == "power":
        def f(x, y):
            return _power(x, y)
    elif op.arity == 1:
        def f(x):
            return _unary(name, x)
    else:
        def f(x, y):
            return _binary(name, x, y)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"{op.doc}\n\n{op.name}({', '.join(op.params)}) {kind}."
    f.__module__ = __name__
    return f


for _op in SPEC:
    if _op.function:
        globals()[_op.name] = _function(_op)
        __all__.append(_op.name)
del _op
