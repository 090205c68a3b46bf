"""term.jacobian(leaves): per-sample derivatives in batch mode (shared leaves not summed), a 1-D array
in scalar mode; against central differences, per-sample backprop() and derive(); errors."""
import math

import numpy as np
import pytest

import rustograd_cy as rg

XS = np.array([i / 10 for i in range(-40, 40)])
YS = np.array([0.75 * math.exp(-((x - 0.8) ** 2) / 0.35) + 0.5 * math.exp(-((x + 0.3) ** 2) / 0.5)
               for x in XS])
PARAMS = (-0.5, 0.9, 0.8, 0.7, 0.6, 0.9)  # mu0, sigma0, scale0, mu1, sigma1, scale1


def peaks(tape, exp=None):
    """The seed's peak-separation model: (x, y, params, residual y(x) - y)."""
    x = tape.term("x", 0.0)
    params, model = [], 0.0
    for k in range(2):
        mu, sigma, scale = (tape.term(f"{n}{k}", PARAMS[3 * k + j])
                            for j, n in enumerate(("mu", "sigma", "scale")))
        x_mu = x - mu
        z = -(x_mu * x_mu) / sigma / sigma
        model = model + scale * (z.exp() if exp is None else z.apply("exp", exp, exp))
        params += [mu, sigma, scale]
    y = tape.term("y", 0.0)
    return x, y, params, model - y


def central_differences(residual, params, h=1e-6):
    cols = []
    for p in params:
        v = p.data
        p.set(v + h)
        up = np.array(residual.eval(), dtype=float)
        p.set(v - h)
        down = np.array(residual.eval(), dtype=float)
        p.set(v)
        cols.append((up - down) / (2 * h))
    residual.eval()
    return np.array(cols).T


@pytest.mark.parametrize("exp", [None, np.exp], ids=["builtin-exp", "apply-np.exp"])
def test_jacobian_of_the_peak_separation_against_central_differences(exp):
    tape = rg.Tape()
    x, y, params, residual = peaks(tape, exp)
    x.set(XS)
    y.set(YS)
    residual.eval()
    jac = residual.jacobian(params)
    assert jac.shape == (80, 6) and jac.dtype == np.float64
    fd = central_differences(residual, params)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)
    # The same rows as scalar mode, sample by sample (one reverse sweep each).
    for s in (0, 17, 42, 79):
        x.set(float(XS[s]))
        y.set(float(YS[s]))
        residual.eval()
        row = residual.jacobian(params)
        assert row.shape == (6,)
        np.testing.assert_allclose(row, jac[s], rtol=1e-13, atol=1e-300)
        fd_row = central_differences(residual, params)
        np.testing.assert_allclose(row, fd_row, rtol=1e-6, atol=1e-8)
        x.set(XS)  # back to the batch
        y.set(YS)


def test_shared_columns_sum_to_backprop_and_array_columns_are_per_sample():
    tape = rg.Tape()
    x, y, params, residual = peaks(tape)
    loss = residual * residual
    x.set(XS)
    y.set(YS)
    loss.eval()
    jac = loss.jacobian(params + [x, y])
    loss.backprop()
    for k, p in enumerate(params):  # a shared leaf: backprop() sums what jacobian() hands over
        assert math.isclose(jac[:, k].sum(), p.grad, rel_tol=1e-12, abs_tol=1e-12)
    np.testing.assert_array_equal(jac[:, 6], x.grad)  # an array leaf: its per-sample gradient
    np.testing.assert_array_equal(jac[:, 7], y.grad)
    np.testing.assert_allclose(jac[:, 6], loss.derive(x), rtol=1e-12, atol=1e-14)


def test_per_sample_shares_flow_through_uniform_inner_nodes():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 0.5)
    ww = w * w  # uniform: computed once per sweep in backprop()
    y = ww * x + w.sin() * x * x
    xs = np.linspace(-2.0, 3.0, 7)
    x.set(xs)
    y.eval()
    jac = y.jacobian([w, x])
    np.testing.assert_allclose(jac[:, 0], 2 * 0.5 * xs + math.cos(0.5) * xs * xs, rtol=1e-14)
    np.testing.assert_allclose(jac[:, 1], 0.25 + 2 * math.sin(0.5) * xs, rtol=1e-14)


def test_a_long_batch_is_swept_in_chunks_and_matches_a_per_sample_loop():
    tape = rg.Tape()
    x, a, b = tape.term("x", 0.0), tape.term("a", 1.5), tape.term("b", -0.3)
    y = (a * x + b).tanh() * a + (b * x).exp()
    xs = np.linspace(-1.0, 1.0, 5001)  # several chunks of samples
    x.set(xs)
    y.eval()
    jac = y.jacobian([a, b, x])
    for s in (0, 1023, 1024, 2500, 5000):
        t = np.tanh(1.5 * xs[s] - 0.3)
        expected = [t + 1.5 * xs[s] * (1 - t * t), 1.5 * (1 - t * t) + xs[s] * np.exp(-0.3 * xs[s]),
                    1.5 * 1.5 * (1 - t * t) - 0.3 * np.exp(-0.3 * xs[s])]
        np.testing.assert_allclose(jac[s], expected, rtol=1e-12)


def test_fused_sums_of_an_mlp_give_the_per_sample_gradients():
    tape = rg.Tape()
    net = rg.nn.MLP(tape, [2, 5, 1], activation="tanh", seed=3)
    u, v = tape.term("u", 0.0), tape.term("v", 0.0)
    out = net([u, v])[0]
    params = net.parameters()
    rng = np.random.default_rng(0)
    us, vs = rng.normal(size=40), rng.normal(size=40)
    u.set(us)
    v.set(vs)
    assert rg._tape._test_plan(out)["chains"] > 0
    out.eval()
    jac = out.jacobian(params)
    for s in (0, 13, 39):
        u.set(float(us[s]))
        v.set(float(vs[s]))
        out.eval()
        out.backprop()
        np.testing.assert_allclose(jac[s], [p.grad for p in params], rtol=1e-12, atol=1e-15)
        u.set(us)
        v.set(vs)
        out.eval()


def test_jacobian_leaves_the_gradients_alone():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 2.0)
    y = (w * x).sin()
    x.set([0.1, 0.2, 0.3])
    y.eval()
    y.jacobian([w])
    assert w.grad is None and x.grad is None  # no backprop() yet
    y.backprop()
    before = (w.grad, x.grad.copy())
    y.jacobian([w, x])
    assert w.grad == before[0] and np.array_equal(x.grad, before[1])


def test_shapes_and_leaves_the_output_does_not_reach():
    tape = rg.Tape()
    x, w, other = tape.term("x", 1.0), tape.term("w", 3.0), tape.term("other", 5.0)
    y = w * x
    later = tape.term("later", 1.0)  # made after y: y cannot depend on it
    y.eval()
    np.testing.assert_array_equal(y.jacobian([w, other, later, x]), [1.0, 0.0, 0.0, 3.0])
    assert y.jacobian([]).shape == (0,)
    assert y.jacobian((w,)).tolist() == [1.0]
    x.set(np.array([1.0, 2.0]))
    y.eval()
    assert y.jacobian([]).shape == (2, 0)
    np.testing.assert_array_equal(y.jacobian([other, w]), [[0.0, 1.0], [0.0, 2.0]])
    penalty = w * w  # depends on no array leaf: one value, the same derivative for every sample
    penalty.eval()
    np.testing.assert_array_equal(penalty.jacobian([w, x]), [[6.0, 0.0], [6.0, 0.0]])


def test_jacobian_errors():
    tape = rg.Tape()
    x, w = tape.term("x", 1.0), tape.term("w", 3.0)
    y = w * x
    with pytest.raises(rg.ValueNotDefinedError, match="jacobian\\(\\) needs the value"):
        y.jacobian([w])
    y.eval()
    with pytest.raises(rg.TermWasNotValueError, match="item 1, 'w \\* x'"):
        y.jacobian([w, y])
    with pytest.raises(rg.TermWasNotValueError, match="leaves made by tape.term"):
        y.jacobian([tape.constant(2.0)])
    with pytest.raises(rg.TapeMismatchError, match="another tape"):
        y.jacobian([rg.Tape().term("a", 1.0)])
    with pytest.raises(TypeError, match="sequence of leaves"):
        y.jacobian(w)
    with pytest.raises(TypeError, match="item 0 is a float"):
        y.jacobian([1.0])
    with pytest.raises(TypeError, match="not int"):
        y.jacobian(3)
    x.set([1.0, 2.0])
    with pytest.raises(rg.ValueNotDefinedError, match="stale"):
        y.jacobian([w])
    assert y.eval().tolist() == [3.0, 6.0]  # still usable


def test_the_anomaly_check_covers_jacobian():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 1.0)
    y = (w + x).log()
    x.set([-1.0, 1.0])
    y.eval()
    assert np.isinf(y.jacobian([w])[0, 0]) and y.jacobian([w])[1, 0] == 0.5
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match="jacobian\\(\\)"):
        y.jacobian([w])


@pytest.mark.parametrize("kind", ["rc", "term"])
def test_pointer_kinds_jacobian_equals_backprop(kind):
    make = {"rc": rg.RcTerm, "term": rg.Term}[kind]
    a, b, c = make("a", 0.5), make("b", 2.0), make("c", 1.0)
    y = (a * b).sin() + b.exp() * a
    y.eval()
    jac = y.jacobian([a, b, c])
    assert a.grad is None  # left alone
    y.backprop()
    assert jac.tolist() == [a.grad, b.grad, 0.0]
    with pytest.raises(rg.TermWasNotValueError, match="item 0"):
        y.jacobian([a * b])
    with pytest.raises(TypeError, match="sequence of leaves"):
        y.jacobian(a)
    a.set(1.0)
    with pytest.raises(rg.ValueNotDefinedError, match="jacobian"):
        y.jacobian([a])
