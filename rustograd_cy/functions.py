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


_WHEN, _UNLESS = (next(op.code for op in SPEC if op.name == n) for n in ("when", "unless"))


def where(cond, x, y):
    """x where cond holds, else y: per sample in batch mode, with derivative only through the branch
    taken (a NaN or infinite derivative of the other branch never leaks into it).

    `cond` is a term (usually a comparison such as `x > 0`; any term holds where it is not 0, NaN
    included, as Python's bool) or a number; x and y are terms of cond's kind or numbers. With a
    number for cond the choice is made now and x or y is returned as it is.

    >>> import rustograd_cy as rg
    >>> tape = rg.Tape()
    >>> x = tape.term("x", 0.0)
    >>> y = rg.where(x > 0, rg.sqrt(x), 0.0)
    >>> y.eval(), y.derive(x)  # JAX and PyTorch give a NaN derivative here
    (0.0, 0.0)

    It is when(cond, x) + unless(cond, y), three nodes of the op table: the branch not taken is
    -0.0, so the sum is exactly the branch taken.
    """
    if not _is_term(cond):
        if is_real(cond):
            return x if cond else y
        raise TypeError(f"where() takes a term or a real number as its condition, not {type(cond).__name__}")
    for name, branch in (("x", x), ("y", y)):
        if not (_is_term(branch) or is_real(branch)):
            raise TypeError(f"where()'s {name} is a term or a real number, not {type(branch).__name__}")
    taken, other = cond._gate(_WHEN, x), cond._gate(_UNLESS, y)
    if taken is NotImplemented or other is NotImplemented:
        raise TypeError(
            f"where() combines terms of one kind: the condition is a {type(cond).__name__}, x a "
            f"{type(x).__name__} and y a {type(y).__name__}")
    return taken + other


__all__.append("where")
