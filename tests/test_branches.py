"""Branches (issue 15): comparisons as ops, rg.where, and the guards of rg.grad's recordings."""
import math
import operator
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import rustograd_cy as rg
from rustograd_cy.functional import MAX_RECORDINGS

NAN, INF = math.nan, math.inf
COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
           "eq": operator.eq, "ne": operator.ne}
POINTS = [-2.0, -0.0, 0.0, 1.0, 1.5, INF, -INF, NAN]
KINDS = ["tape", "rc", "term"]


def leaves(kind, *values):
    if kind == "tape":
        tape = rg.Tape()
        return [tape.term(f"x{i}", v) for i, v in enumerate(values)]
    cls = rg.RcTerm if kind == "rc" else rg.Term
    return [cls(f"x{i}", v) for i, v in enumerate(values)]


# -- comparisons ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(COMPARE))
def test_comparisons_against_pythons_own(kind, name):
    """Every comparison, term with term, term with number and number with term (Python reflects
    `2 < x` into `x > 2`), at ties, signed zeros, infinities and NaN: 1.0 where Python's operator
    says True, else 0.0, and a derivative of 0 in every operand."""
    py = COMPARE[name]
    for a0 in POINTS:
        for b0 in POINTS:
            a, b = leaves(kind, a0, b0)
            for y, wrt in ((py(a, b), (a, b)), (py(a, b0), (a,)), (py(a0, b), (b,))):
                assert type(y) is type(a)
                assert y.eval() == (1.0 if py(a0, b0) else 0.0), (name, a0, b0)
                for leaf in wrt:
                    assert y.derive(leaf) == 0.0
                y.backprop()
                for leaf in wrt:
                    assert leaf.grad == 0.0


@pytest.mark.parametrize("name", sorted(COMPARE))
def test_comparisons_in_batch_mode_per_sample(name):
    py = COMPARE[name]
    tape = rg.Tape()
    x, y = tape.term("x", 0.0), tape.term("y", 1.0)
    xs = np.array(POINTS * len(POINTS))
    ys = np.repeat(POINTS, len(POINTS))
    x.set(xs)
    y.set(ys)
    c = py(x, y) + py(x, 1.0) * 2.0  # a varying comparison, and one with a number
    expected = np.array([float(py(a, b)) + 2.0 * float(py(a, 1.0)) for a, b in zip(xs, ys)])
    np.testing.assert_array_equal(c.eval(), expected)
    c.backprop()
    np.testing.assert_array_equal(x.grad, np.zeros(len(xs)))


def test_comparison_labels_and_the_spec_rows():
    tape = rg.Tape()
    x, y = tape.term("x", 1.0), tape.term("y", 2.0)
    assert (x + 1 < y * 2).name == "x + 1 < y * 2"
    assert (2 <= x).name == "x >= 2"
    assert ((x < y) == 1).name == "(x < y) == 1"
    assert rg.where(x > y, x, 0.0).name == "when(x > y, x) + unless(x > y, 0)"


@pytest.mark.parametrize("kind", KINDS)
def test_terms_hash_by_identity_and_compare_only_with_terms_and_numbers(kind):
    a, b = leaves(kind, 1.0, 1.0)
    assert {a: 1, b: 2}[a] == 1 and len({a, b, a}) == 2
    assert a in {a} and a in [a]  # identity first: no comparison node is asked for its truth
    assert hash(a) == hash(a)
    assert (a == None) is False and (a != "a") is True  # noqa: E711 (not terms nor numbers)
    assert None not in [a, b]
    with pytest.raises(TypeError):
        a < "text"  # noqa: B015


@pytest.mark.parametrize("kind", KINDS)
def test_bool_outside_a_recording_points_to_where(kind):
    a, b = leaves(kind, 1.0, 2.0)
    for expr in (lambda: bool(a < b), lambda: a if a > 0 else b, lambda: max(a, b), lambda: bool(a),
                 lambda: a == b and a):
        with pytest.raises(TypeError, match=r"rg\.where.*rg\.grad"):
            expr()


def test_the_old_identity_equality_is_gone():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    eq = x == 0
    assert isinstance(eq, rg.TapeTerm) and eq.eval() == 1.0
    assert (x == x).eval() == 1.0  # the comparison of values, not of nodes
    x.set(NAN)
    assert (x == x).eval() == 0.0 and (x != x).eval() == 1.0


# -- rg.where --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_where_value_and_gradient_only_through_the_branch_taken(kind):
    for x0 in (-2.0, 0.0, 3.0):
        x, = leaves(kind, x0)
        y = rg.where(x > 0, x * x, -3.0 * x)
        assert y.eval() == (x0 * x0 if x0 > 0 else -3.0 * x0)
        assert y.derive(x) == (2.0 * x0 if x0 > 0 else -3.0)
        y.backprop()
        assert x.grad == y.derive(x)


@pytest.mark.parametrize("kind", KINDS)
def test_where_never_leaks_a_nan_of_the_branch_not_taken(kind):
    """sqrt'(0) = inf and log(-1) = NaN sit in the branch not taken: the derivative is that of the
    branch taken (JAX and PyTorch give NaN for the first)."""
    x, = leaves(kind, 0.0)
    y = rg.where(x > 0, rg.sqrt(x), 0.0)
    assert (y.eval(), y.derive(x)) == (0.0, 0.0)
    y.backprop()
    assert x.grad == 0.0
    x, = leaves(kind, -1.0)
    y = rg.where(x > 0, rg.log(x), x * 2.0)
    assert (y.eval(), y.derive(x)) == (-2.0, 2.0)
    y.backprop()
    assert x.grad == 2.0


def test_where_per_sample_in_batch_mode_with_nan_cases():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    w = tape.term("w", 2.0)  # shared: its gradient sums the samples
    y = rg.where(x > 0, w * rg.sqrt(x), x * w)
    x.set(np.array([-1.0, 0.0, 4.0, NAN, INF, -INF]))
    np.testing.assert_array_equal(y.eval(), [-2.0, 0.0, 4.0, NAN, INF, -INF])
    y.backprop()
    # dy/dx: w where x <= 0 (NaN too: NaN > 0 is False), w / (2 sqrt x) where x > 0.
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 0.5, 2.0, 0.0, 2.0])
    x.set(np.array([-1.0, 0.0, 4.0]))
    y.eval()
    y.backprop()
    assert w.grad == -1.0 + 0.0 + 2.0
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 0.5])  # sqrt'(0) = inf is not taken at 0


def test_where_in_batch_mode_matches_a_per_sample_loop():
    xs = np.linspace(-2.0, 2.0, 41)
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = rg.where(x >= 0.5, rg.sqrt(x - 0.5), rg.where(x < -1, -x, x * x))
    x.set(xs)
    values = y.eval().copy()
    y.backprop()
    grads = x.grad.copy()
    for k, x0 in enumerate(xs):
        x.set(float(x0))
        assert y.eval() == values[k]
        y.backprop()
        assert x.grad == grads[k]


def test_where_with_numbers_and_conditions_of_any_value():
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    assert rg.where(1, x, 0.0) is x and rg.where(0.0, x, 5.0) == 5.0  # a number decides now
    assert rg.where(x, 1.0, 2.0).eval() == 1.0  # a non-zero term holds
    x.set(NAN)
    assert rg.where(x, 1.0, 2.0).eval() == 1.0  # NaN holds, as bool(nan)
    x.set(0.0)
    y = rg.where(x, 1.0, -0.0)
    assert y.eval() == 0.0 and math.copysign(1.0, y.eval()) == -1.0  # exactly the branch taken
    with pytest.raises(TypeError, match="condition"):
        rg.where("yes", x, x)
    with pytest.raises(TypeError, match="y is a term or a real number"):
        rg.where(x > 0, x, "no")
    with pytest.raises(TypeError, match="one kind"):
        rg.where(x > 0, rg.Term("t", 1.0), 0.0)
    other = rg.Tape().term("o", 1.0)
    with pytest.raises(rg.TapeMismatchError):
        rg.where(x > 0, other, 0.0)


def test_gen_graph_differentiates_through_where_without_nan():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    y = rg.where(x > 0, rg.sqrt(x) * x, x * x * x)
    for optim in (False, True):
        d1 = y.gen_graph(x, optim=optim)
        d2 = d1.gen_graph(x, optim=optim)
        for x0 in (-2.0, 0.0, 4.0):
            x.set(x0)
            y.eval()
            assert d1.eval() == y.derive(x)
            expected = 0.75 / math.sqrt(x0) if x0 > 0 else 6.0 * x0
            assert d2.eval() == pytest.approx(expected, rel=1e-15)
    # the derivative graph is made of table ops (no apply node), batch mode included
    ops = {rec[2] for rec in d2._graph()}
    assert "apply" not in ops and {"when", "unless"} <= ops
    x.set(np.array([-2.0, 0.0, 4.0]))
    np.testing.assert_array_equal(d2.eval(), [-12.0, 0.0, 0.375])


def test_hessian_through_where():
    f = lambda v: rg.where(v[0] > v[1], v[0] ** 3 * v[1], v[1] ** 2)  # noqa: E731
    np.testing.assert_array_equal(rg.hessian(f)(np.array([2.0, 1.0])), [[12.0, 12.0], [12.0, 0.0]])
    np.testing.assert_array_equal(rg.hessian(f)(np.array([1.0, 2.0])), [[0.0, 0.0], [0.0, 2.0]])


# -- guards: Python branches inside rg.grad ---------------------------------------------------------

def test_grad_of_a_python_branch_without_retrace():
    g = rg.grad(lambda x: x * x if x > 0 else -x)
    assert [g(v) for v in (2.0, -3.0, 5.0, -1.0)] == [4.0, -1.0, 10.0, -1.0]
    assert g.recordings == 2  # one per branch; later calls replay


def test_sinc_with_an_equality_test():
    sinc = lambda x: 1.0 if x == 0 else rg.sin(x) / x  # noqa: E731
    g = rg.grad(sinc)
    assert g(0.0) == 0.0
    assert g(1.0) == pytest.approx(math.cos(1.0) - math.sin(1.0), rel=1e-15)
    assert g(0.0) == 0.0 and g.recordings == 2
    v = rg.value_and_grad(sinc)
    assert v(0.0) == (1.0, 0.0)
    assert v(2.0) == (math.sin(2.0) / 2.0, pytest.approx((2 * math.cos(2.0) - math.sin(2.0)) / 4))


def test_a_function_comparing_two_inputs():
    def f(x, y):
        return x * y if x > y else x + 3.0 * y

    g = rg.grad(f, argnums=(0, 1))
    assert g(2.0, 1.0) == (1.0, 2.0)
    assert g(1.0, 2.0) == (1.0, 3.0)
    assert g(5.0, -1.0) == (-1.0, 5.0)
    assert g(2.0, 2.0) == (1.0, 3.0)  # a tie: x > y is False
    assert g.recordings == 2
    m = rg.grad(lambda x, y: max(x, y) * 2.0, argnums=(0, 1))  # builtins that compare work too
    assert m(1.0, 3.0) == (0.0, 2.0) and m(4.0, 3.0) == (2.0, 0.0)


def test_loops_that_test_values():
    def newton_sqrt(a):  # iterate until converged: the number of steps depends on a
        x = a * 0.5 + 0.5
        while abs(x * x - a) > 1e-12:
            x = 0.5 * (x + a / x)
        return x

    g = rg.grad(newton_sqrt)
    for a in (2.0, 9.0, 2.0, 100.0, 9.0):
        assert g(a) == pytest.approx(0.5 / math.sqrt(a), rel=1e-9)


def test_recordings_stay_bounded_while_inputs_alternate():
    def f(x):
        if x < -1:
            return -x
        return x * x if x < 1 else rg.sqrt(x)

    g = rg.grad(f)
    inputs = [-3.0, 0.5, 4.0] * 20
    for v in inputs:
        expected = -1.0 if v < -1 else (2 * v if v < 1 else 0.5 / math.sqrt(v))
        assert g(v) == expected
    assert g.recordings == 3
    assert len(g._traces[(threading.get_ident(), (None,))]) == 3

    small = rg.grad(f)
    small.max_recordings = 2  # fewer than the patterns: the least recently used is dropped
    for v in inputs[:9]:
        small(v)
    assert len(small._traces[(threading.get_ident(), (None,))]) == 2 and small.recordings == 9
    assert MAX_RECORDINGS >= 2


def test_retrace_still_records_every_call():
    g = rg.grad(lambda x: x * x if x > 0 else -x, retrace=True)
    assert [g(v) for v in (2.0, -3.0, 2.0)] == [4.0, -1.0, 4.0]
    assert g.recordings == 3


def test_peeked_values_are_not_guarded():
    """A branch on x.eval() is not a comparison node: replay keeps the first branch (documented)."""
    g = rg.grad(lambda x: x * x if x.eval() > 0 else -x)
    g(2.0)
    assert g(-3.0) == -6.0


def test_bool_of_a_non_comparison_inside_a_recording():
    with pytest.raises(TypeError, match="only a comparison"):
        rg.grad(lambda x: x if x else -x)(1.0)


def test_hessian_jacobian_and_hvp_follow_the_branches():
    f = lambda v: v[0] ** 3 if v[0] > v[1] else v[0] * v[1] ** 2  # noqa: E731
    h = rg.hessian(f)
    np.testing.assert_array_equal(h(np.array([2.0, 1.0])), [[12.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(h(np.array([1.0, 2.0])), [[0.0, 4.0], [4.0, 2.0]])
    np.testing.assert_array_equal(h(np.array([3.0, 1.0])), [[18.0, 0.0], [0.0, 0.0]])
    assert h.recordings == 2
    j = rg.jacobian(lambda v: [v[0] if v[0] > 0 else -v[0], v[1] * 2.0])
    np.testing.assert_array_equal(j(np.array([1.0, 1.0])), [[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(j(np.array([-1.0, 1.0])), [[-1.0, 0.0], [0.0, 2.0]])
    hv = rg.hvp(f)
    np.testing.assert_array_equal(hv(np.array([1.0, 2.0]), np.array([1.0, 0.0])), [0.0, 4.0])
    np.testing.assert_array_equal(hv(np.array([2.0, 1.0]), np.array([1.0, 0.0])), [12.0, 0.0])


def test_composed_transforms_with_branches():
    g = rg.grad(lambda x: x ** 3 if x > 0 else -x * x)
    gg = rg.grad(g)
    assert [gg(v) for v in (2.0, -2.0, 1.0, -1.0)] == [12.0, -2.0, 6.0, -2.0]
    assert gg.recordings == 2


# -- guards on a tape of the user's, and in batch mode ----------------------------------------------

def test_a_guard_that_differs_between_samples_raises_the_documented_error():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    dx = rg.grad(lambda t: t * t if t > 0 else -t)(x)  # composed: recorded on this tape
    assert dx.eval() == 2.0
    x.set(np.array([1.0, 2.0, -1.0, 3.0]))
    with pytest.raises(rg.BranchChangedError, match=r"'x > 0' \(node \d+\), True .* is False for "
                                                    r"sample 2 of the batch of 4.*rg\.where") as info:
        dx.eval()
    assert (info.value.sample, info.value.outcome, info.value.label) == (2, True, "x > 0")
    x.set(np.array([1.0, 2.0, 0.5]))  # every sample on the recorded side: fine
    np.testing.assert_array_equal(dx.eval(), [2.0, 4.0, 1.0])
    x.set(-1.0)  # a scalar flip on the user's tape: told to call the transform again
    with pytest.raises(rg.BranchChangedError, match="Call the transform again") as info:
        dx.eval()
    assert info.value.sample is None
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, rg.RustogradError)


def test_a_guard_that_differs_between_samples_while_recording():
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    x.set(np.array([1.0, -1.0]))
    with pytest.raises(rg.BranchChangedError, match="sample 1 of the batch of 2"):
        rg.grad(lambda t: t * t if t > 0 else -t)(x)


def test_a_python_branch_on_a_streamed_batch():
    # A streamed tape (rows over rg.set_row_limit()) holds no rows: bool() of a comparison reads the
    # B values eval() kept for it (it read the missing rows, and crashed, before).
    from rustograd_cy import _tape
    limit = rg.set_row_limit(0)  # every batch streams
    try:
        tape = rg.Tape()
        x = tape.term("x", 0.0)
        xs = np.linspace(0.5, 2.0, 300)
        x.set(xs)
        assert _tape._test_streamed(tape)[0]
        dx = rg.grad(lambda t: t * t if t > 0 else -t)(x)
        np.testing.assert_array_equal(dx.eval(), 2.0 * xs)
        x.set(-xs)
        np.testing.assert_array_equal(rg.grad(lambda t: t * t if t > 0 else -t)(x).eval(), -1.0)
        x.set(np.array([1.0, 2.0, -1.0]))
        assert _tape._test_streamed(tape)[0]
        with pytest.raises(rg.BranchChangedError, match="sample 2 of the batch of 3"):
            rg.grad(lambda t: t * t if t > 0 else -t)(x)
    finally:
        rg.set_row_limit(limit)


def test_where_is_the_batch_friendly_branch():
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    dx = rg.grad(lambda t: rg.where(t > 0, t * t, -t))(x)
    x.set(np.array([1.0, 2.0, -1.0, 3.0]))
    np.testing.assert_array_equal(dx.eval(), [2.0, 4.0, -1.0, 6.0])


# -- property: a transform follows any sequence of inputs ------------------------------------------

def _piecewise(x, y):
    if x > y:
        z = x * y
    elif x == y:
        z = rg.sin(x)
    else:
        z = x - 2.0 * y
    return z * z if z < 1.0 else z


def _piecewise_grad(x, y):
    if x > y:
        z, dz = x * y, (y, x)
    elif x == y:
        z, dz = math.sin(x), (math.cos(x), 0.0)
    else:
        z, dz = x - 2.0 * y, (1.0, -2.0)
    scale = 2.0 * z if z < 1.0 else 1.0
    return (scale * dz[0], scale * dz[1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1.0, 0.0, 0.5, 2.0]),
                          st.sampled_from([-1.0, 0.0, 0.5, 2.0])), min_size=1, max_size=12))
def test_grad_follows_any_sequence_of_branches(pairs):
    g = rg.grad(_piecewise, argnums=(0, 1))
    for x, y in pairs:
        assert g(x, y) == pytest.approx(_piecewise_grad(x, y), rel=1e-15)
    assert g.recordings <= len(set(pairs))  # at most one per branch pattern (<= 6 < MAX_RECORDINGS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_builder_writes_comparisons_and_where(kind):
    terms = rg.rustograd("""
x = 0.
y = where(x > 0, sqrt(x), 2. * x)
c = x != 1
""", kind=kind)
    assert (terms.y.eval(), terms.y.derive(terms.x)) == (0.0, 2.0)
    assert terms.c.eval() == 1.0
    with pytest.raises(rg.BuilderError, match="one comparison at a time"):
        rg.rustograd("x = 1.\ny = 0 < x < 2", kind=kind)
    with pytest.raises(rg.BuilderError, match="three arguments"):
        rg.rustograd("x = 1.\ny = where(x, x)", kind=kind)
