"""No recursion and no exponential blow-up in any term kind: a 10^6-deep chain is evaluated,
differentiated and dropped, and a 60-level diamond is swept in linear time."""
import math
import os
import subprocess
import sys
import textwrap

import pytest

import rustograd_cy as rg

KINDS = ("tape", "rc", "term")


def leaf_maker(kind):
    if kind == "tape":
        return rg.Tape().term
    return {"rc": rg.RcTerm, "term": rg.Term}[kind]


DEEP_CHAIN = textwrap.dedent("""
    import math, sys
    import rustograd_cy as rg

    kind, depth = sys.argv[1], int(sys.argv[2])
    make = rg.Tape().term if kind == "tape" else {"rc": rg.RcTerm, "term": rg.Term}[kind]
    x = make("x", 0.5)
    y = x
    for i in range(depth):
        y = y.sin() if i % 2 else -y
    # The oracle: the same chain with floats.
    v, d = 0.5, 1.0
    for i in range(depth):
        if i % 2:
            v, d = math.sin(v), d * math.cos(v)
        else:
            v, d = -v, -d
    assert y.eval() == v, (y.eval(), v)
    assert math.isclose(y.derive(x), d, rel_tol=1e-9), (y.derive(x), d)
    y.backprop()
    assert math.isclose(x.grad, d, rel_tol=1e-9), (x.grad, d)
    x.set(0.25)
    y.eval()
    del y  # the whole chain goes here: this must not recurse
    print("ok", kind)
""")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_million_deep_chain_evaluates_differentiates_and_drops(kind):
    # In a child process: a recursion would overflow the C stack and kill it, not the test run.
    done = subprocess.run(
        [sys.executable, "-c", DEEP_CHAIN, kind, str(10**6)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", kind]


def test_deep_chain_drops_in_process():
    # Smaller than the slow test but still far deeper than a recursive free could go on 8 MB.
    for cls in (rg.RcTerm, rg.Term):
        y = cls("x", 1.0)
        for _ in range(200_000):
            y = -y
        assert y.eval() == 1.0
        del y


def diamond(make, levels, calls):
    """y_{k+1} = f(y_k) + g(y_k): each node is used twice; a naive recursion would take 2^levels."""
    def counted(name, fn):
        def wrapped(v):
            calls[name] = calls.get(name, 0) + 1
            return fn(v)
        return wrapped

    x = make("x", 0.3)
    y = x
    for _ in range(levels):
        half = y.apply("half", counted("f", lambda v: 0.5 * v), counted("df", lambda v: 0.5))
        y = half + y.apply("sin", counted("g", math.sin), counted("dg", math.cos))
    return x, y


@pytest.mark.parametrize("kind", KINDS)
def test_sixty_level_diamond_is_linear(kind):
    calls = {}
    x, y = diamond(leaf_maker(kind), 60, calls)
    built = dict(calls)
    assert built in ({}, {"f": 60, "g": 60})  # a Term computes as it builds
    v, d = 0.3, 1.0
    for _ in range(60):
        v, d = 0.5 * v + math.sin(v), (0.5 + math.cos(v)) * d
    assert y.eval() == v
    assert calls.get("f", 0) - built.get("f", 0) == 60 and calls.get("g", 0) - built.get("g", 0) == 60
    assert math.isclose(y.derive(x), d, rel_tol=1e-12)
    assert calls["df"] == 60 and calls["dg"] == 60
    y.backprop()
    assert math.isclose(x.grad, d, rel_tol=1e-12)
    assert calls["df"] == 120 and calls["dg"] == 120


def test_rc_diamond_after_set_recomputes_once_per_node():
    calls = {}
    x, y = diamond(rg.RcTerm, 60, calls)
    y.eval()
    x.set(0.7)
    y.eval()
    assert calls == {"f": 120, "g": 120}
    assert y.eval() == y.data  # cached: no more calls
    assert calls == {"f": 120, "g": 120}
