"""An independent pure-Python reverse-mode oracle for the tests.

It shares no code with rustograd_cy: its own node class, every op's value and partial derivatives
written here from the textbook formulas (in terms of the operands, not of the op's value, where the
core uses the value), and an iterative topological order. The tests build the same expression on a
`Tape` and here and compare numbers, so a wrong entry in the C op table cannot hide.

Values use the same libm functions the C core calls (math.sin is C's sin), so values agree to the
bit; partials are written differently on purpose, so derivatives agree to rounding only.

The one oracle of the test suite (tests/test_fuzz.py's edge-value sweeps use it too).

Kink conventions (documented in src/rg_ops.h; the tests check the core follows them):
relu'(0) = abs'(0) = 0; maximum/minimum propagate NaN (value NaN, gradient to the NaN operand) and
split a tie's gradient in half; x ** c has d/dx = 0 when c == 0; x ** y has d/dy = 0 when the value
is 0.

>>> x = Leaf("x", 2.0)
>>> y = Node("mul", x, Node("sin", x))
>>> grads = backprop(y)
>>> math.isclose(grads[x], math.sin(2.0) + 2.0 * math.cos(2.0), rel_tol=1e-15)
True
"""
import math

NAN = float("nan")


def _sigmoid(a):
    # Written from 1 / (1 + e^-a), split so that exp never overflows.
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


def _exp(a):
    try:
        return math.exp(a)
    except OverflowError:  # C's exp gives inf; math.exp raises
        return math.inf


def _odd_integer(b):
    return b == math.floor(b) and b % 2 == 1


def _pow(a, b):
    """C's pow(): IEEE results (inf, nan) where math.pow raises."""
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if a < 0 and _odd_integer(b) else math.inf
    except ValueError:
        if a == 0.0:  # 0 ** negative: a pole, signed like -0.0 for odd integer exponents
            return -math.inf if math.copysign(1.0, a) < 0 and _odd_integer(b) else math.inf
        return NAN  # negative base, non-integer exponent


def _libm(fn):
    """fn as C's libm has it: NaN where the math module raises ValueError (sin(inf), ...)."""
    def wrapped(a):
        try:
            return fn(a)
        except ValueError:
            return NAN
    return wrapped


_sin, _cos, _tan = _libm(math.sin), _libm(math.cos), _libm(math.tan)


def _tanh_slope(a):
    # 1 / cosh(a)^2; cosh overflows long after the slope underflows to 0.
    try:
        return 1.0 / math.cosh(a) ** 2
    except OverflowError:
        return 0.0


def _log(a):
    if a > 0:
        return math.log(a)
    if a == 0:
        return -math.inf
    return NAN


def _sqrt(a):
    return math.sqrt(a) if a >= 0 else NAN


def _div(a, b):
    if b != 0:
        return a / b
    if a == 0 or a != a:
        return NAN
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _maximum(a, b):
    if a != a or b != b:
        return NAN
    return a if a > b else b


def _minimum(a, b):
    if a != a or b != b:
        return NAN
    return a if a < b else b


def _max_partials(a, b, larger):
    """Partials of maximum (larger=True) or minimum: winner takes all, a tie splits, NaN wins."""
    if a != a:
        return 1.0, 0.0
    if b != b:
        return 0.0, 1.0
    if a == b:
        return 0.5, 0.5
    a_wins = a > b if larger else a < b
    return (1.0, 0.0) if a_wins else (0.0, 1.0)


def _pow_partials(a, b):
    """d(a ** b)/da and d(a ** b)/db, with the conventions at exponent 0 and value 0."""
    da = 0.0 if b == 0 else b * _pow(a, b - 1.0)
    v = _pow(a, b)
    if v == 0:
        db = 0.0
    else:
        db = v * _log(a)
    return da, db


def _inv(a):
    return _div(1.0, a)


def _math(fn):
    """fn as C's libm has it: NaN for a domain error, inf (signed as the exact value) on overflow,
    -inf at a pole (log1p(-1))."""
    def wrapped(a):
        try:
            return fn(a)
        except ValueError:
            return -math.inf if fn is math.log1p and a == -1.0 else NAN
        except OverflowError:
            return math.copysign(math.inf, a) if fn is math.sinh else math.inf
    return wrapped


_cosh, _sinh = _math(math.cosh), _math(math.sinh)


def _asin_slope(a):
    return _div(1.0, _sqrt(1.0 - a * a))


class Row:
    """One op: arity, value(a, b), partials(a, b) -> (d/da, d/db) (unary ops ignore b), and the
    points the per-op tests evaluate it at: numbers for a unary op (inside its smooth domain,
    edges included: 0, tiny, large, near poles), (a, b) pairs for a binary op. `positive`: the
    domain is x > 0, so finite differences take a step relative to x. `safe`: the (lo, hi) range
    where the core's and the oracle's differently written partials agree to 1e-12 (random graphs
    keep operands inside it)."""

    __slots__ = ("arity", "value", "partials", "points", "positive", "safe")

    def __init__(self, arity, value, partials, points=(), positive=False, safe=None):
        self.arity, self.value, self.partials = arity, value, partials
        self.points, self.positive, self.safe = tuple(points), positive, safe

    def __iter__(self):  # (arity, value, partials), as the rows were tuples
        return iter((self.arity, self.value, self.partials))


_ARITH = [(1.5, -2.25), (0.0, 3.0), (-4.0, 0.1), (1e3, 1e-3)]
_MAXMIN = [(1.0, 2.0), (2.0, 1.0), (-3.0, -1e-3), (0.0, -0.5)]
_CMP = [(1.0, 2.0), (2.0, 1.0), (-3.0, -1e-3), (0.0, -0.5), (1e300, -1e300)]

# name -> Row: one per op of the spec (tests/test_spec.py checks that every op has one).
OPS = {
    "add": Row(2, lambda a, b: a + b, lambda a, b: (1.0, 1.0), _ARITH),
    "sub": Row(2, lambda a, b: a - b, lambda a, b: (1.0, -1.0), _ARITH),
    "mul": Row(2, lambda a, b: a * b, lambda a, b: (b, a), _ARITH),
    "div": Row(2, _div, lambda a, b: (_inv(b), _div(-a, b * b)),
               [(1.0, 3.0), (-2.5, 0.5), (0.0, 2.0), (7.0, -1e-2), (1e-3, 1e3)]),
    "pow": Row(2, _pow, _pow_partials,
               [(2.0, 3.0), (0.5, -1.5), (3.0, 0.5), (1.0, 2.0), (10.0, 0.3), (1e-2, 1.5)]),
    "atan2": Row(2, math.atan2, lambda a, b: (_div(b, a * a + b * b), _div(-a, a * a + b * b)),
                 [(1.0, 1.0), (-1.0, 0.5), (2.0, -3.0), (0.0, 1.0), (0.5, -0.5), (-1e-3, 1e-3)]),
    "maximum": Row(2, _maximum, lambda a, b: _max_partials(a, b, True), _MAXMIN),
    "minimum": Row(2, _minimum, lambda a, b: _max_partials(a, b, False), _MAXMIN),
    "neg": Row(1, lambda a, b: -a, lambda a, b: (-1.0, 0.0), [-3.5, -0.0, 0.0, 1e-300, 2.0, 1e10]),
    "sin": Row(1, lambda a, b: _sin(a), lambda a, b: (_cos(a), 0.0),
               [-3.7, -1.0, 0.0, 1e-8, 0.3, math.pi / 2, 2.5, 100.0]),
    "cos": Row(1, lambda a, b: _cos(a), lambda a, b: (-_sin(a), 0.0),
               [-3.7, -1.0, 0.0, 1e-8, 0.3, math.pi, 2.5, 100.0]),
    "tan": Row(1, lambda a, b: _tan(a), lambda a, b: (_div(1.0, _cos(a) ** 2), 0.0),
               [-1.5, -0.5, 0.0, 0.7, 1.2, 1.5]),
    "exp": Row(1, lambda a, b: _exp(a), lambda a, b: (_exp(a), 0.0),
               [-30.0, -1.0, 0.0, 1e-8, 0.5, 2.0, 10.0, 50.0]),
    "log": Row(1, lambda a, b: _log(a), lambda a, b: (_inv(a), 0.0),
               [1e-3, 0.1, 0.5, 1.0, math.e, 100.0, 1e8], positive=True),
    "sqrt": Row(1, lambda a, b: _sqrt(a), lambda a, b: (_div(1.0, 2.0 * _sqrt(a)), 0.0),
                [1e-4, 0.25, 1.0, 2.0, 1e4, 1e12], positive=True),
    # Beyond |x| = 3 the core's 1 - tanh^2 (and s (1 - s)) lose digits to cancellation: not "safe".
    "tanh": Row(1, lambda a, b: math.tanh(a), lambda a, b: (_tanh_slope(a), 0.0),
                [-20.0, -3.0, -0.5, 0.0, 1e-8, 0.5, 3.0, 8.0], safe=(-3.0, 3.0)),
    "sigmoid": Row(1, lambda a, b: _sigmoid(a), lambda a, b: (_sigmoid(a) * _sigmoid(-a), 0.0),
                   [-40.0, -5.0, -0.5, 0.0, 1e-8, 0.5, 5.0, 30.0], safe=(-3.0, 3.0)),
    "relu": Row(1, lambda a, b: a if a > 0 or a != a else 0.0,
                lambda a, b: (1.0 if a > 0 else 0.0, 0.0), [-2.0, -1e-3, 1e-3, 0.5, 3.0]),
    "abs": Row(1, lambda a, b: math.fabs(a),
               lambda a, b: (1.0 if a > 0 else (-1.0 if a < 0 else 0.0), 0.0),
               [-2.0, -1e-3, 1e-3, 0.5, 3.0]),
    "square": Row(1, lambda a, b: a * a, lambda a, b: (2.0 * a, 0.0),
                  [-3.0, -0.5, 0.0, 1e-3, 2.0, 1e5]),
    # The derivatives of the kinks: piecewise constant, so their own derivative is 0.
    "step": Row(1, lambda a, b: 1.0 if a > 0 else 0.0, lambda a, b: (0.0, 0.0),
                [-2.0, -1e-3, 1e-3, 0.5, 3.0]),
    "sign": Row(1, lambda a, b: 1.0 if a > 0 else (-1.0 if a < 0 else 0.0), lambda a, b: (0.0, 0.0),
                [-2.0, -1e-3, 1e-3, 0.5, 3.0]),
    "share": Row(2, lambda a, b: _max_partials(a, b, True)[0], lambda a, b: (0.0, 0.0), _MAXMIN),
    "log1p": Row(1, lambda a, b: _math(math.log1p)(a), lambda a, b: (_inv(1.0 + a), 0.0),
                 [-0.9, -0.5, -1e-10, 0.0, 1e-8, 0.5, 3.0, 1e6]),
    "expm1": Row(1, lambda a, b: _math(math.expm1)(a), lambda a, b: (_exp(a), 0.0),
                 [-30.0, -1.0, -1e-10, 0.0, 1e-8, 0.5, 5.0, 50.0]),
    "erf": Row(1, lambda a, b: math.erf(a),
               lambda a, b: (2.0 / math.sqrt(math.pi) * _exp(-a * a), 0.0),
               [-3.0, -0.5, 0.0, 1e-8, 0.5, 2.0, 5.0]),
    "sinh": Row(1, lambda a, b: _sinh(a), lambda a, b: (_cosh(a), 0.0),
                [-5.0, -0.5, 0.0, 1e-8, 0.5, 3.0, 20.0]),
    "cosh": Row(1, lambda a, b: _cosh(a), lambda a, b: (_sinh(a), 0.0),
                [-5.0, -0.5, 0.0, 1e-8, 0.5, 3.0, 20.0]),
    "asin": Row(1, lambda a, b: _math(math.asin)(a), lambda a, b: (_asin_slope(a), 0.0),
                [-0.99, -0.5, 0.0, 1e-8, 0.3, 0.9], safe=(-0.9, 0.9)),
    "acos": Row(1, lambda a, b: _math(math.acos)(a), lambda a, b: (-_asin_slope(a), 0.0),
                [-0.99, -0.5, 0.0, 1e-8, 0.3, 0.9], safe=(-0.9, 0.9)),
    "atan": Row(1, lambda a, b: math.atan(a), lambda a, b: (_inv(1.0 + a * a), 0.0),
                [-100.0, -1.0, 0.0, 1e-8, 0.5, 3.0, 1e5]),
    # Comparisons (zero derivative) at points away from ties, where finite differences are 0 too;
    # ties and NaN are tested in tests/test_branches.py against Python's own operators.
    "lt": Row(2, lambda a, b: float(a < b), lambda a, b: (0.0, 0.0), _CMP),
    "le": Row(2, lambda a, b: float(a <= b), lambda a, b: (0.0, 0.0), _CMP),
    "gt": Row(2, lambda a, b: float(a > b), lambda a, b: (0.0, 0.0), _CMP),
    "ge": Row(2, lambda a, b: float(a >= b), lambda a, b: (0.0, 0.0), _CMP),
    "eq": Row(2, lambda a, b: float(a == b), lambda a, b: (0.0, 0.0), _CMP),
    "ne": Row(2, lambda a, b: float(a != b), lambda a, b: (0.0, 0.0), _CMP),
    # rg.where's halves: b where the condition a holds (is not 0, NaN included), else -0.0.
    "when": Row(2, lambda a, b: b if a != 0 else -0.0,
                lambda a, b: (0.0, 1.0 if a != 0 else 0.0), [(1.0, 2.5), (0.0, 2.5), (NAN, -1.0)]),
    "unless": Row(2, lambda a, b: -0.0 if a != 0 else b,
                  lambda a, b: (0.0, 0.0 if a != 0 else 1.0), [(1.0, 2.5), (0.0, 2.5), (NAN, -1.0)]),
    # A recording's guard: its first operand, depending on the comparison (b) undifferentiated.
    "guard": Row(2, lambda a, b: a, lambda a, b: (1.0, 0.0), [(2.5, 1.0), (-1.0, 0.0)]),
}
# powc is pow with the exponent a number (b): differentiated in the base only.
OPS["powc"] = Row(1, _pow, lambda a, b: (0.0 if b == 0 else b * _pow(a, b - 1.0), 0.0),
                  [(2.0, 3), (2.0, 3.0), (2.0, 0.5), (0.5, -2.0), (-1.5, 3), (-1.5, 2.0), (3.0, 1),
                   (1.7, -0.5), (1e-3, 2.5), (7.0, 0.0), (4.0, 1e-8)])

#: The ops users do not call by name: the step functions (gen_graph makes them), rg.where's halves
#: (rg.where makes them) and the guards of a recording (rg.grad and friends make them).
INTERNAL = ("step", "sign", "share", "when", "unless", "guard")
#: The comparisons, written with Python's operators.
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
UNARY = tuple(name for name, row in OPS.items()
              if row.arity == 1 and name != "powc" and name not in INTERNAL)
BINARY = tuple(name for name, row in OPS.items() if row.arity == 2 and name not in INTERNAL)


class Node:
    """An operation node: op name, operand nodes, and for powc the exponent (a number).

    The value is computed when the node is built (operands always hold theirs).
    """

    __slots__ = ("op", "args", "const", "f", "df", "value")

    def __init__(self, op, a, b=None, const=None, f=None, df=None):
        self.op = op
        self.args = (a,) if b is None else (a, b)
        self.const = const
        self.f, self.df = f, df
        self.value = self._compute()

    def _compute(self):
        a = self.args[0].value
        if self.op == "apply":
            return float(self.f(a))
        arity, value, _ = OPS[self.op]
        if self.op == "powc":
            return value(a, self.const)
        return value(a, self.args[1].value if arity == 2 else a)

    def partials(self):
        """The partial derivative with respect to each of self.args."""
        a = self.args[0].value
        if self.op == "apply":
            return (float(self.df(a)),)
        arity, _, partials = OPS[self.op]
        if self.op == "powc":
            return (partials(a, self.const)[0],)
        if arity == 1:
            return (partials(a, a)[0],)
        return partials(a, self.args[1].value)


class Leaf(Node):
    """A variable (or a constant: a leaf the caller never asks about)."""

    __slots__ = ("name",)

    def __init__(self, name, value):
        self.name = name
        self.op = "leaf"
        self.args = ()
        self.value = float(value)

    def partials(self):
        return ()


def apply(x, f, df):
    """The oracle's apply(name, f, df) node."""
    return Node("apply", x, f=f, df=df)


def topological(root):
    """The nodes `root` depends on, operands before users, by an explicit-stack depth-first search."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((arg, False) for arg in reversed(node.args) if id(arg) not in seen)
    return order


def backprop(root, absolute=False):
    """{node: d(root)/d(node)} for every node in root's cone (a dict keyed by node identity).

    With absolute=True the sums use |partial| and |gradient|: the sum over paths of the absolute
    path products, which bounds how much rounding in any one partial can move the gradient (the
    tests scale their tolerance by it where sums may cancel).
    """
    grads = _IdentityDict()
    order = topological(root)
    for node in order:
        grads[node] = 0.0
    grads[root] = 1.0
    for node in reversed(order):
        g = grads[node]
        if g == 0.0:  # like the core: a zero gradient does not propagate (no 0 * inf = NaN)
            continue
        for arg, d in zip(node.args, node.partials()):
            grads[arg] += abs(g * d) if absolute else g * d
    return grads


class _IdentityDict(dict):
    """A dict keyed by object identity (nodes define no __eq__, but make it explicit and fast)."""

    def __getitem__(self, node):
        return dict.__getitem__(self, id(node))

    def __setitem__(self, node, value):
        dict.__setitem__(self, id(node), value)

    def __contains__(self, node):
        return dict.__contains__(self, id(node))


def value(name, a, b=None):
    """The oracle's value of op `name` at numbers (b is powc's exponent or a binary op's rhs)."""
    arity, fn, _ = OPS[name]
    return fn(a, b if b is not None else a)


def partials(name, a, b=None):
    """The oracle's (d/da, d/db) of op `name` at numbers; d/db is 0 for unary ops and powc."""
    arity, _, fn = OPS[name]
    d = fn(a, b if b is not None else a)
    return (d[0], 0.0) if arity == 1 else d
