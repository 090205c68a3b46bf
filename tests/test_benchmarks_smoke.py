"""The benchmark workloads at tiny sizes: values and gradients, never times."""
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import bigdag  # noqa: E402
import run  # noqa: E402
import workloads  # noqa: E402

KINDS = [pytest.param(k, id=k.name) for k in workloads.kinds() if k.available]


def test_bigdag_reference_at_1000():
    assert bigdag.reference_value(bigdag.plan(1000)) == bigdag.VALUE_AT_1000


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keep_all", [False, True], ids=["ring", "keep-all"])
def test_bigdag_value_and_gradients(kind, keep_all):
    g = kind.build(1000, keep_all=keep_all)
    g.prepare()
    assert g.eval() == bigdag.VALUE_AT_1000
    tape = workloads.TapeKind().build(1000)
    for got, want in zip(g.leaf_grads(), tape.leaf_grads()):
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15)
    assert kind.one_shot(1000) == bigdag.VALUE_AT_1000


def test_ring_builder_keeps_only_the_ring():
    steps = bigdag.plan(300)
    assert all(i - 64 <= a < i and i - 64 <= b < i for i, (_, a, b) in enumerate(steps, bigdag.LEAVES))
    assert 0 < bigdag.cone_size(steps) <= 300


@pytest.mark.parametrize("kind", KINDS)
def test_curve_fit_matches_float_oracle(kind):
    for got, want in zip(kind.curve_fit(3), workloads.float_curve_fit(3)):
        assert math.isclose(got, want, rel_tol=1e-12)


def test_run_quick_prints_the_table(capsys):
    runner = run.main(["--quick", "--quiet", "--no-peers"])
    out = capsys.readouterr().out
    assert "replay (eval + backprop)" in out and "curve fit" in out
    tape_cells = [cells["TapeTerm"] for _, _, cells, _ in runner.table.rows]
    assert all(isinstance(c, float) and c > 0 for c in tape_cells)
    for name in ("RcTerm", "Term"):
        if not hasattr(workloads.rg, name):
            assert f"{name}: not available" in out


def test_mlp_sizes_table_runs(capsys):
    """benchmarks/mlp_sizes.py at a tiny size: its rows print, and our step moves the weights the way
    the exact path's step does."""
    import mlp_sizes
    import numpy as np
    import rustograd_cy as rg

    mlp_sizes.main(["--quick", "--widths", "4", "--batches", "20"])
    out = capsys.readouterr().out
    assert f"threads: ours {os.cpu_count() or 1}," in out and any(line.split()[:2] == ["4", "20"] for line in out.splitlines())
    moved = {}
    before = rg.get_blas()
    try:
        for blas in (True, False):
            rg.set_blas(blas)
            tape, inputs, label, params, loss = mlp_sizes.build(4)
            points, labels = mlp_sizes.data(20)
            inputs[0].set(points[:, 0])
            inputs[1].set(points[:, 1])
            label.set(labels)
            loss.eval()
            loss.backprop()
            moved[blas] = np.array([p.grad for p in params])
    finally:
        rg.set_blas(before)
    np.testing.assert_allclose(moved[True], moved[False], rtol=1e-12, atol=1e-15)


def test_mlp_sizes_steps_streamed_and_on_full_rows_agree():
    """Our step of benchmarks/mlp_sizes.py under a zero row limit (streamed) and an infinite one
    (full rows, its --full-rows column) moves the weights alike."""
    import mlp_sizes
    import numpy as np
    import rustograd_cy as rg

    moved, streamed = [], []
    for limit in (0, float("inf")):
        run = mlp_sizes.ours(4, 20, 1, limit)
        run()
        moved.append(np.array([p.data for p in run.params]))
        streamed.append(rg._tape._test_streamed(run.tape)[0])
    assert streamed == [True, False]
    np.testing.assert_allclose(moved[0], moved[1], rtol=1e-12)


def test_stream_memory_prints_growth_and_the_slice_check(capsys):
    """benchmarks/stream_memory.py at 5000 samples (streamed: over a zero row limit)."""
    import stream_memory
    import rustograd_cy as rg

    before = rg.set_row_limit(0)
    try:
        stream_memory.main(["--samples", "5000"])
    finally:
        rg.set_row_limit(before)
    out = capsys.readouterr().out
    assert "streamed: True" in out and "growth" in out
    worst = float(out.split("largest difference ")[1].split()[0])
    assert worst < 1e-12


def test_branches_benchmark_functions_agree_and_print_the_table(capsys):
    import branches
    for x in (0.5, 1.3):
        grads = [workloads.rg.grad(make(7))(x) for make in (branches.plain, branches.guarded,
                                                           branches.two_branches)]
        assert grads[0] == grads[1] == grads[2]
    branches.main(["--steps", "3", "--budget", "0.001"])
    out = capsys.readouterr().out
    assert "per guard" in out and "retrace=True" in out
