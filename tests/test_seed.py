"""The numbers of the seed README's first example, on the tape."""
import math

import pytest

import rustograd_cy as rg


@pytest.fixture
def abc():
    tape = rg.Tape()
    a, b, c = tape.term("a", 123.0), tape.term("b", 321.0), tape.term("c", 42.0)
    return tape, a, b, c


def test_derive_matches_seed(abc):
    tape, a, b, c = abc
    abc_ = (a + b) * c
    assert abc_.eval() == 18648.0
    assert abc_.derive(a) == 42.0
    assert abc_.derive(b) == 42.0
    assert abc_.derive(c) == 444.0


def test_backprop_matches_seed(abc):
    tape, a, b, c = abc
    d = tape.term("d", 2.0)
    abcd = (a + b) * c / d
    assert abcd.eval() == 9324.0
    abcd.backprop()
    assert (a.grad, b.grad, c.grad, d.grad) == (21.0, 21.0, 222.0, -18648.0 / 4)
    assert abcd.name == "(a + b) * c / d"


def test_apply_sine_like_seed():
    tape = rg.Tape()
    a = tape.term("a", 0.0)
    sin_a = a.apply("sin", math.sin, math.cos)
    for i in range(-10, 11):
        x = i / 10 * math.pi
        a.set(x)
        assert sin_a.eval() == math.sin(x)
        assert sin_a.derive(a) == math.cos(x)
