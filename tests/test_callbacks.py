"""Step callbacks of eval() and backprop(): once per node of the cone, in sweep order.

Every test runs once per term kind (the `leaf` fixture of tests/conftest.py). The kinds sweep in
different topological orders (the tape in creation order, RcTerm and Term depth-first), so the
tests check the order's property (operands before users, and the reverse), not one order.
"""
import math

import pytest


def diamond_model(leaf):
    x, w = leaf("x", 0.5), leaf("w", 2.0)
    h = (x * w).apply("sin", math.sin, math.cos)
    return x, w, h * h + h / w  # h and w are used twice each


def keys_of(graph):
    return [record[0] for record in graph]


def test_eval_callback_once_per_node_operands_first(leaf):
    x, w, y = diamond_model(leaf)
    seen = []
    value = y.eval(callback=lambda t: seen.append((t._key(), t.data)))
    assert value == y.data
    cone = y._graph()
    keys = [k for k, _ in seen]
    assert sorted(keys) == sorted(keys_of(cone)) and len(keys) == len(set(keys))
    position = {k: i for i, k in enumerate(keys)}
    for key, _, _, _, operands, _, _ in cone:
        assert all(position[o] < position[key] for o in operands)
    # each node's value is there when its callback runs
    assert all(data is not None for _, data in seen)
    assert keys[-1] == y._key()


def test_backprop_callback_once_per_node_consumers_first_with_final_gradients(leaf):
    x, w, y = diamond_model(leaf)
    y.eval()
    seen = []
    y.backprop(callback=lambda t: seen.append((t._key(), t.grad)))
    cone = y._graph()
    final = {key: grad for key, *_, grad in cone}
    keys = [k for k, _ in seen]
    assert sorted(keys) == sorted(keys_of(cone)) and len(keys) == len(set(keys))
    assert keys[0] == y._key()
    position = {k: i for i, k in enumerate(keys)}
    for key, _, _, _, operands, _, _ in cone:
        assert all(position[o] > position[key] for o in operands)
    # a node's gradient is complete when its callback runs: all its consumers came before it
    assert all(grad == final[key] for key, grad in seen)
    h = (x.data * w.data)
    assert final[x._key()] == (2 * math.sin(h) + 1 / w.data) * math.cos(h) * w.data


def test_callbacks_do_not_change_the_numbers(leaf):
    x, w, y = diamond_model(leaf)
    plain = y.eval()
    y.backprop()
    grads = (x.grad, w.grad)
    x2, w2, y2 = diamond_model(leaf)
    assert y2.eval(callback=lambda t: None) == plain
    y2.backprop(callback=lambda t: None)
    assert (x2.grad, w2.grad) == grads


def test_eval_callback_visits_every_node_even_when_values_are_current(leaf):
    x, w, y = diamond_model(leaf)
    y.eval()  # a Term computed its values as it was built; now every kind has them
    seen = []
    y.eval(callback=lambda t: seen.append(t._key()))
    assert sorted(seen) == sorted(keys_of(y._graph()))
    x.set(0.25)
    values = {}
    y.eval(callback=lambda t: values.__setitem__(t._key(), t.data))
    h = math.sin(0.25 * 2.0)
    assert values[x._key()] == 0.25 and values[y._key()] == h * h + h / 2.0 == y.data


class Stop(Exception):
    pass


def stop_at(n):
    """A callback that raises Stop when it is called the n-th time."""
    calls = []

    def callback(term):
        calls.append(term)
        if len(calls) == n:
            raise Stop

    return callback


def test_a_raising_callback_propagates_and_leaves_the_term_usable(leaf):
    x, w, y = diamond_model(leaf)
    expected_value = y.eval()
    y.backprop()
    expected_grads = (x.grad, w.grad)
    x.set(1.5)
    with pytest.raises(Stop):
        y.eval(callback=stop_at(4))
    assert y.data is None  # the sweep stopped before the output
    x.set(0.5)
    assert y.eval() == expected_value
    with pytest.raises(Stop):
        y.backprop(callback=stop_at(2))
    assert x.grad is None and w.grad is None  # no half-accumulated gradients
    y.backprop()
    assert (x.grad, w.grad) == expected_grads
