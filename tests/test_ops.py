"""One small test per built-in op: value and derivative against the oracle and finite differences.

Every op is built in each of its forms (method, module function, operator), differentiated by both
`derive` (forward mode) and `backprop` (reverse mode), and compared with tests/oracle.py to 1e-12
relative and with central finite differences. The conventions at kinks are tested on their own.
"""
import math
import operator

import numpy as np
import pytest

import oracle
import rustograd_cy as rg
from rustograd_cy._opspec import SPEC

# The oracle's partials are written from other formulas than the core's (1 / cosh(x)^2 against
# 1 - tanh(x)^2, ...); where those cancel (a saturated tanh or sigmoid) they differ by about one
# ulp of 1 in absolute terms, which is what this floor allows.
ABS_FLOOR = 1e-15


def close(actual, expected, rel=1e-12, abs_=ABS_FLOOR):
    """Equal to `rel` relative (with the ulp floor above), NaN equal to NaN, inf equal to inf."""
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_)


def central_difference(f, x, positive=False):
    """(f(x + h) - f(x - h)) / 2h with a step scaled to x, for functions of plain floats."""
    h = 1e-4 * x if positive else 1e-6 * max(1.0, abs(x))
    return (f(x + h) - f(x - h)) / (2 * h)


def fd_close(actual, estimate):
    # Central differences err by O(h^2 f''') plus rounding O(eps |f| / h): about 1e-8 relative.
    return math.isclose(actual, estimate, rel_tol=1e-6, abs_tol=1e-6)


# -- the ops under test: every row of the spec, each with its oracle row ------------------------------

#: Every op users reach, by arity, from the spec (the oracle row of each gives its test points).
SPEC_UNARY = tuple(op.name for op in SPEC if op.method == "unary" or op.dunder == "neg")
SPEC_BINARY = tuple(op.name for op in SPEC
                    if op.kind == "op" and op.arity == 2 and op.name not in oracle.INTERNAL)


def test_every_op_of_the_spec_has_its_oracle_row():
    computed = {op.name for op in SPEC if op.kind == "op"}
    assert computed == set(oracle.OPS)
    assert set(SPEC_UNARY) == set(oracle.UNARY) and set(SPEC_BINARY) == set(oracle.BINARY)
    assert set(oracle.INTERNAL) == {op.name for op in SPEC if op.kind == "op" and op.method is None
                                    and op.dunder is None and not op.exponent}


# -- unary ops ------------------------------------------------------------------------------------

UNARY_POINTS = {name: oracle.OPS[name].points for name in SPEC_UNARY}
POSITIVE_DOMAIN = tuple(name for name in SPEC_UNARY if oracle.OPS[name].positive)

# The ways to write each unary op on a term.
UNARY_FORMS = {
    "method": lambda name: (lambda x: -x) if name == "neg" else (lambda x: getattr(x, name)()),
    "function": lambda name: (lambda x: -x) if name == "neg" else getattr(rg, name),
}


def _unary_cases():
    for name, points in UNARY_POINTS.items():
        for x in points:
            for form in UNARY_FORMS:
                if name == "neg" and form == "function":
                    continue  # neg has one form, the operator
                yield pytest.param(name, form, x, id=f"{name}-{form}-{x!r}")


@pytest.mark.parametrize("name,form,x0", list(_unary_cases()))
def test_unary_op(name, form, x0):
    tape = rg.Tape()
    x = tape.term("x", x0)
    y = UNARY_FORMS[form](name)(x)
    expected_d = oracle.partials(name, x0)[0]

    assert close(y.eval(), oracle.value(name, x0))
    d_forward = y.derive(x)
    y.backprop()
    assert close(d_forward, expected_d)
    assert x.grad == d_forward  # one op: both modes compute the same product
    assert y.grad == 1.0

    f = lambda v: oracle.value(name, v)  # noqa: E731 (the oracle's value, at plain floats)
    assert fd_close(d_forward, central_difference(f, x0, name in POSITIVE_DOMAIN))


@pytest.mark.parametrize("name", sorted(UNARY_POINTS))
def test_unary_op_finite_differences_on_the_tape(name):
    """The derivative against finite differences of the tape's own values (set() and eval())."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = UNARY_FORMS["method"](name)(x)

    def f(v):
        x.set(v)
        return y.eval()

    for x0 in UNARY_POINTS[name]:
        estimate = central_difference(f, x0, name in POSITIVE_DOMAIN)
        x.set(x0)
        y.eval()
        assert fd_close(y.derive(x), estimate), x0


def test_builtin_abs_is_the_abs_op():
    tape = rg.Tape()
    x = tape.term("x", -2.5)
    y = abs(x)
    assert y.eval() == 2.5
    assert y.derive(x) == -1.0
    assert y.name == "abs(x)"


# -- powc: a term raised to a number --------------------------------------------------------------

POWC_POINTS = oracle.OPS["powc"].points
POWC_FORMS = {
    "operator": lambda x, c: x ** c,
    "method": lambda x, c: x.pow(c),
    "function": lambda x, c: rg.pow(x, c),
}


@pytest.mark.parametrize("form", sorted(POWC_FORMS))
@pytest.mark.parametrize("x0,c", POWC_POINTS)
def test_powc(x0, c, form):
    tape = rg.Tape()
    x = tape.term("x", x0)
    y = POWC_FORMS[form](x, c)
    expected_d = oracle.partials("powc", x0, float(c))[0]

    assert y.eval() == oracle.value("powc", x0, float(c)) == x0 ** c
    assert close(y.derive(x), expected_d)
    y.backprop()
    assert close(x.grad, expected_d)
    assert fd_close(x.grad, central_difference(lambda v: v ** c, x0))


# -- binary ops -----------------------------------------------------------------------------------

BINARY_POINTS = {name: oracle.OPS[name].points for name in SPEC_BINARY}

# Each binary op written with terms and numbers in any mix: its operator, its module function and
# (term on the left) its method, as the spec gives them.
_OPERATORS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "truediv": lambda a, b: a / b, "pow": lambda a, b: a ** b,
              **{name: getattr(operator, name) for name in oracle.COMPARISONS}}
BINARY_FORMS = {
    op.name: {**({"operator": _OPERATORS[op.dunder]} if op.dunder else {}),
              **({"function": getattr(rg, op.name)} if op.function else {})}
    for op in SPEC if op.name in SPEC_BINARY
}
METHODS = {op.name: op.name for op in SPEC if op.name in SPEC_BINARY and op.method}


def _binary_cases():
    for name, points in BINARY_POINTS.items():
        forms = dict(BINARY_FORMS[name])
        if name in METHODS:
            forms["method"] = lambda a, b, m=METHODS[name]: getattr(a, m)(b)
        for a, b in points:
            for form, fn in forms.items():
                yield pytest.param(name, fn, a, b, id=f"{name}-{form}-{a!r}-{b!r}")


@pytest.mark.parametrize("name,fn,a0,b0", list(_binary_cases()))
def test_binary_op_both_terms(name, fn, a0, b0):
    tape = rg.Tape()
    a, b = tape.term("a", a0), tape.term("b", b0)
    y = fn(a, b)
    da, db = oracle.partials(name, a0, b0)

    assert close(y.eval(), oracle.value(name, a0, b0))
    assert close(y.derive(a), da)
    assert close(y.derive(b), db)
    y.backprop()
    assert (a.grad, b.grad) == (y.derive(a), y.derive(b))

    f = lambda u, v: oracle.value(name, u, v)  # noqa: E731
    assert fd_close(a.grad, central_difference(lambda u: f(u, b0), a0))
    assert fd_close(b.grad, central_difference(lambda v: f(a0, v), b0))


@pytest.mark.parametrize("name,fn,a0,b0",
                         [c for c in _binary_cases() if "-method-" not in c.id])
def test_binary_op_number_on_either_side(name, fn, a0, b0):
    """`2.0 ** x`, `1 / x`, `rg.maximum(0.0, x)`: a number lifts to a constant; x gets its slot's partial."""
    da, db = oracle.partials(name, a0, b0)
    expected = oracle.value(name, a0, b0)

    tape = rg.Tape()
    x = tape.term("x", b0)
    y = fn(a0, x)  # number on the left
    assert close(y.eval(), expected)
    assert close(y.derive(x), db)
    y.backprop()
    assert x.grad == y.derive(x)

    tape = rg.Tape()
    x = tape.term("x", a0)
    y = fn(x, b0)  # number on the right
    assert close(y.eval(), expected)
    assert close(y.derive(x), da)
    y.backprop()
    assert x.grad == y.derive(x)


def test_numbers_of_every_kind_mix_with_terms():
    """ints, floats and numpy scalars on either side of every operator."""
    tape = rg.Tape()
    x = tape.term("x", 4.0)
    for k in (2, 2.0, np.float64(2.0), np.float32(2.0), np.int64(2)):
        cases = [(x + k, 6.0, 1.0), (k + x, 6.0, 1.0), (x - k, 2.0, 1.0), (k - x, -2.0, -1.0),
                 (x * k, 8.0, 2.0), (k * x, 8.0, 2.0), (x / k, 2.0, 0.5), (k / x, 0.5, -0.125),
                 (x ** k, 16.0, 8.0), (k ** x, 16.0, 16.0 * math.log(2.0))]
        for y, value, slope in cases:
            assert type(y) is rg.TapeTerm, type(k)
            assert y.eval() == value
            assert close(y.derive(x), slope)


def test_power_with_a_number_exponent_is_not_differentiated_in_the_exponent():
    tape = rg.Tape()
    x = tape.term("x", 3.0)
    y = x ** 2
    assert y.name == "x ** 2"
    assert y.eval() == 9.0
    y.backprop()
    assert x.grad == 6.0
    # The exponent is a constant node: the operands shown are x and 2, the op is powc.
    records = y._graph()
    assert records[-1][2] == "powc"
    assert [r[1] for r in records[:-1]] == ["x", "2"]


# -- conventions at kinks and edges ---------------------------------------------------------------

def _value_and_slopes(build, *values):
    """(value, derive per leaf, backprop grad per leaf) of build(*leaves)."""
    tape = rg.Tape()
    leaves = [tape.term(f"x{i}", v) for i, v in enumerate(values)]
    y = build(*leaves)
    value = y.eval()
    forward = [y.derive(leaf) for leaf in leaves]
    y.backprop()
    return value, forward, [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("build", [lambda x: x.relu(), rg.relu])
def test_relu_slope_at_zero_is_zero(build):
    for zero in (0.0, -0.0):
        value, forward, backward = _value_and_slopes(build, zero)
        assert value == 0.0
        assert forward == backward == [0.0]
    assert oracle.partials("relu", 0.0)[0] == 0.0


@pytest.mark.parametrize("build", [lambda x: x.abs(), rg.abs, abs])
def test_abs_slope_at_zero_is_zero(build):
    for zero in (0.0, -0.0):
        value, forward, backward = _value_and_slopes(build, zero)
        assert value == 0.0
        assert forward == backward == [0.0]


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_tie_splits_the_gradient(name):
    fn = getattr(rg, name)
    value, forward, backward = _value_and_slopes(fn, 1.5, 1.5)
    assert value == 1.5
    assert forward == backward == [0.5, 0.5]
    assert oracle.partials(name, 1.5, 1.5) == (0.5, 0.5)
    # Both halves reach the same leaf: d max(x, x) / dx = 1, as for x itself.
    value, forward, backward = _value_and_slopes(lambda x: fn(x, x), -2.0)
    assert (value, forward, backward) == (-2.0, [1.0], [1.0])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("a0,b0", [(math.nan, 1.0), (1.0, math.nan), (math.nan, math.nan),
                                   (math.nan, -math.inf), (math.inf, math.nan)])
def test_nan_propagates_like_numpy(name, a0, b0):
    reference = getattr(np, name)(a0, b0)
    assert math.isnan(reference)
    value, forward, backward = _value_and_slopes(getattr(rg, name), a0, b0)
    assert math.isnan(value)
    assert math.isnan(getattr(rg, name)(a0, b0))  # the plain-number form too
    # The gradient is not lost: it goes to the NaN operand (the first one if both are).
    expected = [1.0, 0.0] if math.isnan(a0) else [0.0, 1.0]
    assert forward == backward == expected == list(oracle.partials(name, a0, b0))


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_infinities_compare_like_numpy(name):
    for a0, b0 in [(math.inf, 1.0), (-math.inf, 1.0), (1.0, math.inf), (math.inf, -math.inf)]:
        value, forward, backward = _value_and_slopes(getattr(rg, name), a0, b0)
        assert value == getattr(np, name)(a0, b0)
        assert forward == backward


@pytest.mark.parametrize("x0", [0.0, -0.0, 2.0, -3.0])
def test_power_with_exponent_zero_has_slope_zero(x0):
    # x ** 0 is 1 everywhere (0 ** 0 included): its slope is 0, never NaN from 0 * 0 ** -1.
    for build in (lambda x: x ** 0, lambda x: x ** 0.0, lambda x: x.pow(0.0)):
        value, forward, backward = _value_and_slopes(build, x0)
        assert value == 1.0
        assert forward == backward == [0.0]
    # With a term exponent that is 0: d/dx is 0 too, d/dy = 1 * log|x| (NaN below 0, as IEEE).
    value, forward, backward = _value_and_slopes(lambda x, y: x ** y, x0, 0.0)
    assert value == 1.0
    assert forward[0] == backward[0] == 0.0
    assert close(forward[1], oracle.partials("pow", x0, 0.0)[1])
    assert close(backward[1], forward[1])


@pytest.mark.parametrize("y0", [0.5, 1.0, 2.0, 3.0])
def test_power_of_zero_has_exponent_slope_zero(y0):
    # 0 ** y is 0 for every y > 0, so d/dy is 0 (not 0 * log 0 = NaN).
    value, forward, backward = _value_and_slopes(lambda x, y: x ** y, 0.0, y0)
    assert value == 0.0
    assert forward[1] == backward[1] == 0.0
    expected_dx = oracle.partials("pow", 0.0, y0)[0]  # y * 0 ** (y - 1): inf, 1, 0, 0
    assert forward[0] == backward[0] == expected_dx
    # Base a constant zero, exponent a term: the same convention through the number-on-left form.
    tape = rg.Tape()
    y = tape.term("y", y0)
    z = 0.0 ** y
    assert z.eval() == 0.0
    assert z.derive(y) == 0.0


def test_division_by_zero_is_ieee_not_an_exception():
    value, forward, backward = _value_and_slopes(lambda a, b: a / b, 1.0, 0.0)
    assert value == math.inf
    assert forward[0] == backward[0] == math.inf
    assert forward[1] == backward[1] == -math.inf  # -1 / 0 ** 2
    assert oracle.partials("div", 1.0, 0.0) == (math.inf, -math.inf)


def test_log_and_sqrt_at_their_edges():
    assert _value_and_slopes(rg.log, 0.0)[0] == -math.inf
    assert math.isnan(_value_and_slopes(rg.log, -1.0)[0])
    value, forward, backward = _value_and_slopes(rg.sqrt, 0.0)
    assert value == 0.0
    assert forward == backward == [math.inf]


def test_sigmoid_does_not_overflow_far_out():
    for x0, expected in [(-800.0, 0.0), (800.0, 1.0)]:
        value, forward, backward = _value_and_slopes(rg.sigmoid, x0)
        assert value == expected
        assert forward == backward == [0.0]


# -- module functions on plain numbers ------------------------------------------------------------

def _math_cases():
    for name in SPEC_UNARY:
        twin = getattr(math, "fabs" if name == "abs" else name, None)
        if twin is not None:
            for x0 in UNARY_POINTS[name]:
                yield pytest.param(name, twin, x0, id=f"{name}-{x0!r}")


@pytest.mark.parametrize("name,twin,x0", list(_math_cases()))
def test_module_function_on_a_number_is_maths(name, twin, x0):
    """rg.f(number) is math.f(number) to the bit, for every op with a twin of its name in math."""
    result = getattr(rg, name)(x0)
    assert type(result) is float
    assert result == twin(x0)
    assert result == oracle.value(name, x0)


@pytest.mark.parametrize("x0", [-3, -0.5, 0.0, 0.5, 3])
def test_module_functions_without_a_math_twin_on_numbers(x0):
    for name in ("relu", "sigmoid", "square"):
        result = getattr(rg, name)(x0)
        assert type(result) is float
        assert result == oracle.value(name, float(x0))
    assert rg.relu(x0) == max(x0, 0.0)
    assert rg.square(x0) == x0 * x0
    assert math.isclose(rg.sigmoid(x0), 1 / (1 + math.exp(-x0)), rel_tol=1e-15)


def test_binary_module_functions_on_numbers():
    for y0, x0 in [(1.0, 2.0), (-1, 0.5), (0.0, -1.0), (np.float64(2.0), 3)]:
        assert rg.atan2(y0, x0) == math.atan2(y0, x0)
        assert type(rg.atan2(y0, x0)) is float
        assert rg.maximum(y0, x0) == np.maximum(y0, x0)
        assert rg.minimum(y0, x0) == np.minimum(y0, x0)
    assert rg.pow(2.0, 10) == math.pow(2.0, 10) == 1024.0
    assert rg.pow(2, 0.5) == math.pow(2, 0.5)
    assert type(rg.pow(2, 3)) is float


def test_module_functions_on_terms_build_the_same_node_as_the_method():
    tape = rg.Tape()
    x = tape.term("x", 0.3)
    for name in UNARY_POINTS:
        if name == "neg":
            continue
        by_function, by_method = getattr(rg, name)(x), getattr(x, name)()
        assert by_function.name == by_method.name == f"{name}(x)"
        assert by_function.eval() == by_method.eval()
