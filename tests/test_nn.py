"""rg.nn against numpy, and the moons workload of issue 6."""
import pathlib
import sys

import numpy as np
import pytest

import rustograd_cy as rg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import moons_mlp  # noqa: E402


def numpy_forward(net, points, activation):
    h = points
    for k, layer in enumerate(net.layers):
        w = np.array([[p.data for p in row] for row in layer.weight])
        b = np.array([p.data for p in layer.bias])
        h = h @ w.T + b
        if k < len(net.layers) - 1:
            h = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0),
                 "sigmoid": lambda z: 1 / (1 + np.exp(-z))}[activation](h)
    return h


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_mlp_matches_numpy(activation):
    tape = rg.Tape()
    net = rg.nn.MLP(tape, [3, 5, 4, 2], activation=activation, seed=7)
    points = np.random.default_rng(3).normal(size=(20, 3))
    for leaf, column in zip(net.inputs, points.T):
        leaf.set(column)
    got = np.stack([out.eval() for out in net.outputs], axis=1)
    np.testing.assert_allclose(got, numpy_forward(net, points, activation), rtol=1e-12, atol=1e-14)


def test_initialisation_is_seeded_uniform():
    tape = rg.Tape()
    net = rg.nn.MLP(tape, [2, 3, 1], seed=5)
    rng = np.random.default_rng(5)
    w0, w1 = rng.uniform(-1, 1, (3, 2)), rng.uniform(-1, 1, (1, 3))
    params = net.parameters()
    assert len(params) == 2 * 3 + 3 + 3 + 1
    assert [p.data for p in params] == list(w0.ravel()) + [0.0] * 3 + list(w1.ravel()) + [0.0]
    assert params[0].name == "layer0.w0_0"
    assert [x.name for x in net.inputs] == ["x0", "x1"]


def test_mlp_gradients_match_per_sample_loop():
    tape = rg.Tape()
    net = rg.nn.MLP(tape, [2, 4, 1], seed=0)
    points = np.random.default_rng(1).normal(size=(6, 2))
    out = net.outputs[0]
    params = net.parameters()
    summed = [0.0] * len(params)
    for p in points:
        net.inputs[0].set(float(p[0]))
        net.inputs[1].set(float(p[1]))
        out.eval()
        out.backprop()
        summed = [s + q.grad for s, q in zip(summed, params)]
    net.inputs[0].set(points[:, 0])
    net.inputs[1].set(points[:, 1])
    out.eval()
    out.backprop()
    # Summed over the batch in another order than this loop's: equal up to rounding.
    np.testing.assert_allclose([q.grad for q in params], summed, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sizes=[2, 3], activation="gelu"), "activation"),
    (dict(sizes=[2]), "sizes"),
    (dict(sizes=[2, 0, 1]), "n_out"),
])
def test_bad_mlp_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rg.nn.MLP(rg.Tape(), **kwargs)


def test_moons_data_follow_the_spec():
    points, labels = moons_mlp.make_moons()
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, 50)
    noise = rng.normal(0, 0.1, (100, 2))
    np.testing.assert_array_equal(points[:50], np.stack([np.cos(t), np.sin(t)], 1) + noise[:50])
    np.testing.assert_array_equal(points[50:], np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1) + noise[50:])
    assert list(labels) == [-1.0] * 50 + [1.0] * 50


def test_moons_mlp_learns():
    points, labels = moons_mlp.make_moons()
    model = moons_mlp.Model()
    losses = moons_mlp.train(model, points, labels)
    assert len(losses) == 100 and losses[-1] < losses[0] / 10
    assert moons_mlp.accuracy(model, points, labels) >= 0.95
