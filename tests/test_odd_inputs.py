"""Odd arrays in set(), and `==` between a term and a number (issue 13, parts 4 and 5)."""
import math

import numpy as np
import pytest

import rustograd_cy as rg

KINDS = ("tape", "rc", "term")


def model():
    """y = w * x summed over a batch: w.grad is the sum of x's samples."""
    tape = rg.Tape()
    x, w = tape.term("x", 3.0), tape.term("w", 2.0)
    y = w * x
    return tape, x, w, y


def read_only(values):
    a = np.array(values, dtype=np.float64)
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("make", [
    lambda: read_only([1.0, 2.0, 3.0, 4.0]),
    lambda: np.broadcast_to(2.5, (4,)),
    lambda: np.frombuffer(np.array([1.0, 2.0, 3.0, 4.0]).tobytes()),
    lambda: np.arange(8.0)[::2],                     # strided
    lambda: np.array([1, 2, 3, 4], dtype=np.int32),  # converted
    lambda: read_only([1.0, 2.0, 3.0, 4.0]).astype(">f8"),
], ids=["read-only", "broadcast", "frombuffer", "strided", "int32", "big-endian"])
def test_set_takes_arrays_it_only_reads(make):
    tape, x, w, y = model()
    arr = make()
    x.set(arr)
    assert tape.batch_size == 4
    np.testing.assert_array_equal(x.data, np.asarray(arr, dtype=np.float64))
    np.testing.assert_array_equal(y.eval(), 2.0 * np.asarray(arr, dtype=np.float64))
    y.backprop()
    assert w.grad == float(np.sum(np.asarray(arr, dtype=np.float64)))


def test_a_read_only_array_leaves_no_phantom_samples():
    """The issue's case: set() of a read-only array used to fail after the tape had switched to a
    batch of 4, so w.grad summed 4 phantom copies of the old x (12.0 instead of 3.0)."""
    tape, x, w, y = model()
    y.eval()
    y.backprop()
    assert w.grad == 3.0
    x.set(read_only([1.0, 1.0, 1.0, 1.0]))
    y.eval()
    y.backprop()
    assert w.grad == 4.0
    x.set(3.0)
    assert tape.batch_size is None
    y.eval()
    y.backprop()
    assert w.grad == 3.0


def snapshot(tape, terms):
    return (tape.batch_size, len(tape),
            [None if t.data is None else np.asarray(t.data).tolist() for t in terms],
            [None if t.grad is None else np.asarray(t.grad).tolist() for t in terms])


BAD_VALUES = {
    "2-D": np.ones((2, 2)),
    "empty": np.ones(0),
    "strings": np.array(["a", "b"]),
    "complex": np.ones(3, dtype=complex),
    "objects": np.array([1.0, None], dtype=object),
    "ragged": [[1.0], [1.0, 2.0]],
    "bools": np.array([True, False]),
    "a str": "1.0",
}


@pytest.mark.parametrize("batched", [False, True], ids=["scalar", "batched"])
@pytest.mark.parametrize("bad", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_failing_set_leaves_the_tape_exactly_as_it_was(bad, batched):
    tape, x, w, y = model()
    z = tape.term("z", 1.0)
    out = y + z
    if batched:
        z.set(np.array([1.0, 2.0, 3.0]))
    out.eval()
    out.backprop()
    terms = [x, w, z, y, out]
    before = snapshot(tape, terms)
    with pytest.raises((TypeError, ValueError)):
        x.set(bad)
    assert snapshot(tape, terms) == before
    if batched:  # wrong length while another leaf holds the batch
        with pytest.raises(ValueError, match="needs an array of 3"):
            x.set(np.ones(4))
        assert snapshot(tape, terms) == before
    out.backprop()  # still current: the failed set() did not even make the values stale
    assert snapshot(tape, terms) == before


# -- == between a term and a number: a comparison node (issue 15) -----------------------------------

def leaf(kind, name, value):
    return rg.Tape().term(name, value) if kind == "tape" else {"rc": rg.RcTerm, "term": rg.Term}[kind](name, value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("number", [0, 0.0, 1.5, np.float64(0.0), np.int32(0)], ids=repr)
def test_comparing_a_term_with_a_number_builds_a_comparison(kind, number):
    x = leaf(kind, "x", 0.0)
    # With a numpy scalar on the left too, on every numpy: numpy before 2.1 (2.0.2 is the last for
    # Python 3.9) used to compare elementwise as objects and ask the resulting term for a bool; the
    # terms' __array_priority__ makes numpy scalars leave the comparison to the term.
    for compare, holds in ((lambda: x == number, number == 0), (lambda: number == x, number == 0),
                           (lambda: x != number, number != 0), (lambda: number != x, number != 0)):
        c = compare()
        assert type(c) is type(x)
        assert c.eval() == (1.0 if holds else 0.0)
        with pytest.raises(TypeError, match=r"rg\.where"):
            bool(c)  # outside rg.grad: no silent truth


@pytest.mark.parametrize("kind", KINDS)
def test_numpy_scalars_defer_to_terms_and_arrays_still_broadcast(kind):
    """A numpy scalar on the left of an operator or comparison returns NotImplemented, so Python
    asks the term's reflected method (numpy 2.0 answered `np.float64(0.0) == x` itself and asked
    the result for a bool). ndarrays still apply the operator elementwise (an object array of
    terms), and ufuncs still call the term's method of the same name."""
    x = leaf(kind, "x", 2.0)
    for scalar in (np.float64(3.0), np.float32(3.0), np.int64(3), np.float16(3.0), np.longdouble(3.0)):
        for name in ("__eq__", "__ne__", "__lt__", "__ge__", "__add__", "__mul__", "__truediv__"):
            assert getattr(scalar, name)(x) is NotImplemented, (type(scalar), name)
        for y, value in ((scalar == x, 0.0), (scalar != x, 1.0), (scalar < x, 0.0), (scalar >= x, 1.0),
                         (scalar * x, 6.0), (scalar - x, 1.0), (scalar / x, 1.5), (scalar ** x, 9.0)):
            assert type(y) is type(x) and y.eval() == value
    y = np.array([1.0, 2.0]) * x
    assert y.dtype == object and [t.eval() for t in y] == [2.0, 4.0]
    assert all(type(t) is type(x) for t in y)
    assert [t.eval() for t in np.array([1.0, 3.0]) - x] == [-1.0, 1.0]
    assert [t.eval() for t in x * np.array([1.0, 2.0])] == [2.0, 4.0]
    assert (np.array(3.0) * x).eval() == 6.0  # a 0-d array too
    s = np.sin(x)
    assert type(s) is type(x) and s.eval() == math.sin(2.0)
    assert np.exp(x).eval() == math.exp(2.0)
    with pytest.raises(TypeError, match=r"rg\.where"):
        np.array([1.0, 2.0]) == x  # elementwise as objects, asking for bools: as before


def test_the_silent_nan_of_the_issue_is_now_the_right_derivative():
    g = rg.grad(lambda x: 1.0 if x == 0 else rg.sin(x) / x)
    assert g(0.0) == 0.0
    assert g(1.0) == pytest.approx(np.cos(1.0) - np.sin(1.0), rel=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_terms_stay_hashable_by_identity(kind):
    x = leaf(kind, "x", 1.0)
    y = x * 2.0
    assert {x: 1, y: 2}[x] == 1
    assert len({x, y, x}) == 2
    assert x in {x, y} and x in [x, y]  # identity comes first: no comparison is made
    assert (x == "x") is False and (x == None) is False  # noqa: E711 (other types: not equal)
    assert x != "x"
    with pytest.raises(TypeError, match=r"rg\.where"):
        x in [0, 1]  # compares the term with the numbers: a comparison node has no truth here
    with pytest.raises(TypeError, match=r"rg\.where"):
        x in [y, x]  # y == x is a comparison node too: look terms up in sets and dicts
    if kind == "tape":  # a second proxy of one node is another key (hashing is by the object)
        assert x.tape._term_at(x.index) not in {x}


def test_terms_of_two_kinds_do_not_compare():
    """Comparing terms of two kinds is refused like adding them (a comparison is an op)."""
    tape_x = rg.Tape().term("x", 1.0)
    rc_x = rg.RcTerm("x", 1.0)
    for compare in (lambda: tape_x == rc_x, lambda: rc_x == tape_x, lambda: rc_x < tape_x):
        with pytest.raises(TypeError, match="one kind of term"):
            compare()


def test_apply_node_whose_name_is_missing_is_a_value_error():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x.apply("sin", np.sin, np.cos)
    restore, (state,) = tape.__reduce__()
    del state["names"][y.index]
    with pytest.raises(ValueError, match=rf"field 'names' has no name for apply node {y.index}"):
        restore(state)
    assert not math.isnan(y.eval())
