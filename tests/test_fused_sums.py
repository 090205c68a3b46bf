"""Fused sums (src/rg_plan.h): the batched C sweeps run a chain of additions such as a Linear layer's
b + w1 * x1 + w2 * x2 + ... as one loop per term, and leave the rows of its inner nodes unwritten
until they are read. Everything a user can see must be as without fusion: values and per-sample
gradients bit for bit equal to a per-sample loop, for every node, inner ones included."""
import numpy as np
import pytest
from hypothesis import given, settings

import graphs
import rustograd_cy as rg
from rustograd_cy import _tape
from test_batch import assert_same, assert_summed, per_sample_derive, restore_threads  # noqa: F401
from graphs import apply_op


@pytest.fixture(autouse=True)
def exact_math():
    """Vector math and BLAS products off (the exact path; tests/test_dense.py checks products
    against it): values bit for bit."""
    before, blas = rg.get_vector_math(), rg.get_blas()
    rg.set_vector_math(False)
    rg.set_blas(False)
    yield
    rg.set_vector_math(before)
    rg.set_blas(blas)


def linear(tape, inputs, n_out, rng, name, built):
    """A Linear layer as rg.nn builds it, b + w0 * x0 + w1 * x1 + ...; every node goes to `built`."""
    outs = []
    for o in range(n_out):
        acc = tape.term(f"{name}.b{o}", 0.1 * o)
        built.append(acc)
        for i, x in enumerate(inputs):
            w = tape.term(f"{name}.w{o}_{i}", float(rng.uniform(-1, 1)))
            product = w * x
            acc = acc + product
            built += [w, product, acc]
        outs.append(acc)
    return outs


def mlp(tape, seed=0):
    """(inputs x0 and x1, a 2-4-1 tanh MLP's score, every node built)."""
    rng = np.random.default_rng(seed)
    x = [tape.term("x0", 0.0), tape.term("x1", 0.0)]
    built = list(x)
    hidden = [h.tanh() for h in linear(tape, x, 4, rng, "l0", built)]
    built += hidden
    (score,) = linear(tape, hidden, 1, rng, "l1", built)
    return x, score, built


def per_sample_all(output, nodes, arrays, size):
    """A per-sample loop: each node's value (None outside the cone) and gradient, per sample."""
    values = {n: [] for n in nodes}
    grads = {n: [] for n in nodes}
    for s in range(size):
        for leaf, arr in arrays.items():
            leaf.set(float(arr[s]))
        output.eval()
        output.backprop()
        for n in nodes:
            values[n].append(n.data)
            grads[n].append(n.grad)
    return values, grads


def assert_like_per_sample(nodes, values, grads):
    """Every node's batched .data and .grad against the per-sample loop's (summed gradients judged
    against the magnitude of every per-sample adjoint, as in test_batch)."""
    adjoints = np.array([grads[n] for n in nodes], dtype=float)
    adjoints = np.abs(adjoints[np.isfinite(adjoints)]).sum()
    for n in nodes:
        if any(v is None for v in values[n]):
            continue  # not computed by this output's sweep
        if isinstance(n.data, float):  # a uniform node: one value, its gradient summed
            assert all(v == n.data or (v != v and n.data != n.data) for v in values[n])
            if np.all(np.isfinite(grads[n])):  # (infinities: see the README's NaN policy)
                assert_summed(n.grad, grads[n], adjoints)
        else:
            assert_same(n.data, values[n])
            assert_same(n.grad, grads[n])


def build(tape, leaf_values, steps):
    """(leaves, every node built; the last is the output). A sum step's inner nodes join the pool
    of operands only when it says so (used again, they are no longer inner)."""
    leaves = [tape.term(f"x{j}", v) for j, v in enumerate(leaf_values)]
    pool, built = list(leaves), list(leaves)
    for step in steps:
        if step[0] != "sum":
            name, i, j = step
            node = apply_op(name, pool[i % len(pool)], pool[j % len(pool)], 2.0)
            pool.append(node)
            built.append(node)
            continue
        _, chains, expose = step
        accs = [pool[base % len(pool)] for base, _ in chains]
        for k in range(max(len(terms) for _, terms in chains)):  # the chains' terms in turn
            for c, (_, terms) in enumerate(chains):
                if k >= len(terms):
                    continue
                wi, xi, kind = terms[k]
                w, x = leaves[wi % len(leaves)], pool[xi % len(pool)]
                t = x if kind == "plain" else w * x if kind == "w*x" else x * w
                accs[c] = accs[c] + t
                built += [t, accs[c]] if t is not x else [accs[c]]
                if expose:
                    pool.append(accs[c])
        pool += accs
    return leaves, built


@settings(max_examples=120, deadline=None)
@given(graphs.layered())
def test_fused_sweeps_equal_per_sample_loop_for_every_node(graph):
    leaf_values, arrays, steps, size = graph
    tape = rg.Tape()
    leaves, nodes = build(tape, leaf_values, steps)
    out = nodes[-1]
    leaf_arrays = {leaves[j]: a for j, a in arrays.items()}
    with np.errstate(all="ignore"):
        values, grads = per_sample_all(out, nodes, leaf_arrays, size)
        tangents = per_sample_derive(out, leaf_arrays, size)
        for leaf, arr in leaf_arrays.items():
            leaf.set(arr)
        out.eval()
        out.backprop()
        assert_like_per_sample(nodes, values, grads)
        for leaf in leaf_arrays:
            assert_same(out.derive(leaf), tangents[leaf])


def test_a_linear_layer_is_fused_and_its_inner_nodes_read_right():
    tape = rg.Tape()
    x, score, nodes = mlp(tape)
    xs = {leaf: np.random.default_rng(1).normal(size=13) for leaf in x}
    values, grads = per_sample_all(score, nodes, xs, 13)
    tangents = per_sample_derive(score, xs, 13)
    for leaf, arr in xs.items():
        leaf.set(arr)
    assert _tape._test_plan(score)["chains"] == 5  # 4 hidden units and the output
    assert _tape._test_plan(score)["links"] == 4 * 2 + 4
    score.eval()
    score.backprop()
    assert_like_per_sample(nodes, values, grads)
    assert_same(score.derive(x[0]), tangents[x[0]])


def interleaved_sums(tape, x, interleave):
    """Two sums of w * x terms over the same row x, built one after the other or term by term in
    turn, and an output using both."""
    ws = [tape.term(f"w{k}", 0.5 + k) for k in range(6)]
    a, b = tape.term("a", 0.25), tape.term("b", -0.5)
    for k in range(3):
        a = a + ws[k] * x
        if interleave:
            b = b + ws[3 + k] * x
    for k in range(0 if interleave else 3):
        b = b + ws[3 + k] * x
    return (a * b).sin()


@pytest.mark.parametrize("interleave", [False, True])
def test_sums_whose_fusion_would_reorder_a_row_are_not_fused(interleave):
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    out = interleaved_sums(tape, x, interleave)
    xs = np.array([0.5, -2.0, 3.0, 0.0, 1e-3])
    values, grads = per_sample_all(out, [out, x], {x: xs}, len(xs))
    x.set(xs)
    # Built in turn, each sum's terms add to x's row between the other's: fused, each sum would
    # add all of its own at once.
    assert _tape._test_plan(out)["chains"] == (0 if interleave else 2)
    out.eval()
    out.backprop()
    assert_same(out.data, values[out])
    assert_same(x.grad, grads[x])


def test_fused_and_node_by_node_sweeps_agree():
    tape = rg.Tape()
    x, score, nodes = mlp(tape)
    for leaf in x:
        leaf.set(np.random.default_rng(2).normal(size=37))
    results = []
    for fuse in (True, False):
        tape._fuse_sums = fuse  # (a test-only switch)
        assert (_tape._test_plan(score)["chains"] > 0) == fuse
        score.eval()
        score.backprop()
        results.append([(n.data, n.grad) for n in nodes])
    for (d1, g1), (d2, g2) in zip(*results):
        assert_same(d1, d2)
        if isinstance(g1, float):  # summed over the batch, in another order
            np.testing.assert_allclose(g1, g2, rtol=1e-12)
        else:
            assert_same(g1, g2)


def test_inner_rows_of_one_output_survive_sweeps_of_another():
    tape = rg.Tape()
    x, score, nodes = mlp(tape)
    xs = {leaf: np.random.default_rng(3).normal(size=9) for leaf in x}
    unit = nodes[2 + 1 + 3 * 2 - 1]  # the first hidden unit: b + w0 * x0 + w1 * x1
    assert unit.name == "l0.b0 + l0.w0_0 * x0 + l0.w0_1 * x1"
    values, _ = per_sample_all(score, nodes, xs, 9)
    _, unit_grads = per_sample_all(unit, nodes, xs, 9)
    for leaf, arr in xs.items():
        leaf.set(arr)
    score.eval()  # leaves inner rows unwritten
    unit.backprop()  # with the values score's sweep computed
    for n in nodes:
        if not isinstance(n.grad, float):
            assert_same(n.grad, unit_grads[n])
    unit.eval()  # another cone's sweep: score's inner rows are written first
    for n in nodes:
        if not isinstance(n.data, float):
            assert_same(n.data, values[n])


def test_anomaly_in_an_inner_product_names_it():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    w = tape.term("w", 1e308)
    out = tape.term("b", 1.0) + w * x + tape.term("v", 2.0) * x
    x.set(np.array([1.0, 10.0, 2.0]))  # w * x overflows in sample 1
    assert _tape._test_plan(out)["chains"] == 1
    tape.check_finite = True
    with pytest.raises(rg.NonFiniteError, match=r"eval\(\) \(sample 1 of the batch\).*'w \* x'"):
        out.eval()


@pytest.mark.slow
def test_fused_sums_across_threads_and_chunks(restore_threads):
    rg.set_num_threads(2)
    tape = rg.Tape()
    x, score, nodes = mlp(tape)
    size = 60_001  # not a multiple of 8
    xs = {leaf: np.random.default_rng(4).normal(size=size) for leaf in x}
    values, grads = per_sample_all(score, nodes, xs, size)
    for leaf, arr in xs.items():
        leaf.set(arr)
    # Work enough for 2 threads: row loops (plan steps and chain links) x samples >= 2 x 2^19
    # (RG_BATCH_MIN_THREAD_WORK in src/rg_batch.c); and many chunks of 1024 samples each.
    plan = _tape._test_plan(score)
    assert size * (plan["steps"] + plan["links"]) >= 2 * (1 << 19)
    score.eval()
    score.backprop()
    assert_like_per_sample(nodes, values, grads)


def test_a_penalty_sum_is_fused_and_its_gradients_are_right():
    """A uniform chain: 1e-3 * (w0 * w0 + w1 * w1 + ...), one number per sweep."""
    tape = rg.Tape()
    x, score, nodes = mlp(tape)
    weights = [n for n in nodes if n.name.startswith("l0.w") and " " not in n.name]  # leaves
    penalty = weights[0] * weights[0]
    nodes.append(penalty)
    for w in weights[1:]:
        penalty = penalty + w * w
        nodes.append(penalty)
    loss = score + penalty * 1e-3
    nodes.append(loss)
    xs = {leaf: np.random.default_rng(5).normal(size=11) for leaf in x}
    values, grads = per_sample_all(loss, nodes, xs, 11)
    for leaf, arr in xs.items():
        leaf.set(arr)
    assert _tape._test_plan(loss)["chains"] == 5 + 1
    loss.eval()
    loss.backprop()
    assert isinstance(penalty.data, float)
    assert_like_per_sample(nodes, values, grads)


def assert_fused_as_node_by_node(tape, loss, nodes):
    """Every node's value and gradient after eval() + backprop() of loss, fused and node by node:
    equal bit for bit."""
    results = []
    for fuse in (True, False):
        tape._fuse_sums = fuse  # (a test-only switch)
        loss.eval()
        loss.backprop()
        results.append([(n.data, n.grad) for n in nodes])
    for (d1, g1), (d2, g2) in zip(*results):
        assert_same(d1, d2)
        assert_same(g1, g2)


def test_a_penalty_chain_computes_its_products_and_every_node_reads_right():
    """A uniform chain's products (w * w, v * w) run inside it, leaving no uniform steps of their own;
    a product read twice stays a step. Every node's value and gradient as a per-sample loop's."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    w = [tape.term(f"w{k}", 0.7 - 0.3 * k) for k in range(5)]
    squares = [q * q for q in w]
    cross, shared = w[0] * w[1], w[2] * w[3]  # shared is read by the chain and by `other`
    penalty = squares[0]
    nodes = [x] + w + squares + [cross, shared]
    for t in squares[1:] + [cross, shared]:
        penalty = penalty + t
        nodes.append(penalty)
    other = shared * 2.0
    loss = (w[4] * x).tanh() + penalty * 1e-2 + other
    nodes += [other, loss]
    xs = {x: np.linspace(-1.0, 1.0, 9)}
    values, grads = per_sample_all(loss, nodes, xs, 9)
    x.set(xs[x])
    plan = _tape._test_plan(loss)
    # Left as uniform steps: the chain's base (w0 * w0) and top, `shared`, `other` and
    # penalty * 1e-2; the other squares and w0 * w1 are inside the chain.
    assert plan["uniform_steps"] == 5
    loss.eval()
    loss.backprop()
    assert_like_per_sample(nodes, values, grads)
    assert_fused_as_node_by_node(tape, loss, nodes)  # (here the chain adds in the nodes' order)


@pytest.mark.parametrize("base", ["square", "first weight", "other"])
def test_a_penalty_of_squares_at_strides_runs_as_the_node_by_node_sweep(base):
    """reg = b + w0 * w0 + w1 * w1 + ... over weights made one after another (as a model's are) is
    run by its strides: every value and gradient bit for bit the node-by-node sweep's, also when the
    base is the first weight (whose two contributions must keep their order)."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    w = [tape.term(f"w{k}", 0.9 - 0.25 * k) for k in range(7)]
    w[3].set(0.0)  # a zero weight: its partials add nothing
    other = tape.term("b", 0.4)
    start = {"square": w[0] * w[0], "first weight": w[0], "other": other}[base]
    penalty = start
    nodes = [x, other, start] + w
    for q in (w if base != "square" else w[1:]):
        penalty = penalty + q * q
        nodes.append(penalty)
    loss = rg.mean((w[1] * x).tanh() * w[0]) + penalty * 1e-2
    nodes.append(loss)
    x.set(np.linspace(-1.0, 1.0, 5))
    assert _tape._test_plan(loss)["squares"] == 1
    assert_fused_as_node_by_node(tape, loss, nodes)
