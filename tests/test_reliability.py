"""Reliability: the NaN policy and the anomaly check, deep graphs in every tool, no leaks, threads.

(The 10^7-node tape and the GIL-release-by-timestamps test live in tests/test_scale.py.)
"""
import ctypes
import gc
import math
import os
import pickle
import random
import subprocess
import sys
import threading
import weakref

import pytest

import rustograd_cy as rg

KINDS = ("tape", "rc", "term")


def maker(kind):
    return rg.Tape().term if kind == "tape" else {"rc": rg.RcTerm, "term": rg.Term}[kind]


# -- NaN policy -------------------------------------------------------------------------------------

# (expression of x, x) whose value is not finite while the output does not depend on it: a zero
# upstream gradient (or tangent) meets an infinite or NaN partial and must contribute 0, not NaN.
ZERO_TIMES_INF = [
    (lambda x: (x * 0.0).sqrt() + x, 1.0),           # an infinite gradient meets the zero partial of * 0
    (lambda x: x.sqrt() * 0.0 + x, 0.0),            # sqrt'(0) = inf
    (lambda x: x.log() * 0.0 + x, 0.0),             # log'(0) = inf, value -inf
    (lambda x: (x * 1e308).exp() * 0.0 + x, 10.0),   # exp overflows: value and partial inf
    (lambda x: x.sqrt().maximum(x * 0.0 - 1.0) * 0.0 + x, -1.0),  # NaN value through maximum
    (lambda x: (1.0 / x) * 0.0 + x, 0.0),           # 1/0
    (lambda x: x.pow(0.5) * 0.0 + x, 0.0),          # powc'(0) = inf
    (lambda x: x.apply("inv", lambda v: 1.0 / v if v else math.inf,
                       lambda v: -1.0 / (v * v) if v else -math.inf) * 0.0 + x, 0.0),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(ZERO_TIMES_INF)))
def test_a_zero_upstream_gradient_never_makes_nan(kind, case):
    build, at = ZERO_TIMES_INF[case]
    x = maker(kind)("x", at)
    y = build(x)
    value = y.eval()
    assert math.isnan(value) or value == at or math.isinf(value)  # IEEE: the dead branch may be NaN
    y.backprop()
    assert x.grad == 1.0
    assert y.derive(x) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_values_follow_ieee(kind):
    make = maker(kind)
    x, z, n = make("x", -1.0), make("z", 0.0), make("n", math.nan)
    assert math.isnan(x.log().eval()) and math.isnan(x.sqrt().eval())
    assert z.log().eval() == -math.inf
    assert (1.0 / z).eval() == math.inf
    assert math.isnan((z / z).eval())
    assert math.isnan(n.maximum(x).eval()) and math.isnan(x.minimum(n).eval())
    assert math.isnan(n.relu().eval())
    assert (x * 1e308 * 10.0).eval() == -math.inf


@pytest.mark.parametrize("kind", KINDS)
def test_nan_gradients_where_the_partial_is_nan_and_the_upstream_is_not_zero(kind):
    x = maker(kind)("x", -1.0)
    y = x.sqrt()
    y.eval()
    y.backprop()
    assert math.isnan(x.grad)  # IEEE, no masking: the check below finds such places


# -- the anomaly check ------------------------------------------------------------------------------

def test_check_finite_names_the_first_node_of_a_tape():
    tape = rg.Tape()
    x = tape.term("x", -1.0)
    s = x * 2.0
    bad = s.log()         # NaN: the first non-finite value
    y = (bad + x).exp()   # NaN after it too
    assert math.isnan(y.eval())  # off by default
    tape.check_finite = True
    with pytest.raises(FloatingPointError) as info:
        y.eval()
    e = info.value
    assert isinstance(e, rg.NonFiniteError) and isinstance(e, rg.RustogradError)
    assert (e.index, e.label, e.op, e.quantity) == (bad.index, "log(x * 2)", "log", "value")
    assert math.isnan(e.number)
    assert f"node {bad.index} 'log(x * 2)' (op log)" in str(e) and "check_finite = False" in str(e)
    assert math.isnan(y.data)  # the sweep finished: the tape holds what it computed
    with pytest.raises(rg.NonFiniteError) as info:
        y.derive(x)
    assert info.value.index == bad.index
    x.set(1.0)  # usable: with finite numbers no error
    assert y.eval() == math.exp(math.log(2.0) + 1.0)
    y.backprop()
    assert x.grad == pytest.approx(math.exp(math.log(2.0) + 1.0) * 2.0)
    tape.check_finite = False
    with pytest.raises(TypeError, match="True or False"):
        tape.check_finite = 1


def test_check_finite_finds_the_first_gradient_in_sweep_order():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    r = x.sqrt()            # value 0 (finite), partial inf
    y = (r + 1.0) * 3.0
    tape.check_finite = True
    assert y.eval() == 3.0
    with pytest.raises(rg.NonFiniteError) as info:
        y.backprop()
    e = info.value
    assert (e.index, e.quantity, e.op, e.number) == (x.index, "gradient", "leaf", math.inf)
    assert x.grad == math.inf and r.grad == 3.0  # gradients stay for a look
    tangent = tape.term("t", 1.0)
    w = tangent * 2.0
    w.eval()
    w.backprop()  # another output of the same tape: fine


def test_check_finite_is_per_tape_and_detect_anomaly_is_for_all():
    t1, t2 = rg.Tape(), rg.Tape()
    y1 = t1.term("a", -1.0).log()
    y2 = t2.term("b", -1.0).log()
    t1.check_finite = True
    with pytest.raises(rg.NonFiniteError):
        y1.eval()
    assert math.isnan(y2.eval())
    assert not rg.is_anomaly_enabled()
    with rg.detect_anomaly():
        with rg.detect_anomaly():
            assert rg.is_anomaly_enabled()
        assert rg.is_anomaly_enabled()  # blocks nest
        with pytest.raises(rg.NonFiniteError):
            y2.eval()
    assert not rg.is_anomaly_enabled()
    assert math.isnan(y2.eval())


@pytest.mark.parametrize("kind", ["rc", "term"])
def test_detect_anomaly_on_the_pointer_kinds(kind):
    make = maker(kind)
    x = make("x", 0.0)
    r = x.sqrt()
    y = (r + 1.0) * 3.0
    with rg.detect_anomaly():
        assert y.eval() == 3.0
        with pytest.raises(rg.NonFiniteError) as info:
            y.backprop()
        assert (info.value.quantity, info.value.op, info.value.label) == ("gradient", "leaf", "x")
        assert info.value.index == x._key()
        with pytest.raises(rg.NonFiniteError) as info:
            y.derive(x)
        assert (info.value.quantity, info.value.label) == ("tangent", "sqrt(x)")
        bad = (x - 1.0).log()
        with pytest.raises(rg.NonFiniteError) as info:
            (bad * 2.0).eval()
        assert (info.value.quantity, info.value.op, info.value.index) == ("value", "log", bad._key())
        x.set(4.0)
        assert y.eval() == 9.0
        y.backprop()
        assert x.grad == 0.75


def test_detect_anomaly_names_an_apply_node():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x.apply("blowup", lambda v: math.inf, lambda v: 0.0) + x
    with rg.detect_anomaly():
        with pytest.raises(rg.NonFiniteError, match="op apply 'blowup'"):
            y.eval()


def test_detect_anomaly_is_closed_by_an_exception():
    with pytest.raises(KeyError):
        with rg.detect_anomaly():
            raise KeyError("x")
    assert not rg.is_anomaly_enabled()


# -- depth: drawing, labels and gen_graph on 10^5-deep graphs ---------------------------------------

DEPTH = 100_000


@pytest.mark.parametrize("kind", KINDS)
def test_deep_graph_draws_and_labels(kind):
    x = maker(kind)("x", 0.5)
    y = x
    for k in range(DEPTH):
        y = (y * 0.5).sin() if k % 2 else y + x
    y.eval()
    assert y.name == "sin((sin(…) + x) * 0.5)"
    text = y.dot()
    assert text.count("\n") > 3 * DEPTH // 2
    assert text.startswith("digraph") and text.rstrip().endswith("}")
    records = y._graph()
    assert records[0][1] == "x" and len(records) > DEPTH


def test_deep_gen_graph():
    tape = rg.Tape()
    x = tape.term("x", 0.25)
    y = x
    for _ in range(DEPTH):
        y = y * 0.999 + x  # dy/dx = sum of 0.999^k: one chain of affine steps
    y.eval()
    d = y.gen_graph(x)
    assert d.eval() == pytest.approx(y.derive(x), rel=1e-12)
    dd = d.gen_graph(x)
    assert dd is None or dd.eval() == 0.0
    assert len(d.name) < 200  # labels stop at a fixed depth


# -- no leaks ---------------------------------------------------------------------------------------

def rss_bytes():
    """Resident memory, after handing free heap back to the system (glibc), so that neither freed
    memory hides a leak nor a fragmented heap looks like one."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_small_graphs(kind, n):
    make = maker(kind) if kind != "tape" else None
    for i in range(n):
        if kind == "tape":
            tape = rg.Tape()
            a, b = tape.term("a", i * 1e-3), tape.term("b", 2.0)
        else:
            a, b = make("a", i * 1e-3), make("b", 2.0)
        y = (a * b + a.sin()).apply("sq", lambda v: v * v, lambda v: 2 * v)
        y.eval()
        y.backprop()
        assert math.isclose(y.derive(a), a.grad, rel_tol=1e-12)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.parametrize("kind", KINDS)
def test_building_and_dropping_many_graphs_keeps_memory_flat(kind):
    assert in_a_fresh_process("flat", kind) < 4 * 2 ** 20, "RSS grew by 4 MB or more over 10^5 graphs"


def measure_flat(kind):
    """RSS growth over 10^5 small graphs built and dropped, after a warm-up."""
    run_small_graphs(kind, 20_000)  # warm up the allocator and the free lists
    gc.collect()
    before = rss_bytes()
    run_small_graphs(kind, 100_000)
    gc.collect()
    return rss_bytes() - before


def measure_kept():
    """RSS growth while 20,000 small tapes are kept (about 2 kB each)."""
    before = rss_bytes()
    kept = [rg.Tape() for _ in range(20_000)]
    for tape in kept:
        tape.term("a", 1.0)
    return rss_bytes() - before


def in_a_fresh_process(what, kind=""):
    """Run a measurement in a new interpreter: in this one, the holes that earlier tests left in the
    heap take in new allocations without growing RSS (on Python 3.9 after the whole suite, 36 of the
    40 MB of measure_kept), which would make a leak invisible."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_reliability as t; "
            "print(t.measure_flat(sys.argv[3]) if sys.argv[2] == 'flat' else t.measure_kept())")
    done = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__), what, kind],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_the_leak_check_can_fail():
    """The measurement sees a leak of the size it guards against (so the test above is not vacuous)."""
    assert in_a_fresh_process("kept") > 4 * 2 ** 20


def test_a_tape_in_a_reference_cycle_is_collected():
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    # The callables refer back to the tape and to a term: tape -> funcs -> closure -> tape.
    y = x.apply("f", lambda v: v * len(tape), lambda v: float(len(tape)) + 0 * x.index)
    y.eval()
    ref = weakref.ref(tape)
    del tape, x, y
    gc.collect()
    assert ref() is None


def test_terms_of_a_tape_without_callables_are_not_tracked_by_the_gc():
    # Such a term cannot close a reference cycle, so the cyclic GC need not rescan it (a model
    # keeping 10^6 terms spent 3/4 of its build in full collections). Once the tape holds a
    # callable, which may refer back to any term, every term of it is tracked, old ones included.
    tape = rg.Tape()
    terms = [tape.term(f"x{i}", float(i)) for i in range(50)]
    terms += [t * 2.0 for t in terms]
    assert not any(gc.is_tracked(t) for t in terms)
    assert gc.is_tracked(tape)
    del terms[3], terms[10:40:3], terms[-1]  # leave gaps in the tape's list of untracked terms
    y = terms[0].apply("f", lambda v: v, lambda v: 1.0)
    assert gc.is_tracked(y) and all(gc.is_tracked(t) for t in terms)
    assert gc.is_tracked(tape.term("late", 1.0))
    assert (y + sum(terms[1:], 0.0)).eval() == sum(t.eval() for t in terms)


def test_untracked_terms_come_and_go_in_any_order():
    # The tape's list of untracked terms stays whole whichever terms die first.
    rng = random.Random(5)
    for _ in range(20):
        tape = rg.Tape()
        live = [tape.term(f"x{i}", float(i)) for i in range(30)]
        for _ in range(200):
            if live and rng.random() < 0.5:
                del live[rng.randrange(len(live))]
            else:
                live.append(tape.term("y", 1.0) * 3.0)
        live.append(tape.term("z", 2.0).apply("g", lambda v: 2 * v, lambda v: 2.0))
        assert all(gc.is_tracked(t) for t in live)
        del live
        gc.collect()


def test_a_term_made_before_the_callable_that_captures_it_is_collected():
    # The cycle tape -> funcs -> closure -> x -> tape, with x made while x was untracked.
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    x.apply("f", lambda v: v * x.data, lambda v: x.data).eval()
    ref = weakref.ref(tape)
    del tape, x
    gc.collect()
    assert ref() is None


def test_a_loaded_tape_with_callables_tracks_its_terms():
    tape = rg.Tape()
    y = tape.term("x", 2.0).apply("sin", math.sin, math.cos)
    tape2, y2 = pickle.loads(pickle.dumps((tape, y)))
    assert gc.is_tracked(y2) and gc.is_tracked(tape2.term("w", 1.0))


def test_a_pointer_graph_in_a_reference_cycle_is_collected():
    class Marker:
        pass

    for kind in ("rc", "term"):
        marker = Marker()
        x = maker(kind)("x", 2.0)
        holder = {}
        y = x.apply("f", lambda v: v + 0 * len(holder) + 0 * id(marker), lambda v: 1.0)
        holder["y"] = y  # y -> funcs -> closure -> holder -> y
        y.eval()
        ref = weakref.ref(marker)
        del marker, x, y, holder
        gc.collect()
        assert ref() is None, kind


# -- threads ----------------------------------------------------------------------------------------

def long_chain(tape, n):
    x = tape.term("x", 0.5)
    y = x
    for _ in range(n // 2):
        y = (y * 0.999999).sin()
    return x, y


@pytest.mark.slow
def test_threads_replay_different_tapes_in_parallel():
    """Thread A replays a long tape; thread B replays a short one and counts the times it saw A's
    tape held by the same sweep (busy before and after, A's sweep count unchanged) around a whole
    eval + backprop of its own. A holds its tape only inside a sweep, and sets it busy and starts
    the C loop without running any Python in between (no point where the GIL could change hands):
    had A's sweep kept the GIL, B could never run while A's tape is busy. So every count is a
    replay of B that ran during one sweep of A, with both threads working at once."""
    tape_a, tape_b = rg.Tape(), rg.Tape()
    xa, ya = long_chain(tape_a, 2_000_000)
    xb, yb = long_chain(tape_b, 2_000)
    expected_a = ya.eval()
    yb.eval()
    sweeps_a = [0]
    done = threading.Event()
    overlaps = [0]
    expected_b = yb.eval()

    def replay_a():
        for _ in range(40):
            ya.eval()
            sweeps_a[0] += 1
            ya.backprop()
            sweeps_a[0] += 1
            if overlaps[0] >= 3:
                break
        done.set()

    def replay_b():
        while not done.is_set():
            before, count = tape_a._test_is_busy(), sweeps_a[0]
            assert yb.eval() == expected_b
            yb.backprop()
            if before and tape_a._test_is_busy() and sweeps_a[0] == count:
                overlaps[0] += 1

    threads = [threading.Thread(target=replay_a), threading.Thread(target=replay_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] >= 1
    assert ya.eval() == expected_a


def build_loss(tape):
    x = tape.term("x", 1.0)
    w = tape.term("w", 2.0)
    y = x
    for _ in range(20_000):
        y = (y * w * 0.5).sin() + x
    return x, w, y


@pytest.mark.slow
def test_one_tape_hammered_by_threads_never_corrupts():
    """Four threads share one tape: each sets x, evaluates, differentiates, backprops and builds.
    Every call either succeeds with a number the reference gives for one of the values x takes,
    or raises the documented errors (RuntimeError: the tape is busy in another thread;
    ValueNotDefinedError: another thread's set() made the values stale). Afterwards the tape
    gives the reference numbers."""
    xs = [0.25 * k for k in range(1, 5)]
    ref_tape = rg.Tape()
    rx, rw, ry = build_loss(ref_tape)
    reference = {}
    for v in xs:
        rx.set(v)
        reference[v] = (ry.eval(), ry.derive(rx), ry.derive(rw))
    values = {r[0] for r in reference.values()}
    dx = {r[1] for r in reference.values()}

    tape = rg.Tape()
    x, w, y = build_loss(tape)
    counts = {"ok": 0, "busy": 0, "stale": 0}
    failures = []
    lock = threading.Lock()

    def worker(seed):
        local = {"ok": 0, "busy": 0, "stale": 0}
        try:
            for step in range(150):
                action = (seed + step) % 5
                try:
                    if action == 0:
                        x.set(xs[(seed + step) % 4])
                        local["ok"] += 1
                    elif action == 1:
                        assert y.eval() in values
                        local["ok"] += 1
                    elif action == 2:
                        assert y.derive(x) in dx
                        local["ok"] += 1
                    elif action == 3:
                        y.backprop()
                        local["ok"] += 1
                    else:
                        z = y * 2.0 + x  # grows the tape (reallocations) while others sweep
                        assert z.eval() in {2.0 * r[0] + v for v, r in reference.items()}
                        local["ok"] += 1
                except RuntimeError as e:
                    if isinstance(e, rg.ValueNotDefinedError):
                        local["stale"] += 1
                    else:
                        assert "middle of a sweep" in str(e)
                        local["busy"] += 1
        except BaseException as e:  # an assertion: report it from the main thread
            failures.append(e)
        with lock:
            for k in counts:
                counts[k] += local[k]

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch often: more interleavings
    try:
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not failures, failures[0]
    assert counts["ok"] > 0 and sum(counts.values()) == 600
    for v in xs:  # consistent afterwards
        x.set(v)
        assert y.eval() == reference[v][0]
        assert (y.derive(x), y.derive(w)) == reference[v][1:]
        y.backprop()
        assert x.grad == pytest.approx(reference[v][1], rel=1e-12, abs=1e-300)
