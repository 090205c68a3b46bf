"""Pickle round trips of tapes and terms."""
import pickle

import numpy as np
import pytest

import rustograd_cy as rg


def model():
    tape = rg.Tape()
    a, b = tape.term("a", 0.5), tape.term("b", 2.0)
    y = (a * b).apply("sin", np.sin, np.cos) + rg.maximum(a, 0.25) / b ** 3.0
    return tape, a, b, y


def test_round_trip_keeps_values_names_grads_and_terms():
    tape, a, b, y = model()
    value = y.eval()
    y.backprop()
    tape2, a2, b2, y2 = pickle.loads(pickle.dumps((tape, a, b, y)))
    assert a2.tape is tape2 and y2.tape is tape2  # terms pickle with their tape
    assert len(tape2) == len(tape)
    assert (a2.name, b2.name, y2.name) == (a.name, b.name, y.name)
    assert y2.data == value  # computed values stay valid
    assert (a2.grad, b2.grad) == (a.grad, b.grad)
    y2.backprop()
    assert (a2.grad, b2.grad) == (a.grad, b.grad)
    a2.set(0.7)  # an independent tape that works as the original
    a.set(0.7)
    assert y2.eval() == y.eval()
    assert y2.derive(a2) == y.derive(a)


def test_stale_values_stay_stale():
    tape, a, b, y = model()
    y.eval()
    a.set(1.0)
    tape2, y2 = pickle.loads(pickle.dumps((tape, y)))
    assert y2.data is None and y2.grad is None
    with pytest.raises(rg.ValueNotDefinedError):
        y2.backprop()


def test_batched_tape_keeps_its_arrays():
    tape, a, b, y = model()
    xs = np.array([0.1, 0.2, 0.3])
    a.set(xs)
    expected = y.eval()
    tape2, a2, y2 = pickle.loads(pickle.dumps((tape, a, y)))
    assert tape2.batch_size == 3
    np.testing.assert_array_equal(a2.data, xs)
    assert y2.data is None  # batched results are not stored: evaluate again
    np.testing.assert_array_equal(y2.eval(), expected)


def test_lambda_gives_an_error_naming_the_node():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x.apply("cube", lambda v: v ** 3, lambda v: 3 * v ** 2)
    with pytest.raises(pickle.PicklingError, match=rf"apply\('cube'\) \(node {y.index}\).*lambda"):
        pickle.dumps(tape)


def test_save_and_load(tmp_path):
    tape, a, b, y = model()
    y.eval()
    path = tmp_path / "tape.npz"
    tape.save(path)  # the safe format (tests/test_loader.py); pickles load with allow_pickle=True
    tape2 = rg.Tape.load(path, functions=[np.sin, np.cos])
    assert type(tape2) is rg.Tape and len(tape2) == len(tape)
    with open(path, "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(TypeError, match="not a Tape"):
        rg.Tape.load(path, allow_pickle=True)


def test_format_version_is_checked():
    tape, a, b, y = model()
    restore, (state,) = tape.__reduce__()
    state["format"] = 999
    with pytest.raises(ValueError, match="format 999"):
        restore(state)


@pytest.mark.parametrize("corrupt, match", [
    (lambda s: s.update(lhs=s["lhs"][:-1]), "field 'lhs' has shape"),
    (lambda s: s["op"].__setitem__(3, 200), "field 'op' holds 200"),
    (lambda s: s["lhs"].__setitem__(len(s["lhs"]) - 1, len(s["lhs"])), "outside"),
    (lambda s: s["lhs"].__setitem__(len(s["lhs"]) - 1, len(s["lhs"]) - 1), "precede"),
    (lambda s: s.update(funcs={}), "field 'funcs' has no callables"),
    (lambda s: s.update(arrays={len(s["op"]) - 1: np.ones(2)}), "not a leaf"),
])
def test_corrupt_state_is_refused(corrupt, match):
    tape, a, b, y = model()
    restore, (state,) = tape.__reduce__()
    corrupt(state)
    with pytest.raises(ValueError, match=match):
        restore(state)
