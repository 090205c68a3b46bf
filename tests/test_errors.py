"""Every error of issue 2 (item 8): its class, its built-in base, a message that says what to do,
and a tape that goes on working afterwards."""
import math

import numpy as np
import pytest

import rustograd_cy as rg
from rustograd_cy import (
    RustogradError,
    TapeMismatchError,
    TermWasNotValueError,
    ValueNotDefinedError,
)


@pytest.mark.parametrize("cls,base", [(ValueNotDefinedError, RuntimeError),
                                      (TermWasNotValueError, ValueError),
                                      (TapeMismatchError, ValueError)])
def test_error_classes_derive_from_the_base_and_a_builtin(cls, base):
    assert issubclass(cls, RustogradError) and issubclass(cls, base)
    assert issubclass(RustogradError, Exception)


@pytest.fixture
def setup():
    tape = rg.Tape()
    x, z = tape.term("x", 2.0), tape.term("z", 3.0)
    y = (x + z) * x
    return tape, x, z, y


def _still_works(tape, x, z, y):
    """The tape after an error: nothing half-built, and every operation gives right numbers."""
    x0, z0 = x.data, z.data
    assert y.eval() == (x0 + z0) * x0
    assert y.derive(x) == 2 * x0 + z0
    y.backprop()
    assert (x.grad, z.grad) == (2 * x0 + z0, x0)
    assert ((x * 2).eval(), len(tape) > 0) == (2 * x0, True)


# -- ValueNotDefinedError -------------------------------------------------------------------------

def test_derive_and_backprop_before_any_eval(setup):
    tape, x, z, y = setup
    with pytest.raises(ValueNotDefinedError, match=r"derive\(\).*never computed.*call eval\(\)"):
        y.derive(x)
    with pytest.raises(ValueNotDefinedError, match=r"backprop\(\).*never computed.*call eval\(\)"):
        y.backprop()
    assert x.grad is None
    _still_works(tape, x, z, y)


def test_derive_and_backprop_after_set_without_eval(setup):
    tape, x, z, y = setup
    y.eval()
    y.backprop()
    x.set(5.0)
    with pytest.raises(ValueNotDefinedError, match=r"stale since a set\(\).*call eval\(\)"):
        y.derive(x)
    with pytest.raises(ValueNotDefinedError, match=r"stale since a set\(\).*call eval\(\)"):
        y.backprop()
    _still_works(tape, x, z, y)
    assert y.data == (5.0 + 3.0) * 5.0


def test_message_names_the_first_node_without_a_value(setup):
    tape, x, z, y = setup
    inner = y._graph()[-2]  # the operand x + z, built before the output
    assert inner[2] == "add"
    with pytest.raises(ValueNotDefinedError, match=rf"'x \+ z' \(node {inner[0]}\)"):
        y.backprop()
    # Another output's eval() does not make y's values current.
    y.eval()
    x.set(1.0)
    (x * 1.5).eval()
    with pytest.raises(ValueNotDefinedError, match=r"'x \+ z'.*stale"):
        y.derive(z)


def test_values_from_a_bigger_output_are_enough(setup):
    tape, x, z, y = setup
    bigger = y.sin()
    bigger.eval()
    assert y.derive(x) == 7.0  # y's cone was swept as part of bigger's
    y.backprop()
    assert x.grad == 7.0


# -- TermWasNotValueError -------------------------------------------------------------------------

def test_set_on_an_operation_node(setup):
    tape, x, z, y = setup
    with pytest.raises(TermWasNotValueError, match=r"set\(\) changes leaves made by tape.term\(\).*"
                                                   r"'\(x \+ z\) \* x'.*operation"):
        y.set(1.0)
    with pytest.raises(ValueError):
        x.sin().set(1.0)
    _still_works(tape, x, z, y)


# set() on a constant: tests/test_kinds_errors.py, once for every kind and way to make one.


@pytest.mark.parametrize("var", ["operation", "constant", "zero"])
def test_derive_with_respect_to_a_non_leaf(setup, var):
    tape, x, z, y = setup
    y.eval()
    not_a_leaf = {"operation": x + z, "constant": tape.constant(4.0), "zero": tape.zero()}[var]
    with pytest.raises(TermWasNotValueError, match=r"derive\(\).*leaf made by tape.term\(\)"):
        y.derive(not_a_leaf)
    _still_works(tape, x, z, y)


# -- TapeMismatchError ----------------------------------------------------------------------------

MIXES = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "**": lambda a, b: a ** b,
    "pow method": lambda a, b: a.pow(b), "atan2 method": lambda a, b: a.atan2(b),
    "maximum method": lambda a, b: a.maximum(b), "minimum method": lambda a, b: a.minimum(b),
    "rg.pow": rg.pow, "rg.atan2": rg.atan2, "rg.maximum": rg.maximum, "rg.minimum": rg.minimum,
}


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_terms_of_two_tapes_do_not_mix(setup, mix):
    tape, x, z, y = setup
    other = rg.Tape()
    w = other.term("w", 1.0)
    length, other_length = len(tape), len(other)
    with pytest.raises(TapeMismatchError, match="one tape"):
        MIXES[mix](x, w)
    with pytest.raises(TapeMismatchError, match="one tape"):
        MIXES[mix](w, y)
    assert (len(tape), len(other)) == (length, other_length)  # nothing half-built on either
    _still_works(tape, x, z, y)


def test_derive_with_respect_to_a_leaf_of_another_tape(setup):
    tape, x, z, y = setup
    y.eval()
    other = rg.Tape()
    twin = other.term("x", 2.0)  # same name, same index, another tape
    assert twin.index == x.index
    with pytest.raises(TapeMismatchError, match="leaf of this one"):
        y.derive(twin)
    with pytest.raises(ValueError):
        y.derive(twin)
    _still_works(tape, x, z, y)


# -- TypeError for what is not a number -----------------------------------------------------------

NOT_NUMBERS = ["1.0", None, 1j, True, False, [1.0], np.array([1.0, 2.0])]
OPERATORS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "**": lambda a, b: a ** b,
}


# A numpy array is left out: with it, an operator broadcasts the term over an object array, as
# numpy does for any Python object.
@pytest.mark.parametrize("bad", [b for b in NOT_NUMBERS if not isinstance(b, np.ndarray)], ids=repr)
@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_operators_reject_non_numbers(setup, op, bad):
    tape, x, z, y = setup
    length = len(tape)
    fn = OPERATORS[op]
    with pytest.raises(TypeError):
        fn(x, bad)
    with pytest.raises(TypeError):
        fn(bad, x)
    assert len(tape) == length
    _still_works(tape, x, z, y)


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=repr)
def test_methods_and_module_functions_reject_non_numbers(setup, bad):
    tape, x, z, y = setup
    length = len(tape)
    for name in ("pow", "atan2", "maximum", "minimum"):
        with pytest.raises(TypeError, match=rf"{name}\(\).*real number"):
            getattr(x, name)(bad)
        with pytest.raises(TypeError, match=rf"{name}\(\).*real number"):
            getattr(rg, name)(bad, x)
        with pytest.raises(TypeError, match=rf"{name}\(\).*real number"):
            getattr(rg, name)(x, bad)
    for name in ("sin", "exp", "relu", "square"):
        with pytest.raises(TypeError, match=rf"{name}\(\).*real number"):
            getattr(rg, name)(bad)
    assert len(tape) == length
    _still_works(tape, x, z, y)


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=repr)
def test_term_set_and_constant_reject_non_numbers(setup, bad):
    tape, x, z, y = setup
    y.eval()
    length = len(tape)
    with pytest.raises(TypeError, match="real number"):
        tape.term("w", bad)
    with pytest.raises(TypeError, match="real number"):
        tape.constant(bad)
    if isinstance(bad, (list, np.ndarray)):  # set() takes these as a batch: tests/test_batch.py
        assert len(tape) == length
        return
    with pytest.raises(TypeError, match="real number"):
        x.set(bad)
    assert x.data == 2.0 and y.data == 10.0  # a refused set() changes nothing, not even staleness
    assert len(tape) == length
    _still_works(tape, x, z, y)


def test_names_must_be_strings(setup):
    tape, x, z, y = setup
    with pytest.raises(TypeError):
        tape.term(3, 1.0)
    with pytest.raises(TypeError, match="name must be a str"):
        tape.constant(1.0, name=3)
    _still_works(tape, x, z, y)


def test_derive_needs_a_term(setup):
    tape, x, z, y = setup
    y.eval()
    with pytest.raises(TypeError, match="TapeTerm leaf"):
        y.derive(2.0)
    with pytest.raises(TypeError, match="TapeTerm leaf"):
        y.derive("x")


def test_term_cannot_be_constructed_directly():
    with pytest.raises(TypeError, match=r"tape.term\(name, value\)"):
        rg.TapeTerm()
    with pytest.raises(TypeError, match=r"tape.term\(name, value\)"):
        rg.TapeTerm(rg.Tape(), 0)


def test_numbers_that_are_fine(setup):
    """Python and numpy ints and floats, infinities and NaN are numbers, not type errors."""
    tape, x, z, y = setup
    for v in (1, 2.5, np.float32(0.5), np.int8(3), math.inf, math.nan):
        w = tape.term("w", v)
        assert w.data == float(v) or (math.isnan(v) and math.isnan(w.data))
        w.set(v)
        tape.constant(v)
