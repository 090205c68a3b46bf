"""The op table at run time: names, arities and infix symbols by op code, and the C kernels' value and
partials of each op at plain numbers.

The rows are written once, in rustograd_cy/_opspec.py; the C table (src/rg_ops_gen.h) is generated
from them at build time. Importing this module checks that the compiled table is the spec's (a build
older than the spec would otherwise give wrong op codes).
"""
from rustograd_cy._ctape cimport RG_APPLY, RG_NUM_OPS, RG_OP_INFO, RG_POWC, rg_is_leaf, rg_partials, rg_value

from rustograd_cy._opspec import SPEC

#: (name, arity, infix) per op code, from the compiled C table.
OPS = tuple(
    (RG_OP_INFO[i].name.decode(), RG_OP_INFO[i].arity, RG_OP_INFO[i].infix.decode())
    for i in range(<int>RG_NUM_OPS)
)
#: op name -> op code.
OP_CODES = {name: code for code, (name, _, _) in enumerate(OPS)}

if OPS != tuple((op.name, op.arity, op.infix) for op in SPEC):
    raise ImportError("the compiled op table differs from rustograd_cy/_opspec.py: rebuild the "
                      "extension (make build, or pip install .)")


cdef int _computing(str name) except -1:
    code = OP_CODES.get(name)
    if code is None or rg_is_leaf(code) or code == RG_APPLY:
        known = ", ".join(sorted(n for n, c in OP_CODES.items() if not rg_is_leaf(c) and c != RG_APPLY))
        raise ValueError(f"unknown op {name!r}; known: {known}")
    return code


def op_value(str name, double a, double b=0.0):
    """The value of built-in op `name` at plain numbers, from the same table the sweeps use
    (`b` is a binary op's rhs or powc's exponent; unary ops ignore it).

    >>> op_value("sin", 0.0)
    0.0
    """
    cdef int code = _computing(name)
    return rg_value(code, a, a if OPS[code][1] == 1 and code != RG_POWC else b)


def op_partials(str name, double a, double b=0.0):
    """The partial derivatives (d/da, d/db) of built-in op `name` at plain numbers (d/db is 0 for
    unary ops and powc)."""
    cdef double da, db
    cdef int code = _computing(name)
    if OPS[code][1] == 1 and code != RG_POWC:
        b = a
    rg_partials(code, a, b, rg_value(code, a, b), &da, &db)
    return da, db
