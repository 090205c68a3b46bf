"""The Tape API's semantics: constants, length, clearing, memory, value and gradient lifetimes,
labels, sweep callbacks, identity, and that only the output's cone is swept."""
import math

import pytest

import rustograd_cy as rg
from rustograd_cy import ValueNotDefinedError


@pytest.fixture
def tape():
    return rg.Tape()


# -- constants and length -------------------------------------------------------------------------

def test_new_tape_holds_zero_and_one(tape):
    assert len(tape) == 2
    zero, one = tape.zero(), tape.one()
    assert (zero.index, zero.data, zero.name) == (0, 0.0, "0")
    assert (one.index, one.data, one.name) == (1, 1.0, "1")
    assert len(tape) == 2  # asking for them makes nothing


def test_zero_and_one_are_reused_for_numbers_0_and_1(tape):
    x = tape.term("x", 5.0)
    assert len(tape) == 3
    for y in (x + 0, 0.0 + x, x * 1, 1 * x, x - 0, x / 1.0):
        operands = y._graph()[-1][4]
        assert set(operands) & {0, 1}
    assert len(tape) == 3 + 6  # one op node each, no new constants
    assert tape.constant(0.0).index == tape.zero().index
    assert tape.constant(1).index == tape.one().index
    assert len(tape) == 9


def test_negative_zero_keeps_its_sign(tape):
    minus_zero = tape.constant(-0.0)
    assert minus_zero.index != 0
    assert math.copysign(1.0, minus_zero.data) == -1.0


def test_other_constants_are_new_leaves(tape):
    x = tape.term("x", 5.0)
    y = x * 2.5
    assert len(tape) == 5  # x, the constant 2.5, the product
    assert y.name == "x * 2.5"
    named = tape.constant(math.pi, name="pi")
    assert (named.name, named.data) == ("pi", math.pi)
    assert (x * named).name == "x * pi"


def test_len_counts_every_node(tape):
    x = tape.term("x", 1.0)
    y = x
    for k in range(100):
        y = y.sin()
    assert len(tape) == 2 + 1 + 100
    assert y.index == len(tape) - 1


def test_term_properties(tape):
    x = tape.term("x", 3)
    assert type(x.data) is float and x.data == 3.0
    assert x.tape is tape
    assert x.index == 2
    assert x.name == "x"


# -- computed values and gradients: when they exist -----------------------------------------------

def test_data_and_grad_are_none_before_computation(tape):
    x = tape.term("x", 2.0)
    y = x * x + 1
    assert x.data == 2.0  # a leaf always has its value
    assert y.data is None
    assert x.grad is None and y.grad is None
    assert y.eval() == 5.0 and y.data == 5.0
    assert x.grad is None  # eval() computes no gradients
    y.backprop()
    assert (x.grad, y.grad) == (4.0, 1.0)


def test_set_makes_op_values_stale(tape):
    x = tape.term("x", 2.0)
    y = x * 3
    y.eval()
    x.set(4.0)
    assert x.data == 4.0
    assert y.data is None
    assert y.eval() == 12.0


def test_gradients_stay_after_set_until_clear_grad(tape):
    x = tape.term("x", 2.0)
    y = x * x
    y.eval()
    y.backprop()
    x.set(10.0)
    assert x.grad == 4.0  # the last backprop()'s gradient, not recomputed by set()
    tape.clear_grad()
    assert x.grad is None and y.grad is None
    y.eval()
    y.backprop()
    assert x.grad == 20.0


def test_clear_drops_computed_values_but_not_leaves(tape):
    x, z = tape.term("x", 2.0), tape.term("z", -1.0)
    y = (x + z).exp()
    y.eval()
    tape.clear()
    assert (x.data, z.data) == (2.0, -1.0)
    assert y.data is None and (x + 0).data is None
    with pytest.raises(ValueNotDefinedError):
        y.derive(x)
    with pytest.raises(ValueNotDefinedError):
        y.backprop()
    assert y.eval() == math.exp(1.0)
    assert y.derive(x) == math.exp(1.0)


def test_clear_grad_drops_gradients(tape):
    x = tape.term("x", 2.0)
    y = x.square()
    y.eval()
    y.backprop()
    tape.clear_grad()
    assert x.grad is None and y.grad is None
    assert y.data == 4.0  # values stay
    assert y.derive(x) == 4.0


def test_derive_leaves_gradients_alone(tape):
    x, z = tape.term("x", 2.0), tape.term("z", 3.0)
    y = x * z
    y.eval()
    y.backprop()
    assert y.derive(z) == 2.0
    assert (x.grad, z.grad) == (3.0, 2.0)


def test_node_outside_the_cone_gets_gradient_zero(tape):
    x, z = tape.term("x", 2.0), tape.term("z", 3.0)
    unrelated = z.sin()
    y = x * x
    y.eval()
    y.backprop()
    assert z.grad == 0.0 and unrelated.grad == 0.0
    assert x.grad == 4.0
    assert y.derive(z) == 0.0


def test_backprop_of_a_second_output_resets_the_first_ones_gradients(tape):
    x, z = tape.term("x", 2.0), tape.term("z", 3.0)
    first = x * z
    second = z.square()
    first.eval()
    second.eval()
    first.backprop()
    assert (x.grad, z.grad) == (3.0, 2.0)
    second.backprop()
    assert (x.grad, z.grad, first.grad, second.grad) == (0.0, 6.0, 0.0, 1.0)
    first.backprop()  # and back: nothing left over from the second
    assert (x.grad, z.grad, first.grad, second.grad) == (3.0, 2.0, 1.0, 0.0)


def test_backprop_twice_does_not_accumulate(tape):
    x = tape.term("x", 3.0)
    y = x * x
    y.eval()
    y.backprop()
    y.backprop()
    assert x.grad == 6.0


def test_many_outputs_in_turn_beyond_the_cone_cache(tape):
    x = tape.term("x", 0.5)
    outputs = [x * k + x.sin() for k in range(20)]
    for _ in range(2):
        for k, y in enumerate(outputs):
            assert y.eval() == 0.5 * k + math.sin(0.5)
            y.backprop()
            assert x.grad == k + math.cos(0.5)


# -- memory ---------------------------------------------------------------------------------------

def test_nbytes_grows_with_the_tape(tape):
    sizes = [tape.nbytes]
    x = tape.term("x", 1.0)
    for _ in range(10):
        for _ in range(100):
            x = x + 1
        sizes.append(tape.nbytes)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0] > 0


@pytest.mark.slow
def test_nbytes_is_at_most_40_bytes_per_node_for_a_big_tape(tape):
    # Buffers grow by doubling from 64 nodes: at 64 * 2**14 nodes they are exactly full, so this
    # measures the per-node cost itself (with the evaluated output's cached cone), not the slack
    # that doubling leaves right after a growth step (at most one more times the same).
    n = 64 * 2 ** 14
    x = tape.term("x", 0.5)
    y = x
    for _ in range(n - 3):
        y = y + x
    assert len(tape) == n
    assert y.eval() == 0.5 * (n - 2)
    assert tape.nbytes <= 40 * n
    z = y + x  # one more node: the buffers double
    assert tape.nbytes <= 2 * 40 * len(tape)
    assert z.eval() == 0.5 * (n - 1)


# -- names and labels -----------------------------------------------------------------------------

def test_labels_of_operation_nodes(tape):
    a, b, c = tape.term("a", 1.0), tape.term("b", 2.0), tape.term("c", 3.0)
    cases = {
        (a + b) * c: "(a + b) * c",
        a + b * c: "a + b * c",
        a - (b - c): "a - (b - c)",
        (a - b) - c: "a - b - c",
        a / (b * c): "a / (b * c)",
        -(a + b): "-(a + b)",
        (a + b).sin(): "sin(a + b)",
        rg.atan2(a, b * c): "atan2(a, b * c)",
        a ** 2: "a ** 2",
        (a ** b) ** c: "(a ** b) ** c",
        2.0 ** a: "2 ** a",
        a.apply("f", math.sin, math.cos) * b: "f(a) * b",
        rg.maximum(0.0, a): "maximum(0, a)",
    }
    for term, label in cases.items():
        assert term.name == label


def test_label_of_a_deep_node_is_short(tape):
    x = tape.term("x", 0.1)
    y = x
    for _ in range(20):
        y = y.sin()
    assert y.name == "sin(sin(sin(sin(…))))"


def test_apply_node_is_named_by_its_function(tape):
    x = tape.term("x", 0.1)
    y = x.apply("mysin", math.sin, math.cos)
    assert y.name == "mysin(x)"


# -- callbacks ------------------------------------------------------------------------------------

def _cone_indices(term):
    return [record[0] for record in term._graph()]


def test_callbacks_fire_once_per_cone_node_in_sweep_order(tape):
    a, b, c = tape.term("a", 1.0), tape.term("b", 2.0), tape.term("c", 3.0)
    outside = (a * c).cos()
    y = (a + b).sin() * b
    seen = []

    def on_eval(term):
        assert term.data is not None  # the node's value is there when it is reported
        seen.append(term.index)

    assert y.eval(callback=on_eval) == math.sin(3.0) * 2.0
    cone = _cone_indices(y)
    assert seen == cone == sorted(cone)
    assert outside.index not in seen and c.index not in seen

    seen.clear()
    grads_when_reported = {}

    def on_backprop(term):
        seen.append(term.index)
        grads_when_reported[term.index] = term.grad

    y.backprop(callback=on_backprop)
    assert seen == cone[::-1]
    # Each gradient is final when its node is reported (its users all come later on the tape).
    for index, grad in grads_when_reported.items():
        assert grad == tape_term(y, index).grad


def tape_term(y, index):
    """The term of node `index` on y's tape, found through y's records (no public constructor)."""
    for term in _walk(y):
        if term.index == index:
            return term
    raise KeyError(index)


def _walk(y):
    found = []
    y.eval(callback=found.append)
    return found


def test_callback_results_match_plain_sweeps(tape):
    x = tape.term("x", 0.7)
    y = x.exp() * x.sin() - x.square()
    with_callback = y.eval(callback=lambda term: None)
    assert with_callback == y.eval()
    y.backprop(callback=lambda term: None)
    slow = x.grad
    y.backprop()
    assert x.grad == slow


# -- identity -------------------------------------------------------------------------------------

def test_hash_is_the_proxys_identity_and_equality_a_comparison(tape):
    """`==` builds a comparison node (issue 15); hashing is by the proxy object, so two proxies of
    one node are two dict keys and no dict or set lookup ever compares terms."""
    x = tape.term("x", 1.0)
    y = x + 1
    again = [t for t in _walk(y) if t.index == x.index][0]
    assert again is not x and again.index == x.index
    assert (again == x).eval() == 1.0 and (x != y).eval() == 1.0 and (x == 1.0).eval() == 1.0
    assert hash(x) == hash(x) and len({x, again, y}) == 3
    assert {x: "x"}[x] == "x" and again not in {x: "x"}
    other = rg.Tape()
    twin = other.term("x", 1.0)
    with pytest.raises(rg.TapeMismatchError):
        twin == x  # noqa: B015 (terms of two tapes never mix)


def test_terms_have_no_truth_value(tape):
    x = tape.term("x", 1.0)
    with pytest.raises(TypeError, match="eval"):
        bool(x)


def test_repr(tape):
    x = tape.term("x", 1.5)
    y = x * 2
    assert repr(x) == "TapeTerm('x', index=2, data=1.5)"
    assert repr(y) == "TapeTerm('x * 2', index=4, data=None)"
    y.eval()
    assert repr(y) == "TapeTerm('x * 2', index=4, data=3.0)"
    assert repr(tape) == "Tape(nodes=5)"


def test_graph_records_put_operands_first(tape):
    a, b = tape.term("a", 1.0), tape.term("b", 2.0)
    y = (a * b).sin()
    y.eval()
    y.backprop()
    records = y._graph()
    keys = [r[0] for r in records]
    for key, name, op, infix, operands, data, grad in records:
        assert all(keys.index(k) < keys.index(key) for k in operands)
    assert records[-1][1:4] == (None, "sin", "")
    assert records[-1][5] == math.sin(2.0) and records[-1][6] == 1.0
    leaf_records = {r[1]: r for r in records if r[2] == "leaf"}
    assert leaf_records["a"][6] == math.cos(2.0) * 2.0


# -- only the output's cone is swept --------------------------------------------------------------

class Counted:
    """A function (and its derivative) that count their calls."""

    def __init__(self):
        self.f_calls = self.df_calls = 0

    def f(self, v):
        self.f_calls += 1
        return math.sin(v)

    def df(self, v):
        self.df_calls += 1
        return math.cos(v)


def test_only_the_cone_is_evaluated(tape):
    x, z = tape.term("x", 0.3), tape.term("z", 0.4)
    inside, outside = Counted(), Counted()
    side = x.apply("outside", outside.f, outside.df) + z  # depends on x, but y does not use it
    side_builtin = x.exp()
    y = x.apply("inside", inside.f, inside.df) * z
    assert y.eval() == math.sin(0.3) * 0.4
    assert side.data is None and side_builtin.data is None
    assert (inside.f_calls, outside.f_calls) == (1, 0)

    y.backprop()
    assert (inside.df_calls, outside.df_calls) == (1, 0)
    assert side.grad == 0.0 and side_builtin.grad == 0.0

    assert y.derive(x) == math.cos(0.3) * 0.4
    assert (inside.df_calls, outside.df_calls) == (2, 0)

    seen = []
    y.backprop(callback=lambda term: seen.append(term.index))
    assert side.index not in seen and side_builtin.index not in seen
    assert outside.f_calls == outside.df_calls == 0


def test_an_output_built_before_others_sweeps_only_its_own_nodes(tape):
    x = tape.term("x", 1.0)
    early = x * 2
    later = [early.sin() for _ in range(5)]  # nodes after the output on the tape
    counted = Counted()
    late_apply = early.apply("late", counted.f, counted.df)
    assert early.eval() == 2.0
    assert all(t.data is None for t in later) and late_apply.data is None
    early.backprop()
    assert counted.f_calls == counted.df_calls == 0
    assert x.grad == 2.0


# -- replays sweep in level order (rg_level_order) -------------------------------------------------

def _random_graph(tape, n, seed):
    """A random DAG of n nodes over the tape's ops with an apply() node now and then (its callable
    counts its calls and checks that its operand is current); returns (leaves, nodes, counted)."""
    import random

    rnd = random.Random(seed)
    leaves = [tape.term(f"x{j}", rnd.uniform(-1, 1)) for j in range(8)]
    nodes, counted = list(leaves), Counted()
    unary = [rg.TapeTerm.sin, rg.TapeTerm.cos, rg.TapeTerm.tanh, lambda t: t.apply("f", counted.f, counted.df)]
    binary = [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b]
    for i in range(n):
        a, b = nodes[-1 - rnd.randrange(min(len(nodes), 40))], nodes[-1 - rnd.randrange(min(len(nodes), 40))]
        if rnd.random() < 0.5:
            nodes.append(rnd.choice(binary)(a, b))
        else:
            nodes.append(unary[0 if i % 37 else 3](a) if rnd.random() < 0.3 else rnd.choice(unary[:3])(a))
    return leaves, nodes, counted


def test_a_replay_gives_a_first_sweeps_values_and_gradients_bit_for_bit():
    """The second sweep of a cone on runs in level order; every node's value and gradient is the
    one a first sweep (index order) of a fresh tape gives for the same leaves."""
    replayed, fresh = rg.Tape(), rg.Tape()
    leaves, nodes, counted = _random_graph(replayed, 3000, seed=1)
    fresh_leaves, fresh_nodes, _ = _random_graph(fresh, 3000, seed=1)
    nodes[-1].eval()
    nodes[-1].backprop()
    for values in ([0.1 * j - 0.3 for j in range(8)], [0.7 - 0.15 * j for j in range(8)]):
        for leaf, fresh_leaf, v in zip(leaves, fresh_leaves, values):
            leaf.set(v)
            fresh_leaf.set(v)
        calls = counted.f_calls
        nodes[-1].eval()
        nodes[-1].backprop()
        fresh_nodes[-1].eval()
        fresh_nodes[-1].backprop()
        assert counted.f_calls > calls  # the replay ran apply() nodes
        got = [(t.data, t.grad) for t in nodes]
        want = [(t.data, t.grad) for t in fresh_nodes]
        assert got == want
        fresh = rg.Tape()  # a first sweep again, next round
        fresh_leaves, fresh_nodes, _ = _random_graph(fresh, 3000, seed=1)


def test_a_replays_callable_sees_its_operand_current_and_runs_once():
    x = rg.Tape().term("x", 0.5)
    seen = []
    y = x
    for _ in range(40):
        y = (y * 0.5).sin() + x
    z = y.apply("f", lambda v: seen.append(v) or v * v, lambda v: 2 * v) + x.cos() * 3
    for v in (0.5, 0.25, 0.125):
        x.set(v)
        del seen[:]
        want = y.eval()
        assert z.eval() == want * want + math.cos(v) * 3
        assert seen == [want]


def test_a_callable_raising_in_a_replay_leaves_its_users_stale():
    x = rg.Tape().term("x", 0.5)
    fail = []

    def f(v):
        if fail:
            raise ValueError("refused")
        return v + 1

    y = x
    for _ in range(40):
        y = y.sin() * x
    z = y.apply("f", f, lambda v: 1.0).cos() + x.tanh()
    z.eval()
    z.eval()  # the replays' level order is made
    x.set(0.25)
    fail.append(1)
    with pytest.raises(ValueError, match="refused"):
        z.eval()
    with pytest.raises(ValueNotDefinedError):
        z.backprop()
    fail.clear()
    assert z.eval() == math.cos(y.eval() + 1) + math.tanh(0.25)


def test_a_replays_callbacks_see_the_nodes_in_index_order(tape):
    x = tape.term("x", 0.5)
    y = x
    for k in range(100):
        y = (y.sin() if k % 2 else y.cos()) * x
    y.eval()
    y.eval()
    seen = []
    y.eval(callback=lambda t: seen.append(t.index))
    assert seen == _cone_indices(y)


def test_the_level_order_counts_in_nbytes(tape):
    x = tape.term("x", 0.5)
    y = x
    for _ in range(1000):
        y = y.sin() + x
    y.eval()
    before = tape.nbytes
    y.eval()
    assert tape.nbytes == before + 4 * 2000  # 2000 computing nodes, one rg_index each


def test_a_shared_node_is_evaluated_once_per_sweep(tape):
    x = tape.term("x", 0.25)
    counted = Counted()
    shared = x.apply("f", counted.f, counted.df)
    y = shared * shared + shared.exp()
    y.eval()
    assert counted.f_calls == 1
    y.backprop()
    assert counted.df_calls == 1
    s = math.sin(0.25)
    assert math.isclose(x.grad, (2 * s + math.exp(s)) * math.cos(0.25), rel_tol=1e-15)
