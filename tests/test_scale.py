"""Scale: a 10^7-node chain, a 10^6-deep graph (no recursion anywhere), the GIL released during
long sweeps, and the bigdag workload of the benchmarks."""
import math
import os
import sys
import threading
import time

import pytest

import oracle
import rustograd_cy as rg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
import bigdag  # noqa: E402


@pytest.mark.slow
def test_chain_of_ten_million_nodes():
    # Each round adds x, subtracts z and negates twice: after k rounds y = x + k (x - z), which
    # is exact in binary floating point for these values, and so are dy/dx = k + 1, dy/dz = -k.
    rounds = 2_500_000
    tape = rg.Tape()
    x, z = tape.term("x", 0.75), tape.term("z", 0.25)
    y = x
    for _ in range(rounds):
        y = -(-(y + x - z))
    assert len(tape) >= 10_000_000
    assert y.eval() == 0.75 + rounds * 0.5
    y.backprop()
    assert (x.grad, z.grad) == (rounds + 1.0, -float(rounds))
    assert y.derive(x) == rounds + 1.0
    assert y.derive(z) == -float(rounds)
    x.set(1.75)  # and a replay
    assert y.eval() == 1.75 + rounds * 1.5
    assert y.name == "--(… + x - z)"  # labels stop at a fixed depth


DEEP_CYCLE = ("sin", "neg", "tanh", "abs")


@pytest.mark.slow
def test_graph_a_million_unary_ops_deep():
    depth = 1_000_000
    tape = rg.Tape()
    x = tape.term("x", 1.3)
    y = x
    for k in range(depth):
        op = DEEP_CYCLE[k % 4]
        y = -y if op == "neg" else getattr(y, op)()

    # The same chain with plain floats: the values are bitwise the tape's (same libm), and the
    # slope is the product of the oracle's partials, taken in backprop's order (output first).
    values = [1.3]
    for k in range(depth):
        values.append(oracle.value(DEEP_CYCLE[k % 4], values[-1]))
    slope = 1.0
    for k in reversed(range(depth)):
        slope *= oracle.partials(DEEP_CYCLE[k % 4], values[k])[0]

    assert y.eval() == values[-1]
    y.backprop()
    # A million roundings of differently written partials: about 1e-16 each, mostly cancelling.
    assert math.isclose(x.grad, slope, rel_tol=1e-9)
    assert math.isclose(y.derive(x), x.grad, rel_tol=1e-12)
    assert y.name == "abs(tanh(-sin(…)))"
    records = y._graph()
    assert len(records) == depth + 1 and records[0][1] == "x"


def _sweep_lets_another_thread_run(sweep, attempts=5):
    """Whether a Python thread ran while `sweep()` was in progress, in any of a few attempts.

    A counter thread stamps the time of each of its loop turns. Python code runs only with the
    GIL, so a stamp taken in the middle of the sweep proves that the sweep did not hold it. Only
    the middle half of the sweep's interval counts: around its ends the main thread runs Python
    (the call, the return), and a busy machine can be slow to hand the GIL back, which lets the
    counter run for a few milliseconds there even when the sweep itself holds the GIL. The switch
    interval is made short so that those stretches stay short.
    """
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        for _ in range(attempts):
            stamps, stop = [], threading.Event()

            def count():
                while not stop.is_set():
                    stamps.append(time.perf_counter())

            thread = threading.Thread(target=count)
            thread.start()
            while not stamps:  # the counter is running
                time.sleep(1e-4)
            start = time.perf_counter()
            sweep()
            end = time.perf_counter()
            stop.set()
            thread.join()
            quarter = (end - start) / 4
            if quarter > 2e-3 and any(start + quarter < t < end - quarter for t in stamps):
                return True
        return False
    finally:
        sys.setswitchinterval(old_interval)


@pytest.mark.slow
def test_long_sweeps_of_builtin_ops_release_the_gil():
    tape = rg.Tape()
    x = tape.term("x", 0.5)
    y = x
    for _ in range(2_500_000):  # long enough (tens of ms) that the ends do not matter
        y = (y * 0.999999).sin()
    assert len(tape) > 5_000_000
    y.eval()  # the cone is built once, then cached: the sweeps below are the C loops alone
    assert _sweep_lets_another_thread_run(y.eval)
    assert _sweep_lets_another_thread_run(y.backprop)
    assert _sweep_lets_another_thread_run(lambda: y.derive(x))


@pytest.mark.slow
def test_the_gil_test_can_fail():
    """The measurement above is not vacuous: a long C call that holds the GIL is not mistaken
    for one that releases it (sum() over a range is one C loop that never releases it)."""
    assert not _sweep_lets_another_thread_run(lambda: sum(range(20_000_000)), attempts=2)


# -- bigdag ---------------------------------------------------------------------------------------

def _bigdag(steps):
    tape = rg.Tape()
    leaves = [tape.term(f"x{j}", v) for j, v in enumerate(bigdag.leaf_values())]
    table = bigdag.term_table(rg.TapeTerm)
    nodes = bigdag.build(bigdag.compile_plan(steps, table), leaves)
    return tape, leaves, nodes


def _bigdag_oracle(n):
    leaves = [oracle.Leaf(f"x{j}", v) for j, v in enumerate(bigdag.leaf_values())]
    nodes = list(leaves)
    for op, a, b in bigdag.plan(n):
        nodes.append(oracle.Node(op, nodes[a], nodes[b] if op in bigdag.BINARY else None))
    return leaves, nodes


def test_bigdag_value_at_1000():
    tape, leaves, nodes = _bigdag(bigdag.plan(1000))
    assert len(tape) == 2 + 1000
    assert nodes[-1].eval() == 0.5537188726646275 == bigdag.VALUE_AT_1000
    assert bigdag.reference_value(bigdag.plan(1000)) == bigdag.VALUE_AT_1000


def test_bigdag_gradients_match_derive_and_the_oracle():
    tape, leaves, nodes = _bigdag(bigdag.plan(1000))
    output = nodes[-1]
    output.eval()
    output.backprop()
    oracle_leaves, oracle_nodes = _bigdag_oracle(1000)
    assert oracle_nodes[-1].value == output.data
    grads = oracle.backprop(oracle_nodes[-1])
    bounds = oracle.backprop(oracle_nodes[-1], absolute=True)
    for leaf, twin in zip(leaves, oracle_leaves):
        expected = grads[twin] if twin in grads else 0.0
        bound = 1e-12 * (bounds[twin] if twin in bounds else 0.0)
        assert abs(leaf.grad - output.derive(leaf)) <= bound, leaf.name
        assert abs(leaf.grad - expected) <= bound, leaf.name
    assert any(leaf.grad != 0.0 for leaf in leaves)


@pytest.mark.slow
def test_bigdag_at_a_million_sweeps_about_half():
    steps = bigdag.plan(1_000_000)
    tape, leaves, nodes = _bigdag(steps)
    output = nodes[-1]
    value = output.eval()
    assert value == bigdag.reference_value(steps)
    swept = sum(1 for node in nodes if node.data is not None) - len(leaves)
    assert 0.2 < swept / len(nodes) < 0.8  # the cone, not the whole tape
    output.backprop()
    # The leaves' gradients underflow to 0 through a million sines and products, so check the
    # reverse sweep's reach instead: gradients outside the cone are 0, inside they are not all 0.
    outside = [node.grad for node in nodes if node.data is None]
    assert outside and all(g == 0.0 for g in outside)
    inside = [node.grad for node in nodes[-1000:] if node.data is not None]
    assert sum(g != 0.0 for g in inside) > len(inside) // 2
    assert output.grad == 1.0
