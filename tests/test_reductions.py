"""rg.mean and rg.sum: reductions over the samples of a batch (uniform nodes), against numpy."""
import doctest

import numpy as np
import pytest

import rustograd_cy as rg
from rustograd_cy import _tape, reductions


@pytest.fixture
def restore_threads():
    before = rg.get_num_threads()
    yield
    rg.set_num_threads(before)


def model(tape):
    """loss = reduce(tanh(w * x + c) * y) + 0.1 * w * w, with its leaves."""
    x, y = tape.term("x", 0.0), tape.term("y", 0.0)
    w, c = tape.term("w", 0.7), tape.term("c", -0.2)
    per_sample = (w * x + c).tanh() * y
    return x, y, w, c, per_sample


def numpy_model(xs, ys, w, c, reduce):
    """Value and gradients (w, c, x per sample, y per sample) of the same loss, by hand."""
    t = np.tanh(w * xs + c)
    scale = 1.0 / len(xs) if reduce == "mean" else 1.0
    value = (t * ys).sum() * scale + 0.1 * w * w
    dt = (1 - t * t) * ys * scale
    return value, (dt * xs).sum() + 0.2 * w, dt.sum(), dt * w, t * scale


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("size", [1, 7, 100, 5003])
@pytest.mark.parametrize("driven", ["planned", "node by node"])
def test_values_and_gradients_against_numpy(reduce, size, driven):
    tape = rg.Tape()
    x, y, w, c, per_sample = model(tape)
    loss = getattr(rg, reduce)(per_sample) + 0.1 * w * w
    rng = np.random.default_rng(size)
    xs, ys = rng.normal(size=size), rng.normal(size=size)
    x.set(xs)
    y.set(ys)
    seen = []
    callback = seen.append if driven == "node by node" else None
    value = loss.eval(callback=callback)
    loss.backprop(callback=callback)
    want, dw, dc, dx, dy = numpy_model(xs, ys, 0.7, -0.2, reduce)
    assert type(value) is float and loss.data == value
    assert value == pytest.approx(want, rel=1e-13)
    assert w.grad == pytest.approx(dw, rel=1e-12)
    assert c.grad == pytest.approx(dc, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(x.grad, dx, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(y.grad, dy, rtol=1e-13, atol=1e-16)
    assert loss.grad == 1.0  # the loss itself is differentiated, not its sum over the samples


def test_planned_and_node_by_node_sweeps_agree():
    """The C sweeps by plan and the Python-driven ones: values and per-sample gradients bit for bit,
    shared gradients and the reduction to rounding (they sum in other orders)."""
    results = []
    for callback in (None, lambda term: None):
        tape = rg.Tape()
        x, y, w, c, per_sample = model(tape)
        loss = rg.mean(per_sample) + rg.sum(per_sample * per_sample) + 0.1 * w * w
        x.set(np.linspace(-2, 2, 3001))
        y.set(np.cos(np.linspace(0, 9, 3001)))
        results.append((loss.eval(callback=callback), w.grad, per_sample.data))
        loss.backprop(callback=callback)
        results[-1] += (w.grad, c.grad, x.grad, y.grad)
    (v0, _, p0, w0, c0, x0, y0), (v1, _, p1, w1, c1, x1, y1) = results
    np.testing.assert_array_equal(p0, p1)
    np.testing.assert_array_equal(x0, x1)
    np.testing.assert_array_equal(y0, y1)
    assert v0 == pytest.approx(v1, rel=1e-13)
    assert w0 == pytest.approx(w1, rel=1e-12) and c0 == pytest.approx(c1, rel=1e-12)


def test_threads_agree_with_one(restore_threads):
    out = {}
    for threads in (1, 2):
        rg.set_num_threads(threads)
        tape = rg.Tape()
        x, y, w, c, per_sample = model(tape)
        loss = rg.mean(per_sample) + 0.1 * w * w
        x.set(np.linspace(-3, 3, 300_001))
        y.set(np.sin(np.linspace(0, 20, 300_001)))
        out[threads] = (loss.eval(), loss.backprop(), w.grad, c.grad, x.grad)
    (v1, _, w1, c1, x1), (v2, _, w2, c2, x2) = out[1], out[2]
    assert v1 == pytest.approx(v2, rel=1e-12)
    assert w1 == pytest.approx(w2, rel=1e-12) and c1 == pytest.approx(c2, rel=1e-12)
    np.testing.assert_array_equal(x1, x2)


def test_reductions_of_uniform_terms_and_of_reductions():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 3.0)
    x.set(np.arange(4.0))
    total = rg.sum(w) + rg.mean(w * w) + rg.sum(rg.mean(x))  # 4 * 3 + 9 + 4 * 1.5
    assert total.eval() == 27.0
    total.backprop()
    assert w.grad == 4.0 + 6.0
    np.testing.assert_array_equal(x.grad, np.full(4, 1.0))  # d/dx[s] of 4 * mean(x) = 4 / 4


def test_a_varying_node_reading_a_reduction():
    """Centred values (x - mean(x)) vary and depend on a reduction: swept node by node."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    centred = x - rg.mean(x)
    variance = rg.mean(centred * centred)
    xs = np.random.default_rng(3).normal(size=2000)
    x.set(xs)
    assert _tape._test_plan(variance)["chains"] == 0
    assert variance.eval() == pytest.approx(np.var(xs), rel=1e-13)
    np.testing.assert_allclose(centred.eval(), xs - xs.mean(), rtol=1e-13, atol=1e-15)
    variance.backprop()
    np.testing.assert_allclose(x.grad, 2 * (xs - xs.mean()) / len(xs), rtol=1e-10, atol=1e-16)


def test_scalar_mode_is_a_batch_of_one():
    tape = rg.Tape()
    x, y, w, c, per_sample = model(tape)
    loss = rg.mean(per_sample) + rg.sum(per_sample) + 0.1 * w * w
    x.set(0.5)
    y.set(-1.5)
    plain = per_sample + per_sample + 0.1 * w * w
    assert loss.eval() == plain.eval()
    loss.backprop()
    grads = [leaf.grad for leaf in (x, y, w, c)]
    plain.backprop()
    assert grads == [leaf.grad for leaf in (x, y, w, c)]
    m, t = rg.mean(x), rg.sum(x)
    m.eval()
    t.eval()
    assert m.derive(x) == 1.0 and t.derive(x) == 1.0


def test_the_same_graph_scalar_then_batched():
    """Built in scalar mode, replayed over a batch: the node is a reduction then."""
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    m = rg.mean(x * x)
    assert m.eval() == 4.0
    x.set(np.array([1.0, 2.0, 3.0, 4.0]))
    assert m.eval() == 7.5
    x.set(5.0)
    assert m.eval() == 25.0


@pytest.mark.parametrize("kind", [rg.Term, rg.RcTerm])
def test_scalar_kinds_get_the_term_itself(kind):
    a = kind("a", 2.0)
    assert rg.mean(a) is a and rg.sum(a) is a


@pytest.mark.parametrize("bad", [3.0, np.arange(3.0), "x", None])
def test_non_terms_are_refused(bad):
    for f in (rg.mean, rg.sum):
        with pytest.raises(TypeError, match=r"takes a term .* numpy\.(mean|sum)"):
            f(bad)


def test_terms_of_another_tape_do_not_mix():
    t1, t2 = rg.Tape(), rg.Tape()
    a, b = t1.term("a", 1.0), t2.term("b", 2.0)
    with pytest.raises(rg.TapeMismatchError):
        a + rg.mean(b)


def test_derive_through_a_reduction_is_refused_in_batch_mode():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    m = rg.mean(x.sin())
    x.set(np.arange(3.0))
    m.eval()
    with pytest.raises(NotImplementedError, match=r"rg\.mean / rg\.sum.*backprop"):
        m.derive(x)


def test_anomaly_check_names_node_and_sample():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    m = rg.mean(x.log())
    x.set(np.array([1.0, 2.0, -1.0, 3.0]))
    with rg.detect_anomaly():
        with pytest.raises(rg.NonFiniteError, match=r"sample 2 of the batch.*log\(x\)"):
            m.eval()


def test_label_and_drawing():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    assert rg.mean(x).name == "batch_mean(x)"
    assert "batch_sum" in rg.sum(x).dot()


def test_gen_graph_of_a_mean_in_batch_mode():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    m = rg.mean(x * x)
    d = m.gen_graph(x)
    x.set(np.array([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(d.eval(), 2 * np.array([1.0, 2.0, 4.0]) / 3, rtol=1e-15)


def test_module_docstring():
    assert doctest.testmod(reductions, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_the_reductions_are_rows_of_the_spec_with_their_shipped_codes():
    """batch_sum and batch_mean keep the codes main shipped them with (right after minimum: saved
    tapes and pickles keep their meaning); the spec marks them so that no method or module function
    is generated for them (rg.sum and rg.mean are reductions.py's), and the C table's reduction test
    is derived from the same rows."""
    from rustograd_cy import _ops, functions
    from rustograd_cy._opspec import BY_NAME, SPEC

    assert [op.name for op in SPEC[22:26]] == ["maximum", "minimum", "batch_sum", "batch_mean"]
    assert (_ops.OP_CODES["batch_sum"], _ops.OP_CODES["batch_mean"]) == (24, 25)
    assert [op.name for op in SPEC if op.kind == "reduction"] == ["batch_sum", "batch_mean"]
    for name in ("batch_sum", "batch_mean"):
        assert BY_NAME[name].method is None and not BY_NAME[name].function
        assert name not in functions.__all__ and not hasattr(rg, name)
        assert not hasattr(rg.TapeTerm, name) and not hasattr(rg.Term, name)
    assert rg.sum is reductions.sum and rg.mean is reductions.mean
    # In the scalar kernels both are the identity with partial exactly 1.
    assert _ops.op_value("batch_mean", 2.5) == 2.5 and _ops.op_partials("batch_mean", 2.5) == (1.0, 0.0)
    assert _ops.op_value("batch_sum", 2.5) == 2.5 and _ops.op_partials("batch_sum", 2.5) == (1.0, 0.0)
