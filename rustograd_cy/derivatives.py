"""Derivatives as graph operations: `gen_graph(y, x)` appends dy/dx to the tape as new nodes.

`PARTIALS` is the one table of every built-in op's partial derivatives written as graph operations
(the numeric twin, used by the sweeps, is `rg_partials` in src/rg_ops.h; a test checks that the two
agree). Because the derivative is made of ordinary nodes, it can be evaluated, back-propagated and
derived again: nth derivatives are n calls of `gen_graph`.

The algorithm is forward mode over the output's cone, in tape (topological) order: node i gets the
tangent t_i = sum over its operands k of (d i / d k) * t_k, built from the table. Every node is
visited once and appends a bounded number of nodes (at most about eight), so the work is linear in
the cone and nothing recurses. Tangents that are structurally zero (nodes not depending on x) are
never built; the tangent of x itself is the tape's constant 1, and multiplying by it builds nothing.

`optim=True` also
  * reuses an existing node with the same op and operands (hash-consing over the whole tape, kept
    incrementally per tape, so a derivative shares the nodes of the function and of earlier
    derivatives), and constants of the same value;
  * folds operations whose operands are all constants into a constant (by the same op table the
    sweeps use, so the value is identical);
  * folds only IEEE-exact identities: x * 1, 1 * x, x / 1, x - 0, x ** 1 -> x; x ** 0 -> 1;
    -(-x) -> x. It does NOT fold x * 0 -> 0 (inf * 0 and NaN * 0 are NaN) nor x + 0 -> x
    (-0 + 0 is +0).
so it never yields more nodes than `optim=False`, and yields the same values.

Conventions where the numeric table has special cases: the graph rules follow the smooth formula,
so at the isolated points where rg_partials returns a convention they may give NaN instead:
d(x ** c)/dx at c == 0 is structurally zero (as in C), but d(x ** y)/dx = y * x ** (y - 1) is NaN
at x = 0, y = 0 and d(x ** y)/dy = x ** y * log(x) is NaN at x = 0. The kinks of relu, abs, maximum
and minimum differentiate to step functions (apply() nodes named "step", "sign", "share" whose own
derivative is 0); maximum/minimum's share at a NaN difference is NaN rather than going to the NaN
operand.
"""
import math
import weakref

from rustograd_cy._tape import OP_CODES, OPS
from rustograd_cy.errors import GradGraphMissingError, TapeMismatchError, TermWasNotValueError

_LEAF, _CONST, _APPLY = OP_CODES["leaf"], OP_CODES["const"], OP_CODES["apply"]
_ONE = 1  # the tape's preallocated constant 1


# -- the step functions of the kinks: piecewise constant, so their own derivative is zero ----------

def _elementwise(f):
    """f of a float, or of each element of a 1-D array (batched sweeps pass arrays)."""
    def g(x):
        if isinstance(x, float):
            return f(x)
        import numpy as np
        return np.vectorize(f, otypes=[float])(x)
    g.__name__ = f.__name__
    return g


@_elementwise
def _step(x):
    """relu'(x): 1 above 0, else 0 (so 0 at 0 and at NaN, as rg_partials)."""
    return 1.0 if x > 0 else 0.0


@_elementwise
def _sign(x):
    """abs'(x): -1, 0 or 1 (0 at 0 and at NaN, as rg_partials)."""
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


@_elementwise
def _share(d):
    """d maximum(a, b)/da with d = a - b: 1 if a wins, 0 if b wins, half each on a tie."""
    return 1.0 if d > 0 else (0.0 if d < 0 else (0.5 if d == 0 else math.nan))


def _zero(x):
    return 0.0 * x


_KINKS = {"step": _step, "sign": _sign, "share": _share}


# -- the table -------------------------------------------------------------------------------------
# Each rule takes the graph builder g and the node indices a (lhs), b (rhs; == a for unary ops) and
# v (the node itself), and returns (d v/d a, d v/d b): each a node index, None (zero), or the Python
# float 1.0 or -1.0 (exact signs, turned into no node or a negation).

def _powc(g, a, b, v):
    c = g.value(b)  # the exponent is a constant node: it never changes
    if c == 0:
        return None, None
    return g.op("mul", b, g.powc(a, c - 1.0)), None


def _atan2(g, a, b, v):
    r = g.op("add", g.op("square", a), g.op("square", b))
    return g.op("div", b, r), g.op("div", g.op("neg", a), r)


def _maximum(g, a, b, v):
    s = g.kink("share", g.op("sub", a, b))
    return s, g.op("sub", g.const(1.0), s)


def _minimum(g, a, b, v):
    s = g.kink("share", g.op("sub", b, a))
    return s, g.op("sub", g.const(1.0), s)


PARTIALS = {
    "neg": lambda g, a, b, v: (-1.0, None),
    "sin": lambda g, a, b, v: (g.op("cos", a), None),
    "cos": lambda g, a, b, v: (g.op("neg", g.op("sin", a)), None),
    "tan": lambda g, a, b, v: (g.op("add", g.const(1.0), g.op("square", v)), None),
    "exp": lambda g, a, b, v: (v, None),
    "log": lambda g, a, b, v: (g.op("div", g.const(1.0), a), None),
    "sqrt": lambda g, a, b, v: (g.op("div", g.const(0.5), v), None),
    "tanh": lambda g, a, b, v: (g.op("sub", g.const(1.0), g.op("square", v)), None),
    "sigmoid": lambda g, a, b, v: (g.op("mul", v, g.op("sub", g.const(1.0), v)), None),
    "relu": lambda g, a, b, v: (g.kink("step", a), None),
    "abs": lambda g, a, b, v: (g.kink("sign", a), None),
    "square": lambda g, a, b, v: (g.op("mul", g.const(2.0), a), None),
    "powc": _powc,
    "add": lambda g, a, b, v: (1.0, 1.0),
    "sub": lambda g, a, b, v: (1.0, -1.0),
    "mul": lambda g, a, b, v: (b, a),
    "div": lambda g, a, b, v: (g.op("div", g.const(1.0), b), g.op("neg", g.op("div", v, b))),
    "pow": lambda g, a, b, v: (
        g.op("mul", b, g.op("pow", a, g.op("sub", b, g.const(1.0)))),
        g.op("mul", v, g.op("log", a)),
    ),
    "atan2": _atan2,
    "maximum": _maximum,
    "minimum": _minimum,
    # Reductions over a batch: d sum(u) / d u[s] = 1, d mean(u) / d u[s] = 1 / B, with B = sum(1)
    # (1 in scalar mode), never folded (_fold).
    "batch_sum": lambda g, a, b, v: (1.0, None),
    "batch_mean": lambda g, a, b, v: (g.op("div", g.const(1.0), g.op("batch_sum", g.const(1.0))), None),
}


# -- the graph builder -----------------------------------------------------------------------------

class _ConsIndex:
    """(op, lhs, rhs) -> node and constant value -> node for one tape, extended as the tape grows
    (nodes never change once appended, so entries stay right)."""

    def __init__(self):
        self.scanned = 0
        self.ops = {}
        self.consts = {}
        self.kinks = {}  # (step function name, operand) -> apply node made by gen_graph

    def extend(self, tape):
        stop = len(tape)
        for i, (op, lhs, rhs, value) in enumerate(tape._nodes(self.scanned, stop), self.scanned):
            self.add(i, op, lhs, rhs, value)
        self.scanned = stop

    def add(self, i, op, lhs, rhs, value):
        if op == _CONST:
            self.consts.setdefault(_const_key(value), i)
        elif op not in (_LEAF, _APPLY):
            self.ops.setdefault((op, lhs, rhs), i)


def _const_key(value):
    # Bitwise identity: -0.0 and 0.0 differ, and every NaN is its own (never reused).
    return (value, math.copysign(1.0, value)) if value == value else object()


_CONS_INDEXES = weakref.WeakKeyDictionary()


class _Graph:
    """Appends nodes to one tape by op name, with the optim=True reuse and folding."""

    def __init__(self, tape, optim):
        self.tape = tape
        self.optim = optim
        self.info = {}  # node -> (op, lhs, rhs, value), read lazily for constants and powc
        self.index = None
        if optim:
            self.index = _CONS_INDEXES.get(tape)
            if self.index is None:
                self.index = _CONS_INDEXES[tape] = _ConsIndex()
            self.index.extend(tape)

    def node(self, i):
        rec = self.info.get(i)
        if rec is None:
            rec = self.info[i] = self.tape._nodes(i, i + 1)[0]
        return rec

    def is_const(self, i):
        return self.node(i)[0] == _CONST

    def value(self, i):
        return self.node(i)[3]

    def const(self, c):
        c = float(c)
        if self.optim:
            hit = self.index.consts.get(_const_key(c))
            if hit is not None:
                return hit
        i = self.tape.constant(c).index
        self._record(i)
        return i

    def powc(self, a, c):
        if self.optim:
            if c == 1.0:
                return a
            if c == 0.0:
                return _ONE  # pow(x, 0) is 1 for every x, NaN included
        return self.op("powc", a, self.const(c))

    def op(self, name, a, b=None):
        code = OP_CODES[name]
        if b is None:
            b = a
        if self.optim:
            folded = self._fold(name, a, b)
            if folded is not None:
                return folded
            hit = self.index.ops.get((code, a, b))
            if hit is not None:
                return hit
        i = self.tape._push_node(code, a, b)
        self._record(i)
        return i

    def kink(self, name, a):
        """The step function `name` of node a, as an apply() node whose derivative is zero."""
        if self.optim:
            hit = self.index.kinks.get((name, a))
            if hit is not None:
                return hit
        i = self.tape._term_at(a).apply(name, _KINKS[name], _zero, grad_graph=_no_derivative).index
        self._record(i)
        if self.optim:
            self.index.kinks[name, a] = i
        return i

    def _fold(self, name, a, b):
        """A node equal to a op b (bit for bit, whatever the leaves' values), or None."""
        if name.startswith("batch_"):  # a reduction's value depends on the batch size
            return None
        if self.is_const(a) and self.is_const(b):  # unary ops have b == a
            from rustograd_cy._tape import op_value
            return self.const(op_value(name, self.value(a), self.value(b)))
        if name == "mul":
            if self._is(b, 1.0):
                return a
            if self._is(a, 1.0):
                return b
        elif name == "div" and self._is(b, 1.0):
            return a
        elif name == "sub" and self._is(b, 0.0):
            return a
        elif name == "powc" and self._is(b, 1.0):
            return a
        elif name == "neg":
            op, lhs, _, _ = self.node(a)
            if op == OP_CODES["neg"]:
                return lhs
        return None

    def _is(self, i, c):
        """Node i is a constant equal to c, with c's sign if c is zero."""
        if not self.is_const(i):
            return False
        value = self.value(i)
        return value == c and math.copysign(1.0, value) == math.copysign(1.0, c)

    def _record(self, i):
        if self.optim:
            self.index.extend(self.tape)


def _no_derivative(term):
    return None


# -- gen_graph ---------------------------------------------------------------------------------------

def _scaled(g, partial, t):
    """(sign, node) of partial * t, or None when it is zero."""
    if partial is None:
        return None
    if type(partial) is float:
        return (partial < 0, t)
    if t == _ONE:
        return (False, partial)
    if partial == _ONE:
        return (False, t)
    return (False, g.op("mul", partial, t))


def _sum(g, x, y):
    """The node of x + y for (sign, node) pairs, either possibly None (zero)."""
    if x is None and y is None:
        return None
    if y is None or x is None:
        neg, n = x if y is None else y
        return g.op("neg", n) if neg else n
    (nx, x), (ny, y) = x, y
    if not nx and not ny:
        return g.op("add", x, y)
    if not nx:
        return g.op("sub", x, y)
    if not ny:
        return g.op("sub", y, x)
    return g.op("neg", g.op("add", x, y))


def gen_graph(y, x, optim=False, _any_node=False):
    """dy/dx as new nodes on y's tape: returns the term, or None if y does not depend on x.

    `x` must be a leaf made by tape.term(). See the module docstring for `optim`. (`_any_node`,
    for the composed transforms of rustograd_cy.functional, lets x be any node: the partial
    derivative through x alone, what x's own operands feed in otherwise held fixed.)
    """
    tape = y.tape
    if type(x) is not type(y):
        raise TypeError(f"gen_graph() takes a {type(y).__name__} leaf, not {type(x).__name__}")
    if x.tape is not tape:
        raise TapeMismatchError("gen_graph() got a variable of another tape: use a leaf of this one")
    if not _any_node and tape._nodes(x.index, x.index + 1)[0][0] != _LEAF:
        raise TermWasNotValueError(
            f"gen_graph() is with respect to a leaf made by tape.term(); {x.name!r} "
            f"(node {x.index}) is not one"
        )
    if x.index > y.index:
        return None  # y was built before x existed
    g = _Graph(tape, optim)
    cone = tape._cone_indices(y.index)
    start = cone.index(x.index) if x.index in cone else None  # nothing before x depends on x
    if start is None:
        return None
    nodes = tape._nodes(cone[start], cone[-1] + 1)
    base = cone[start]
    tangent = {x.index: _ONE}
    for i in cone[start + 1:]:
        op, a, b, _ = nodes[i - base]
        name, arity, _ = OPS[op]
        ta = tangent.get(a)
        # Unary ops store their operand twice (and powc's rhs is its exponent): only lhs counts.
        # A binary op may have lhs == rhs (x * x): then both operands count.
        tb = tangent.get(b) if arity == 2 else None
        if ta is None and tb is None:
            continue  # leaves, constants and everything not depending on x
        if op == _APPLY:
            tangent[i] = _sum(g, _scaled(g, _apply_partial(g, i, a), ta), None)
            continue
        da, db = PARTIALS[name](g, a, b, i)
        tangent[i] = _sum(g, _scaled(g, da, ta) if ta is not None else None,
                          _scaled(g, db, tb) if tb is not None else None)
    out = tangent.get(y.index)
    return None if out is None else tape._term_at(out)


def _apply_partial(g, i, a):
    name, _f, _df, grad_graph = g.tape._apply_info(i)
    if grad_graph is None:
        raise GradGraphMissingError(
            f"gen_graph() needs the derivative of apply({name!r}) (node {i}) as a graph: make it with "
            f"apply({name!r}, f, df, grad_graph=...) where grad_graph(term) builds df from the input "
            f"term, e.g. grad_graph=lambda t: t.cos() for sin"
        )
    d = grad_graph(g.tape._term_at(a))
    if d is None:
        return None
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return g.const(d)
    if getattr(d, "tape", None) is not g.tape:
        raise TypeError(
            f"grad_graph of apply({name!r}) (node {i}) must return a term of the same tape, a number "
            f"or None, not {type(d).__name__}"
        )
    if g.optim:
        g.index.extend(g.tape)
    return d.index
