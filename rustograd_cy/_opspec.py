"""The op spec: every built-in operation written once, as one row of `SPEC`.

Everything else is derived from these rows:
  * at build time (setup.py runs src/opgen.py): the C op table src/rg_ops_gen.h (codes, names,
    arities, each op's value and partial derivatives, the vector-math list), the methods and
    operators of all three term kinds (rustograd_cy/_opmethods.pxi, included into TapeTerm and the
    RcTerm/Term base), and the typing stubs (*.pyi, from *.pyi.in templates);
  * at import time: the module functions (rustograd_cy/functions.py), the builder's names
    (builder.py), the op tables `OPS`/`OP_CODES` (rustograd_cy/_ops.pyx) and the symbolic rules
    that `gen_graph` uses (derivatives.py), which are built from the *same* partial expressions
    the C kernels are generated from.

A row: `Op(name, value, partials, ...)`.
  value     the op's value as a C99 expression in the operands `a` (and `b`), or a C function body
            (statements with `return`); only C reads it.
  partials  one entry per differentiated operand: an expression of the derivative language below,
            `None` for a derivative that is identically zero (a step function, a comparison), or
            `Partial(expr, zero_if=cond)` for a convention at an isolated point: the C kernels
            return 0 where `cond` holds; gen_graph applies it when `cond` can be decided while
            building (its operands are constants), and otherwise follows the smooth formula.
  arity     differentiated operands: 1 or 2 (0 for leaves). An arity-3 op (issue 15's `where`)
            fits the spec (operands a, b, c) but needs a third operand slot on the tape first:
            the generator refuses it until then.
  infix     the symbol labels write between the operands ("" for function notation).
  dunder    the Python operator it implements ("add" -> __add__ and __radd__; "neg" -> __neg__).
  method    how it is reached on a term: "unary" (x.sin()), "binary" (x.atan2(other)), "power"
            (x.pow(e): a number e makes powc), None (no method: operator only, or internal).
  function  whether `rg.<name>` exists (module function on terms and plain numbers).
  params    the argument names of the method and the module function.
  vmath     the libm name when batch mode's vector math (src/rg_vmath.c) computes it.
  doc       the one-line docstring of the method and the module function.
  exponent  (powc only) the rhs is a constant exponent, not a differentiated operand.
  kind      "op" (the default: computed sample by sample), "reduction" (over the samples of a
            batch: batch_sum, batch_mean; reached by rg.sum/rg.mean, never by a generated method
            or function; the batched sweeps have their own code for them, RG_REDUCTION_OPS), or
            the structural "leaf" and "apply".
  gate      (when, unless) the op passes b or -0.0 by the condition a: linear in b, constant in a;
            gen_graph builds its tangent as the same op of b's tangent (see derivatives.py).

The derivative language is Python expression syntax over `a`, `b` (the operands) and `v` (the op's
value): numbers, + - * / and unary -, and calls of ops of this table by name (`cos(a)`,
`square(v)`, `pow(a, b - 1)`; `pow` with an exponent made of numbers and constants is powc). So
a derivative is made of ops the C kernels and the tape both have: derivative graphs of every
built-in run in C, and any order of derivative is again made of table ops.

Adding an op: add a row here (and its oracle row in tests/oracle.py). Codes are the row order:
append new rows at the end, so pickled and saved tapes keep their meaning (batch_sum and batch_mean
were shipped right after minimum, so the rows added later follow them).
"""
import ast

__all__ = ["Op", "Partial", "SPEC", "BY_NAME", "COMPARISONS", "check", "parse", "public", "variables"]


class Partial:
    """A partial derivative with a convention: 0 where `zero_if` holds (see the module docstring)."""

    __slots__ = ("expr", "zero_if")

    def __init__(self, expr, zero_if=None):
        self.expr = expr
        self.zero_if = zero_if

    def __repr__(self):
        return f"Partial({self.expr!r}, zero_if={self.zero_if!r})"


class Op:
    """One row of the spec (see the module docstring for the fields)."""

    __slots__ = ("name", "code", "arity", "value", "partials", "infix", "dunder", "method",
                 "function", "params", "vmath", "doc", "exponent", "kind", "gate")

    def __init__(self, name, value=None, partials=(), *, arity=None, infix="", dunder=None,
                 method=None, function=False, params=None, vmath=None, doc="", exponent=False,
                 kind="op", gate=False):
        self.name = name
        self.code = None  # set from the row's position
        self.value = value
        self.partials = tuple(p if p is None or isinstance(p, Partial) else Partial(p)
                              for p in partials)
        self.arity = len(self.partials) if arity is None else arity
        self.infix = infix
        self.dunder = dunder
        self.method = method
        self.function = function
        self.params = tuple(params) if params is not None else (("x",) if self.arity == 1 else ("x", "y"))
        self.vmath = vmath
        self.doc = doc
        self.exponent = exponent
        self.kind = kind  # "leaf" (leaf, const), "apply", "op" (computed by the table, sample by
        # sample) or "reduction" (over a batch's samples: one value for the batch; see batch_sum)
        self.gate = gate

    @property
    def computed(self):
        """Whether the C table computes the op's value and partials (ops and reductions)."""
        return self.kind in ("op", "reduction")

    @property
    def operands(self):
        """How many operand slots the node reads (powc: 2, the exponent included)."""
        return 2 if self.exponent else self.arity

    def __repr__(self):
        return f"Op({self.name!r}, code={self.code})"


def unary(name, value, partial, doc, **kw):
    """An op of one operand with a method and a module function."""
    kw.setdefault("method", "unary")
    kw.setdefault("function", True)
    return Op(name, value, (partial,), doc=doc, **kw)


def binary(name, value, partials, doc, **kw):
    """An op of two operands with a method and a module function."""
    kw.setdefault("method", "binary")
    kw.setdefault("function", True)
    return Op(name, value, partials, doc=doc, **kw)


# The rows. Keep the order: a row's position is its op code (stored in tapes and pickles).
SPEC = (
    Op("leaf", arity=0, kind="leaf"),
    Op("const", arity=0, kind="leaf"),
    Op("apply", arity=1, kind="apply"),
    Op("neg", "-a", ("-1",), infix="-", dunder="neg", doc="-self."),
    unary("sin", "sin(a)", "cos(a)", "sin(x).", vmath="sin"),
    unary("cos", "cos(a)", "-sin(a)", "cos(x).", vmath="cos"),
    unary("tan", "tan(a)", "1 + square(v)", "tan(x)."),
    unary("exp", "exp(a)", "v", "exp(x).", vmath="exp"),
    unary("log", "log(a)", "1 / a", "Natural logarithm of x (NaN below 0, -inf at 0, as IEEE).",
          vmath="log"),
    unary("sqrt", "sqrt(a)", "0.5 / v", "Square root of x."),
    unary("tanh", "tanh(a)", "1 - square(v)", "tanh(x).", vmath="tanh"),
    unary("sigmoid",
          # The two branches never overflow exp().
          "if (a >= 0) return 1.0 / (1.0 + exp(-a));\ndouble e = exp(a);\nreturn e / (1.0 + e);",
          "v * (1 - v)", "1 / (1 + exp(-x)), computed without overflow."),
    unary("relu", "a <= 0 ? 0.0 : a",  # NaN stays NaN
          "step(a)", "max(x, 0); its derivative at 0 is 0."),
    unary("abs", "fabs(a)", "sign(a)", "|x|; its derivative at 0 is 0.", dunder="abs"),
    unary("square", "a * a", "2 * a", "x * x as one node."),
    Op("powc", "pow(a, b)", (Partial("b * pow(a, b - 1)", zero_if="b == 0"),), infix="**",
       exponent=True, doc="x ** c for a number c (not differentiated in c)."),
    Op("add", "a + b", ("1", "1"), infix="+", dunder="add", doc="x + y."),
    Op("sub", "a - b", ("1", "-1"), infix="-", dunder="sub", doc="x - y."),
    Op("mul", "a * b", ("b", "a"), infix="*", dunder="mul", doc="x * y."),
    Op("div", "a / b", ("1 / b", "-(v / b)"), infix="/", dunder="truediv", doc="x / y."),
    binary("pow", "pow(a, b)",
           (Partial("b * pow(a, b - 1)", zero_if="b == 0"), Partial("v * log(a)", zero_if="v == 0")),
           "x ** y where either may be a term.", infix="**", dunder="pow", method="power"),
    binary("atan2", "atan2(a, b)",
           ("b / (square(a) + square(b))", "-a / (square(a) + square(b))"),
           "The angle of the point (x, y), as math.atan2(y, x).", params=("y", "x")),
    binary("maximum", "(a != a || b != b) ? a + b : (a > b ? a : b)",
           ("share(a, b)", "1 - share(a, b)"),
           "The larger of x and y; NaN if either is NaN; a tie splits the gradient in half."),
    binary("minimum", "(a != a || b != b) ? a + b : (a < b ? a : b)",
           ("share(-a, -b)", "1 - share(-a, -b)"),
           "The smaller of x and y; NaN if either is NaN; a tie splits the gradient in half."),
    # The reductions over the samples of a batch (rg.sum, rg.mean in reductions.py: no method, no
    # function generated). The table gives their scalar-mode meaning, a batch of one sample: the
    # identity. The batched sweeps (src/rg_batch.c) compute them by their own code, and gen_graph
    # never folds them: batch_sum(1) is the batch size B (1 in scalar mode), so mean's partial
    # 1 / batch_sum(1) is 1 / B on a batch and exactly 1 in C's scalar kernels.
    Op("batch_sum", "a", ("1",), kind="reduction",
       doc="The sum of x over the samples of a batch (the identity in scalar mode)."),
    Op("batch_mean", "a", ("1 / batch_sum(1)",), kind="reduction",
       doc="The mean of x over the samples of a batch (the identity in scalar mode)."),
    # The kinks' step functions: the derivatives of relu, abs, maximum and minimum. They are ops
    # like any other, so derivative graphs of those run in C; their own derivative is zero.
    Op("step", "a > 0 ? 1.0 : 0.0", (None,),
       doc="relu'(x): 1 above 0, else 0 (0 at 0 and at NaN)."),
    Op("sign", "a > 0 ? 1.0 : (a < 0 ? -1.0 : 0.0)", (None,),
       doc="abs'(x): -1, 0 or 1 (0 at 0 and at NaN)."),
    Op("share", "a > b ? 1.0 : b > a ? 0.0 : a == b ? 0.5 : a != a ? 1.0 : 0.0", (None, None),
       doc="d maximum(a, b)/da: 1 if a wins, 0 if b wins, half on a tie; a NaN operand wins."),
    unary("log1p", "log1p(a)", "1 / (1 + a)", "log(1 + x), accurate for tiny x."),
    unary("expm1", "expm1(a)", "exp(a)", "exp(x) - 1, accurate for tiny x."),
    unary("erf", "erf(a)", "1.1283791670955126 * exp(-square(a))", "The error function of x."),
    unary("sinh", "sinh(a)", "cosh(a)", "sinh(x)."),
    unary("cosh", "cosh(a)", "sinh(a)", "cosh(x)."),
    unary("asin", "asin(a)", "1 / sqrt((1 - a) * (1 + a))", "arcsin(x) (NaN outside [-1, 1])."),
    unary("acos", "acos(a)", "-1 / sqrt((1 - a) * (1 + a))", "arccos(x) (NaN outside [-1, 1])."),
    unary("atan", "atan(a)", "1 / (1 + square(a))", "arctan(x)."),
    # Comparisons (issue 15): 1.0 where the relation holds, else 0.0 (NaN: as in Python, only !=
    # holds); their derivative is zero. `x < y` and `y > x` build them; bool() of one is a guard
    # inside rg.grad and friends (rustograd_cy/functional.py) and a TypeError elsewhere.
    Op("lt", "a < b ? 1.0 : 0.0", (None, None), infix="<", dunder="lt", doc="1.0 if x < y else 0.0."),
    Op("le", "a <= b ? 1.0 : 0.0", (None, None), infix="<=", dunder="le", doc="1.0 if x <= y else 0.0."),
    Op("gt", "a > b ? 1.0 : 0.0", (None, None), infix=">", dunder="gt", doc="1.0 if x > y else 0.0."),
    Op("ge", "a >= b ? 1.0 : 0.0", (None, None), infix=">=", dunder="ge", doc="1.0 if x >= y else 0.0."),
    Op("eq", "a == b ? 1.0 : 0.0", (None, None), infix="==", dunder="eq", doc="1.0 if x == y else 0.0."),
    Op("ne", "a != b ? 1.0 : 0.0", (None, None), infix="!=", dunder="ne", doc="1.0 if x != y else 0.0."),
    # rg.where(c, x, y) is when(c, x) + unless(c, y): three nodes of two operands each, so the tape
    # keeps its two operand slots (docs/internals.md). The branch not taken is -0.0, which adds
    # exactly (x + -0.0 == x bit for bit, -0.0 included), and its partial is 0, so no adjoint reaches
    # it: a NaN or inf derivative there never leaks (the zero-adjoint rule of the sweeps). `gate`
    # makes gen_graph build their tangent as when(c, t) / unless(c, t), not a product, for the same
    # reason. A condition holds where it is not 0 (NaN holds, as bool(nan) in Python).
    Op("when", "a != 0 ? b : -0.0", (None, "when(a, 1)"), gate=True,
       doc="y where the condition x holds (is not 0), else -0.0: half of rg.where."),
    Op("unless", "a != 0 ? -0.0 : b", (None, "unless(a, 1)"), gate=True,
       doc="y where the condition x does not hold (is 0), else -0.0: half of rg.where."),
    # The guards of a recording (rustograd_cy/functional.py): guard(v, c) is v, made to depend on
    # the comparison c so that every sweep of v computes c and the replay can check it.
    Op("guard", "a", ("1", None), doc="x, depending on the guard y too (not differentiated in y)."),
)

for _code, _op in enumerate(SPEC):
    _op.code = _code
del _code, _op

BY_NAME = {op.name: op for op in SPEC}

#: The comparison rows (Python's rich comparisons: no reflected forms, `2 < x` is `x > 2`).
COMPARISONS = tuple(op for op in SPEC if op.dunder in ("lt", "le", "gt", "ge", "eq", "ne"))


def public():
    """The rows a user reaches by method or module function, in spec order."""
    return [op for op in SPEC if op.method is not None or op.function]


# -- the derivative language -----------------------------------------------------------------------

_VARIABLES = {1: ("a", "v"), 2: ("a", "b", "v")}


def parse(expr):
    """The expression tree (ast) of a derivative-language expression, checked."""
    tree = ast.parse(expr, mode="eval").body
    _check_tree(tree, expr)
    return tree


def variables(tree):
    """The names (a, b, v) an expression uses."""
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def _check_tree(tree, expr):
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if id(node) in called:
            continue
        if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Load)):
            if isinstance(node, ast.BinOp) and type(node.op) not in (ast.Add, ast.Sub, ast.Mult, ast.Div):
                raise ValueError(f"{expr!r}: only + - * / are allowed")
            if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.USub):
                raise ValueError(f"{expr!r}: only unary - is allowed")
            if isinstance(node, ast.Compare) and (len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq)):
                raise ValueError(f"{expr!r}: a condition is one `x == y`")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in BY_NAME or node.keywords:
                raise ValueError(f"{expr!r}: calls are of ops of the table, by name")
            op = BY_NAME[node.func.id]
            if not op.computed or len(node.args) != op.arity:
                raise ValueError(f"{expr!r}: {op.name} takes {op.arity} operand(s)")
        elif isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise ValueError(f"{expr!r}: only numbers are literals")
        elif isinstance(node, ast.Name):
            if node.id not in ("a", "b", "v"):
                raise ValueError(f"{expr!r}: unknown name {node.id!r} (the names are a, b and v)")
        elif not isinstance(node, (ast.operator, ast.unaryop, ast.cmpop)):
            raise ValueError(f"{expr!r}: {type(node).__name__} is not part of the derivative language")


def check():
    """Raise ValueError if a row is malformed (run by the generator and by the tests)."""
    names = set()
    for op in SPEC:
        if op.name in names:
            raise ValueError(f"op {op.name!r} is listed twice")
        names.add(op.name)
        if op.kind not in ("leaf", "apply", "op", "reduction"):
            raise ValueError(f"op {op.name!r}: unknown kind {op.kind!r}")
        if not op.computed:
            continue
        if op.kind == "reduction" and (op.arity != 1 or op.method or op.function or op.dunder
                                       or op.vmath):
            raise ValueError(f"op {op.name!r}: a reduction is unary, with no method, function, "
                             f"operator or vector math (rustograd_cy/reductions.py has them)")
        if op.arity not in (1, 2):
            raise ValueError(f"op {op.name!r}: arity {op.arity} needs operand slots the tape does not "
                             f"have yet (it stores lhs and rhs)")
        if not op.value:
            raise ValueError(f"op {op.name!r} has no value")
        allowed = set(_VARIABLES[2 if op.exponent else op.arity])
        for p in op.partials:
            if p is None:
                continue
            for expr in (p.expr,) + ((p.zero_if,) if p.zero_if else ()):
                used = variables(parse(expr))
                if not used <= allowed:
                    raise ValueError(f"op {op.name!r}: {expr!r} uses {sorted(used - allowed)}")
        if op.method not in (None, "unary", "binary", "power"):
            raise ValueError(f"op {op.name!r}: unknown method kind {op.method!r}")
        if op.vmath and op.arity != 1:
            raise ValueError(f"op {op.name!r}: vector math covers unary ops only")
    return True
