"""Differential fuzzing: hypothesis draws random graphs over every op, with edge values (0, -0,
negative inputs to log and sqrt, huge and tiny magnitudes, large exponents), and compares

- the three term kinds with each other everywhere: values bit for bit (NaN matches NaN), gradients
  and derive() to rounding, infinities and NaNs in the same places;
- the pure-Python oracle of tests/oracle.py (textbook partials, in terms of the operands) and PyTorch in
  float64 (when installed) where the graph is clean: every value, partial and adjoint finite and no
  op on a kink (relu/abs at 0, ties of maximum/minimum, pow/powc at base 0 or below, atan2 at the
  origin). Off clean graphs the conventions differ by design; the README's GUARANTEES lists how.
"""
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphs as _graphs
import oracle
import rustograd_cy as rg

UNARY, BINARY = list(oracle.UNARY), list(oracle.BINARY)
EXPONENTS = [0.0, 1.0, 2.0, 3.0, -1.0, 0.5, -0.5, 2.5, 40.0, 1e3]
EDGE_VALUES = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-300, -1e-300, 1e300, -1e300, 700.0, -750.0]

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# -- the graphs -------------------------------------------------------------------------------------

values = st.one_of(st.sampled_from(EDGE_VALUES), st.floats(-4.0, 4.0, allow_nan=False))
# Every op on any earlier node (so graphs share subexpressions, x * x included), powers with edge
# exponents, and numbers on either side (tests/graphs.py).
graphs = _graphs.programs(values, st.one_of(
    _graphs.steps(UNARY + BINARY, [0.0]),
    _graphs.steps(["powc"], EXPONENTS),
    _graphs.steps(["addc", "rmulc", "divc", "rsubc"], values),
), leaves=(1, 3), length=(1, 12))


def build(leaves, steps, make):
    """The graph as terms made by `make(name, value)`; nodes[-1] is the output."""
    return _graphs.build(make, leaves, steps)


# -- the oracle: tests/oracle.py's rows (values with IEEE results, partials from the textbook) -------

def _moderate(x):
    return x == 0.0 or 1e-150 < abs(x) < 1e150


def _on_kink(op, a, b):
    """On a kink or edge, or outside the range where the oracle's textbook partial and the core's
    agree to rounding (its row's `safe`: saturated tanh and sigmoid, where 1 - t^2 rounds to 0
    and 1 / cosh^2 does not, as the README's GUARANTEES says)."""
    safe = oracle.OPS[op].safe
    return ((op in ("relu", "abs") and a == 0.0) or (op in ("maximum", "minimum") and a == b)
            or (op in ("pow", "powc") and a <= 0.0) or (op in ("sqrt", "log") and a <= 0.0)
            or (op == "atan2" and a == 0.0 and b == 0.0)
            or (safe is not None and not safe[0] < a < safe[1]))


class Oracle:
    """Records the graph in creation order as ("leaf", value) or (op, a, b, exponent) with operand
    positions a, b (b None for unary ops; exponent only for powc), then sweeps it."""

    def __init__(self):
        self.nodes = []

    def make(self, name, value):
        return _ONode(self, self._add(("leaf", float(value))))

    def _add(self, node):
        self.nodes.append(node)
        return len(self.nodes) - 1

    def run(self, output):
        """(values, grads, scale, clean): scale is the reverse sweep of |partials| (the size of
        the terms summed into each gradient, which bounds its rounding); clean says every value,
        partial and gradient is finite and no op sits on a kink."""
        n = output + 1
        vals = []
        for node in self.nodes[:n]:
            if node[0] == "leaf":
                vals.append(node[1])
            elif node[0] == "powc":
                vals.append(oracle.value("powc", vals[node[1]], node[3]))
            elif node[2] is None:
                vals.append(oracle.value(node[0], vals[node[1]]))
            else:
                vals.append(oracle.value(node[0], vals[node[1]], vals[node[2]]))
        grads, scale = [0.0] * n, [0.0] * n
        grads[output] = scale[output] = 1.0
        reached = [False] * n  # the output's cone: PyTorch runs every backward function in it
        reached[output] = True
        clean = True
        for i in range(output, -1, -1):
            node = self.nodes[i]
            if node[0] == "leaf" or not reached[i]:
                continue
            op, a, b, c = node
            reached[a] = True
            if b is not None:
                reached[b] = True
            va = vals[a]
            vb = c if op == "powc" else (vals[b] if b is not None else 0.0)
            if _on_kink(op, va, vb):
                clean = False
            try:
                da, db = oracle.partials(op, va, vb if b is not None or op == "powc" else None)
            except (ValueError, OverflowError):  # math's domain errors: not finite in C
                da = db = math.nan
            if not (_moderate(da) and _moderate(db)):
                clean = False  # even under a zero gradient (PyTorch makes 0 * inf = NaN there)
            for j, d in ((a, da), (b, db)):
                if j is None or d == 0.0:
                    continue
                if grads[i] != 0.0:  # a gradient that cancelled to 0 here may be a residue there
                    grads[j] += grads[i] * d
                scale[j] += scale[i] * abs(d)
        # Clean also means moderate: no number so big or small that an implementation computing a
        # partial through a square or a product (PyTorch's atan2: 1 / (a^2 + b^2)) overflows or
        # underflows where another does not.
        clean = clean and all(_moderate(v) for v in vals) and all(_moderate(g) for g in grads)
        return vals, grads, scale, clean


class _ONode:
    """An oracle node with the term API that build() uses."""

    def __init__(self, oracle, i):
        self.o, self.i = oracle, i

    def _bin(self, op, other, swap=False):
        if not isinstance(other, _ONode):
            other = _ONode(self.o, self.o._add(("leaf", float(other))))
        a, b = (other, self) if swap else (self, other)
        return _ONode(self.o, self.o._add((op, a.i, b.i, None)))

    def _un(self, op):
        return _ONode(self.o, self.o._add((op, self.i, None, None)))

    def __add__(self, o): return self._bin("add", o)  # noqa: E704
    def __radd__(self, o): return self._bin("add", o, True)  # noqa: E704
    def __sub__(self, o): return self._bin("sub", o)  # noqa: E704
    def __rsub__(self, o): return self._bin("sub", o, True)  # noqa: E704
    def __mul__(self, o): return self._bin("mul", o)  # noqa: E704
    def __rmul__(self, o): return self._bin("mul", o, True)  # noqa: E704
    def __truediv__(self, o): return self._bin("div", o)  # noqa: E704
    def __neg__(self): return self._un("neg")  # noqa: E704
    def __abs__(self): return self._un("abs")  # noqa: E704

    # The comparisons (tests/graphs.py writes them with Python's operators).
    def __lt__(self, o): return self._bin("lt", o)  # noqa: E704
    def __le__(self, o): return self._bin("le", o)  # noqa: E704
    def __gt__(self, o): return self._bin("gt", o)  # noqa: E704
    def __ge__(self, o): return self._bin("ge", o)  # noqa: E704
    def __eq__(self, o): return self._bin("eq", o)  # noqa: E704
    def __ne__(self, o): return self._bin("ne", o)  # noqa: E704
    __hash__ = object.__hash__

    def __pow__(self, c):
        """x ** c with a constant exponent: not differentiated in c."""
        return _ONode(self.o, self.o._add(("powc", self.i, None, float(c))))

    def __getattr__(self, op):
        if op in UNARY:
            return lambda: self._un(op)
        if op in BINARY:
            return lambda other: self._bin(op, other)
        raise AttributeError(op)


# -- comparisons ------------------------------------------------------------------------------------

def same_float(x, y):
    return x == y or (x != x and y != y)


def close(x, y, bound):
    if not (math.isfinite(x) and math.isfinite(y)):
        return same_float(x, y)
    return abs(x - y) <= bound


def kinds(leaves, steps):
    out = {}
    tape = rg.Tape()
    for name, make in (("tape", tape.term), ("rc", rg.RcTerm), ("term", rg.Term)):
        nodes = build(leaves, steps, make)
        y = nodes[-1]
        value = y.eval()
        y.backprop()
        leaf_terms = nodes[:len(leaves)]
        grads = [t.grad if t.grad is not None else 0.0 for t in leaf_terms]
        derived = [y.derive(t) for t in leaf_terms]
        out[name] = (value, grads, derived, [t.data for t in nodes])
    return out


def oracle_run(leaves, steps):
    """(values by node, leaf gradients, their scales, clean, oracle position of each node)."""
    o = Oracle()
    nodes = build(leaves, steps, o.make)
    vals, grads, scale, clean = o.run(nodes[-1].i)
    first = nodes[:len(leaves)]
    return vals, [grads[n.i] for n in first], [scale[n.i] for n in first], clean, [n.i for n in nodes]


# -- the tests --------------------------------------------------------------------------------------

@SETTINGS
@given(graphs)
def test_the_three_kinds_agree_everywhere(graph):
    leaves, steps = graph
    got = kinds(leaves, steps)
    scale = oracle_run(leaves, steps)[2]
    t_value, t_grads, t_derived, t_data = got["tape"]
    for name in ("rc", "term"):
        value, grads, derived, data = got[name]
        assert same_float(value, t_value), name
        # Nodes outside the output's cone: None on the lazy kinds, computed on Term (eager).
        assert all(same_float(a, b) for a, b in zip(data, t_data) if a is not None and b is not None), name
        assert [d is None for d in data] == [d is None for d in t_data] or name == "term"
        # The same op table; only the order in which a shared operand's gradient terms are added
        # may differ: rounding, bounded by the sum of the terms' sizes (the oracle's scale).
        for a, b, sc in zip(grads + derived, t_grads + t_derived, scale + scale):
            if math.isfinite(sc) and sc < 1e290:
                assert close(a, b, 1e-12 * sc), (name, a, b, sc)
            else:  # overflowing terms: another order may overflow elsewhere, never unNaN a NaN
                assert math.isnan(a) == math.isnan(b), (name, a, b, sc)


@SETTINGS
@given(graphs)
def test_values_match_the_oracle_everywhere_and_gradients_where_clean(graph):
    leaves, steps = graph
    value, grads, derived, data = kinds(leaves, steps)["tape"]
    vals, o_grads, scale, clean, index = oracle_run(leaves, steps)
    assert all(same_float(d, vals[i]) for d, i in zip(data, index) if d is not None)  # same libm
    assert data[-1] is not None
    if clean:
        # The oracle's partials are written from the operands (1 / cos^2 for tan's 1 + tan^2,
        # ...): rounding apart, bounded relative to the sum of the sizes of the summed terms.
        for g, d, og, sc in zip(grads, derived, o_grads, scale):
            bound = 1e-10 * sc + 1e-300
            assert abs(g - og) <= bound, (g, og, sc)
            assert abs(d - og) <= bound, (d, og, sc)


class _TorchTerm:
    """torch tensors dressed as terms (methods of the term API), so build() makes the same graph."""
    torch = None

    def __init__(self, t):
        self.t = t

    @staticmethod
    def _t(x):
        return x.t if isinstance(x, _TorchTerm) else x

    def __add__(self, o): return _TorchTerm(self.t + self._t(o))
    def __radd__(self, o): return _TorchTerm(self._t(o) + self.t)
    def __sub__(self, o): return _TorchTerm(self.t - self._t(o))
    def __rsub__(self, o): return _TorchTerm(self._t(o) - self.t)
    def __mul__(self, o): return _TorchTerm(self.t * self._t(o))
    def __rmul__(self, o): return _TorchTerm(self._t(o) * self.t)
    def __truediv__(self, o): return _TorchTerm(self.t / self._t(o))
    def __neg__(self): return _TorchTerm(-self.t)
    def __abs__(self): return _TorchTerm(abs(self.t))
    def __pow__(self, c): return _TorchTerm(self.t ** c)
    # Comparisons as float64 0/1 tensors (no gradient flows through them, as on the tape).
    def __lt__(self, o): return _TorchTerm((self.t < self._t(o)).double())  # noqa: E704
    def __le__(self, o): return _TorchTerm((self.t <= self._t(o)).double())  # noqa: E704
    def __gt__(self, o): return _TorchTerm((self.t > self._t(o)).double())  # noqa: E704
    def __ge__(self, o): return _TorchTerm((self.t >= self._t(o)).double())  # noqa: E704
    def __eq__(self, o): return _TorchTerm((self.t == self._t(o)).double())  # noqa: E704
    def __ne__(self, o): return _TorchTerm((self.t != self._t(o)).double())  # noqa: E704
    __hash__ = object.__hash__

    def __getattr__(self, op):
        torch = _TorchTerm.torch
        if op in UNARY:
            return lambda: _TorchTerm(getattr(torch, op)(self.t))
        if op in BINARY:
            return lambda other: _TorchTerm(getattr(torch, op)(self.t, self._t(other)))
        raise AttributeError(op)


def torch_run(torch, leaves, steps):
    _TorchTerm.torch = torch
    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in leaves]
    it = iter(xs)
    nodes = build(leaves, steps, lambda name, v: _TorchTerm(next(it)))
    y = nodes[-1].t
    grads = torch.autograd.grad(y, xs, allow_unused=True) if y.requires_grad else [None] * len(xs)
    return ([n.t.item() for n in nodes],
            [0.0 if g is None else g.item() for g in grads])


@SETTINGS
@given(graphs)
def test_pytorch_float64_agrees_where_clean(graph):
    torch = pytest.importorskip("torch")
    leaves, steps = graph
    value, grads, derived, data = kinds(leaves, steps)["tape"]
    vals, o_grads, scale, clean, index = oracle_run(leaves, steps)
    t_vals, t_grads = torch_run(torch, leaves, steps)
    sqrt_powers = any(s[0] == "powc" and abs(s[1]) == 0.5 for s in steps)
    for d, t in zip(data, t_vals):
        if d is None:
            continue
        # torch's kernels are not libm: values to a few ulp; NaN in the same places. (Signed zeros
        # may differ: the README's GUARANTEES.)
        # (PyTorch computes x ** 0.5 and x ** -0.5 as sqrt and rsqrt: NaN at -inf where C's pow
        # gives inf or 0.)
        assert math.isnan(d) == math.isnan(t) or sqrt_powers, (d, t)
        if clean:
            assert close(d, t, 1e-12 * max(abs(d), abs(t)) + 1e-300), (d, t)
    if clean:
        for g, tg, sc in zip(grads, t_grads, scale):
            # PyTorch writes some partials differently (div: -g * a / (b * b)), so terms that
            # cancel exactly here (x / x) may leave a residue of rounding size there.
            assert abs(g - tg) <= 1e-10 * sc + 1e-12 * max(1.0, abs(g)), (g, tg, sc)
