"""Optimizer steps against updates computed by hand."""
import math

import numpy as np
import pytest

import rustograd_cy as rg


def quadratic():
    tape = rg.Tape()
    a, b = tape.term("a", 1.0), tape.term("b", -2.0)
    loss = a * a * 3.0 + a * b + b * b  # grad: (6a + b, a + 2b)
    return tape, a, b, loss


def grads(a, b):
    return 6 * a + b, a + 2 * b


def test_sgd_matches_hand_update():
    tape, a, b, loss = quadratic()
    opt = rg.optim.SGD([a, b], lr=0.1)
    va, vb = 1.0, -2.0
    for _ in range(3):
        loss.eval()
        loss.backprop()
        opt.step()
        ga, gb = grads(va, vb)
        va, vb = va - 0.1 * ga, vb - 0.1 * gb
        assert (a.data, b.data) == (va, vb)
    assert loss.data is None  # values changed: computed ones are stale


def test_sgd_momentum_matches_hand_update():
    tape, a, b, loss = quadratic()
    opt = rg.optim.SGD([a, b], lr=0.05, momentum=0.9)
    va, vb, ma, mb = 1.0, -2.0, 0.0, 0.0
    for _ in range(4):
        loss.eval()
        loss.backprop()
        opt.step()
        ga, gb = grads(va, vb)
        ma, mb = 0.9 * ma + ga, 0.9 * mb + gb
        va, vb = va - 0.05 * ma, vb - 0.05 * mb
        assert (a.data, b.data) == (va, vb)


def test_adam_matches_hand_update():
    tape, a, b, loss = quadratic()
    opt = rg.optim.Adam([a, b], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    x = [1.0, -2.0]
    m, v = [0.0, 0.0], [0.0, 0.0]
    for t in range(1, 5):
        loss.eval()
        loss.backprop()
        opt.step()
        g = grads(*x)
        for k in range(2):
            m[k] = 0.8 * m[k] + (1 - 0.8) * g[k]
            v[k] = 0.99 * v[k] + (1 - 0.99) * g[k] * g[k]
            x[k] -= 0.01 * (m[k] / (1 - 0.8 ** t)) / (math.sqrt(v[k] / (1 - 0.99 ** t)) + 1e-6)
        assert [a.data, b.data] == x
    assert opt.steps == 4


def test_sgd_uses_summed_batch_gradients_and_lr_schedule():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 0.5)
    loss = (w * x - 1.0) ** 2.0
    xs = np.array([1.0, 2.0, 3.0])
    x.set(xs)
    opt = rg.optim.SGD([w], lr=0.01)
    loss.eval()
    loss.backprop()
    opt.lr = 0.02
    opt.step()
    assert w.data == 0.5 - 0.02 * w.grad
    assert w.grad == sum(2 * (0.5 * xi - 1.0) * xi for xi in xs)


def test_step_needs_gradients():
    tape, a, b, loss = quadratic()
    opt = rg.optim.SGD([a], lr=0.1)
    with pytest.raises(rg.ValueNotDefinedError, match="backprop"):
        opt.step()


def test_array_parameter_is_refused():
    tape, a, b, loss = quadratic()
    opt = rg.optim.Adam([a, b])
    b.set([1.0, 2.0])
    loss.eval()
    loss.backprop()
    with pytest.raises(ValueError, match="holds an array"):
        opt.step()


@pytest.mark.parametrize("params, error", [
    ([], ValueError),
    ([1.0], TypeError),
    ("ab", TypeError),
])
def test_bad_parameter_lists(params, error):
    with pytest.raises(error):
        rg.optim.SGD(params, lr=0.1)


def test_parameters_must_be_leaves_of_one_tape():
    tape, a, b, loss = quadratic()
    other = rg.Tape().term("c", 0.0)
    with pytest.raises(rg.TapeMismatchError):
        rg.optim.SGD([a, other], lr=0.1)
    with pytest.raises(rg.TermWasNotValueError, match="not one"):
        rg.optim.SGD([a, loss], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        rg.optim.Adam([a, a])
    with pytest.raises(ValueError, match="betas"):
        rg.optim.Adam([a], betas=(1.0, 0.5))


@pytest.mark.parametrize("make", [
    lambda p: rg.optim.SGD(p, lr=0.05),
    lambda p: rg.optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: rg.optim.Adam(p, lr=0.01, betas=(0.8, 0.99)),
])
def test_step_with_given_grads_takes_the_same_steps(make):
    """step(grads) (gradients summed elsewhere, as rustograd_cy.dask does) equals step() after a
    backprop() that left the same gradients; the tape's own gradients are not needed or touched."""
    tape, a, b, loss = quadratic()
    opt = make([a, b])
    tape2, a2, b2, loss2 = quadratic()
    given = make([b2, a2])  # any order: grads follow the optimizer's parameter order
    for _ in range(4):
        g = grads(a2.data, b2.data)
        given.step(np.array([g[1], g[0]]))
        loss.eval()
        loss.backprop()
        opt.step()
        assert (a.data, b.data) == (a2.data, b2.data)
    assert a2.grad is None  # never backpropagated
    with pytest.raises(ValueError, match=r"shape \(2,\), not \(3,\)"):
        given.step([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="real numbers"):
        given.step(["x", "y"])
