"""The numbers of the seed README's examples, for every term kind (the `leaf` fixture)."""
import math


def test_derive_matches_seed(leaf):
    a, b, c = leaf("a", 123.0), leaf("b", 321.0), leaf("c", 42.0)
    abc = (a + b) * c
    assert abc.eval() == 18648.0
    assert (abc.derive(a), abc.derive(b), abc.derive(c)) == (42.0, 42.0, 444.0)


def test_backprop_matches_seed(leaf):
    a, b, c, d = leaf("a", 123.0), leaf("b", 321.0), leaf("c", 42.0), leaf("d", 2.0)
    abcd = (a + b) * c / d
    assert abcd.eval() == 9324.0
    abcd.backprop()
    assert (a.grad, b.grad, c.grad, d.grad) == (21.0, 21.0, 222.0, -18648.0 / 4)
    assert abcd.name == "(a + b) * c / d"


def test_apply_sine_like_seed(leaf):
    a = leaf("a", 0.0)
    sin_a = a.apply("sin", math.sin, math.cos)
    for i in range(-10, 11):
        x = i / 10 * math.pi
        a.set(x)
        assert sin_a.eval() == math.sin(x)
        assert sin_a.derive(a) == math.cos(x)
    assert sin_a.name == "sin(a)"
