"""Derivatives as graph operations: `gen_graph(y, x)` appends dy/dx to the tape as new nodes.

The rules are the op spec's partial derivatives (rustograd_cy/_opspec.py): the same expressions
src/opgen.py translates to the C kernels' `rg_partials` are built here as graph operations, each
call of an op in them (`cos(a)`, `square(v)`, `share(a, b)`) a node of that op. So a derivative is
made of table ops: it runs in C like the function, can be evaluated, back-propagated and derived
again (nth derivatives are n calls of `gen_graph`), and evaluates to what the numeric kernels give.

The algorithm is forward mode over the output's cone, in tape (topological) order: node i gets the
tangent t_i = sum over its operands k of (d i / d k) * t_k, built from the rules. Every node is
visited once and appends a bounded number of nodes (at most about eight), so the work is linear in
the cone and nothing recurses. Tangents that are structurally zero (nodes not depending on x, and
the zero derivatives of step functions) are never built; the tangent of x itself is the tape's
constant 1, and multiplying by it builds nothing.

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

Conventions: a spec partial `Partial(expr, zero_if=cond)` is 0 where cond holds in C. Here cond is
applied when it can be decided while building (its operands are constant nodes: d(x ** c)/dx at
c == 0 is structurally zero, as in C); otherwise the graph follows the smooth formula, so at those
isolated points it may give NaN where C gives 0: d(x ** y)/dx = y * x ** (y - 1) is NaN at x = 0,
y = 0 and d(x ** y)/dy = x ** y * log(x) is NaN at x = 0. The kinks of relu, abs, maximum and
minimum differentiate to the step-function ops step, sign and share, exactly as in C. Comparisons
have no tangent; `rg.where`'s gates when/unless pass their operand's tangent through the same gate,
so the branch not taken contributes nothing, not 0 * NaN.
"""
import ast
import math
import weakref

from rustograd_cy._ops import OP_CODES, OPS, op_value
from rustograd_cy._opspec import SPEC, parse
from rustograd_cy.errors import GradGraphMissingError, TapeMismatchError, TermWasNotValueError

_LEAF, _CONST, _APPLY = OP_CODES["leaf"], OP_CODES["const"], OP_CODES["apply"]
_ONE = 1  # the tape's preallocated constant 1
#: when and unless (the halves of rg.where): linear in their second operand, gated by the first.
#: Their tangent is the same gate of the operand's tangent, when(c, t), rather than the product
#: when(c, 1) * t, which would be NaN where t is NaN or inf in the branch not taken (0 * inf):
#: the graph keeps the zero-adjoint rule of the C sweeps.
_GATES = frozenset(OP_CODES[op.name] for op in SPEC if op.gate)
_BINOP_NAMES = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}


# -- the rules: the spec's partial expressions, built as graph operations ---------------------------

def _constant_value(g, tree, env):
    """The value of an expression whose every operand is a number or a constant node, computed by
    the C table (so bit for bit what a folded node would hold); None if it depends on a variable."""
    if isinstance(tree, ast.Constant):
        return float(tree.value)
    if isinstance(tree, ast.Name):
        i = env[tree.id]
        return g.value(i) if g.is_const(i) else None
    if isinstance(tree, ast.UnaryOp):
        x = _constant_value(g, tree.operand, env)
        return None if x is None else -x
    if isinstance(tree, ast.BinOp):
        x, y = _constant_value(g, tree.left, env), _constant_value(g, tree.right, env)
        return None if x is None or y is None else op_value(_BINOP_NAMES[type(tree.op)], x, y)
    if isinstance(tree, ast.Call):
        if tree.func.id in _REDUCTIONS:
            return None  # batch_sum(1) is the batch size, unknown while building
        args = [_constant_value(g, t, env) for t in tree.args]
        return None if None in args else op_value(tree.func.id, *args)
    return None


def _node(g, x):
    """x as a node index: a float (a literal's value) becomes a constant node."""
    return g.const(x) if type(x) is float else x


def _build(g, tree, env, memo):
    """The expression as graph operations: a node index, or a float for a literal-only value (kept
    as a number so that partials of exactly 1 and -1 build nothing). `memo` shares subexpressions
    that several partials of one node repeat (atan2's a^2 + b^2)."""
    key = ast.dump(tree)
    hit = memo.get(key)
    if hit is not None:
        return hit
    if isinstance(tree, ast.Constant):
        out = float(tree.value)
    elif isinstance(tree, ast.Name):
        out = env[tree.id]
    elif isinstance(tree, ast.UnaryOp):
        x = _build(g, tree.operand, env, memo)
        out = -x if type(x) is float else g.op("neg", x)
    elif isinstance(tree, ast.BinOp):
        name = _BINOP_NAMES[type(tree.op)]
        x, y = _build(g, tree.left, env, memo), _build(g, tree.right, env, memo)
        out = op_value(name, x, y) if type(x) is float and type(y) is float else \
            g.op(name, _node(g, x), _node(g, y))
    elif isinstance(tree, ast.Call):
        name = tree.func.id
        exponent = _constant_value(g, tree.args[1], env) if name == "pow" else None
        if exponent is not None:  # pow with a constant exponent is powc, as x ** c is
            out = g.powc(_node(g, _build(g, tree.args[0], env, memo)), exponent)
        else:
            out = g.op(name, *[_node(g, _build(g, t, env, memo)) for t in tree.args])
    else:
        raise TypeError(f"not a derivative-language expression: {ast.dump(tree)}")
    memo[key] = out
    return out


class _Rule:
    """One op's partials, parsed once: called with (g, a, b, v) node indices it returns one entry
    per operand, each a node index, None (zero) or the float 1.0 or -1.0 (an exact sign)."""

    def __init__(self, op):
        self.op = op
        self.partials = [None if p is None else
                         (parse(p.expr), parse(p.zero_if) if p.zero_if else None)
                         for p in op.partials]

    def __call__(self, g, a, b, v):
        env = {"a": a, "b": b, "v": v}
        memo = {}
        out = []
        for p in self.partials:
            if p is None:
                out.append(None)
                continue
            expr, zero_if = p
            if zero_if is not None:
                left = _constant_value(g, zero_if.left, env)
                right = _constant_value(g, zero_if.comparators[0], env)
                if left is not None and right is not None and left == right:
                    out.append(None)
                    continue
            d = _build(g, expr, env, memo)
            if type(d) is float:
                d = None if d == 0.0 else (d if d in (1.0, -1.0) else g.const(d))
            out.append(d)
        if len(out) == 1:
            out.append(None)
        return tuple(out)


#: op name -> its rule, for every op the C table computes.
RULES = {op.name: _Rule(op) for op in SPEC if op.computed}
#: The reductions over a batch (batch_sum, batch_mean): their value depends on the batch size, so
#: they are never folded, not even of constants.
_REDUCTIONS = frozenset(op.name for op in SPEC if op.kind == "reduction")


# -- the graph builder -----------------------------------------------------------------------------

class _ConsIndex:
    """(op, lhs, rhs) -> node and constant value -> node for one tape, extended as the tape grows
    (nodes never change once appended, so entries stay right)."""

    def __init__(self):
        self.scanned = 0
        self.ops = {}
        self.consts = {}

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

    def _fold(self, name, a, b):
        """A node equal to a op b (bit for bit, whatever the leaves' values), or None."""
        if name in _REDUCTIONS:  # a reduction's value depends on the batch size
            return None
        if self.is_const(a) and self.is_const(b):  # unary ops have b == a
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
        if op in _GATES:  # when(c, y) / unless(c, y): the tangent passes the same gate
            tangent[i] = g.op(name, a, tb) if tb is not None else None
            continue
        da, db = RULES[name](g, a, b, i)
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
