"""One tape shared by threads: one sweep, or one read, at a time.

Every accessor that reads a tape's values or gradients from Python (.data, .grad, eval()'s result,
derive(), drawing, pickling, save()) holds the tape's busy guard, as the sweeps do. While another
thread holds it, the accessor raises the documented RuntimeError ("give each thread its own tape");
reads from the holder's own thread (a sweep's callables and callbacks) go ahead. len(tape),
tape.nbytes and tape.batch_size read sizes that no sweep changes and always answer.

The deterministic tests park one thread inside the guard (in a callable) and check every accessor
from another; the hammer tests run sweeps against readers of every accessor and check that every
sweep gives the single-threaded reference numbers and every read is the error or a consistent
value. `make test-asan` runs them with AddressSanitizer (the old readers freed rows under a sweep).
"""
import io
import math
import pickle
import sys
import threading
import time

import numpy as np
import pytest

import rustograd_cy as rg

BUSY = "middle of a sweep or of a read"


def chain(tape, n):
    x = tape.term("x", 0.5)
    w = tape.term("w", 1.5)
    y = x
    for _ in range(n):
        y = (y * w * 0.5).sin() + x
    return x, w, y


class Gate:
    """A callable (picklable by reference through its __reduce__) that parks the thread calling
    it until released, so that another thread can probe a tape held by the parked one."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.inside = []  # what the parked thread itself read, from inside

    def park(self):
        self.entered.set()
        assert self.release.wait(20)


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.release.set()


def in_thread(fn):
    """Runs fn in a thread; returns (thread, box) where box gets fn's result or exception."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # reported by the test
            box["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    return t, box


def probe_every_accessor(tape, x, y):
    """Every accessor from a thread that does not hold the tape: the reads raise the busy error,
    the sizes answer."""
    reads = {
        "data": lambda: x.data,
        "grad": lambda: x.grad,
        "output data": lambda: y.data,
        "repr": lambda: repr(y),
        "eval": lambda: y.eval(),
        "derive": lambda: y.derive(x),
        "backprop": lambda: y.backprop(),
        "dot": lambda: y.dot(),
        "graph": lambda: y._graph(),
        "pickle": lambda: pickle.dumps(tape),
        "save": lambda: tape.save(io.BytesIO()),
        "set": lambda: x.set(0.25),
        "new node": lambda: x * 2.0,
        "clear": lambda: tape.clear(),
        "clear_grad": lambda: tape.clear_grad(),
        "keep": lambda: tape.keep(y),
    }
    for what, read in reads.items():
        with pytest.raises(RuntimeError, match=BUSY):
            read()
            pytest.fail(f"{what} did not raise")
    assert len(tape) > 2 and tape.nbytes > 0
    tape.batch_size


def test_a_sweep_holds_the_tape_against_every_other_thread(gate):
    tape = rg.Tape()
    x = tape.term("x", 0.5)

    armed = []

    def f(v):
        if armed:
            gate.inside.append((x.data, len(tape)))  # the sweep's own thread may read
            gate.park()
        return v * 3.0

    y = x.apply("parked", f, lambda v: 3.0) + x
    y.eval()  # (so that derive() and backprop() get past their check of the values)
    armed.append(True)
    thread, box = in_thread(y.eval)
    assert gate.entered.wait(20)
    try:
        probe_every_accessor(tape, x, y)
    finally:
        gate.release.set()
        thread.join()
    assert box == {"result": 2.0}
    assert gate.inside == [(0.5, len(tape))]
    assert y.data == 2.0  # and everything works again afterwards
    y.backprop()
    assert x.grad == 4.0


class ParkingFunction:
    """An apply() function whose pickling parks the pickling thread (inside the read guard)."""

    gate = None

    def __call__(self, v):
        return v

    def __reduce__(self):
        ParkingFunction.gate.park()
        return ParkingFunction, ()


def test_a_read_holds_the_tape_against_every_other_thread(gate):
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    y = x.apply("id", ParkingFunction(), np.cos) * 2.0
    y.eval()
    y.backprop()
    ParkingFunction.gate = gate
    thread, box = in_thread(lambda: pickle.dumps(tape))
    assert gate.entered.wait(20)
    try:
        probe_every_accessor(tape, x, y)
    finally:
        gate.release.set()
        thread.join()
    assert "error" not in box
    ParkingFunction.gate = Gate()
    ParkingFunction.gate.release.set()
    copy = pickle.loads(box["result"])
    assert copy._term_at(y.index).data == 1.0


def test_a_callback_reads_its_own_sweep_but_not_a_node_without_a_row():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x * 2.0 + 1.0
    x.set(np.array([1.0, 2.0]))  # rows for the nodes so far
    later = x
    for _ in range(1000):  # far past the rows reserved so far: a sweep of y prepares none for it
        later = later * 1.0
    later = later * 5.0
    seen = []
    y.eval(callback=lambda t: seen.append((x.data, t.grad)))
    np.testing.assert_array_equal(seen[-1][0], [1.0, 2.0])
    with pytest.raises(RuntimeError, match="read it after the sweep"):
        y.eval(callback=lambda t: later.data)
    np.testing.assert_array_equal(y.eval(), [3.0, 5.0])
    assert later.data is None


def test_keep_changes_nothing_while_another_thread_holds_the_tape(gate):
    # keep() replaces the set of nodes a streamed sweep keeps rows of, which a sweep on another
    # thread reads: it is a change, refused (before it changes anything) while the tape is held.
    from rustograd_cy import _tape
    limit = rg.set_row_limit(0)  # every batch streams
    try:
        tape = rg.Tape()
        x, w = tape.term("x", 0.0), tape.term("w", 2.0)
        h = (w * x).tanh()
        out = h * h + w
        x.apply("id", ParkingFunction(), np.cos)  # only for pickle to park in: out's cone has none
        x.set(np.linspace(-1.0, 1.0, 50))
        out.eval()
        assert _tape._test_streamed(tape)[0]
        ParkingFunction.gate = gate
        thread, box = in_thread(lambda: pickle.dumps(tape))  # holds the tape for a read
        assert gate.entered.wait(20)
        try:
            with pytest.raises(RuntimeError, match=BUSY):
                tape.keep(h)
        finally:
            gate.release.set()
            thread.join()
        assert "error" not in box
        out.eval()
        with pytest.raises(ValueError, match="tape.keep"):
            h.data  # the refused keep() did not name h
        tape.keep(h)  # and once the tape is free it does
        out.eval()
        np.testing.assert_allclose(h.data, np.tanh(2.0 * np.linspace(-1.0, 1.0, 50)))
    finally:
        rg.set_row_limit(limit)


@pytest.mark.parametrize("batched", [False, True])
def test_jacobian_holds_the_tape_for_its_own_thread(batched):
    # jacobian()'s sweep takes the tape like every sweep: for the thread that calls it, so its df
    # may read the tape even when another thread held the tape last.
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    if batched:
        x.set(np.array([1.0, 2.0]))
    w = tape.term("w", 3.0)
    y = (w * x).apply("sq", lambda v: v * v, lambda v: 2 * v + 0 * np.sum(w.data))
    t, box = in_thread(lambda: y.eval())  # the last holder is that thread
    t.join()
    assert "error" not in box
    jac = y.jacobian([w])
    want = 2 * 3.0 * np.array([1.0, 2.0]) ** 2 if batched else [2 * 3.0]
    np.testing.assert_allclose(jac.ravel(), want)


# -- the hammer tests --------------------------------------------------------------------------------

def hammer(sweep, readers, min_sweeps, min_busy, seconds=30.0):
    """Runs sweep() in a loop in one thread and each reader in a loop in its own thread until the
    sweeper has done min_sweeps sweeps and the readers have met the busy error min_busy times (or
    `seconds` pass). Each call may raise the busy error (counted); any other exception fails.
    Returns (sweeps done, busy errors met by readers, reads that returned)."""
    stop = threading.Event()
    counts = {"sweeps": 0, "busy": 0, "reads": 0}
    failures = []
    lock = threading.Lock()

    def loop(fn, key):
        try:
            while not stop.is_set():
                try:
                    fn()
                    with lock:
                        counts[key] += 1
                except RuntimeError as exc:
                    if BUSY not in str(exc):
                        raise
                    if key == "reads":
                        with lock:
                            counts["busy"] += 1
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    threads = [threading.Thread(target=loop, args=(sweep, "sweeps"))]
    threads += [threading.Thread(target=loop, args=(r, "reads")) for r in readers]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop.is_set():
            if counts["sweeps"] >= min_sweeps and counts["busy"] >= min_busy:
                break
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(old)
    if failures:
        raise failures[0]
    return counts


def same(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


def test_sweeps_against_readers_of_every_accessor(tmp_path):
    """Scalar mode: one thread evaluates and backprops, others read every accessor."""
    ref_tape = rg.Tape()
    rx, rw, ry = chain(ref_tape, 4000)
    ref = (ry.eval(), ry.derive(rx), ry.derive(rw))
    ry.backprop()
    ref_grads = (rx.grad, rw.grad)

    tape = rg.Tape()
    x, w, y = chain(tape, 4000)
    y.eval()
    y.eval()  # a replay: the cone's level order is made, and nbytes holds still from here on
    y.backprop()
    y.derive(x)
    size, nbytes, drawing = len(tape), tape.nbytes, y.dot(show_values=True)

    def sweep():
        assert y.eval() == ref[0]
        y.backprop()

    def check_copy(copy):
        yc = copy._term_at(y.index)
        assert yc.data == ref[0]
        assert (copy._term_at(x.index).grad, copy._term_at(w.index).grad) == ref_grads

    readers = [
        lambda: (x.data == 0.5 and w.data == 1.5 and y.data == ref[0]) or pytest.fail("data"),
        lambda: (x.grad, w.grad) == ref_grads or pytest.fail(f"grad {x.grad} {w.grad}"),
        lambda: y.derive(w) == ref[2] or pytest.fail("derive"),
        lambda: y.dot(show_values=True) == drawing or pytest.fail("dot"),
        lambda: (len(tape), tape.nbytes) == (size, nbytes) or pytest.fail("sizes"),
        lambda: check_copy(pickle.loads(pickle.dumps(tape))),
        lambda: repr(y).endswith(f"data={ref[0]!r})") or pytest.fail("repr"),
    ]
    counts = hammer(sweep, readers, min_sweeps=30, min_busy=30)
    assert counts["sweeps"] >= 1 and counts["reads"] >= 1, counts
    assert counts["busy"] >= 1, counts  # the readers did meet sweeps
    assert y.eval() == ref[0]  # and the tape is as good as new
    y.backprop()
    assert (x.grad, w.grad) == ref_grads


def batch_model(tape, xs, k=48):
    """A fused sum over k hidden units of a batched input: chains of uniform weights, so the
    plan fuses them, and long enough a batch for 2 threads."""
    x = tape.term("x", 0.0)
    ws = [tape.term(f"w{j}", 0.1 * (j % 7) - 0.3) for j in range(k)]
    bs = [tape.term(f"b{j}", 0.05 * (j % 5)) for j in range(k)]
    y = tape.zero()
    for w, b in zip(ws, bs):
        y = y + w * (x * w + b).tanh()
    x.set(xs)
    return x, ws, y


def test_threaded_batched_sweeps_against_readers_and_new_nodes():
    """Batch mode on 2 threads with fused sums: readers of an input leaf, of the output and the
    weights' gradients, and a thread that creates nodes and reads them during the sweeps."""
    xs = np.linspace(-2.0, 2.0, 8192)
    old = rg.get_num_threads()
    rg.set_num_threads(2)
    # Full rows throughout: the nodes new_node() adds would take this tape's rows past the default
    # row limit, and its switch to streaming (docs/batch.md) drops the values and gradients read here.
    limit = rg.set_row_limit(float("inf"))
    try:
        ref_tape = rg.Tape()
        rx, rws, ry = batch_model(ref_tape, xs)
        ref_value = ry.eval()
        ry.backprop()
        ref_grads = [w.grad for w in rws]

        tape = rg.Tape()
        x, ws, y = batch_model(tape, xs)
        y.eval()
        y.backprop()

        def sweep():
            assert same(y.eval(), ref_value)
            y.backprop()

        def read_grads():
            grads = [w.grad for w in ws]
            assert all(same(g, r) for g, r in zip(grads, ref_grads)), "grad"

        made = []

        def new_node():
            z = y * 2.0 + x  # raises while a sweep runs; else grows the tape past the rows
            made.append(z)
            assert z.data is None  # never evaluated: stale, and no row read or freed under a sweep

        readers = [
            lambda: same(x.data, xs) or pytest.fail("input data"),
            lambda: same(y.data, ref_value) or pytest.fail("output data"),
            read_grads,
            new_node,
        ]
        counts = hammer(sweep, readers, min_sweeps=20, min_busy=20)
        assert counts["sweeps"] >= 1 and counts["busy"] >= 1, counts
        assert same(y.eval(), ref_value)
        for z in made[-3:]:
            assert same(z.eval(), 2.0 * ref_value + xs)
    finally:
        rg.set_num_threads(old)
        rg.set_row_limit(limit)


@pytest.mark.parametrize("batched", [False, True])
def test_sweeps_against_python_branches_recorded_on_the_tape(batched):
    """bool() of a comparison while rg.grad records f on the tape (a Python branch) computes the
    comparison, then reads its value under the read guard: against a thread that sweeps the same
    tape (batch mode: on 2 threads), every recording gives the right derivative or meets the busy
    error, and every sweep the single-threaded numbers."""
    old = rg.get_num_threads()
    rg.set_num_threads(2)
    limit = rg.set_row_limit(float("inf"))  # full rows: the recordings' new nodes add rows
    try:
        tape = rg.Tape()
        x, w, y = chain(tape, 200)
        xs = np.linspace(0.25, 1.0, 512) if batched else 0.5
        x.set(xs)
        ref_value = y.eval()
        y.backprop()
        ref_grad = w.grad
        want = 6.0 * np.asarray(xs)

        def sweep():
            assert same(y.eval(), ref_value)
            y.backprop()
            assert same(w.grad, ref_grad)
            time.sleep(0.0005)  # room for whole recordings between the sweeps, not only busy errors

        done = []

        def record():
            if len(done) >= 400:  # enough: the tape (and its rows) would only grow
                return
            dx = rg.grad(lambda t: 3.0 * t * t if t > 0 else -t)(x)  # bool(t > 0) on this tape
            assert same(dx.eval(), want), "derivative"
            done.append(1)

        counts = hammer(sweep, [record, record], min_sweeps=20, min_busy=20)
        assert counts["sweeps"] >= 1 and counts["busy"] >= 1 and done, counts
        assert same(y.eval(), ref_value)
        assert same(rg.grad(lambda t: 3.0 * t * t if t > 0 else -t)(x).eval(), want)
    finally:
        rg.set_num_threads(old)
        rg.set_row_limit(limit)


# -- recordings (rg.grad and friends) in two threads on one tape -------------------------------------

def _parked_recording(x):
    """Starts a thread that records rg.grad(f)(x), where f tests `t > 0` (a guard of its recording)
    and then parks until released. Returns (thread, release, result); result gets "dx", the
    derivative term, or "error", once released and joined."""
    started, release, result = threading.Event(), threading.Event(), {}

    def f(t):
        positive = t > 0
        started.set()
        assert release.wait(10)
        return 3.0 * t * t if positive else -t

    def run():
        try:
            result["dx"] = rg.grad(f)(x)
        except BaseException as e:  # for the main thread to see
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    return thread, release, result


def test_a_recording_in_another_thread_gives_no_truth_value_here():
    """bool() has a truth value in the recording's own thread only: while one thread records on a
    tape, bool() of a comparison on that tape in another thread is the usual TypeError. (The
    recordings were once a count on the tape: another thread's bool() then worked, and two threads
    recording at once could lose an update of the count and refuse bool() inside a recording.)"""
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    thread, release, result = _parked_recording(x)
    try:
        with pytest.raises(TypeError, match="no truth value outside rg.grad"):
            bool(x > 0)
    finally:
        release.set()
        thread.join()
    assert "error" not in result, result
    assert result["dx"].eval() == 3.0


def test_a_recording_in_another_thread_adds_no_guard_to_this_one():
    """Two threads record on one tape at once, each testing its own condition: each result is
    guarded by its own comparisons only. The other thread's condition (x < 5) flips here and this
    thread's (x > 0) holds, so this derivative stays valid and the other's is refused."""
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    other = {}
    thread, release, result = _parked_recording(x)
    try:
        worker = threading.Thread(
            target=lambda: other.update(dx=rg.grad(lambda u: u * u if u < 5 else u)(x)))
        worker.start()  # records its whole function while the first recording is parked
        worker.join()
    finally:
        release.set()
        thread.join()
    assert "error" not in result, result
    x.set(6.0)
    assert result["dx"].eval() == 36.0
    with pytest.raises(rg.BranchChangedError, match="x < 5"):
        other["dx"].eval()


def test_threads_sharing_one_transform_each_replay_their_own_tape():
    """One rg.grad(f) called from two threads at once, with different arguments: each thread
    records and replays its own tape, so every call gives its own argument's derivative, and none
    meets the busy error of the other thread's sweep (or replays the other's arguments)."""
    def f(t):
        y = t
        for _ in range(50):
            y = rg.sin(y) + t
        return y

    g = rg.grad(f)
    ref = {v: rg.grad(f)(v) for v in (0.3, 0.7)}
    failures = []
    # Both threads alive at once: a thread started after another ended may get its ident, and then
    # replays its tapes (the next test), which would make one recording here (seen once in CI).
    both_started = threading.Barrier(2)

    def calls(v):
        try:
            both_started.wait(timeout=60)
            for _ in range(300):
                got = g(v)
                if got != ref[v]:
                    failures.append((v, got))
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=calls, args=(v,)) for v in (0.3, 0.7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert g.recordings == 2  # one per thread, each replayed after


def test_a_thread_that_reuses_an_ended_threads_ident_replays_its_tape():
    """Thread idents are reused once a thread has ended. A transform's tapes recorded by the ended
    thread are then the new thread's: it replays them with its own arguments (no other thread can be
    sweeping them), and its results are its own arguments' derivatives."""
    def f(t):
        return rg.sin(t) * t

    g = rg.grad(f)
    results, idents = {}, []

    def call(v):
        idents.append(threading.get_ident())
        results[v] = g(v)

    for v in (0.3, 0.7):
        t = threading.Thread(target=call, args=(v,))
        t.start()
        t.join()
    for v in (0.3, 0.7):
        assert results[v] == pytest.approx(math.cos(v) * v + math.sin(v), rel=1e-15)
    assert g.recordings == (1 if idents[0] == idents[1] else 2)
