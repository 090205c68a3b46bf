"""Transforms compose as in JAX: a transform called with terms records on the caller's tape and returns
its derivative as terms, which the outer transform differentiates again."""
import math

import numpy as np
import pytest

import rustograd_cy as rg


def mixed_sine(a):  # the seed's mixed_sine example
    return rg.sin(a) + 0.2 * rg.sin(a * 5.0)


def gaussian(x):  # the seed's curve-fit model, mu = 0.3, sigma = 0.7, scale = 1.2
    return 1.2 * rg.exp(-((x - 0.3) ** 2) / 0.7 / 0.7)


def cube(x):
    return x ** 3


SCALAR_FUNCTIONS = {
    "mixed_sine": (mixed_sine, lambda a: -math.sin(a) - 5.0 * math.sin(5 * a)),
    "gaussian": (gaussian, None),
    "sin": (rg.sin, lambda a: -math.sin(a)),
    "tanh": (rg.tanh, lambda a: -2 * math.tanh(a) * (1 - math.tanh(a) ** 2)),
    "cube": (cube, lambda a: 6 * a),
}
POINTS = [-1.3, -0.2, 0.0, 0.45, 2.0]


@pytest.mark.parametrize("name", sorted(SCALAR_FUNCTIONS))
def test_grad_of_grad_is_the_hessian(name):
    f, second = SCALAR_FUNCTIONS[name]
    gg = rg.grad(rg.grad(f))
    h = rg.hessian(f)
    for x in POINTS:
        value = gg(x)
        assert isinstance(value, float)
        assert math.isclose(value, h(x), rel_tol=1e-13, abs_tol=1e-13), (x, value, h(x))
        if second is not None:
            assert math.isclose(value, second(x), rel_tol=1e-12, abs_tol=1e-12)


def rosen2(x, y):  # the seed's Rosenbrock, with two scalar arguments
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def rosen(v):
    return rosen2(v[0], v[1])


@pytest.mark.parametrize("point", [(-1.2, 1.0), (0.3, -0.4), (1.0, 1.0)])
def test_grad_of_grad_per_argument_is_the_hessian_diagonal(point):
    hess = rg.hessian(rosen)(np.array(point))
    for k in range(2):
        assert math.isclose(rg.grad(rg.grad(rosen2, k), k)(*point), hess[k, k], rel_tol=1e-13)
    mixed = rg.grad(rg.grad(rosen2, 0), 1)(*point)  # d/dy of df/dx: an off-diagonal entry
    assert math.isclose(mixed, hess[0, 1], rel_tol=1e-13)


def test_jacobian_of_grad_and_hessian_of_a_function_calling_grad_agree_with_hessian():
    v = np.array([-1.2, 1.0])
    expected = rg.hessian(rosen)(v)
    np.testing.assert_allclose(rg.jacobian(rg.grad(rosen))(v), expected, rtol=1e-14)
    # hessian of f + 0 * (its own gradient's first entry): f's Hessian again, through rg.grad
    h = rg.hessian(lambda u: rosen(u) + 0.0 * rg.grad(rosen)(u)[0])(v)
    np.testing.assert_allclose(h, expected, rtol=1e-14)
    # the third derivative, contracted: d^2/dv^2 of (df/dx + df/dy)
    t = rg.hessian(lambda u: np.sum(rg.grad(rosen)(u)))(v)
    x, y = v
    np.testing.assert_allclose(t, [[2400 * x - 400, -400], [-400, 0]], rtol=1e-14)


def test_grad_of_value_and_grads_value_and_of_its_gradient():
    for x in POINTS:
        assert rg.grad(lambda t: rg.value_and_grad(cube)(t)[0])(x) == pytest.approx(3 * x * x, rel=1e-14)
        assert rg.grad(lambda t: rg.value_and_grad(cube)(t)[1])(x) == pytest.approx(6 * x, rel=1e-14,
                                                                                  abs=1e-15)


def test_composed_transforms_replay_and_nest_three_deep():
    third = rg.grad(rg.grad(rg.grad(rg.sin)))
    for x in POINTS:  # the first call records, the rest replay the recorded tape
        assert math.isclose(third(x), -math.cos(x), rel_tol=1e-14)
    hvp = rg.hvp(rosen)
    v = np.array([0.5, -2.0])
    w = np.array([1.0, 3.0])
    np.testing.assert_allclose(rg.jacobian(lambda u: rg.hvp(rosen)(u, w))(v),
                               rg.jacobian(lambda u: rg.hessian(rosen)(u) @ w)(v), rtol=1e-14)
    np.testing.assert_allclose(hvp(v, w), rg.hessian(rosen)(v) @ w, rtol=1e-14)


def test_inner_derivative_holds_what_it_closes_over_fixed():
    # d/dx of [d/dy (x * y)] = d/dx x = 1 (as JAX: the inner grad is with respect to y only)
    assert rg.grad(lambda x: rg.grad(lambda y: x * y)(2.0))(3.0) == 1.0
    # a number given to the inner transform becomes a leaf of the outer tape
    assert rg.grad(lambda x: rg.grad(lambda a, b: a * b * x, 1)(4.0, x))(3.0) == 8.0


def test_a_transform_called_with_terms_of_two_tapes_says_so():
    t1, t2 = rg.Tape(), rg.Tape()
    with pytest.raises(rg.TapeMismatchError, match="two different tapes"):
        rg.grad(lambda a, b: a * b)(t1.term("a", 1.0), t2.term("b", 2.0))
