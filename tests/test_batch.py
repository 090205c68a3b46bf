"""Batched replay: a batched sweep must equal a loop over the samples on the same tape: values and
per-sample gradients bit for bit where the arithmetic is the same (built-in ops), to 1e-12 relative
where numpy's callables differ; gradients summed over the batch up to rounding in the sum."""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import graphs
import rustograd_cy as rg

@pytest.fixture(autouse=True)
def exact_math():
    """Vector math and BLAS products off (the exact path; tests/test_dense.py checks products
    against it): this file checks batched results against a per-sample loop bit for bit
    (tests/test_vector_math.py checks vector math, which is within a few ulp)."""
    before, blas = rg.get_vector_math(), rg.get_blas()
    rg.set_vector_math(False)
    rg.set_blas(False)
    yield
    rg.set_vector_math(before)
    rg.set_blas(blas)


def per_sample(output, leaves, arrays, size):
    """eval() and backprop() one sample at a time: values and each leaf's per-sample gradients."""
    values, grads = [], {leaf: [] for leaf in leaves}
    for s in range(size):
        for leaf, arr in arrays.items():
            leaf.set(float(arr[s]))
        values.append(output.eval())
        output.backprop()
        for leaf in leaves:
            grads[leaf].append(leaf.grad)
    return np.array(values), {k: np.array(v) for k, v in grads.items()}


def per_sample_derive(output, arrays, size):
    """derive() with respect to each array leaf, one sample at a time."""
    out = {leaf: [] for leaf in arrays}
    for s in range(size):
        for leaf, arr in arrays.items():
            leaf.set(float(arr[s]))
        output.eval()
        for leaf in arrays:
            out[leaf].append(output.derive(leaf))
    return {leaf: np.array(v) for leaf, v in out.items()}


def assert_same(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


def assert_summed(actual, per_sample_grads, adjoint_scale=0.0):
    """A gradient summed over the batch: equal to the per-sample loop's sum up to rounding (the tape
    sums a node that does not depend on the batch once, in another order), judged against the size
    of what was summed: 1e-12 of the magnitudes of the per-sample gradients, or of `adjoint_scale`,
    the magnitudes of every node's per-sample adjoints (terms that cancel within a sample are that
    large, though their sum is not)."""
    terms = np.asarray(per_sample_grads)
    if not np.all(np.isfinite(terms)):
        np.testing.assert_allclose(actual, terms.sum(), rtol=1e-12)
        return
    try:
        expected = math.fsum(terms)
    except OverflowError:  # finite terms whose sum overflows: finite or not depends on the order
        return
    scale = max(np.abs(terms).sum(), adjoint_scale)
    # (Below 2^-1022 rounding is absolute, one step being 5e-324: allow a few thousand of those.)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale + 1e-320)


def adjoint_magnitude(output, nodes, arrays, size):
    """The sum over samples and nodes of |adjoint| in a per-sample loop (non-finite ones left out)."""
    total = 0.0
    for s in range(size):
        for leaf, arr in arrays.items():
            leaf.set(float(arr[s]))
        output.eval()
        output.backprop()
        grads = np.array([n.grad for n in nodes], dtype=float)
        total += np.abs(grads[np.isfinite(grads)]).sum()
    return total


# Random programs with array leaves (tests/graphs.py): every op, powc among them.
batched_graphs = graphs.batched(st.floats(-3, 3, allow_nan=False),
                                graphs.steps(graphs.UNARY + graphs.BINARY + ("powc",),
                                             [-1.5, 0.0, 2.0, 3.0]))


def build(tape, leaf_values, steps):
    """(leaves, every node built, leaves first; the last is the output)."""
    nodes = graphs.build(tape.term, leaf_values, steps)
    return nodes[:len(leaf_values)], nodes


# Found by hypothesis: x2's per-sample gradients cancel within each sample to 1e-16, which the
# batch, summing another way, makes an exact 0 (the adjoints it is made of are of order 1).
CANCELLING = ([0.0, 1.5, 0.0], {2: np.array([1.0, 1.25])},
              [("neg", 0, 0, 0.0), ("neg", 0, 0, 0.0), ("mul", 1, 18482, 0.0), ("neg", 0, 0, 0.0),
               ("neg", 0, 0, 0.0), ("neg", 0, 0, 0.0), ("div", 67910, 1, 0.0)], 2)


@settings(max_examples=150, deadline=None)
@given(batched_graphs)
@example(CANCELLING)
def test_random_graphs_equal_per_sample_loop(graph):
    leaf_values, arrays, steps, size = graph
    tape = rg.Tape()
    leaves, nodes = build(tape, leaf_values, steps)
    out = nodes[-1]
    with np.errstate(all="ignore"):
        values, grads = per_sample(out, leaves, {leaves[j]: a for j, a in arrays.items()}, size)
        adjoints = adjoint_magnitude(out, nodes, {leaves[j]: a for j, a in arrays.items()}, size)
        tangents = per_sample_derive(out, {leaves[j]: a for j, a in arrays.items()}, size)
        for j, arr in arrays.items():
            leaves[j].set(arr)
        assert tape.batch_size == size
        assert_same(out.eval(), values)
        out.backprop()
    for j, leaf in enumerate(leaves):
        if j in arrays:
            assert_same(leaf.grad, grads[leaf])
            with np.errstate(all="ignore"):
                assert_same(out.derive(leaf), tangents[leaf])
        else:
            assert isinstance(leaf.grad, float)
            with np.errstate(all="ignore"):
                assert_summed(leaf.grad, grads[leaf], adjoints)
    # The sweep driven node by node from Python (as with a callback) zeroes gradient rows and adds
    # where the C sweep stores, and interleaves the once-computed nodes with the rows: the same
    # values and per-sample gradients bit for bit, and summed gradients again to rounding.
    with np.errstate(all="ignore"):
        assert_same(out.eval(callback=lambda term: None), values)
        out.backprop(callback=lambda term: None)
    for j, leaf in enumerate(leaves):
        if j in arrays:
            assert_same(leaf.grad, grads[leaf])
        else:
            with np.errstate(all="ignore"):
                assert_summed(leaf.grad, grads[leaf], adjoints)


def curve_fit_model(tape, exp):
    x, mu, sigma, scale = (tape.term(n, v) for n, v in (("x", 0.0), ("mu", 0.0), ("sigma", 1.0),
                                                        ("scale", 1.0)))
    x_mu = x - mu
    arg = -(x_mu * x_mu) / sigma / sigma
    gaussian = scale * (arg.apply("exp", np.exp, np.exp) if exp == "apply" else arg.exp())
    y = tape.term("y", 0.0)
    diff = gaussian - y
    return x, y, (mu, sigma, scale), diff * diff


@pytest.mark.parametrize("exp", ["builtin", "apply"])
def test_curve_fit_batched_equals_per_sample(exp):
    """The seed's curve fit, 10 epochs: gradients of all samples summed with the parameters fixed,
    then one update, both ways."""
    xs = np.arange(-40, 40) / 10
    ys = 0.75 * np.exp(-((xs - 1.2) ** 2) / 0.35)
    tape = rg.Tape()
    x, y, params, loss = curve_fit_model(tape, exp)
    scalar = [0.0, 1.0, 1.0]
    for _ in range(10):
        for p, v in zip(params, scalar):
            p.set(v)
        total = [0.0, 0.0, 0.0]
        for xv, yv in zip(xs, ys):
            x.set(float(xv))
            y.set(float(yv))
            loss.eval()
            loss.backprop()
            total = [t + p.grad for t, p in zip(total, params)]
        scalar = [v - 0.01 * g for v, g in zip(scalar, total)]
    x.set(xs)
    y.set(ys)
    batched = [0.0, 1.0, 1.0]
    for _ in range(10):
        for p, v in zip(params, batched):
            p.set(v)
        loss.eval()
        loss.backprop()
        batched = [v - 0.01 * p.grad for v, p in zip(batched, params)]
    # The summed gradients round differently (see assert_summed), and numpy's exp on an array may
    # round differently from on one number.
    np.testing.assert_allclose(batched, scalar, rtol=1e-12)
    assert abs(batched[0] - 1.2) < abs(0.0 - 1.2)  # and it does fit


def test_data_grad_and_types_in_batch_mode():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 2.0)
    y = w * x
    x.set([1, 2, 3])  # ints are coerced to float64
    out = y.eval()
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert_same(out, [2.0, 4.0, 6.0])
    assert_same(y.data, [2.0, 4.0, 6.0])
    assert_same(x.data, [1.0, 2.0, 3.0])
    assert w.data == 2.0 and w.grad is None
    y.backprop()
    assert w.grad == 6.0 and isinstance(w.grad, float)
    assert_same(x.grad, [2.0, 2.0, 2.0])
    assert_same(y.grad, [1.0, 1.0, 1.0])
    out[0] = 99.0  # results are copies: the tape is not changed through them
    assert_same(y.eval(), [2.0, 4.0, 6.0])


def test_stale_values_rules_hold_in_batch_mode():
    tape = rg.Tape()
    x, w = tape.term("x", 1.0), tape.term("w", 2.0)
    y = (w * x).sin()
    y.eval()
    x.set(np.array([0.5, 1.5]))
    assert y.data is None
    with pytest.raises(rg.ValueNotDefinedError, match="call eval"):
        y.backprop()
    y.eval()
    w.set(3.0)  # a shared leaf changing makes the batch stale too
    with pytest.raises(rg.ValueNotDefinedError):
        y.backprop()


def test_derive_per_sample_in_batch_mode():
    tape = rg.Tape()
    x, w = tape.term("x", 1.0), tape.term("w", 3.0)
    y = (x * x * w).apply("sin", np.sin, np.cos) + w / x
    xs = np.array([0.5, 1.0, 2.0])
    expected_x, expected_w = [], []
    for xv in xs:
        x.set(float(xv))
        y.eval()
        expected_x.append(y.derive(x))
        expected_w.append(y.derive(w))
    x.set(xs)
    with pytest.raises(rg.ValueNotDefinedError):
        y.derive(x)
    y.eval()
    np.testing.assert_allclose(y.derive(x), expected_x, rtol=1e-12)
    np.testing.assert_allclose(y.derive(w), expected_w, rtol=1e-12)


def test_back_to_scalar_mode():
    tape = rg.Tape()
    x, w = tape.term("x", 1.0), tape.term("w", 2.0)
    y = w * x * x
    x.set([1.0, 2.0])
    w.set([1.0, 1.0])
    y.eval()
    y.backprop()
    x.set(3.0)
    assert tape.batch_size == 2  # w still holds an array
    w.set(2.0)
    assert tape.batch_size is None
    assert w.grad is None  # switching mode drops gradients
    assert y.data is None
    assert y.eval() == 18.0
    y.backprop()
    assert (x.grad, w.grad) == (12.0, 9.0)
    assert y.derive(x) == 12.0
    assert tape.nbytes < 100_000  # rows are freed


def test_batch_size_changes_only_with_one_array_leaf():
    tape = rg.Tape()
    x, z = tape.term("x", 1.0), tape.term("z", 1.0)
    y = x + z
    x.set([1.0, 2.0])
    x.set([1.0, 2.0, 3.0])  # x is the only array leaf: the batch follows it
    assert_same(y.eval(), [2.0, 3.0, 4.0])
    z.set(np.zeros(3))
    with pytest.raises(ValueError, match=r"batched with 3 samples \('z'.*not 2"):
        x.set([1.0, 2.0])
    with pytest.raises(ValueError, match="batched with 3"):
        tape.term("q", 0.0).set(np.ones(4))


@pytest.mark.parametrize("bad, error, match", [
    (np.ones((2, 2)), ValueError, r"1-D array.*shape \(2, 2\)"),
    ([[1.0, 2.0]], ValueError, "1-D array"),
    ([], ValueError, "empty"),
    (np.array([], dtype=float), ValueError, "empty"),
    (["a", "b"], TypeError, "dtype <U1"),
    (np.array(["1.0"]), TypeError, "real numbers"),
    ([1 + 2j], TypeError, "complex"),
    (np.array([True, False]), TypeError, "bool"),
    ([object()], TypeError, "object"),
    ("abc", TypeError, "real number"),
    ([[1.0], [1.0, 2.0]], TypeError, "real number"),
    (None, TypeError, "real number"),
    (True, TypeError, "real number"),
])
def test_bad_set_values(bad, error, match):
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x * 2.0
    with pytest.raises(error, match=match):
        x.set(bad)
    assert tape.batch_size is None and x.data == 1.0
    assert y.eval() == 2.0


def test_zero_dimensional_array_is_a_number():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    x.set(np.array(4.0))
    assert tape.batch_size is None and x.data == 4.0


def test_set_array_on_an_operation_node():  # on a constant: tests/test_kinds_errors.py
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    with pytest.raises(rg.TermWasNotValueError):
        (x + 1.0).set([1.0, 2.0])
    assert tape.batch_size is None


def test_nodes_that_do_not_depend_on_the_batch_are_numbers():
    """A node with no array leaf below it has one value for the whole batch: .data is a number and
    .grad the gradient summed over the batch, as for a scalar leaf; eval() still gives B values."""
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 3.0)
    penalty = w * w  # uniform
    xw = x * w
    y = xw + penalty.sin()
    x.set([1.0, 2.0, 4.0])
    assert_same(y.eval(), [3.0 + math.sin(9.0), 6.0 + math.sin(9.0), 12.0 + math.sin(9.0)])
    assert penalty.data == 9.0 and isinstance(penalty.data, float)
    assert isinstance(xw.data, np.ndarray)
    y.backprop()
    assert penalty.grad == pytest.approx(3 * math.cos(9.0), rel=1e-15)
    assert w.grad == pytest.approx(7.0 + 3 * math.cos(9.0) * 6.0, rel=1e-15)
    assert_same(x.grad, [3.0, 3.0, 3.0])
    uniform_output = penalty.sin()
    assert_same(uniform_output.eval(), np.full(3, math.sin(9.0)))
    uniform_output.backprop()  # d(sum over 3 samples)/dw = 3 * cos(9) * 6
    assert w.grad == pytest.approx(3 * math.cos(9.0) * 6.0, rel=1e-15)
    assert x.grad.tolist() == [0.0, 0.0, 0.0]


def test_uniform_nodes_follow_the_array_leaves():
    """Which nodes vary changes with set(): a leaf set to an array makes its dependents vary."""
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 2.0)
    y = (w * w) * x
    x.set([1.0, 2.0])
    y.eval()
    assert isinstance(y.data, np.ndarray)
    square = tape._term_at(y.index - 1)  # w * w
    assert square.data == 4.0
    y.backprop()
    w.set([1.0, 3.0])  # now w * w varies too, and the gradients (of the old split) are dropped
    assert w.grad is None and square.grad is None
    assert_same(y.eval(), [1.0, 18.0])
    assert_same(square.data, [1.0, 9.0])
    y.backprop()
    assert_same(w.grad, [2.0, 12.0])
    w.set(2.0)  # and back
    assert_same(y.eval(), [4.0, 8.0])
    assert square.data == 4.0


def test_callable_on_a_uniform_operand_gets_the_whole_batch():
    seen = []

    def f(v):
        seen.append(v.copy())
        return np.exp(v)

    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 0.5)
    y = w.apply("exp", f, np.exp) * x  # the callable's operand w does not vary, its result may
    x.set([1.0, 2.0, 3.0])
    assert_same(y.eval(), np.exp(0.5) * np.array([1.0, 2.0, 3.0]))
    assert_same(seen[0], [0.5, 0.5, 0.5])
    y.backprop()
    assert w.grad == pytest.approx(np.exp(0.5) * 6.0, rel=1e-15)


def test_anomaly_in_a_uniform_node_names_it():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", -1.0)
    y = x * w.log()
    x.set([1.0, 2.0])
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match=r"eval\(\) \(the same for every sample\).*'log\(w\)'"):
        y.eval()


def test_callables_get_and_return_arrays():
    seen = []

    def f(v):
        seen.append(v)
        return np.sin(v)

    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 2.0)
    y = (w * x).apply("sin", f, np.cos) * w
    xs = np.linspace(-1, 1, 7)
    x.set(xs)
    np.testing.assert_allclose(y.eval(), 2 * np.sin(2 * xs), rtol=1e-15)
    assert len(seen) == 1 and seen[0].shape == (7,)
    y.backprop()
    expected_x = 2 * np.cos(2 * xs) * 2
    np.testing.assert_allclose(x.grad, expected_x, rtol=1e-12)
    expected_w = sum(np.sin(2 * xs) + 2 * np.cos(2 * xs) * xs)
    np.testing.assert_allclose(w.grad, expected_w, rtol=1e-12)


def test_callable_returning_a_number_broadcasts():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = x.apply("one", lambda v: 1.0, lambda v: 0.0) + x
    x.set([1.0, 2.0])
    assert_same(y.eval(), [2.0, 3.0])
    y.backprop()
    assert_same(x.grad, [1.0, 1.0])


@pytest.mark.parametrize("f, df, error, match", [
    (lambda v: v[:1], np.cos, ValueError, r"apply\('g'\) \(node \d+\) returned 1 values for a batch of 3"),
    (lambda v: "x", np.cos, TypeError, r"function of apply\('g'\).*batch mode"),
    (np.sin, lambda v: np.ones((3, 1)), ValueError, r"derivative of apply\('g'\).*1-D"),
])
def test_callable_bad_results(f, df, error, match):
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = x.apply("g", f, df)
    x.set([1.0, 2.0, 3.0])
    with pytest.raises(error, match=match):
        y.eval()
        y.backprop()
    assert y.grad is None


def test_callable_exception_propagates_and_tape_stays_usable():
    calls = []

    def df(v):
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("boom")
        return np.cos(v)

    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = x.apply("sin", np.sin, df)
    x.set([0.0, 1.0])
    y.eval()
    with pytest.raises(KeyError, match="boom"):
        y.backprop()
    assert x.grad is None
    y.backprop()
    np.testing.assert_allclose(x.grad, np.cos([0.0, 1.0]), rtol=1e-15)


def test_callbacks_see_every_node_in_batch_mode():
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 2.0)
    y = (w * x).sin()
    x.set([1.0, 2.0])
    order = []
    y.eval(callback=lambda t: order.append(t.index))
    assert order == [x.index, w.index, y.index - 1, y.index]
    done = []
    y.backprop(callback=lambda t: done.append(isinstance(t.grad, (float, np.ndarray))))
    assert done == [True] * 4


def test_nodes_added_in_batch_mode_grow_the_rows():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    xs = np.linspace(0.1, 1.0, 5)
    x.set(xs)
    y = x
    for _ in range(300):  # past several doublings of the rows
        y = y * 1.001 + 0.0001
    expected = xs.copy()
    for _ in range(300):
        expected = expected * 1.001 + 0.0001
    assert_same(y.eval(), expected)
    y.backprop()
    slope = 1.0
    for _ in range(300):  # the reverse sweep multiplies the partials from the output down
        slope = slope * 1.001
    assert_same(x.grad, np.full(5, slope))


def test_gradients_zero_outside_the_last_output_in_batch_mode():
    tape = rg.Tape()
    x, a, b = tape.term("x", 0.0), tape.term("a", 2.0), tape.term("b", 3.0)
    ya, yb = a * x, b * x
    x.set([1.0, 2.0])
    ya.eval()
    ya.backprop()
    assert a.grad == 3.0
    yb.eval()
    yb.backprop()
    assert a.grad == 0.0 and b.grad == 3.0
    assert_same(ya.grad, [0.0, 0.0])


def wide_graph(tape):
    """A graph of varying nodes, with a penalty on the leaves that does not vary."""
    leaves = [tape.term(f"w{j}", 0.1 * j) for j in range(8)]
    x = tape.term("x", 0.0)
    acc = x
    penalty = tape.constant(0.0)
    for j, w in enumerate(leaves):
        acc = (acc * w + x).tanh() + (w - x).sin() * 0.5
        penalty = penalty + (w * w).sin()
    return x, leaves, acc + penalty * 0.01


@pytest.fixture
def restore_threads():
    before = rg.get_num_threads()
    yield
    rg.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("vector_math", [False, True])
def test_results_do_not_depend_on_thread_count(restore_threads, vector_math):
    rg.set_vector_math(vector_math)
    tape = rg.Tape()
    x, leaves, out = wide_graph(tape)
    x.set(np.random.default_rng(0).normal(size=40_003))  # long enough to split, not a multiple of 8
    results = []
    for n in (1, 2, 3, 4):
        rg.set_num_threads(n)
        assert rg.get_num_threads() == n
        values = out.eval()
        out.backprop()
        results.append((values, x.grad, [w.grad for w in leaves]))
    for values, xgrad, wgrads in results[1:]:
        assert_same(values, results[0][0])
        assert_same(xgrad, results[0][1])
        # Each thread sums its own samples' share of a summed gradient: rounding may differ.
        np.testing.assert_allclose(wgrads, results[0][2], rtol=1e-12)


def test_long_batch_equals_per_sample_loop_across_chunks(restore_threads):
    rg.set_num_threads(2)
    tape = rg.Tape()
    x, leaves, out = wide_graph(tape)
    xs = np.random.default_rng(1).normal(size=3000)  # several chunks
    values, grads = per_sample(out, leaves + [x], {x: xs}, len(xs))
    x.set(xs)
    assert_same(out.eval(), values)
    out.backprop()
    assert_same(x.grad, grads[x])
    for w in leaves:
        assert_summed(w.grad, grads[w])


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match="n >= 1"):
        rg.set_num_threads(0)


def test_sweep_during_callable_is_refused():
    tape = rg.Tape()
    x = tape.term("x", 0.0)

    def f(v):
        x.set(v * 2)
        return v

    y = x.apply("f", f, np.cos)
    x.set([1.0, 2.0])
    with pytest.raises(RuntimeError, match="middle of a sweep"):
        y.eval()
    x.set(3.0)  # the sweep ended: the tape takes changes again
    assert tape.batch_size is None


def test_backprop_of_a_new_leaf_in_batch_mode():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    x.set([1.0, 2.0])
    (x * 2.0).eval()
    leaves = [tape.term(f"n{j}", 1.0) for j in range(200)]  # beyond the rows allocated so far
    leaves[-1].backprop()
    assert leaves[-1].grad == 2.0  # d(sum over 2 samples of n)/dn
    assert leaves[-1].eval().tolist() == [1.0, 1.0]


def test_anomaly_check_in_batch_mode_names_node_and_sample():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x.log() * 2.0
    x.set(np.array([1.0, 4.0, -1.0]))
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match=r"eval\(\) \(sample 2 of the batch\).*'log\(x\)'"):
        y.eval()
    x.set(np.array([1.0, 0.0, 2.0]))
    tape.check_finite = False
    np.testing.assert_array_equal(y.eval(), [0.0, -np.inf, 2.0 * np.log(2.0)])
    with rg.detect_anomaly():
        with pytest.raises(rg.NonFiniteError, match=r"sample 1 of the batch"):
            y.backprop()
        with pytest.raises(rg.NonFiniteError, match=r"derive\(\) \(sample 1"):
            y.derive(x)
    x.set(np.array([1.0, 2.0, 3.0]))
    with rg.detect_anomaly():  # all finite: no error, same numbers as without the check
        np.testing.assert_array_equal(y.eval(), 2.0 * np.log([1.0, 2.0, 3.0]))
        y.backprop()
        np.testing.assert_array_equal(x.grad, 2.0 / np.array([1.0, 2.0, 3.0]))


def _overcommit_refuses_huge_mallocs():
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.skipif(not _overcommit_refuses_huge_mallocs(),
                    reason="needs a kernel that refuses a multi-terabyte malloc")
def test_a_batch_too_big_for_memory_leaves_the_tape_in_scalar_mode():
    # 2^17 nodes x 2^22 samples of rows is 4 TiB: set() must fail with MemoryError and leave the
    # tape as it was (scalar mode, its values and gradients), not batched with no array leaf.
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    y = x * x
    for _ in range(1 << 17):
        tape.constant(3.0)
    assert y.eval() == 4.0
    y.backprop()
    limit = rg.set_row_limit(float("inf"))  # full rows (by default such a batch streams)
    try:
        with pytest.raises(MemoryError):
            x.set(np.ones(1 << 22))
    finally:
        rg.set_row_limit(limit)
    assert tape.batch_size is None
    assert x.grad == 4.0
    x.set(3.0)
    assert y.eval() == 9.0
    y.backprop()
    assert x.grad == 6.0
