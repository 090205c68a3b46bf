"""The bad-input catalogue: every public function and method given the wrong thing raises an
exception of a documented class whose message says what to do, and the tape or graph stays usable.

Each case is a row: (what is called, what it is given, the expected class, words the message must
contain). After every row the same small graph is evaluated and differentiated again, and must give
the numbers it gave before.
"""
import io
import math
import sys

import numpy as np
import pytest

import rustograd_cy as rg

KINDS = ("tape", "rc", "term")

#: Things that are not real numbers, as Python and numpy users pass them by mistake.
NOT_NUMBERS = {
    "str": "1.0",
    "None": None,
    "complex": 1 + 2j,
    "bool": True,
    "numpy bool": np.bool_(True),
    "list": [1.0],
    "1-D array": np.array([1.0, 2.0]),
    "0-d array": np.array(2.0),
    "object": object(),
}

#: Things that are not names.
NOT_NAMES = {"None": None, "int": 3, "float": 1.5, "bytes": b"x", "bool": True, "array": np.array(["a"])}

HUGE_INT = 10 ** 400


class Graph:
    """y = a * b + sin(a) of one kind, with its reference numbers."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "tape":
            self.tape = rg.Tape()
            self.make = self.tape.term
        else:
            self.tape = None
            self.make = {"rc": rg.RcTerm, "term": rg.Term}[kind]
        self.a, self.b = self.make("a", 2.0), self.make("b", 3.0)
        self.y = self.a * self.b + self.a.sin()
        self.expected = (6.0 + math.sin(2.0), 3.0 + math.cos(2.0), 2.0)

    def numbers(self):
        value = self.y.eval()
        self.y.backprop()
        return value, self.a.grad, self.b.grad, self.y.derive(self.a)

    def check_usable(self):
        """The graph still computes the right numbers (and can grow)."""
        self.a.set(2.0)
        self.b.set(3.0)
        value, ga, gb, da = self.numbers()
        assert (value, ga, gb) == self.expected
        assert da == ga
        z = self.y * 2.0
        assert z.eval() == 2.0 * self.expected[0]


@pytest.fixture(params=KINDS)
def g(request):
    graph = Graph(request.param)
    graph.numbers()
    yield graph
    graph.check_usable()


def raises(cls, *words):
    """pytest.raises(cls) that also checks the message contains each of `words`."""
    class Check:
        def __enter__(self):
            self.ctx = pytest.raises(cls)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            text = str(self.info.value)
            for word in words:
                assert word in text, f"{word!r} not in {text!r}"
            return suppressed
    return Check()


@pytest.mark.parametrize("value", [np.array(2.5), np.array(3), np.array(2.5, dtype=np.float32)],
                         ids=["float64", "int", "float32"])
def test_a_0d_array_is_a_number_wherever_a_leaf_value_is_taken(kind, value):
    """One rule for 0-d arrays: a leaf's value, a constant and set() read them as float(a) does,
    on every kind (numpy scalars already are numbers)."""
    make = rg.Tape().term if kind == "tape" else {"rc": rg.RcTerm, "term": rg.Term}[kind]
    x = make("x", value)
    assert x.data == float(value) and type(x.data) is float
    y = x * 2.0
    assert y.eval() == 2.0 * float(value)
    x.set(np.array(1.5))
    assert y.eval() == 3.0
    if kind == "tape":
        assert x.tape.batch_size is None
        assert x.tape.constant(value).data == float(value)


# -- wrong types where a number is wanted -----------------------------------------------------------

#: Leaf values (term(), constant(), set()) take a 0-d array of a real dtype as the number it holds
#: (test_a_0d_array_is_a_number_wherever_a_leaf_value_is_taken); operands do not.
NOT_VALUES = {k: v for k, v in NOT_NUMBERS.items() if k != "0-d array"}
NOT_VALUES["0-d bool array"] = np.array(True)
NOT_VALUES["0-d complex array"] = np.array(1 + 2j)


@pytest.mark.parametrize("bad", NOT_VALUES.values(), ids=NOT_VALUES.keys())
def test_leaf_value_and_set_reject_non_numbers(g, bad):
    with raises(TypeError, "must be a real number"):
        g.make("c", bad)
    if g.tape is not None and isinstance(bad, (list, np.ndarray)) and np.ndim(bad) > 0:
        # On the tape a 1-D array is a batch (tests/test_batch.py) and a 0-d array a number.
        g.a.set(bad)
        assert g.tape.batch_size == (len(bad) if np.ndim(bad) else None)
        g.a.set(2.0)
    else:
        with raises(TypeError, "set()"):
            g.a.set(bad)
    if g.tape is not None:
        with raises(TypeError, "must be a real number"):
            g.tape.constant(bad)
    assert g.a.data == 2.0  # the failed set() changed nothing


@pytest.mark.parametrize("bad", [v for k, v in NOT_NUMBERS.items() if "array" not in k and k != "list"],
                         ids=[k for k in NOT_NUMBERS if "array" not in k and k != "list"])
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
def test_operators_reject_non_numbers(g, op, bad):
    # Python's own message for operators (the operand protocol must stay open to other types).
    fn = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
          "/": lambda x, y: x / y, "**": lambda x, y: x ** y}[op]
    with raises(TypeError):
        fn(g.a, bad)
    with raises(TypeError):
        fn(bad, g.a)


@pytest.mark.parametrize("bad", NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
@pytest.mark.parametrize("method", ["pow", "atan2", "maximum", "minimum"])
def test_binary_methods_reject_non_numbers(g, method, bad):
    with raises(TypeError, f"{method}() takes a term of the same kind or a real number"):
        getattr(g.a, method)(bad)


@pytest.mark.parametrize("bad", NOT_NUMBERS.values(), ids=NOT_NUMBERS.keys())
def test_module_functions_reject_non_numbers(bad):
    with raises(TypeError, "sin() takes a term or a real number"):
        rg.sin(bad)
    with raises(TypeError, "takes a term or a real number"):
        rg.maximum(bad, 1.0)
    with raises(TypeError, "takes a term or a real number"):
        rg.pow(bad, 2.0)


#: Python >= 3.11 has the source positions (co_positions) from which a message names the call.
NAMES_CALLS = sys.version_info >= (3, 11)


def test_a_term_is_not_a_float(g):
    # The message names the function called (when the source shows it) and what to use instead.
    if NAMES_CALLS:
        with raises(TypeError, "float(term): a term is not a number", "term.eval()"):
            float(g.y)
        with raises(TypeError, "math.sin(term): a term is not a number", "rg.sin(term)", "term.eval()"):
            math.sin(g.y)
        for fn in (math.exp, lambda t: math.exp(t)):
            with raises(TypeError, "math.exp(term): a term is not a number", "rg.exp(term)"):
                fn(g.y)
        with raises(TypeError, "math.isclose(term): a term is not a number", "term.eval()"):
            math.isclose(g.y, 1.0)
    else:  # the call is not known: the message names none
        for call in (float, math.sin, math.exp, lambda t: math.isclose(t, 1.0)):
            with raises(TypeError, "a term is not a number", "term.eval()", "rg.sin(term)"):
                call(g.y)
    with raises(TypeError, "int(term): a term is not a number", "int(term.eval())"):
        int(g.y)
    with raises(TypeError, "round(term): a term is not a number", "round(term.eval(), ndigits)"):
        round(g.y, 2)
    with raises(TypeError, "no truth value"):
        bool(g.y)
    with raises(TypeError, "no truth value"):
        if g.a:
            pass


def test_a_numpy_array_mixes_elementwise_but_is_no_leaf_value(g):
    # An array operand makes an object array of terms (numpy broadcasting), never a silent scalar.
    out = g.a + np.array([1.0, 2.0])
    assert out.dtype == object and [t.eval() for t in out] == [3.0, 4.0]
    if g.tape is None:  # (on the tape an array is a batch: tests/test_batch.py)
        with raises(TypeError, "not ndarray"):
            g.a.set(np.array([1.0]))


def test_numpy_scalars_are_numbers(g):
    c = g.make("c", np.float32(1.5))
    assert c.data == 1.5
    assert (g.a * np.float64(2.0)).eval() == 4.0
    assert (np.int64(3) + g.a).eval() == 5.0
    g.b.set(np.float64(3.0))


# -- NaN, infinity, huge magnitudes -----------------------------------------------------------------

@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324])
def test_ieee_specials_are_allowed_values(g, special):
    c = g.make("c", special)
    y = c * 2.0 + g.a
    value = y.eval()
    expected = special * 2.0 + 2.0
    assert value == expected or (math.isnan(value) and math.isnan(expected))
    y.backprop()
    assert g.a.grad == 1.0 and c.grad == 2.0


def test_huge_ints_say_they_do_not_fit_a_float(g):
    with raises(OverflowError, "too large for a float"):
        g.make("c", HUGE_INT)
    with raises(OverflowError, "too large for a float"):
        g.a.set(HUGE_INT)
    with raises(OverflowError, "too large for a float"):
        g.a + HUGE_INT
    with raises(OverflowError, "too large for a float"):
        g.a ** HUGE_INT
    assert (g.a + 2 ** 1000).eval() == 2.0 ** 1000  # big but representable: fine


def test_overflow_in_values_is_ieee(g):
    y = (g.a * 1e308).exp()
    assert y.eval() == math.inf
    y.backprop()
    assert g.a.grad == math.inf


# -- names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", NOT_NAMES.values(), ids=NOT_NAMES.keys())
def test_names_must_be_strings(g, bad):
    with raises(TypeError, "a leaf's name must be a str"):
        g.make(bad, 1.0)
    with raises(TypeError, "apply()'s name must be a str"):
        g.a.apply(bad, math.sin, math.cos)
    if g.tape is not None and bad is not None:  # constant(value, None) is named by its value
        with raises(TypeError, "a constant's name must be a str"):
            g.tape.constant(1.0, bad)


# -- callables --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [None, 1.0, "sin"])
def test_apply_needs_callables(g, bad):
    with raises(TypeError, "needs two callables"):
        g.a.apply("f", bad, math.cos)
    with raises(TypeError, "needs two callables"):
        g.a.apply("f", math.sin, bad)


@pytest.mark.parametrize("result", ["1", None, 1j, True, np.array([1.0, 2.0])],
                         ids=["str", "None", "complex", "bool", "array"])
def test_apply_functions_must_return_numbers(g, result):
    with raises(TypeError, "apply('f')", "must return a real number"):
        g.a.apply("f", lambda v: result, lambda v: 1.0).eval()  # Term: already when built
    z = g.a.apply("f", math.sin, lambda v: result)
    z.eval()
    with raises(TypeError, "apply('f')", "must return a real number"):
        z.backprop()
    with raises(TypeError, "must return a real number"):
        z.derive(g.a)


def test_an_exception_in_a_callable_or_callback_propagates_unchanged(g):
    class Boom(Exception):
        pass

    def boom(_):
        raise Boom("from the user")

    with pytest.raises(Boom, match="from the user"):
        g.a.apply("f", boom, math.cos).eval()  # Term: already when built
    with pytest.raises(Boom):
        g.y.eval(callback=boom)
    g.y.eval()
    with pytest.raises(Boom):
        g.y.backprop(callback=boom)
    assert g.a.grad is None  # no half-accumulated gradients


@pytest.mark.parametrize("bad", [1, "f"])
def test_callbacks_must_be_callable(g, bad):
    with raises(TypeError, "not callable"):
        g.y.eval(callback=bad)


# -- state: values not computed, leaves only --------------------------------------------------------

def test_backprop_and_derive_before_eval(g):
    if g.kind == "term":
        pytest.skip("Term computes values when it builds a node: there is no 'before eval'")
    y = g.a * g.b * 2.0
    with raises(rg.ValueNotDefinedError, "never computed", "call eval()"):
        y.backprop()
    with raises(rg.ValueNotDefinedError, "never computed", "call eval()"):
        y.derive(g.a)


def test_backprop_and_derive_after_set(g):
    g.a.set(5.0)
    with raises(rg.ValueNotDefinedError, "stale since a set()", "call eval()"):
        g.y.backprop()
    with raises(rg.ValueNotDefinedError, "stale since a set()", "call eval()"):
        g.y.derive(g.b)
    assert g.y.data is None


def test_set_on_an_inner_node(g):  # on a constant: tests/test_kinds_errors.py
    with raises(rg.TermWasNotValueError, "set() changes leaves", "operation node"):
        g.y.set(1.0)
    assert isinstance(rg.TermWasNotValueError("x"), ValueError)


def test_derive_with_respect_to_a_non_leaf_or_a_non_term(g):
    with raises(rg.TermWasNotValueError, "with respect to a leaf"):
        g.y.derive(g.a * g.b)
    with raises(rg.TermWasNotValueError, "with respect to a leaf"):
        g.y.derive(g.a._constant_like(1.0))
    for bad in (None, 1.0, "a"):
        with raises(TypeError, "derive() takes a"):
            g.y.derive(bad)


def test_terms_of_two_tapes_or_two_kinds_do_not_mix(g):
    other = Graph("tape" if g.kind != "tape" else "rc")
    with raises(TypeError):
        g.a + other.a
    if g.tape is not None:
        t2 = rg.Tape()
        c = t2.term("c", 1.0)
        for fn in (lambda: g.a + c, lambda: c * g.a, lambda: g.a.maximum(c), lambda: g.a.pow(c),
                   lambda: rg.atan2(g.a, c)):
            with raises(rg.TapeMismatchError, "two different tapes", "one tape"):
                fn()
        with raises(rg.TapeMismatchError, "another tape"):
            g.y.derive(c)
        with raises(rg.TapeMismatchError, "another tape"):
            g.y.gen_graph(c)
        with raises(rg.TapeMismatchError, "another tape"):
            g.y.dot(highlight=c)
        assert len(t2) == 3  # nothing was appended to either tape by the failures


def test_a_term_keeps_its_tape_alive():
    # A TapeTerm holds its tape: there is no term whose tape was collected.
    import gc
    import weakref

    tape = rg.Tape()
    x = tape.term("x", 3.0)
    ref = weakref.ref(tape)
    del tape
    gc.collect()
    assert ref() is not None
    assert (x * x).eval() == 9.0


def test_terms_cannot_be_made_directly():
    with raises(TypeError, "tape.term(name, value)"):
        rg.TapeTerm()
    leaf = rg.RcTerm("a", 1.0)
    with raises(TypeError, "already built"):
        leaf.__init__("b", 2.0)


# -- indices (the tape's private node access, which drawing and gen_graph use) ----------------------

@pytest.mark.parametrize("index", [-1, -(2 ** 31), 5, 10 ** 6, 2 ** 31 - 1])
def test_node_indices_out_of_range(index):
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    (x * 2.0).eval()
    for fn in (tape._term_at, tape._describe, tape._cone_indices, tape._apply_info):
        with raises(IndexError, "is not on this tape"):
            fn(index)
    with raises(IndexError, "is not on this tape"):
        tape._push_node(rg._ops.OP_CODES["add"], index, 2)


@pytest.mark.parametrize("index", [2 ** 31, -(2 ** 31) - 1, 10 ** 30])
def test_node_indices_beyond_the_index_type(index):
    tape = rg.Tape()
    for fn in (tape._term_at, tape._describe):
        with pytest.raises(OverflowError):
            fn(index)


def test_push_node_checks_op_codes():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    for op in (-1, 0, 2, 200, len(rg._ops.OPS)):
        with raises(ValueError, "makes computing nodes"):
            tape._push_node(op, x.index, x.index)
    with raises(ValueError, "needs lhs == rhs"):
        tape._push_node(rg._ops.OP_CODES["sin"], x.index, 0)


# -- drawing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, cls, words", [
    ({"precision": -1}, ValueError, ("precision must be an int >= 0",)),
    ({"precision": "2"}, ValueError, ("precision must be an int >= 0",)),
    ({"precision": 1.5}, ValueError, ("precision must be an int >= 0",)),
    ({"label_depth": -2}, ValueError, ("label_depth must be an int >= 0",)),
    ({"file": "graph.dot"}, TypeError, ("open text file", "open(path, 'w')")),
    ({"outputs": 5}, TypeError, ("outputs must be a dict",)),
    ({"outputs": [1, 2]}, TypeError, ("outputs must be a dict",)),
    ({"highlight": "nope"}, ValueError, ("not a node of this graph",)),
    ({"connect_to": 10 ** 9}, ValueError, ("not a node of this graph",)),
    ({"colour": "red"}, TypeError, ("unexpected keyword",)),
])
def test_dot_options(g, options, cls, words):
    with raises(cls, *words):
        g.y.dot(**options)
    assert g.y.dot(highlight=[g.a], connect_to=(t for t in [g.b]), outputs={"y": g.y}).count("->") >= 6
    buffer = io.StringIO()
    assert g.y.dot(buffer) is None and buffer.getvalue().startswith("digraph")


# -- gen_graph, the functional API and the builder --------------------------------------------------

def test_gen_graph_bad_variables():
    g = Graph("tape")
    for bad in (None, 1.0, rg.RcTerm("a", 1.0)):
        with raises(TypeError, "gen_graph() takes a TapeTerm leaf"):
            g.y.gen_graph(bad)
    with raises(rg.TermWasNotValueError, "with respect to a leaf"):
        g.y.gen_graph(g.a * g.b)
    g.numbers()
    d = g.y.gen_graph(g.a)
    assert d.eval() == g.expected[1]
    g.check_usable()


@pytest.mark.parametrize("bad", ["s", None, 1j, True, np.ones((2, 2)), np.array(["a"]), [1.0, "a"]],
                         ids=["str", "None", "complex", "bool", "2-D", "str array", "mixed list"])
def test_functional_transforms_reject_bad_arguments(bad):
    for transform in (rg.grad, rg.value_and_grad, rg.jacobian, rg.hessian):
        with raises(TypeError, "must be a float or a 1-D array of floats"):
            transform(lambda x: x * x)(bad)
    assert rg.grad(lambda x: x * x)(3.0) == 6.0


def test_functional_transforms_bad_use():
    with raises(TypeError, "expected a function"):
        rg.grad(3.0)
    with raises(ValueError, "does not fit a call with 1 arguments"):
        rg.grad(lambda x: x, argnums=1)(1.0)
    with raises(TypeError, "f must return terms", "rg.sin(x)"):
        rg.grad(lambda x: "y")(1.0)
    if NAMES_CALLS:
        with raises(TypeError, "inside rg.grad(f), f gets terms", "math.sin()", "use rg.sin(x)"):
            rg.grad(lambda x: math.sin(x))(1.0)
        with raises(TypeError, "inside rg.hessian(f)", "math.exp()", "use rg.exp(x)", "np.exp(x)"):
            rg.hessian(lambda v: math.exp(v[0]))([1.0, 2.0])
    else:
        with raises(TypeError, "inside rg.grad(f), f gets terms", "the rg functions"):
            rg.grad(lambda x: math.sin(x))(1.0)
        with raises(TypeError, "inside rg.hessian(f), f gets terms", "the rg functions"):
            rg.hessian(lambda v: math.exp(v[0]))([1.0, 2.0])
    with raises(ValueError, "needs f to return a scalar"):
        rg.grad(lambda v: v * 2.0)(np.ones(3))
    with raises(TypeError, "followed by the vector v"):
        rg.hvp(lambda x: x * x)(1.0)
    with raises(ValueError, "v must have the shape"):
        rg.hvp(lambda v: v[0] * v[1])(np.ones(2), np.ones(3))
    with raises(ValueError, "argnums must be an int"):
        rg.hessian(lambda x: x * x, argnums=(0,))(1.0)
    assert rg.grad(lambda x: x ** 3)(2.0) == 12.0


def test_functional_transforms_on_special_values():
    assert math.isnan(rg.grad(lambda x: x.sqrt())(-1.0))
    assert rg.grad(lambda x: x * x)(math.inf) == math.inf
    with raises(OverflowError, "too large for a float"):
        rg.grad(lambda x: x * x)(HUGE_INT)


@pytest.mark.parametrize("source, kwargs, cls, words", [
    (123, {}, TypeError, ("takes statements as a str or a function",)),
    ("x = = 1", {}, rg.BuilderError, ("line 1",)),
    ("x = 1.\nwhile x: pass", {}, rg.BuilderError, ("unsupported statement",)),
    ("y = zz * 2", {}, rg.BuilderError, ("unknown name 'zz'",)),
    ("x = 's'", {}, rg.BuilderError, ("only int and float",)),
    ("x = 1.", {"kind": "nope"}, ValueError, ("kind must be one of",)),
    ("x = 1.", {"tape": 3}, TypeError, ("tape= takes a Tape",)),
    ("x = 1.", {"kind": "rc", "tape": rg.Tape()}, ValueError, ("tape= is for kind='tape'",)),
])
def test_builder_bad_input(source, kwargs, cls, words):
    with raises(cls, *words):
        rg.rustograd(source, **kwargs)
    assert rg.rustograd("x = 2.\ny = x * x", kind="tape").y.eval() == 4.0


def test_op_value_unknown_op():
    with raises(ValueError, "unknown op 'foo'", "known:"):
        rg._ops.op_value("foo", 1.0)


# -- growth limit -----------------------------------------------------------------------------------

def test_a_full_tape_says_so_and_stays_usable():
    tape = rg.Tape()
    x = tape.term("x", 1.5)
    y = x
    for _ in range(100):
        y = y + x
    tape._test_set_node_limit(len(tape) + 61)  # past the first doubling: the realloc path
    for _ in range(61):
        y = y * 1.0
    assert len(tape) == 164
    with raises(OverflowError, "holds at most", "split the computation over several tapes"):
        y * 1.0
    with raises(OverflowError, "holds at most"):
        tape.term("z", 1.0)
    with raises(OverflowError, "holds at most"):
        x.apply("f", math.sin, math.cos)
    assert y.eval() == 101 * 1.5
    y.backprop()
    assert x.grad == 101.0
    with raises(ValueError, "limit must be between"):
        tape._test_set_node_limit(3)
