"""Streamed batches (rg.set_row_limit(); src/rg_batch.c rg_stream_batch) against full rows.

A tape whose rows would exceed the row limit holds none: eval() and backprop() run the batch chunk
by chunk and keep B-long arrays only of the swept output, the array leaves' gradients and the nodes
tape.keep() names. With the full sweep's chunk the results equal full rows' bit for bit; with other
chunks the sums over samples run in another order, and agree to rounding (held here to 1e-12).
"""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rustograd_cy as rg
from rustograd_cy import _tape

FULL, STREAM = float("inf"), 0
# Streams the MLP steps below (their tapes' rows take tens of MiB) but lets an eval() retain its
# chunks' rows (under 2 MiB) for the backprop() after it.
RETAIN = 8 * 2**20


@pytest.fixture(autouse=True)
def restore():
    limit, threads, blas = rg.get_row_limit(), rg.get_num_threads(), rg.get_blas()
    yield
    rg.set_row_limit(limit)
    rg.set_num_threads(threads)
    rg.set_blas(blas)
    _tape._test_stream_chunk(0)


def moons_step(n, seed=0, reduce=rg.mean, sizes=(2, 16, 16, 1)):
    """The MLP step of benchmarks/stream_memory.py on n random points: (tape, loss, score, params,
    array leaves)."""
    rng = np.random.default_rng(seed)
    tape = rg.Tape()
    mlp = rg.nn.MLP(tape, list(sizes), seed=seed)
    y = tape.term("y", 0.0)
    score = mlp.outputs[0]
    params = mlp.parameters()
    hinge = rg.relu(1.0 - y * score)
    loss = reduce(hinge) + 1e-4 * sum(p * p for p in params) if reduce is rg.mean else reduce(hinge)
    X = rng.normal(size=(n, 2))
    leaves = list(mlp.inputs) + [y]
    for leaf, d in zip(leaves, [X[:, 0], X[:, 1], np.sign(X[:, 0] * X[:, 1] + 0.1)]):
        leaf.set(d)
    return tape, loss, score, params, leaves


def step(limit, n=3000, chunk=0, threads=1, seed=0):
    rg.set_row_limit(limit)
    _tape._test_stream_chunk(chunk)
    rg.set_num_threads(threads)
    tape, loss, score, params, leaves = moons_step(n, seed)
    value = loss.eval()
    loss.backprop()
    out = dict(value=value, params=np.array([p.grad for p in params]),
               leaves=[x.grad for x in leaves], streamed=_tape._test_streamed(tape))
    out["score"] = score.eval()
    return out


def close(a, b, what, tol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.max(np.abs(b))), 1e-300)
    assert np.max(np.abs(a - b)) <= tol * scale, (what, float(np.max(np.abs(a - b))) / scale)


def agree(a, b, tol=1e-12):
    close(a["value"], b["value"], "loss", tol)
    close(a["params"], b["params"], "parameter gradients", tol)
    for k, (x, y) in enumerate(zip(a["leaves"], b["leaves"])):
        close(x, y, f"leaf {k} gradients", tol)
    close(a["score"], b["score"], "scores", tol)


def test_streamed_step_equals_full_rows_bit_for_bit():
    full, streamed = step(FULL), step(STREAM)
    assert full["streamed"] == (False, None)
    assert streamed["streamed"][0] and streamed["streamed"][1] >= 1024
    assert streamed["value"] == full["value"]
    assert np.array_equal(streamed["params"], full["params"])
    for x, y in zip(streamed["leaves"], full["leaves"]):
        assert np.array_equal(x, y)
    assert np.array_equal(streamed["score"], full["score"])


@pytest.mark.parametrize("chunk", [1, 7, 100, 999])
@pytest.mark.parametrize("blas", [True, False])
def test_small_chunks_agree_with_full_rows(chunk, blas):
    rg.set_blas(blas)
    n = 300 if chunk == 1 else 2500
    streamed = step(STREAM, n=n, chunk=chunk)
    assert streamed["streamed"] == (True, chunk)
    agree(streamed, step(FULL, n=n))


@pytest.mark.parametrize("chunk", [0, 100])
def test_threads(chunk):
    """Two threads split the samples (the MLP needs a few thousand for a second thread)."""
    full = step(FULL, n=9000, threads=1)
    streamed = step(STREAM, n=9000, chunk=chunk, threads=2)
    agree(streamed, full)
    assert np.array_equal(step(STREAM, n=9000, chunk=chunk, threads=2)["params"], streamed["params"])


def test_summed_gradients_equal_1000_sample_slices():
    """The judged property of the 2e6-sample step (benchmarks/stream_memory.py), at 20,000."""
    n, width = 20_000, 1000
    rg.set_row_limit(STREAM)
    tape, loss, score, params, leaves = moons_step(n)
    data = [x.data for x in leaves]
    loss.eval()
    loss.backprop()
    assert _tape._test_streamed(tape)[0]
    grads = np.array([p.grad for p in params])
    rg.set_row_limit(FULL)
    t2, sliced_loss, _, p2, leaves2 = moons_step(width, reduce=rg.sum)
    total = np.zeros(len(p2))
    for s in range(0, n, width):
        for leaf, d in zip(leaves2, data):
            leaf.set(d[s:s + width])
        sliced_loss.eval()
        sliced_loss.backprop()
        total += [p.grad for p in p2]
    expected = total / n + 2e-4 * np.array([p.data for p in p2])
    assert np.max(np.abs(grads - expected)) <= 1e-12 * np.max(np.abs(expected))
    assert np.all(np.abs(grads - expected) <= 1e-12 * np.abs(expected) + 1e-300)


@pytest.mark.parametrize("limit", [32 * 2**20, 256 * 2**20])
def test_memory_does_not_grow_with_the_rows(limit):
    """200,000 samples of the MLP: full rows would take 5 GB; the streamed tape holds its leaves'
    data, their gradients and the output's values, and, when they fit in the limit, the value rows
    eval() retained for backprop() (about 110 MB here: under 256 MiB, over 32)."""
    rg.set_row_limit(limit)
    tape, loss, score, params, leaves = moons_step(200_000)
    assert _tape._test_streamed(tape)[0]
    loss.eval()
    loss.backprop()
    retained = _tape._test_retained(tape)
    score.eval()
    kept = (3 + 3 + 1) * 200_000 * 8  # leaves' data, their gradients, the score
    assert retained == ((True, True) if limit > 2**27 else (False, False))
    assert tape.nbytes < kept + (limit if retained[0] else 0) + 4 * 2**20
    assert len(tape) * 200_000 * 16 > 5e9


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("blas", [True, False])
def test_backprop_reads_the_rows_eval_retained(threads, blas):
    """Under the limit, a streamed eval() keeps its chunks' rows and the backprop() after it reads
    them rather than sweep forward again: the same numbers as full rows, bit for bit."""
    rg.set_blas(blas)
    n = 9000
    full = step(FULL, n=n, threads=threads)
    retained = step(RETAIN, n=n, threads=threads)
    assert retained["streamed"][0]
    assert retained["value"] == full["value"]
    assert np.array_equal(retained["params"], full["params"])
    for x, y in zip(retained["leaves"], full["leaves"]):
        assert np.array_equal(x, y)
    assert np.array_equal(retained["score"], full["score"])


def test_retained_rows_are_read_only_while_they_hold():
    """Rows an eval() retained are read by the backprop() right after it, not after a set(), a
    change of threads (another split of the samples), an eval() of another output, or a limit they
    no longer fit; each of those backprop()s still gives full rows' gradients."""
    rg.set_row_limit(FULL)
    tape_f, loss_f, score_f, params_f, leaves_f = moons_step(9000)
    rg.set_row_limit(RETAIN)
    tape, loss, score, params, leaves = moons_step(9000)

    def grads_match():
        loss_f.backprop()
        assert np.array_equal([p.grad for p in params], [p.grad for p in params_f])
        for x, y in zip(leaves, leaves_f):
            assert np.array_equal(x.grad, y.grad)

    loss.eval(), loss_f.eval()
    loss.backprop()
    assert _tape._test_retained(tape) == (True, True)
    grads_match()
    loss.backprop()  # again: the rows still hold
    assert _tape._test_retained(tape) == (True, True)
    new = np.linspace(-1, 1, 9000)
    loss.eval()
    leaves[0].set(new), leaves_f[0].set(new)
    loss_f.eval()
    with pytest.raises(rg.ValueNotDefinedError):
        loss.backprop()  # stale values: backprop() asks for an eval() first, as with full rows
    loss.eval()
    rg.set_num_threads(2)
    loss.backprop()  # the rows were swept on one thread: not read
    assert _tape._test_retained(tape)[1] is False
    grads_match()  # (both on two threads)
    rg.set_num_threads(1)
    loss.eval()
    score.eval()  # another output's sweep (a prediction, which retains nothing): the loss's are gone
    loss.backprop()
    assert _tape._test_retained(tape) == (False, False)
    grads_match()
    rg.set_row_limit(2**20)  # too small for them: streamed without retaining
    loss.eval()
    loss.backprop()
    assert _tape._test_retained(tape) == (False, False)
    grads_match()


def test_a_batch_whose_rows_would_take_terabytes_streams():
    """tests/test_batch.py's 4 TiB of rows (2^17 nodes x 2^22 samples): streamed, by default."""
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    y = rg.mean(x * x)
    for _ in range(1 << 17):
        tape.constant(3.0)
    x.set(np.full(1 << 22, 3.0))
    assert _tape._test_streamed(tape)[0]
    assert y.eval() == 9.0
    y.backprop()
    assert x.grad.shape == (1 << 22,) and x.grad[0] == 6.0 / (1 << 22)


def test_prediction_keeps_only_the_output():
    rg.set_row_limit(STREAM)
    tape, loss, score, params, leaves = moons_step(5000)
    before = tape.nbytes
    out = score.eval()
    assert out.shape == (5000,)
    # the score's 5000 values, the cone and plan made for it (each node: 4-byte index, unit), and
    # the sweep's scratch space, kept for the next sweep: a chunk's rows, not the batch's
    scratch = _tape._test_scratch_bytes(tape)
    assert scratch <= 2 * 8 * 1024 * 100 + 2**19
    assert 5000 * 8 <= tape.nbytes - before - scratch <= 5000 * 8 + 64 * len(tape)
    assert _tape._test_retained(tape)[0] is False  # a prediction retains no rows
    assert np.array_equal(score.data, out)
    rg.set_row_limit(FULL)
    assert np.array_equal(score.eval(), out)  # full rows again: same values


# -- random layered graphs ------------------------------------------------------------------------

OPS = ("tanh", "sin", "sigmoid", "relu", "square", "exp_small", "mul", "add", "sub", "scale")


@st.composite
def layered_programs(draw):
    width = draw(st.integers(1, 4))
    depth = draw(st.integers(1, 4))
    layers = [[(draw(st.sampled_from(OPS)), draw(st.integers(0, 99)), draw(st.integers(0, 99)))
               for _ in range(draw(st.integers(1, 5)))] for _ in range(depth)]
    shared = draw(st.integers(0, 2))
    size = draw(st.sampled_from([1, 9, 130, 2100]))
    chunk = draw(st.sampled_from([1, 8, 64, 0]))
    reduce = draw(st.sampled_from(["mean", "sum", None]))
    return width, layers, shared, size, chunk, reduce, draw(st.integers(0, 2**31))


def build_layered(program):
    """A layered graph: array leaves, uniform leaves (weights), each layer's nodes made from the
    previous layer's by the drawn ops, chains of weighted sums among them; the output sums the last
    layer (reduced or not). Returns (tape, output, array leaves, uniform leaves, data)."""
    width, layers, shared, size, chunk, reduce, seed = program
    rng = np.random.default_rng(seed)
    tape = rg.Tape()
    xs = [tape.term(f"x{k}", 0.0) for k in range(width)]
    ws = [tape.term(f"w{k}", float(rng.normal())) for k in range(shared + 1)]
    prev = list(xs)
    for layer in layers:
        cur = []
        for op, i, j in layer:
            a, b = prev[i % len(prev)], prev[j % len(prev)]
            w = ws[(i + j) % len(ws)]
            if op == "mul":
                v = a * b
            elif op == "add":
                v = w + w * a + 0.5 * b  # a chain with scaled terms
            elif op == "sub":
                v = a - b * w
            elif op == "scale":
                v = sum((ws[k % len(ws)] * p for k, p in enumerate(prev)), ws[0])
            elif op == "exp_small":
                v = (a * 0.1).exp()
            else:
                v = getattr(a, op)()
            cur.append(v)
        prev = cur
    out = prev[0]
    for v in prev[1:]:
        out = out + v
    if reduce is not None:
        out = getattr(rg, reduce)(out) + ws[0] * ws[-1]
    data = [rng.normal(size=size) for _ in xs]
    return tape, out, xs, ws, data


def sweep_layered(program, limit, chunk):
    rg.set_row_limit(limit)
    _tape._test_stream_chunk(chunk)
    tape, out, xs, ws, data = build_layered(program)
    for x, d in zip(xs, data):
        x.set(d)
    value = np.atleast_1d(out.eval())
    out.backprop()
    return (_tape._test_streamed(tape)[0], value, [x.grad for x in xs], np.array([w.grad for w in ws]))


@settings(max_examples=60, deadline=None)
@given(layered_programs())
def test_random_layered_graphs_streamed_agree_with_full_rows(program):
    streamed, value, xg, wg = sweep_layered(program, STREAM, program[4])
    full, value0, xg0, wg0 = sweep_layered(program, FULL, 0)
    assert streamed and not full
    close(value, value0, "value", 1e-11)
    for a, b in zip(xg, xg0):
        close(a, b, "array leaf gradients", 1e-11)
    close(wg, wg0, "uniform gradients", 1e-11)
    if program[4] == 0:  # the full sweep's chunk: bit for bit
        assert np.array_equal(value, value0) and np.array_equal(wg, wg0)


# -- reductions -----------------------------------------------------------------------------------

def test_reductions_against_numpy_across_chunks():
    rg.set_row_limit(STREAM)
    _tape._test_stream_chunk(37)
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 1.5)
    d = np.random.default_rng(3).normal(size=1000)
    x.set(d)
    m = rg.mean((w * x).sin())
    s = rg.sum(x * x)
    loss = m * s + w
    assert loss.eval() == pytest.approx(np.mean(np.sin(1.5 * d)) * np.sum(d * d) + 1.5, rel=1e-13)
    loss.backprop()
    assert _tape._test_streamed(tape)[0]
    sm, ss = np.mean(np.sin(1.5 * d)), np.sum(d * d)
    assert w.grad == pytest.approx(ss * np.mean(np.cos(1.5 * d) * d) + 1.0, rel=1e-12)
    expected = ss * np.cos(1.5 * d) * 1.5 / 1000 + sm * 2 * d
    close(x.grad, expected, "x.grad")


def test_a_varying_node_reading_a_reduction_runs_on_full_rows():
    """x - mean(x) needs the whole batch's mean before any row: it is not streamed (full rows, as
    before; a MemoryError when they do not fit)."""
    rg.set_row_limit(STREAM)
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    d = np.arange(10.0)
    x.set(d)
    centred = rg.mean((x - rg.mean(x)) ** 2.0)
    assert centred.eval() == pytest.approx(np.var(d))
    assert not _tape._test_streamed(tape)[0]
    centred.backprop()
    close(x.grad, 2 * (d - d.mean()) / 10, "x.grad")
    plain = rg.mean(x * x)  # streamable: the tape streams again
    assert plain.eval() == pytest.approx(np.mean(d * d))
    assert _tape._test_streamed(tape)[0]
    assert centred.data is None  # the switch made computed values stale


# -- what a streamed tape can read ----------------------------------------------------------------

def small_streamed():
    rg.set_row_limit(STREAM)
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 2.0)
    h = (w * x).tanh()
    out = h * h + w
    x.set(np.linspace(-1, 1, 50))
    return tape, x, w, h, out


def test_unkept_rows_are_refused_and_keep_makes_them_readable():
    tape, x, w, h, out = small_streamed()
    out.eval()
    assert isinstance(w.data, float) and np.array_equal(x.data, np.linspace(-1, 1, 50))
    with pytest.raises(ValueError, match="tape.keep"):
        h.data
    out.backprop()
    assert x.grad.shape == (50,) and isinstance(w.grad, float)
    with pytest.raises(ValueError, match="tape.keep"):
        h.grad
    tape.keep(h)
    out.eval()
    out.backprop()
    hv = np.tanh(2 * np.linspace(-1, 1, 50))
    close(h.data, hv, "h.data")
    close(h.grad, 2 * hv, "h.grad")
    tape.keep()
    x.set(np.linspace(-1, 1, 50))  # a new epoch: the kept values were of the last one
    out.eval()
    with pytest.raises(ValueError):
        h.data
    with pytest.raises(TypeError):
        tape.keep(1.0)
    with pytest.raises(rg.TapeMismatchError):
        tape.keep(rg.Tape().term("z", 1.0))


def test_nodes_outside_the_gradient_cone_read_zero():
    tape, x, w, h, out = small_streamed()
    other = (x * 3.0).sin()
    out.eval()
    out.backprop()
    assert np.array_equal(other.grad, np.zeros(50))


def test_full_row_operations_are_refused_with_advice():
    tape, x, w, h, out = small_streamed()
    out.eval()
    with pytest.raises(ValueError, match="set_row_limit"):
        out.derive(w)
    with pytest.raises(ValueError, match="set_row_limit"):
        out.jacobian([w])
    with pytest.raises(ValueError, match="set_row_limit"):
        out.backprop(callback=lambda t: None)
    rg.set_row_limit(FULL)
    out.eval()
    assert out.derive(w).shape == (50,)


def test_callables_and_callbacks_switch_to_full_rows():
    tape, x, w, h, out = small_streamed()
    f = x.apply("cube", lambda v: v ** 3, lambda v: 3 * v ** 2) * w
    assert np.allclose(f.eval(), 2 * np.linspace(-1, 1, 50) ** 3)
    assert not _tape._test_streamed(tape)[0]
    f.backprop()
    close(x.grad, 6 * np.linspace(-1, 1, 50) ** 2, "x.grad")
    seen = []
    out.eval(callback=seen.append)
    assert seen and not _tape._test_streamed(tape)[0]
    out.eval()
    assert _tape._test_streamed(tape)[0]


def test_anomaly_check_names_node_and_global_sample():
    rg.set_row_limit(STREAM)
    _tape._test_stream_chunk(100)
    rg.set_num_threads(2)
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 1.0)
    d = np.ones(6000)
    d[4321] = -1.0
    x.set(d)
    bad = (x * w).log()
    out = rg.mean(bad * w)
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match="sample 4321 of the batch") as info:
        out.eval()
    assert "log" in str(info.value)
    tape.check_finite = False
    d[4321] = 0.0
    x.set(d)
    out.eval()  # -inf at sample 4321: the value check would name it; the gradient is inf
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match="sample 4321"):
        out.backprop()


def test_pickle_and_set_of_a_streamed_tape():
    tape, x, w, h, out = small_streamed()
    out.eval()
    copy = pickle.loads(pickle.dumps(tape))
    assert copy.batch_size == 50
    x.set(np.zeros(50))
    assert np.allclose(out.eval(), 2.0)
    x.set(1.0)  # the last array leaf back to a number: scalar mode
    assert out.eval() == pytest.approx(np.tanh(2.0) ** 2 + 2.0)


def test_set_row_limit_checks_its_argument():
    with pytest.raises(TypeError):
        rg.set_row_limit("1GB")
    with pytest.raises(ValueError):
        rg.set_row_limit(-1)
    before = rg.set_row_limit(123)
    assert rg.get_row_limit() == 123
    rg.set_row_limit(before)


def test_jacobian_anomaly_names_the_sample_in_the_whole_batch():
    """jacobian() sweeps in chunks too (of 6553 samples here): the sample named is the batch's."""
    rg.set_row_limit(FULL)
    tape = rg.Tape()
    x, w = tape.term("x", 0.0), tape.term("w", 1.0)
    d = np.ones(20_000)
    d[15_000] = 0.0  # sqrt'(0) is infinite
    x.set(d)
    out = x.sqrt() * w
    out.eval()
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match="sample 15000 of the batch"):
        out.jacobian([w, x])


def test_keep_survives_a_new_batch_size_and_scalar_mode():
    rg.set_row_limit(STREAM)
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    h = x.sin()
    out = rg.sum(h * h)
    tape.keep(h)
    for n in (10, 20):
        x.set(0.0)
        x.set(np.linspace(0.0, 1.0, n))
        out.eval()
        np.testing.assert_allclose(h.data, np.sin(np.linspace(0.0, 1.0, n)), rtol=1e-14)  # (libmvec)
