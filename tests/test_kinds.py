"""The three term kinds (TapeTerm, RcTerm, Term) give the same numbers and behave alike.

Values and derive() use no accumulation, so they agree to the bit. backprop() sums contributions in
each kind's own sweep order: RcTerm and Term share theirs (bit for bit), the tape's differs, so it is
compared within 1e-12 of the sum of the contributions' magnitudes — and to the bit where every node
is used at most twice (0 + x + y is the same in either order).
"""
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphs
import rustograd_cy as rg
from rustograd_cy._ops import op_partials

KINDS = ("tape", "rc", "term")


def leaf_maker(kind):
    """A function (name, value) -> leaf of the given kind; the tape kind gets a fresh tape."""
    if kind == "tape":
        return rg.Tape().term
    return {"rc": rg.RcTerm, "term": rg.Term}[kind]


def bits(x):
    return struct.pack("<d", x)


def same(x, y):
    """Equal to the bit (NaN equal to NaN)."""
    return bits(x) == bits(y) or (math.isnan(x) and math.isnan(y))


# -- random programs (tests/graphs.py) ---------------------------------------------------------------

UNARY, BINARY, APPLY = graphs.UNARY, graphs.BINARY, graphs.APPLY
CONSTANTS = (0.0, 1.0, 2.0, -0.5, 3, np.float64(1.5))
values = st.floats(-3.0, 3.0, allow_nan=False).map(lambda v: round(v, 3))
programs = graphs.programs(values, graphs.steps(UNARY + BINARY + graphs.MIXED + ("apply",), CONSTANTS))


def build(kind, leaves, steps, max_uses=None):
    return graphs.build(leaf_maker(kind), leaves, steps, max_uses)


def magnitudes(output):
    """Per node key, the sum over paths of |product of partials|: what backprop's rounding scales with."""
    records = output._graph()
    scale = {rec[0]: 0.0 for rec in records}
    scale[output._key()] = 1.0
    data = {rec[0]: rec[5] for rec in records}
    for key, _, op, _, operands, value, _ in reversed(records):
        if not operands or scale[key] == 0.0:
            continue
        if op in APPLY:
            partials = (APPLY[op][1](data[operands[0]]),)
        else:
            partials = op_partials(op, *[data[k] for k in operands])
        for k, p in zip(operands, partials):
            scale[k] += scale[key] * abs(p)
    return scale


def check_parity(leaves, steps, exact_grads):
    built = {kind: build(kind, leaves, steps, max_uses=2 if exact_grads else None) for kind in KINDS}
    n = len(built["tape"])
    for round_ in range(2):
        if round_ == 1:  # change a leaf: cached values must all be recomputed
            for nodes in built.values():
                nodes[0].set(leaves[0] + 0.25)
        for i in range(n):
            vals = {kind: nodes[i].eval() for kind, nodes in built.items()}
            assert same(vals["rc"], vals["tape"]) and same(vals["term"], vals["tape"]), (i, vals)
        outs = {kind: nodes[-1] for kind, nodes in built.items()}
        for k in range(len(leaves)):
            ds = {kind: outs[kind].derive(built[kind][k]) for kind in KINDS}
            assert same(ds["rc"], ds["tape"]) and same(ds["term"], ds["tape"]), (k, ds)
        for out in outs.values():
            out.backprop()
        scale = magnitudes(outs["tape"])
        for i in range(n):
            g_tape = built["tape"][i].grad
            g_rc = built["rc"][i].grad
            g_term = built["term"][i].grad
            if g_rc is None:  # not in the output's cone: the tape says 0
                assert g_term is None and g_tape == 0.0
                continue
            assert same(g_rc, g_term), (i, g_rc, g_term)
            if exact_grads:
                assert same(g_rc, g_tape), (i, g_rc, g_tape)
                continue
            s = scale[built["tape"][i]._key()]
            if not math.isfinite(s) or not math.isfinite(g_tape):
                continue  # overflowed sums may depend on the order; nothing to bound them by
            assert abs(g_rc - g_tape) <= 1e-12 * s, (i, g_rc, g_tape, s)


PARITY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PARITY
@given(programs)
def test_random_expressions_agree_across_kinds(program):
    check_parity(*program, exact_grads=False)


@PARITY
@given(programs)
def test_gradients_agree_to_the_bit_when_each_node_is_used_at_most_twice(program):
    check_parity(*program, exact_grads=True)


# -- the seed's examples ---------------------------------------------------------------------------

# (the numbers of the seed's first examples, for every kind: tests/test_seed.py)

NODE_KINDS = (rg.RcTerm, rg.Term)


def model():
    a = rg.RcTerm("a", 1.0)
    b = rg.RcTerm("b", 2.0)
    ab = a * b
    return a, ab


def test_seed_model_returns_rc_terms_from_a_function():
    a, ab = model()  # b lives on inside ab
    assert ab.eval() == 2.0
    assert ab.derive(a) == 2.0
    a.set(5.0)
    assert ab.eval() == 10.0
    ab.backprop()
    assert a.grad == 2.0
    assert ab.name == "a * b"


# -- caching and staleness -------------------------------------------------------------------------


def counting(fn, log, key):
    def wrapped(v):
        log[key] = log.get(key, 0) + 1
        return fn(v)
    return wrapped


def test_rc_term_recomputes_only_what_depends_on_the_changed_leaf():
    calls = {}
    a, b = rg.RcTerm("a", 1.0), rg.RcTerm("b", 2.0)
    fa = a.apply("f", counting(math.sin, calls, "f"), math.cos)
    gb = b.apply("g", counting(math.cos, calls, "g"), math.sin)
    out = fa * gb
    assert out.data is None and calls == {}  # lazy
    assert out.eval() == math.sin(1.0) * math.cos(2.0)
    assert calls == {"f": 1, "g": 1}
    out.eval()
    assert calls == {"f": 1, "g": 1}  # cached
    a.set(3.0)
    assert out.data is None and fa.data is None and gb.data == math.cos(2.0)
    assert out.eval() == math.sin(3.0) * math.cos(2.0)
    assert calls == {"f": 2, "g": 1}


def test_term_computes_when_built_and_recomputes_everything_on_eval():
    calls = {}
    a, b = rg.Term("a", 1.0), rg.Term("b", 2.0)
    fa = a.apply("f", counting(math.sin, calls, "f"), math.cos)
    gb = b.apply("g", counting(math.cos, calls, "g"), math.sin)
    out = fa * gb
    assert out.data == math.sin(1.0) * math.cos(2.0) and calls == {"f": 1, "g": 1}
    a.set(3.0)
    assert out.data is None
    assert out.eval() == math.sin(3.0) * math.cos(2.0)
    assert calls == {"f": 2, "g": 2}


@pytest.mark.parametrize("cls", NODE_KINDS)
def test_outputs_sharing_nodes_see_each_others_staleness(cls):
    a = cls("a", 0.5)
    s = a.sin()
    o1, o2 = s + 1.0, s * 2.0
    o1.eval(), o2.eval()
    a.set(1.5)
    assert o1.eval() == math.sin(1.5) + 1.0  # recomputes the shared s
    assert o2.data is None
    with pytest.raises(rg.ValueNotDefinedError):
        o2.backprop()
    assert o2.eval() == math.sin(1.5) * 2.0
    o2.backprop()
    assert a.grad == 2.0 * math.cos(1.5)


@pytest.mark.parametrize("cls", NODE_KINDS)
def test_set_in_another_graph_leaves_this_one_valid(cls):
    a, b = cls("a", 2.0), cls("b", 3.0)
    ab = a * b
    ab.eval()
    other = cls("z", 1.0)
    (other + 1.0).eval()
    other.set(4.0)
    assert ab.data == 6.0
    assert ab.derive(a) == 3.0


@pytest.mark.parametrize("kind", KINDS)
def test_clear_and_clear_grad_on_the_term(kind):
    make = leaf_maker(kind)
    a = make("a", 2.0)
    y = a * a + 1.0
    y.eval()
    y.backprop()
    assert a.grad == 4.0 and y.data == 5.0
    y.clear_grad()
    assert a.grad is None and y.grad is None
    y.clear()
    assert y.data is None and a.data == 2.0
    with pytest.raises(rg.ValueNotDefinedError, match="stale since a set"):
        y.derive(a)
    assert y.eval() == 5.0 and y.derive(a) == 4.0


@pytest.mark.parametrize("kind", KINDS)
def test_callbacks_visit_each_node_once_in_sweep_order(kind):
    make = leaf_maker(kind)
    a, b = make("a", 1.0), make("b", 2.0)
    s = a * b
    y = s.sin() + s.cos()
    keys = [rec[0] for rec in y._graph()]
    seen = []
    y.eval(callback=lambda t: seen.append(t._key()))
    assert sorted(seen) == sorted(keys) and seen[-1] == y._key()
    position = {k: p for p, k in enumerate(seen)}
    for key, _, _, _, operands, _, _ in y._graph():
        assert all(position[k] < position[key] for k in operands)
    back = []
    y.backprop(callback=lambda t: back.append((t._key(), t.grad)))
    assert back[0] == (y._key(), 1.0) and sorted(k for k, _ in back) == sorted(keys)


@pytest.mark.parametrize("kind", KINDS)
def test_graph_records_agree_across_kinds(kind):
    make = leaf_maker(kind)
    a, b = make("a", 1.0), make("b", 2.0)
    y = (a + b) * a.sin()
    y.eval()
    y.backprop()
    records = y._graph()
    assert records[-1][0] == y._key()
    summary = sorted((name or "", op, infix, len(operands), data, grad)
                     for _, name, op, infix, operands, data, grad in records)
    tape = rg.Tape()
    ta, tb = tape.term("a", 1.0), tape.term("b", 2.0)
    ty = (ta + tb) * ta.sin()
    ty.eval()
    ty.backprop()
    assert summary == sorted((name or "", op, infix, len(operands), data, grad)
                             for _, name, op, infix, operands, data, grad in ty._graph())


@pytest.mark.parametrize("cls", NODE_KINDS)
def test_functions_module_and_numbers_dispatch_on_the_kind(cls):
    x = cls("x", -0.5)
    for y in (rg.sin(x), rg.maximum(0.0, x), rg.atan2(1.0, x), rg.pow(2, x), np.float64(2.0) * x,
              x * np.float32(0.5), 1 / x, x ** 2, abs(x), -x, +x):
        assert type(y) is cls
    assert rg.maximum(0.0, x).eval() == 0.0
    assert rg.pow(2, x).eval() == 2 ** -0.5
    assert (np.float64(2.0) * x).eval() == -1.0
