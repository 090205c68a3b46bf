"""Each error case on each term kind: the same class, and the same message but for how a kind names
its nodes ("(node 5)" on a tape) and its leaves ("tape.term()", "RcTerm(name, value)")."""
import math
import re

import pytest

import rustograd_cy as rg

KINDS = ("tape", "rc", "term")
MAKERS = {"tape": "tape.term()", "rc": "RcTerm(name, value)", "term": "Term(name, value)"}


def leaf_maker(kind):
    if kind == "tape":
        return rg.Tape().term
    return {"rc": rg.RcTerm, "term": rg.Term}[kind]


def error_of(fn):
    with pytest.raises(rg.RustogradError) as info:
        fn()
    return info.value


def normalised(kind, exc):
    """The message with the kind's own words replaced, so all kinds can be compared."""
    text = str(exc).replace(MAKERS[kind], "<maker>")
    return type(exc), re.sub(r" \(node \d+\)", "", text)


def same_everywhere(scenario):
    """Run scenario(make, kind) -> exception on every kind; the normalised errors must be equal."""
    seen = {kind: normalised(kind, error_of(lambda: scenario(leaf_maker(kind), kind))) for kind in KINDS}
    assert len(set(seen.values())) == 1, seen
    return seen["rc"]


def test_set_on_an_operation_node():
    def scenario(make, kind):
        a, b = make("a", 1.0), make("b", 2.0)
        (a + b).set(3.0)
    cls, text = same_everywhere(scenario)
    assert cls is rg.TermWasNotValueError and issubclass(cls, ValueError)
    assert text == "set() changes leaves made by <maker>; 'a + b' is an operation node"


def test_set_on_a_constant():
    """The one test of set() on a constant: every kind, the same error and message; on a tape every
    way to make a constant (the preallocated 0 and 1, by value, named), with a number or an array;
    the constant keeps its value and the tape stays usable, out of batch mode."""
    def scenario(make, kind):
        make("a", 1.0)._constant_like(2.5).set(3.0)
    cls, text = same_everywhere(scenario)
    assert cls is rg.TermWasNotValueError and issubclass(cls, ValueError)
    assert text == "set() changes leaves made by <maker>; '2.5' is a constant"

    tape = rg.Tape()
    x = tape.term("x", 2.0)
    y = x * x + 1.0
    for constant in (tape.zero(), tape.one(), tape.constant(2.5), tape.constant(2.5, name="c")):
        before = constant.data
        for value in (9.0, [1.0, 2.0]):
            with pytest.raises(rg.TermWasNotValueError, match=r"tape\.term\(\).*constant"):
                constant.set(value)
            assert constant.data == before and tape.batch_size is None
    assert (y.eval(), y.derive(x)) == (5.0, 4.0)


def test_derive_with_respect_to_an_operation_node():
    def scenario(make, kind):
        a = make("a", 1.0)
        s = a.sin()
        y = s * 2.0
        y.eval()
        y.derive(s)
    cls, text = same_everywhere(scenario)
    assert cls is rg.TermWasNotValueError
    assert text == "derive() is with respect to a leaf made by <maker>; 'sin(a)' is not one"


@pytest.mark.parametrize("caller", ["derive()", "backprop()"])
def test_values_stale_since_a_set(caller):
    def scenario(make, kind):
        a, b = make("a", 1.0), make("b", 2.0)
        y = (a * b).exp()
        y.eval()
        a.set(4.0)
        y.derive(a) if caller == "derive()" else y.backprop()
    cls, text = same_everywhere(scenario)
    assert cls is rg.ValueNotDefinedError and issubclass(cls, RuntimeError)
    assert text == (f"{caller} needs the value of 'a * b', which is stale since a set() or clear(): "
                    f"call eval() on the output first")


@pytest.mark.parametrize("kind", ["tape", "rc"])
def test_values_never_computed(kind):
    # (A Term computes its values when it is built, so it has no such state.)
    make = leaf_maker(kind)
    a = make("a", 1.0)
    y = a.cos() + 1.0
    exc = error_of(y.backprop)
    assert normalised(kind, exc) == (
        rg.ValueNotDefinedError,
        "backprop() needs the value of 'cos(a)', which was never computed: call eval() on the output first",
    )
    assert y.data is None and y.grad is None


@pytest.mark.parametrize("kind", KINDS)
def test_values_stale_since_clear(kind):
    make = leaf_maker(kind)
    a = make("a", 1.0)
    y = a.tanh()
    y.eval()
    y.clear()
    with pytest.raises(rg.ValueNotDefinedError, match="stale since a set"):
        y.backprop()


KIND_PAIRS = [(x, y) for x in KINDS for y in KINDS if x != y]


@pytest.mark.parametrize("left, right", KIND_PAIRS)
@pytest.mark.parametrize("op", ["+", "*", "**", "maximum"])
def test_mixing_kinds_is_a_type_error(left, right, op):
    x, y = leaf_maker(left)("x", 1.0), leaf_maker(right)("y", 2.0)
    with pytest.raises(TypeError):
        {"+": lambda: x + y, "*": lambda: x * y, "**": lambda: x ** y,
         "maximum": lambda: rg.maximum(x, y)}[op]()


@pytest.mark.parametrize("cls", [rg.RcTerm, rg.Term])
def test_mixing_kinds_says_what_to_do(cls):
    other = rg.Term if cls is rg.RcTerm else rg.RcTerm
    with pytest.raises(TypeError, match="build the whole expression from one kind of term"):
        cls("x", 1.0) + other("y", 1.0)
    with pytest.raises(TypeError, match="derive\\(\\) takes"):
        cls("x", 1.0).derive(other("y", 1.0))


@pytest.mark.parametrize("kind", KINDS)
def test_bool_and_non_numbers_are_rejected(kind):
    make = leaf_maker(kind)
    x = make("x", 1.0)
    with pytest.raises(TypeError):
        x + True
    with pytest.raises(TypeError):
        x * "2"
    with pytest.raises(TypeError, match="set\\(\\)'s value must be a real number"):
        x.set(True)
    with pytest.raises(TypeError, match="a leaf's value must be a real number"):
        make("y", None)
    with pytest.raises(TypeError, match="no truth value"):
        bool(x)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_checks_its_callables(kind):
    x = leaf_maker(kind)("x", 1.0)
    with pytest.raises(TypeError, match=re.escape("apply('f', f, df) needs two callables, got int and")):
        x.apply("f", 1, math.cos)
    with pytest.raises(TypeError, match=re.escape("the function of apply('f')")):
        x.apply("f", lambda v: "one", math.cos).eval()  # a Term calls f as it builds the node
    with pytest.raises(TypeError, match=re.escape("maximum() takes a term of the same kind or a real")):
        x.maximum("one")


@pytest.mark.parametrize("kind", KINDS)
def test_exception_in_a_callable_propagates_and_the_graph_stays_usable(kind):
    x = leaf_maker(kind)("x", 1.0)
    fail = {"now": True}

    def df(v):
        if fail["now"]:
            raise ZeroDivisionError("boom")
        return 2.0

    y = x.apply("twice", lambda v: 2.0 * v, df) + x
    y.eval()
    with pytest.raises(ZeroDivisionError, match="boom"):
        y.backprop()
    assert x.grad is None  # no half-accumulated gradients
    fail["now"] = False
    y.backprop()
    assert x.grad == 3.0


@pytest.mark.parametrize("cls", [rg.RcTerm, rg.Term])
def test_no_sweep_starts_inside_another(cls):
    x = cls("x", 1.0)
    y = x.sin()
    z = y.apply("nested", lambda v: y.eval(), lambda v: 1.0)
    with pytest.raises(RuntimeError, match="sweep is running"):
        z.eval()
    seen = []
    y.eval()
    z2 = y * 2.0
    z2.eval(callback=lambda t: seen.append((t.data, len(z2._graph()))))  # reading is fine
    assert seen[-1] == (2.0 * math.sin(1.0), 4)
    with pytest.raises(RuntimeError, match="sweep is running"):
        z2.eval(callback=lambda t: x.set(2.0))
    assert z2.eval() == 2.0 * math.sin(1.0)  # usable afterwards


def test_direct_construction_rules():
    with pytest.raises(TypeError):
        rg.RcTerm(1.0, "a")
    a = rg.RcTerm("a", 1.0)
    with pytest.raises(TypeError, match="already built"):
        a.__init__("b", 2.0)
