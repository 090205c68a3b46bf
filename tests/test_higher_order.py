"""gen_graph(): nth derivatives against closed forms, the rule table against the numeric one,
linear size, optim, and apply(grad_graph=)."""
import math

import numpy as np
import pytest
from numpy.polynomial import hermite_e
from numpy.polynomial import polynomial as P

import oracle
import rustograd_cy as rg
from rustograd_cy._ops import OP_CODES, OPS, op_partials
from rustograd_cy._opspec import BY_NAME
from rustograd_cy.derivatives import RULES

ORDERS = (1, 2, 3, 4)
REL = 1e-12


def close(got, want, scale):
    """|got - want| within REL of the size of the closed form's summands (`scale` >= |want|)."""
    return abs(got - want) <= REL * max(scale, abs(want))


def derivatives(y, x, n, optim=False):
    out = [y]
    for _ in range(n):
        out.append(None if out[-1] is None else out[-1].gen_graph(x, optim=optim))
    return out


def poly_in(p_of_u, du):
    """Derivatives of p(u(x)) for u' = du(u): coefficient lists p_1..p_4 with p_{k+1} = p_k' * du."""
    polys = []
    p = p_of_u
    for _ in ORDERS:
        p = P.polymul(P.polyder(p), du)
        polys.append(p)
    return polys


def poly_value_and_scale(c, u):
    return P.polyval(u, c), P.polyval(abs(u), np.abs(c))


TANH = poly_in([0.0, 1.0], [1.0, 0.0, -1.0])       # tanh' = 1 - tanh^2
SIGMOID = poly_in([0.0, 1.0], [0.0, 1.0, -1.0])    # s' = s - s^2
POLY = [-7.0, 1.0, 0.0, -2.0, 0.0, 3.0]            # 3x^5 - 2x^3 + x - 7


def closed(name, n, x):
    """(nth derivative, scale) of the named function at x."""
    if name == "sin":
        return math.sin(x + n * math.pi / 2), 1.0
    if name == "cos":
        return math.cos(x + n * math.pi / 2), 1.0
    if name == "exp":
        return math.exp(x), math.exp(x)
    if name == "log":
        v = (-1) ** (n - 1) * math.factorial(n - 1) / x ** n
        return v, abs(v)
    if name == "tanh":
        return poly_value_and_scale(TANH[n - 1], math.tanh(x))
    if name == "sigmoid":
        s = 1 / (1 + math.exp(-x))
        return poly_value_and_scale(SIGMOID[n - 1], s)
    if name == "poly":
        return poly_value_and_scale(P.polyder(POLY, n), x)
    if name == "gauss":
        he = hermite_e.herme2poly([0] * n + [1])  # probabilists' Hermite He_n as a power series
        g = math.exp(-x * x / 2)
        v, s = poly_value_and_scale(he, x)
        return (-1) ** n * v * g, s * g
    raise KeyError(name)


BUILD = {
    "sin": lambda x: x.sin(),
    "cos": lambda x: rg.cos(x),
    "exp": lambda x: x.exp(),
    "log": lambda x: x.log(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "poly": lambda x: 3 * x ** 5 - 2 * x ** 3 + x - 7,
    "gauss": lambda x: rg.exp(-(x * x) / 2),
}
DOMAIN = {"log": (0.1, 5.0)}


@pytest.mark.parametrize("optim", [False, True])
@pytest.mark.parametrize("name", sorted(BUILD))
def test_nth_derivatives_of_unary_functions(name, optim):
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    ds = derivatives(BUILD[name](x), x, 4, optim)
    lo, hi = DOMAIN.get(name, (-4.0, 4.0))
    for v in np.linspace(lo, hi, 41):
        x.set(float(v))
        for n in ORDERS:
            got = ds[n].eval()
            want, scale = closed(name, n, float(v))
            assert close(got, want, scale), (name, n, v, got, want)


def falling(y, n):
    return math.prod(y - k for k in range(n))


def test_x_over_y_through_both_operands():
    tape = rg.Tape()
    x, y = tape.term("x", 0.0), tape.term("y", 1.0)
    f = x / y
    dx = derivatives(f, x, 4)
    dy = derivatives(f, y, 4)
    dxy = dx[1].gen_graph(y)  # d/dy (1/y) = -1/y^2
    assert dx[2] is None  # 1/y does not depend on x
    for xv, yv in [(a, b) for a in (-2.5, 0.3, 1.7) for b in (-3.0, -0.4, 0.5, 2.2)]:
        x.set(xv)
        y.set(yv)
        assert close(dx[1].eval(), 1 / yv, 1 / abs(yv))
        for n in ORDERS:
            want = (-1) ** n * math.factorial(n) * xv / yv ** (n + 1)
            assert close(dy[n].eval(), want, abs(want))
        assert close(dxy.eval(), -1 / yv ** 2, 1 / yv ** 2)


def test_atan2_through_both_operands():
    tape = rg.Tape()
    y, x = tape.term("y", 0.0), tape.term("x", 1.0)
    f = rg.atan2(y, x)
    dy, dx = derivatives(f, y, 4), derivatives(f, x, 4)
    dxy = dy[1].gen_graph(x)
    for yv, xv in [(a, b) for a in (-2.0, -0.5, 0.7, 3.0) for b in (-1.5, 0.4, 2.5)]:
        y.set(yv)
        x.set(xv)
        z = complex(xv, yv)  # atan2(y, x) = Im log(x + iy)
        for n in ORDERS:
            base = (-1) ** (n - 1) * math.factorial(n - 1) / z ** n
            scale = math.factorial(n - 1) / abs(z) ** n
            assert close(dy[n].eval(), (1j ** n * base).imag, scale), (n, yv, xv)
            assert close(dx[n].eval(), base.imag, scale), (n, yv, xv)
        want = (yv * yv - xv * xv) / abs(z) ** 4  # d/dx (x / (x^2 + y^2))
        assert close(dxy.eval(), want, 1 / abs(z) ** 2)


def test_pow_through_both_operands():
    tape = rg.Tape()
    x, y = tape.term("x", 1.0), tape.term("y", 1.0)
    f = x ** y
    dx, dy = derivatives(f, x, 4), derivatives(f, y, 4)
    dxy = dx[1].gen_graph(y)
    for xv, yv in [(a, b) for a in (0.3, 1.6, 4.0) for b in (-1.3, 0.5, 2.7, 3.2)]:
        x.set(xv)
        y.set(yv)
        for n in ORDERS:
            want = falling(yv, n) * xv ** (yv - n)
            assert close(dx[n].eval(), want, abs(want)), (n, xv, yv)
            want = xv ** yv * math.log(xv) ** n
            assert close(dy[n].eval(), want, abs(want)), (n, xv, yv)
        want = xv ** (yv - 1) * (1 + yv * math.log(xv))
        assert close(dxy.eval(), want, xv ** (yv - 1) * (1 + abs(yv * math.log(xv))))


@pytest.mark.parametrize("name", sorted(RULES))
def test_graph_rules_agree_with_the_numeric_table(name):
    """Each graph partial evaluates bit for bit to rg_partials (away from the convention points)."""
    assert set(RULES) == {n for n, arity, _ in OPS if arity > 0 and n != "apply"}
    rng = np.random.default_rng(7)
    row = oracle.OPS.get(name)  # the reductions have no oracle row (identities in scalar mode)
    points = [p if isinstance(p, tuple) else (p, 1.5) for p in (row.points if row else ())]
    drawn = rng.uniform(0.2, 2.0, size=(20, 2)) * rng.choice([-1, 1], size=(20, 2))
    for a, b in points + [tuple(ab) for ab in drawn]:
        a, b = float(a), float(b)
        if name in ("log", "sqrt"):
            a = abs(a)
        if name == "pow":
            a = abs(a)
        tape = rg.Tape()
        ta, tb = tape.term("a", a), tape.term("b", b)
        if name == "powc":
            node, operands = ta ** b, [ta]
        elif name in ("batch_sum", "batch_mean"):  # reductions: identities in scalar mode
            node, operands = {"batch_sum": rg.sum, "batch_mean": rg.mean}[name](ta), [ta]
        elif dict((n, ar) for n, ar, _ in OPS)[name] == 1:
            node, operands = tape._term_at(tape._push_node(OP_CODES[name], ta.index, ta.index)), [ta]
        else:
            node, operands = tape._term_at(tape._push_node(OP_CODES[name], ta.index, tb.index)), [ta, tb]
        want = op_partials(name, a, b)
        for k, var in enumerate(operands):
            d = node.gen_graph(var)
            if BY_NAME[name].partials[k] is None:  # step functions, comparisons: structurally zero
                assert d is None
            if d is None:  # structurally zero (x ** 0 too): the numeric partial must be 0
                assert want[k] == 0.0, (name, a, b, k)
                continue
            got = d.eval()
            assert got == want[k] or (math.isnan(got) and math.isnan(want[k])), (name, a, b, k)


def _fd(f, x0):
    h = 1e-6 * max(1.0, abs(x0))
    if oracle.OPS.get(f.__name__) is not None and oracle.OPS[f.__name__].positive:
        h = 1e-4 * x0
    return (f(x0 + h) - f(x0 - h)) / (2 * h)


@pytest.mark.parametrize("name", oracle.UNARY)
def test_second_derivative_of_every_unary_op_against_finite_differences(name):
    """gen_graph twice against central differences of the oracle's first derivative, at the oracle's
    points, and against derive() of the first derivative graph (forward mode through it)."""
    row = oracle.OPS[name]
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = -x if name == "neg" else getattr(x, name)()
    d1 = y.gen_graph(x)
    d2 = d1.gen_graph(x) if d1 is not None else None

    def slope(v):
        return row.partials(v, v)[0]
    slope.__name__ = name
    for x0 in row.points:
        x.set(x0)
        got = 0.0 if d2 is None else d2.eval()
        want = _fd(slope, x0)
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6), (name, x0, got, want)
        if d2 is not None:
            d1.eval()
            assert math.isclose(d1.derive(x), got, rel_tol=1e-12, abs_tol=1e-300), (name, x0)


@pytest.mark.parametrize("name", ["relu", "abs", "maximum", "minimum"])
def test_derivative_graphs_of_the_kinks_are_table_ops(name):
    """Their step functions are ops: no apply() node, so the graph runs in C, in batch mode too."""
    tape = rg.Tape()
    x, c = tape.term("x", 0.0), tape.term("c", 0.5)
    y = getattr(x, name)(c) if name in ("maximum", "minimum") else getattr(x, name)()
    before = len(tape)
    d1 = y.gen_graph(x)
    assert all(op != OP_CODES["apply"] for op, _, _, _ in tape._nodes(before, len(tape)))
    xs = np.array([-1.0, -0.0, 0.0, 0.25, 0.5, 2.0, math.nan])
    x.set(xs)
    got = d1.eval()
    want = [oracle.partials(name, v, 0.5)[0] for v in xs]
    assert [float(g) for g in got] == want or all(
        (g == w) or (math.isnan(g) and math.isnan(w)) for g, w in zip(got, want))


def chain(n_steps):
    """A graph with fan-out: each step reuses the previous two values (7 nodes per step)."""
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    prev, cur = x, x.sin()
    for _ in range(n_steps):
        prev, cur = cur, (cur * 0.5 + prev.tanh()) / (1.5 + cur.square()) - prev
    return tape, x, cur


@pytest.mark.parametrize("optim", [False, True])
def test_gen_graph_is_linear_on_a_1e5_node_graph(optim):
    sizes = {}
    for steps in (7_000, 14_300):
        tape, x, y = chain(steps)
        before = len(tape)
        cone = len(tape._cone_indices(y.index))
        d = y.gen_graph(x, optim=optim)
        sizes[steps] = len(tape) - before
        assert sizes[steps] <= 12 * cone  # a bounded number of new nodes per node of the cone
    assert before >= 100_000
    ratio = sizes[14_300] / sizes[7_000]
    assert 14_300 / 7_000 * 0.99 < ratio < 14_300 / 7_000 * 1.01
    # the derivative is right: compare with the forward sweep of derive()
    y.eval()
    assert d.eval() == pytest.approx(y.derive(x), rel=1e-9)


def test_optim_yields_no_more_nodes_and_the_same_values():
    for name, build in BUILD.items():
        counts, values = [], []
        for optim in (False, True):
            tape = rg.Tape()
            x = tape.term("x", 0.7)
            ds = derivatives(build(x), x, 4, optim)
            counts.append(len(tape))
            values.append([d.eval() for d in ds])
        assert counts[1] <= counts[0], name
        assert values[0] == values[1], name
    tape = rg.Tape()
    x = tape.term("x", 0.3)
    derivatives(x.sin(), x, 4, optim=True)
    assert len(tape) == 3 + 4  # x, sin, cos, -sin, -cos: the fourth derivative is sin(x) itself


def test_gen_graph_edge_cases():
    tape = rg.Tape()
    x, y = tape.term("x", 2.0), tape.term("y", 3.0)
    assert (y * 2).gen_graph(x) is None
    assert x.gen_graph(x).index == tape.one().index
    assert x.gen_graph(y) is None
    with pytest.raises(rg.TermWasNotValueError):
        (x * y).gen_graph(x * y)
    with pytest.raises(rg.TapeMismatchError):
        x.gen_graph(rg.Tape().term("x", 1.0))
    # relu, abs, maximum, minimum: step functions, whose own derivatives are zero
    f = x.relu() + (x - 5).abs() + x.maximum(y) * 3 + x.minimum(y)
    d1 = f.gen_graph(x)
    for v, want in [(2.0, 1 - 1 + 0 + 1), (4.0, 1 - 1 + 3 + 0), (-1.0, 0 - 1 + 0 + 1), (3.0, 1 - 1 + 1.5 + 0.5)]:
        x.set(v)
        assert d1.eval() == want
    d2 = d1.gen_graph(x)
    assert d2 is None or d2.eval() == 0.0


def test_apply_needs_grad_graph_for_higher_orders():
    tape = rg.Tape()
    x = tape.term("x", 0.4)
    plain = x.apply("sin", math.sin, math.cos)
    with pytest.raises(rg.GradGraphMissingError, match="grad_graph"):
        (plain * 2).gen_graph(x)
    c = tape.term("c", 1.0)
    assert (c.apply("sin", math.sin, math.cos) * x).gen_graph(x) is not None  # constant in x: fine

    def cos_term(t):
        return t.apply("cos", math.cos, lambda u: -math.sin(u), grad_graph=lambda u: -u.sin())

    sin_ = x.apply("sin", math.sin, math.cos, grad_graph=cos_term)
    ds = derivatives(sin_ * sin_, x, 4)
    for v in np.linspace(-2, 2, 17):
        x.set(float(v))
        for n in ORDERS:  # sin^2 = (1 - cos 2x) / 2
            want = -(2 ** (n - 1)) * math.cos(2 * v + n * math.pi / 2)
            assert close(ds[n].eval(), want, 2 ** (n - 1))
    with pytest.raises(TypeError, match="grad_graph"):
        x.apply("f", math.sin, math.cos, grad_graph=3)
    bad = x.apply("f", math.sin, math.cos, grad_graph=lambda t: "cos")
    with pytest.raises(TypeError, match="same tape"):
        bad.gen_graph(x)
