"""apply(name, f, df) with Python callables: what they may return, and what happens when they fail."""
import math

import numpy as np
import pytest

import rustograd_cy as rg


def _check_apply(f, df, reference_f, reference_df, points=(-1.3, -0.2, 0.0, 0.5, 2.0)):
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = x.apply("f", f, df) * 2.0 + x  # inside an expression, so the sweep resumes after it
    for v in points:
        x.set(v)
        value = y.eval()
        assert type(value) is float
        assert value == reference_f(v) * 2.0 + v
        assert y.derive(x) == reference_df(v) * 2.0 + 1.0
        y.backprop()
        assert x.grad == y.derive(x)


def test_apply_lambdas():
    _check_apply(lambda v: v * v * v, lambda v: 3 * v * v,
                 lambda v: v * v * v, lambda v: 3 * v * v)


def test_apply_math_functions():
    _check_apply(math.sin, math.cos, math.sin, math.cos)
    _check_apply(math.atan, lambda v: 1 / (1 + v * v), math.atan, lambda v: 1 / (1 + v * v))


def test_apply_numpy_ufuncs_returning_numpy_floats():
    assert type(np.sin(0.5)) is np.float64
    _check_apply(np.sin, np.cos, math.sin, math.cos)
    _check_apply(np.tanh, lambda v: np.float32(1.0) - np.float32(np.tanh(v)) ** 2,
                 math.tanh, lambda v: float(np.float32(1.0) - np.float32(np.tanh(v)) ** 2))


def test_apply_callables_returning_ints():
    _check_apply(lambda v: 3, lambda v: 0, lambda v: 3.0, lambda v: 0.0)


def test_apply_composes_with_builtin_ops_on_both_sides():
    tape = rg.Tape()
    x = tape.term("x", 0.4)
    y = x.exp().apply("sin", math.sin, math.cos).square().apply("exp", math.exp, math.exp)
    s = math.sin(math.exp(0.4))
    assert y.eval() == math.exp(s * s)
    expected = math.exp(s * s) * 2 * s * math.cos(math.exp(0.4)) * math.exp(0.4)
    assert math.isclose(y.derive(x), expected, rel_tol=1e-14)
    y.backprop()
    assert math.isclose(x.grad, expected, rel_tol=1e-14)


def test_apply_needs_callables():
    tape = rg.Tape()
    x = tape.term("x", 0.4)
    with pytest.raises(TypeError, match="callables"):
        x.apply("f", 1.0, math.cos)
    with pytest.raises(TypeError, match="callables"):
        x.apply("f", math.sin, None)
    assert len(tape) == 3  # nothing half-built


# -- exceptions inside callables ------------------------------------------------------------------

class Boom(Exception):
    """A user's own exception type, so nothing could have made it but the callable."""


class Flaky:
    """f and df that raise (the same exception object) while `broken` is set."""

    def __init__(self):
        self.broken = False
        self.error = Boom("the callable failed")

    def f(self, v):
        if self.broken:
            raise self.error
        return math.sin(v)

    def df(self, v):
        if self.broken:
            raise self.error
        return math.cos(v)


def _flaky_tape():
    tape = rg.Tape()
    x, z = tape.term("x", 0.3), tape.term("z", 2.0)
    flaky = Flaky()
    # Built-in nodes before and after the callable, so a failure interrupts a sweep midway.
    y = ((x * z).apply("flaky", flaky.f, flaky.df) + z.exp()) * x
    return tape, x, z, y, flaky


def _expected(x0, z0):
    value = (math.sin(x0 * z0) + math.exp(z0)) * x0
    dx = math.cos(x0 * z0) * z0 * x0 + (math.sin(x0 * z0) + math.exp(z0))
    dz = (math.cos(x0 * z0) * x0 + math.exp(z0)) * x0
    return value, dx, dz


def _check_usable(x, z, y):
    value, dx, dz = _expected(x.data, z.data)
    assert y.eval() == value
    y.backprop()
    assert math.isclose(x.grad, dx, rel_tol=1e-14) and math.isclose(z.grad, dz, rel_tol=1e-14)
    assert y.derive(x) == x.grad and y.derive(z) == z.grad


def test_exception_in_f_propagates_unchanged_and_the_tape_stays_usable():
    tape, x, z, y, flaky = _flaky_tape()
    flaky.broken = True
    with pytest.raises(Boom) as info:
        y.eval()
    assert info.value is flaky.error
    assert y.data is None
    with pytest.raises(rg.ValueNotDefinedError):  # the failed sweep left no usable values
        y.backprop()
    flaky.broken = False
    _check_usable(x, z, y)
    x.set(-0.7)
    _check_usable(x, z, y)


def test_exception_in_df_during_backprop_leaves_no_half_gradients():
    tape, x, z, y, flaky = _flaky_tape()
    y.eval()
    y.backprop()  # gradients from a good sweep...
    flaky.broken = True
    with pytest.raises(Boom) as info:
        y.backprop()
    assert info.value is flaky.error
    # ...are gone, and nothing of the failed sweep shows: z.exp()'s branch had already reached z.
    assert x.grad is None and z.grad is None and y.grad is None
    flaky.broken = False
    _check_usable(x, z, y)


def test_exception_in_df_during_derive_propagates_and_the_tape_stays_usable():
    tape, x, z, y, flaky = _flaky_tape()
    y.eval()
    flaky.broken = True
    with pytest.raises(Boom) as info:
        y.derive(x)
    assert info.value is flaky.error
    flaky.broken = False
    _check_usable(x, z, y)


@pytest.mark.parametrize("error", [ZeroDivisionError("in f"), KeyError("k"), ValueError("math domain"),
                                   OverflowError("big")])
def test_builtin_exception_types_propagate_unchanged(error):
    def f(v):
        raise error

    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x.apply("f", f, math.cos).exp()
    with pytest.raises(type(error)) as info:
        y.eval()
    assert info.value is error
    assert not isinstance(info.value, rg.RustogradError)


def test_exception_in_an_eval_callback_propagates_and_the_tape_stays_usable():
    tape, x, z, y, flaky = _flaky_tape()
    error = Boom("from the callback")

    def callback(term):
        raise error

    with pytest.raises(Boom) as info:
        y.eval(callback=callback)
    assert info.value is error
    y.eval()
    with pytest.raises(Boom):
        y.backprop(callback=callback)
    assert x.grad is None
    _check_usable(x, z, y)


# -- callables returning the wrong thing ----------------------------------------------------------

@pytest.mark.parametrize("bad", ["1.0", None, 1j, [1.0], True, np.array([1.0, 2.0])])
def test_callable_returning_a_non_number_is_a_type_error_naming_the_node(bad):
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    y = x.apply("wrongf", lambda v: bad, math.cos) + 1
    with pytest.raises(TypeError, match=r"wrongf.*node 3.*real number"):
        y.eval()
    z = x.apply("wrongdf", math.sin, lambda v: bad) + 1
    z.eval()
    with pytest.raises(TypeError, match=r"wrongdf.*real number"):
        z.derive(x)
    with pytest.raises(TypeError, match=r"wrongdf.*real number"):
        z.backprop()
    assert x.grad is None
    # The tape goes on working for what does not use the bad callables.
    w = (x * 3).sin()
    assert w.eval() == math.sin(1.5)


# -- callables must not change the tape during a sweep --------------------------------------------

def _meddling(action):
    """A tape whose apply() node runs `action(x, tape)` from inside f (or df)."""
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    state = {"when": None}

    def f(v):
        if state["when"] == "f":
            action(x, tape)
        return v * 2

    def df(v):
        if state["when"] == "df":
            action(x, tape)
        return 2.0

    y = x.apply("meddler", f, df) + x
    return tape, x, y, state


ACTIONS = {
    "build a node": lambda x, tape: x + 1,
    "make a leaf": lambda x, tape: tape.term("new", 1.0),
    "make a constant": lambda x, tape: tape.constant(7.0),
    "set a leaf": lambda x, tape: x.set(3.0),
    "clear": lambda x, tape: tape.clear(),
    "clear_grad": lambda x, tape: tape.clear_grad(),
    "start another sweep": lambda x, tape: x.sin().eval(),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("when", ["f", "df"])
def test_changing_the_tape_from_inside_a_sweep_is_a_runtime_error(action, when):
    tape, x, y, state = _meddling(ACTIONS[action])
    y.eval()
    length = len(tape)
    state["when"] = when
    with pytest.raises(RuntimeError, match="middle of a sweep"):
        y.eval() if when == "f" else y.backprop()
    assert len(tape) == length and x.data == 0.5  # nothing changed
    state["when"] = None
    assert y.eval() == 1.5
    y.backprop()
    assert x.grad == 3.0
    assert y.derive(x) == 3.0


def test_nested_sweeps_of_other_tapes_are_fine():
    other = rg.Tape()
    u = other.term("u", 0.0)
    inner = u.sin()

    def f(v):
        u.set(v)
        return inner.eval()

    def df(v):
        u.set(v)
        inner.eval()
        return inner.derive(u)

    tape = rg.Tape()
    x = tape.term("x", 0.8)
    y = x.apply("sin via another tape", f, df) * x
    assert y.eval() == math.sin(0.8) * 0.8
    y.backprop()
    assert x.grad == math.cos(0.8) * 0.8 + math.sin(0.8)
