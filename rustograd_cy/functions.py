"""Module-level built-in functions: rg.sin(x) is x.sin() for a term and a float for a number.

The numbers come from the same op table (src/rg_ops.h) that the sweeps use.
"""
import numbers

from rustograd_cy._tape import op_value


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


def sin(x):
    """sin(x) of a term (a new node) or of a number (a float)."""
    return _unary("sin", x)


def cos(x):
    """cos(x) of a term or a number."""
    return _unary("cos", x)


def tan(x):
    """tan(x) of a term or a number."""
    return _unary("tan", x)


def exp(x):
    """exp(x) of a term or a number."""
    return _unary("exp", x)


def log(x):
    """Natural logarithm of a term or a number (NaN below 0, -inf at 0)."""
    return _unary("log", x)


def sqrt(x):
    """Square root of a term or a number."""
    return _unary("sqrt", x)


def tanh(x):
    """tanh(x) of a term or a number."""
    return _unary("tanh", x)


def sigmoid(x):
    """1 / (1 + exp(-x)) of a term or a number."""
    return _unary("sigmoid", x)


def relu(x):
    """max(x, 0) of a term or a number; derivative 0 at 0."""
    return _unary("relu", x)


def abs(x):
    """|x| of a term or a number; derivative 0 at 0."""
    return _unary("abs", x)


def square(x):
    """x * x of a term or a number."""
    return _unary("square", x)


def pow(x, y):
    """x ** y where either may be a term."""
    if _is_term(x):
        return x.pow(y)
    if _is_term(y):
        return _number(x, "pow") ** y
    return op_value("pow", _number(x, "pow"), _number(y, "pow"))


def atan2(y, x):
    """The angle of the point (x, y), as math.atan2(y, x); either may be a term."""
    return _binary("atan2", y, x)


def maximum(x, y):
    """The larger of x and y (NaN if either is NaN; a tie splits the gradient)."""
    return _binary("maximum", x, y)


def minimum(x, y):
    """The smaller of x and y (NaN if either is NaN; a tie splits the gradient)."""
    return _binary("minimum", x, y)
