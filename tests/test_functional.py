"""rg.grad / value_and_grad / jacobian / hessian / hvp against analytic results and central
differences, and the replay of recorded tapes."""
import math

import numpy as np
import pytest

import rustograd_cy as rg


def rosenbrock(v):
    return np.sum(100.0 * (v[1:] - v[:-1] ** 2) ** 2 + (1.0 - v[:-1]) ** 2)


def rosenbrock_grad(v):
    g = np.zeros_like(v)
    g[:-1] += -400.0 * v[:-1] * (v[1:] - v[:-1] ** 2) - 2.0 * (1.0 - v[:-1])
    g[1:] += 200.0 * (v[1:] - v[:-1] ** 2)
    return g


def rosenbrock_hessian(v):
    n = len(v)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200.0 * v[i] ** 2 - 400.0 * v[i + 1] + 2.0
        h[i, i + 1] = h[i + 1, i] = -400.0 * v[i]
        h[i + 1, i + 1] += 200.0
    return h


POINTS = [np.array(p) for p in ([-1.2, 1.0], [1.0, 1.0], [0.3, -0.7, 2.0], [1.5, 0.2, -0.4, 0.9, 1.1])]


@pytest.mark.parametrize("v", POINTS, ids=str)
def test_hessian_of_rosenbrock_is_analytic(v):
    h = rg.hessian(rosenbrock)(v)
    assert h.shape == (len(v), len(v))
    np.testing.assert_allclose(h, rosenbrock_hessian(v), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("v", POINTS, ids=str)
def test_grad_value_and_grad_hvp_of_rosenbrock(v):
    np.testing.assert_allclose(rg.grad(rosenbrock)(v), rosenbrock_grad(v), rtol=1e-13, atol=1e-12)
    value, g = rg.value_and_grad(rosenbrock)(v)
    assert value == pytest.approx(float(rosenbrock(v)), rel=1e-14)
    np.testing.assert_allclose(g, rosenbrock_grad(v), rtol=1e-13, atol=1e-12)
    w = np.linspace(-1.0, 2.0, len(v))
    np.testing.assert_allclose(rg.hvp(rosenbrock)(v, w), rosenbrock_hessian(v) @ w, rtol=1e-12, atol=1e-10)


def vector_f(v):
    x, y, z = v[0], v[1], v[2]
    return [x * y * z, rg.sin(x) + rg.exp(y / z), rg.atan2(y, x) * z ** 2, rg.sqrt(x * x + y * y), 3.0]


def central_jacobian(f, v, h=1e-6):
    cols = []
    for j in range(len(v)):
        e = np.zeros_like(v)
        e[j] = h
        cols.append((np.array(f(v + e), dtype=float) - np.array(f(v - e), dtype=float)) / (2 * h))
    return np.array(cols).T


def vector_f_numbers(v):
    x, y, z = v
    return [x * y * z, math.sin(x) + math.exp(y / z), math.atan2(y, x) * z ** 2, math.hypot(x, y), 3.0]


@pytest.mark.parametrize("v", [[0.7, -1.3, 2.1], [-2.0, 0.5, 1.2], [1.1, 1.9, -0.8]], ids=str)
def test_jacobian_against_central_differences(v):
    v = np.array(v)
    jac = rg.jacobian(vector_f)(v)
    assert jac.shape == (5, 3)
    np.testing.assert_allclose(jac, central_jacobian(vector_f_numbers, v), rtol=1e-7, atol=1e-8)
    assert (jac[4] == 0).all()  # a constant output


def test_shapes_scalars_and_argnums():
    f = lambda x, v: x * np.sum(v * v) + rg.sin(x)  # noqa: E731
    v = np.array([1.0, 2.0, 3.0])
    assert rg.grad(f)(0.5, v) == pytest.approx(14.0 + math.cos(0.5), rel=1e-15)
    gx, gv = rg.grad(f, argnums=(0, 1))(0.5, v)
    assert isinstance(gx, float) and gv.tolist() == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(rg.grad(f, argnums=-1)(0.5, v), gv)
    assert rg.hessian(lambda x: x ** 3)(2.0) == 12.0
    assert rg.hvp(lambda x: x ** 3)(2.0, 0.5) == 6.0
    assert rg.jacobian(lambda x: [x * x, rg.exp(x)])(1.0).tolist() == [2.0, math.e]
    assert rg.jacobian(lambda v: v[0] * v[1])(np.array([2.0, 3.0])).tolist() == [3.0, 2.0]
    assert rg.grad(lambda x: 4.0)(1.0) == 0.0  # constant function
    with pytest.raises(ValueError, match="argnums"):
        rg.grad(f, argnums=2)(0.5, v)
    with pytest.raises(TypeError, match="1-D array"):
        rg.grad(f)(0.5, np.ones((2, 2)))
    with pytest.raises(ValueError, match="scalar"):
        rg.grad(lambda v: [v[0], v[1]])(v)
    with pytest.raises(TypeError, match="rg functions"):
        rg.grad(lambda x: "x")(1.0)


def test_replay_reuses_the_tape_and_matches_retracing():
    calls = []

    def f(v):
        calls.append(1)
        return rg.tanh(v[0] * v[1]) + v[2] ** 3 / (1 + v[0] ** 2)

    replaying = rg.hessian(f)
    tracing = rg.hessian(f, retrace=True)
    rng = np.random.default_rng(3)
    for point in rng.normal(size=(6, 3)):
        np.testing.assert_array_equal(replaying(point), tracing(point))
    assert len(calls) == 1 + 6  # one recording for the replaying transform, one per call retracing
    np.testing.assert_array_equal(rg.hessian(f)(np.ones(4)), rg.hessian(f, retrace=True)(np.ones(4)))
    g = rg.grad(f)
    g(np.ones(3))
    g(np.ones(5))
    assert len(g._traces) == 2  # one recording per input shape
    g.clear_cache()
    assert len(g._traces) == 0


def test_replay_records_one_branch_of_value_dependent_python():
    def f(x):  # branches on the value while recording: replay keeps the first branch
        return x * x if x.eval() > 0 else -x

    assert rg.grad(f)(2.0) == 4.0
    replay = rg.grad(f)
    replay(2.0)
    assert replay(-3.0) == -6.0  # the x * x branch, recorded at 2.0
    assert rg.grad(f, retrace=True)(-3.0) == -1.0
