"""Dense layers as BLAS matrix products (src/rg_plan.h's dense groups) against the exact path.

rg.set_blas(False) restores the exact path (each chain summed in a per-sample loop's order); with
matrix products the sums run in another order, so values and gradients agree to rounding: these
tests hold them to 1e-12 of the magnitudes involved.
"""
import numpy as np
import pytest

import rustograd_cy as rg
from rustograd_cy import _tape

ACTS = ("tanh", "relu", "sigmoid", "sin", None)


@pytest.fixture(autouse=True)
def restore():
    threads, blas = rg.get_num_threads(), rg.get_blas()
    yield
    rg.set_num_threads(threads)
    rg.set_blas(blas)


def layered(tape, sizes, acts, rng, inputs=None):
    """A stack of dense layers (rg.nn.Linear) with per-layer activations; returns (inputs, params,
    outputs)."""
    xs = inputs if inputs is not None else [tape.term(f"x{j}", 0.0) for j in range(sizes[0])]
    params, h = [], xs
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layer = rg.nn.Linear(tape, n_in, n_out, rng, name=f"l{k}")
        for b in layer.bias:
            b.set(float(rng.normal(0, 0.3)))
        params += layer.parameters()
        h = layer(h)
        act = acts[k % len(acts)]
        if act is not None and k < len(sizes) - 2:
            h = [getattr(v, act)() for v in h]
    return xs, params, h


def sweep(build, data, blas, threads=1, reduce=True):
    """Values and gradients of one eval() + backprop() of build()'s graph, with or without BLAS."""
    rg.set_blas(blas)
    rg.set_num_threads(threads)
    tape, xs, params, outs = build()
    if reduce:
        loss = rg.mean(sum(o * o for o in outs[1:]) + outs[0].tanh())
    else:
        loss = outs[0]
        for o in outs[1:]:
            loss = loss + o * o
    tape.keep(*outs)  # read below: kept when the batch streams (over rg.get_row_limit())
    for x, d in zip(xs, data):
        x.set(d)
    value = loss.eval()
    loss.backprop()
    plan = _tape._test_plan(loss)
    return dict(value=np.atleast_1d(value), outs=[o.data for o in outs],
                params=np.array([p.grad for p in params]), xs=[x.grad for x in xs], plan=plan)


def assert_close(a, b, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.max(np.abs(b)), 1e-300)
    assert np.max(np.abs(a - b)) <= 1e-12 * scale, (what, np.max(np.abs(a - b)) / scale)


def assert_agree(fast, exact):
    assert_close(fast["value"], exact["value"], "value")
    for k, (a, b) in enumerate(zip(fast["outs"], exact["outs"])):
        assert_close(a, b, f"output {k}")
    assert_close(fast["params"], exact["params"], "parameter gradients")
    for k, (a, b) in enumerate(zip(fast["xs"], exact["xs"])):
        assert_close(a, b, f"input {k} gradient")


def mlp_builder(sizes, acts, seed):
    def build():
        tape = rg.Tape()
        xs, params, outs = layered(tape, sizes, acts, np.random.default_rng(seed))
        return tape, xs, params, outs
    return build


@pytest.mark.parametrize("sizes, acts", [
    ([2, 16, 16, 1], ("tanh",)),
    ([3, 8, 5, 4, 2], ("relu", "sigmoid", "tanh")),
    ([4, 32, 3], ("sin",)),
    ([5, 6, 7, 6, 5], (None, "tanh")),
])
@pytest.mark.parametrize("size", [50, 3001])
def test_mlps_with_mixed_activations_agree_with_the_exact_path(sizes, acts, size):
    rng = np.random.default_rng(size + len(sizes))
    data = [rng.normal(size=size) for _ in range(sizes[0])]
    build = mlp_builder(sizes, acts, seed=len(sizes))
    exact = sweep(build, data, blas=False)
    fast = sweep(build, data, blas=True)
    assert exact["plan"]["groups"] == 0
    assert fast["plan"]["groups"] == sum(1 for n_out in sizes[1:] if n_out >= 2)
    assert_agree(fast, exact)


@pytest.mark.parametrize("seed", range(12))
def test_random_layered_graphs_agree_with_the_exact_path(seed):
    """Random widths, activations and extras: a skip connection, an input reused by a later layer
    (which then is not lowered), a uniform scale on a layer's output."""
    rng = np.random.default_rng(100 + seed)
    depth = int(rng.integers(1, 4))
    sizes = [int(rng.integers(1, 6))] + [int(rng.integers(1, 9)) for _ in range(depth + 1)]
    acts = tuple(rng.choice(ACTS, size=3))
    size = int(rng.choice([1, 7, 64, 1500]))
    data = [rng.normal(size=size) for _ in range(sizes[0])]
    extra = int(rng.integers(0, 3))

    def build():
        tape = rg.Tape()
        r = np.random.default_rng(seed)
        xs, params, outs = layered(tape, sizes, acts, r)
        if extra == 1:  # a skip connection reads the inputs again: their layer is not lowered
            outs = [o + xs[0] * xs[-1] for o in outs]
        elif extra == 2:
            s = tape.term("s", 0.5)
            params.append(s)
            outs = [o * s for o in outs]
        return tape, xs, params, outs

    fast = sweep(build, data, blas=True, reduce=bool(seed % 2))
    exact = sweep(build, data, blas=False, reduce=bool(seed % 2))
    assert_agree(fast, exact)
    assert exact["plan"]["groups"] == 0


def plan_of(build, size=10):
    rg.set_blas(True)
    tape, xs, params, outs = build()
    out = outs[0] * outs[0]  # (products: a sum would extend the last chain, which then is no group's)
    for o in outs[1:]:
        out = out + o * o
    for x in xs:
        x.set(np.linspace(-1, 1, size))
    out.eval()
    out.backprop()
    return _tape._test_plan(out)


def test_a_weight_that_varies_is_not_lowered():
    def build():
        tape = rg.Tape()
        x, z = tape.term("x", 0.0), tape.term("z", 0.0)
        w = [tape.term(f"w{k}", 0.1 * k) for k in range(6)]
        outs = [w[4] + w[0] * x + w[1] * z, w[5] + (w[2] * z) * x + w[3] * z]  # (w2 * z) varies
        return tape, [x, z], w, outs
    assert plan_of(build)["groups"] == 0


def test_rows_read_by_another_node_are_not_lowered():
    def build():
        tape = rg.Tape()
        rng = np.random.default_rng(0)
        xs, params, outs = layered(tape, [3, 4, 2], ("tanh",), rng)
        return tape, xs, params, outs + [xs[1].sin()]  # x1 is read outside the first layer
    plan = plan_of(build)
    assert plan["groups"] == 1  # only the second layer
    assert plan["grouped"] == 2


def test_chains_over_other_rows_or_another_order_are_separate():
    def build():
        tape = rg.Tape()
        a = [tape.term(f"a{k}", 0.0) for k in range(2)]
        c = [tape.term(f"c{k}", 0.0) for k in range(2)]
        w = [tape.term(f"w{k}", 0.3 + k) for k in range(12)]
        b = tape.term("b", 0.1)
        outs = [b + w[0] * a[0] + w[1] * a[1], b + w[2] * a[0] + w[3] * a[1],  # a group over a
                b + w[4] * c[0] + w[5] * c[1], b + w[6] * c[0] + w[7] * c[1],  # c, but see below
                b + w[8] * c[1] + w[9] * c[0]]  # c in another order
        return tape, a + c, w, outs
    plan = plan_of(build)
    # The c rows are read by three chains, two of them grouped: no group over c at all.
    assert plan["groups"] == 1 and plan["grouped"] == 2


def test_scattered_rows_are_gathered():
    """Inputs made far apart and layer outputs read in a shuffled order: the products gather their
    rows into scratch matrices and still agree with the exact path."""
    def build():
        tape = rg.Tape()
        xs = []
        for k in range(5):
            xs.append(tape.term(f"x{k}", 0.0))
            tape.term(f"pad{k}", 0.0) * 2.0  # nodes in between
        rng = np.random.default_rng(3)
        layer = rg.nn.Linear(tape, 5, 6, rng)
        h = [v.tanh() for v in layer(xs[::-1])]
        rng.shuffle(h)
        layer2 = rg.nn.Linear(tape, 6, 3, rng)
        return tape, xs, layer.parameters() + layer2.parameters(), layer2(h)
    data = [np.random.default_rng(k).normal(size=2500) for k in range(5)]
    fast, exact = sweep(build, data, blas=True), sweep(build, data, blas=False)
    assert fast["plan"]["groups"] == 2
    assert_agree(fast, exact)


@pytest.mark.slow
def test_threads_and_chunks():
    build = mlp_builder([2, 24, 24, 1], ("tanh",), seed=5)
    rng = np.random.default_rng(9)
    data = [rng.normal(size=200_003) for _ in range(2)]
    one = sweep(build, data, blas=True, threads=1)
    two = sweep(build, data, blas=True, threads=2)
    exact = sweep(build, data, blas=False, threads=1)
    assert_agree(two, one)
    assert_agree(one, exact)


def test_anomaly_check_names_node_and_sample():
    tape = rg.Tape()
    xs, params, outs = layered(tape, [2, 4, 1], ("tanh",), np.random.default_rng(1))
    xs[0].set(np.array([0.0, 1.0, np.inf, 2.0]))
    xs[1].set(np.zeros(4))
    rg.set_blas(True)
    with rg.detect_anomaly():
        with pytest.raises(rg.NonFiniteError, match=r"sample 2 of the batch.*'x0'"):
            outs[0].eval()
    assert _tape._test_plan(outs[0])["groups"] == 1


def test_set_blas_reports_and_switches():
    assert rg.set_blas(False) is False and rg.get_blas() is False
    assert rg.set_blas(True) is True and rg.get_blas() is True
    info = rg.blas_info()
    assert info["on"] and "openblas" in info["library"].lower() and info["reason"] is None


def test_a_blas_that_cannot_be_loaded_falls_back_with_a_warning():
    build = mlp_builder([2, 8, 1], ("tanh",), seed=2)
    data = [np.linspace(-1, 1, 100), np.linspace(1, -1, 100)]
    exact = sweep(build, data, blas=False)
    try:
        assert _tape._load_blas("no_such_blas_module") is False
        assert rg.set_blas(True) is False and rg.blas_info()["library"] is None
        assert "no_such_blas_module" in rg.blas_info()["reason"]
        with pytest.warns(RuntimeWarning, match="no BLAS for dense layers.*no_such_blas_module"):
            fallback = sweep(build, data, blas=True)
        assert fallback["plan"]["groups"] == 0
        np.testing.assert_array_equal(fallback["params"], exact["params"])  # the exact path itself
    finally:
        assert _tape._load_blas()


def test_weights_in_a_matrix_are_read_in_place_and_others_gathered():
    """rg.nn.Linear makes its weights row by row: the products read them, and add their gradients,
    in place. Weights made column by column, or shuffled, are gathered; both agree with the exact
    path."""
    def build(order):
        def make():
            tape = rg.Tape()
            xs = [tape.term(f"x{k}", 0.0) for k in range(4)]
            grid = {}
            cells = [(o, k) for o in range(3) for k in range(4)]
            if order == "columns":
                cells.sort(key=lambda ok: (ok[1], ok[0]))
            elif order == "shuffled":
                np.random.default_rng(1).shuffle(cells)
            for o, k in cells:
                grid[o, k] = tape.term(f"w{o}_{k}", 0.1 * (o + 1) - 0.05 * k)
            bias = [tape.term(f"b{o}", 0.1 * o) for o in range(3)]
            outs = []
            for o in range(3):
                acc = bias[o]
                for k in range(4):
                    acc = acc + grid[o, k] * xs[k]
                outs.append(acc.tanh())
            return tape, xs, [grid[c] for c in sorted(grid)] + bias, outs
        return make
    data = [np.random.default_rng(k).normal(size=300) for k in range(4)]
    for order, in_place in (("rows", 1), ("columns", 0), ("shuffled", 0)):
        fast, exact = sweep(build(order), data, blas=True), sweep(build(order), data, blas=False)
        assert fast["plan"]["groups"] == 1 and fast["plan"]["in_place"] == in_place, order
        assert_agree(fast, exact)
