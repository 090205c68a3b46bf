"""bigdag, one phase per test, for every term kind and installed peer (BENCH_N nodes, default 10^4)."""
import math
import os

import pytest

import bigdag
import workloads

N = int(os.environ.get("BENCH_N", 10**4))
KINDS = workloads.kinds()
_graphs = {}


def kinds_with(phase):
    """Kinds that have `phase`; a kind whose library is missing is skipped with the reason."""
    return [pytest.param(k, id=k.name) for k in KINDS if phase in k.has or not k.available]


def usable(kind):
    if not kind.available:
        pytest.skip(kind.missing)
    if kind.max_n is not None and N > kind.max_n:
        pytest.skip(f"{kind.name} runs only at N <= {kind.max_n}: {kind.note}")
    return kind


@pytest.fixture(scope="module")
def reference():
    return bigdag.reference_value(bigdag.plan(N))


def graph(kind):
    """One built (and prepared) graph per kind, shared by the phase benchmarks."""
    if kind.name not in _graphs:
        g = kind.build(N)
        g.prepare()
        _graphs[kind.name] = g
    return _graphs[kind.name]


@pytest.mark.parametrize("kind", kinds_with("build"))
def test_build(benchmark, kind, reference):
    usable(kind).plan(N)
    g = benchmark(kind.build, N)
    g.prepare()
    assert math.isclose(g.eval(), reference, rel_tol=1e-12)


@pytest.mark.parametrize("kind", kinds_with("eval"))
def test_eval(benchmark, kind, reference):
    g = graph(usable(kind))
    assert math.isclose(benchmark(g.eval), reference, rel_tol=1e-12)


@pytest.mark.parametrize("kind", kinds_with("backprop"))
def test_backprop(benchmark, kind):
    g = graph(usable(kind))
    g.eval()
    benchmark(g.backprop)


@pytest.mark.parametrize("kind", kinds_with("replay"))
def test_replay(benchmark, kind):
    g = graph(usable(kind))
    benchmark(g.replay)


@pytest.mark.parametrize("kind", kinds_with("one-shot"))
def test_one_shot(benchmark, kind, reference):
    usable(kind).plan(N)
    assert math.isclose(benchmark(kind.one_shot, N), reference, rel_tol=1e-12)
