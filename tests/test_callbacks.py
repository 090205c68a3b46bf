"""Step callbacks of eval() and backprop(): once per node of the cone, in sweep order."""
import math

import rustograd_cy as rg


def diamond_model():
    tape = rg.Tape()
    x, w = tape.term("x", 0.5), tape.term("w", 2.0)
    h = (x * w).apply("sin", math.sin, math.cos)
    return tape, x, w, h * h + h / w  # h and w are used twice each


def keys_of(graph):
    return [record[0] for record in graph]


def test_eval_callback_once_per_node_operands_first():
    tape, x, w, y = diamond_model()
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


def test_backprop_callback_once_per_node_consumers_first_with_final_gradients():
    tape, x, w, y = diamond_model()
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


def test_callbacks_do_not_change_the_numbers():
    _, x, w, y = diamond_model()
    plain = y.eval()
    y.backprop()
    grads = (x.grad, w.grad)
    _, x2, w2, y2 = diamond_model()
    assert y2.eval(callback=lambda t: None) == plain
    y2.backprop(callback=lambda t: None)
    assert (x2.grad, w2.grad) == grads
