"""rg.rustograd(): the seed's macro example, the mapping of constructs, and the errors."""
import math
import sys

import pytest

import rustograd_cy as rg


# The seed's user functions: the builder must bind sin and sin_derive from this module's globals.
def sin(x):
    return math.sin(x)


def sin_derive(x):
    return math.cos(x)


SEED = """
a = 0.
all = sin(a) + 0.2 * sin(a * 5.)
"""

POINTS = [i / 40 * math.pi for i in range(-40, 41)]  # 81 points


def hand_built_tape():
    tape = rg.Tape()
    a = tape.term("a", 0.0)
    ten = tape.constant(5.0, name="5.")
    c = tape.constant(0.2, name="0.2")
    return a, a.apply("sin", sin, sin_derive) + c * (a * ten).apply("sin", sin, sin_derive)


def test_seed_macro_example_equals_hand_built_graph():
    terms = rg.rustograd(SEED, kind="tape")
    assert list(terms) == ["a", "all"]
    a, all_ = terms.a, terms["all"]
    ha, hall = hand_built_tape()
    assert all_.name == hall.name == "sin(a) + 0.2 * sin(a * 5.)"
    assert len(all_.tape) == len(hall.tape)
    for x in POINTS:
        a.set(x)
        ha.set(x)
        assert all_.eval() == hall.eval() == math.sin(x) + 0.2 * math.sin(x * 5.0)
        assert all_.derive(a) == hall.derive(ha)
        assert all_.derive(a) == pytest.approx(math.cos(x) + math.cos(5 * x), rel=1e-12, abs=1e-15)
        all_.backprop()
        hall.backprop()
        assert a.grad == ha.grad
        assert a.grad == pytest.approx(all_.derive(a), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("kind, cls", [("rc", "RcTerm"), ("term", "Term")])
def test_seed_macro_example_other_kinds(kind, cls):
    if not hasattr(rg, cls):
        pytest.skip(f"{cls} not merged yet")
    terms = rg.rustograd(SEED, kind=kind)
    assert isinstance(terms.all, getattr(rg, cls))
    ha, hall = hand_built_tape()
    for x in POINTS:
        terms.a.set(x)
        ha.set(x)
        assert terms.all.eval() == hall.eval()
        assert terms.all.derive(terms.a) == hall.derive(ha)


def test_user_function_wins_over_builtin_only_with_its_derive():
    user = rg.rustograd(SEED, kind="tape")
    builtin = rg.rustograd(SEED, namespace={}, kind="tape")  # no sin/sin_derive: the fast op
    ops = {user.all.tape._describe(i)[1] for i in range(len(user.all.tape))}
    assert "sin" in ops and "apply" not in ops  # apply nodes are described by their function name
    assert {builtin.all.tape._describe(i)[2] for i in range(len(builtin.all.tape))} >= {"+", "*"}
    for x in POINTS[::10]:
        user.a.set(x)
        builtin.a.set(x)
        assert builtin.all.eval() == pytest.approx(user.all.eval(), rel=1e-15, abs=1e-300)
        assert builtin.all.derive(builtin.a) == pytest.approx(user.all.derive(user.a), rel=1e-14, abs=1e-15)
    # Only the user version holds callables: gen_graph cannot go through it without a grad_graph.
    assert builtin.all.gen_graph(builtin.a) is not None
    with pytest.raises(rg.GradGraphMissingError, match="grad_graph"):
        user.all.gen_graph(user.a)


def test_decorated_function_and_closure_namespace():
    def cube(x):
        return x ** 3

    def cube_derive(x):
        return 3 * x ** 2

    @rg.rustograd(kind="tape")
    def terms():
        """The docstring is skipped."""
        x = 2.
        y = -x ** 2 + cube(x) / (x - 1) + pow(x, 3) + atan2(x, 1.5) + exp(-x)

    x, y = terms.x, terms.y
    want = -4.0 + 8.0 / 1.0 + 8.0 + math.atan2(2.0, 1.5) + math.exp(-2.0)
    assert y.eval() == pytest.approx(want, rel=1e-15)
    d = -4.0 + (12.0 * 1 - 8.0) / 1.0 + 12.0 + 1.5 / (4.0 + 2.25) - math.exp(-2.0)
    assert y.derive(x) == pytest.approx(d, rel=1e-14)


def test_literals_signed_leaves_and_powc():
    terms = rg.rustograd("x = -1.5\ny = x ** 2 + pow(x, 2.5) * 0 + 3", kind="tape")
    assert terms.x.data == -1.5
    assert terms.x.name == "x"
    assert "x ** 2" in terms.y.name
    tape = terms.y.tape
    ops = [tape._describe(i)[1] for i in range(len(tape))]
    assert ops.count("powc") == 2  # numeric exponents stay numbers: x ** constant


def test_grad_graph_from_namespace_reaches_higher_orders():
    ns = {
        "f": math.sin, "f_derive": math.cos,
        "f_grad_graph": lambda t: t.cos(),
    }
    terms = rg.rustograd("x = 0.5\ny = f(x)", namespace=ns, kind="tape")
    d2 = terms.y.gen_graph(terms.x).gen_graph(terms.x)
    assert d2.eval() == -math.sin(0.5)


def test_tape_argument_builds_on_that_tape():
    tape = rg.Tape()
    terms = rg.rustograd("x = 1.\ny = x * x", tape=tape)
    assert terms.y.tape is tape
    with pytest.raises(ValueError, match="kind='tape'"):
        rg.rustograd("x = 1.", kind="term", tape=tape)
    with pytest.raises(ValueError, match="kind must be"):
        rg.rustograd("x = 1.", kind="torch")


@pytest.mark.parametrize("source, line, column, what", [
    ("x = 1.\ny = z + x", 2, 5, "unknown name 'z'"),
    ("x = 1.\ny = foo(x)", 2, 5, "unknown function 'foo'"),
    ("x = 1.\ny = x % 2", 2, 5, "unsupported operator"),
    ("x = 1.\n\nprint(x)", 3, 1, "unsupported statement"),
    # Python 3.9's parser reports the end of the text instead of the open parenthesis.
    ("x = 1.\ny = (x +", 2, 5, "never closed") if sys.version_info >= (3, 10) else
    ("x = 1.\ny = (x +", 2, 9, "unexpected EOF"),
    ("x = 1.\ny = 'a' * x", 2, 5, "unsupported literal"),
    ("x = 1.\ny = x.sin()", 2, 5, "plain function names"),
    ("x = 1.\nx, y = x, x", 2, 1, "one plain name"),
    ("x = 1.\ny = x if x else x", 2, 5, "unsupported expression"),
    ("x = 1.\ny = sin(x, x)", 2, 5, "takes one argument"),
    ("x = 1.\ny = atan2(x)", 2, 5, "takes two arguments"),
    ("x = 1.\ny = 1 + nod(x)", 2, 9, "missing nod_derive"),
    ("  x = 1.\n  y = w", 2, 7, "unknown name 'w'"),  # columns count the indentation
])
def test_errors_name_line_and_column(source, line, column, what):
    ns = {"nod": abs, "sin": math.sin, "sin_derive": math.cos}
    with pytest.raises(rg.BuilderError, match=f"line {line}, column {column}: .*{what}") as info:
        rg.rustograd(source, namespace=ns, kind="tape")
    assert isinstance(info.value, SyntaxError) and isinstance(info.value, rg.RustogradError)
    assert (info.value.lineno, info.value.offset) == (line, column)


def test_error_in_decorated_function_points_into_the_file():
    with pytest.raises(rg.BuilderError) as info:
        @rg.rustograd(kind="tape")
        def bad():
            x = 1.
            y = x // 2  # noqa: F841
    lines, first = __import__("inspect").getsourcelines(test_error_in_decorated_function_points_into_the_file)
    want_line = first + next(i for i, text in enumerate(lines) if "x // 2" in text)
    assert info.value.lineno == want_line
    assert info.value.filename == __file__
    assert info.value.offset == lines[want_line - first].index("x // 2") + 1


def test_missing_derive_of_non_callable():
    with pytest.raises(rg.BuilderError, match="not a function"):
        rg.rustograd("x = 1.\ny = g(x)", namespace={"g": 1.0, "g_derive": math.cos}, kind="tape")


@pytest.mark.parametrize("kind", ["tape", "rc", "term"])
def test_every_builtin_function_of_the_spec_builds_its_op(kind):
    """Each built-in name (one per module function of the op spec) calls the fast op: the same
    value as rg.<name> on numbers, and a node labelled by the op."""
    from rustograd_cy.builder import BINARY_BUILTINS, UNARY_BUILTINS
    assert {"sin", "atan", "log1p", "erf"} <= UNARY_BUILTINS and "atan2" in BINARY_BUILTINS
    for name in sorted(UNARY_BUILTINS):
        terms = rg.rustograd(f"x = 0.25\ny = {name}(x)", namespace={}, kind=kind)
        assert terms.y.eval() == getattr(rg, name)(0.25), name
        assert terms.y.name == f"{name}(x)"
    for name in sorted(BINARY_BUILTINS - {"pow"}):
        terms = rg.rustograd(f"x = 0.25\nz = 1.5\ny = {name}(x, z)", namespace={}, kind=kind)
        assert terms.y.eval() == getattr(rg, name)(0.25, 1.5), name
        assert terms.y.name == f"{name}(x, z)"
