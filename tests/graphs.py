"""The random expression graphs of the property tests, in one place.

A program is (leaf values, steps); a step is (op, i, j, c): op applied to the operands that the
indices i and j pick among the nodes built so far, c a number for the ops that take one. The
strategies here draw programs (`programs`, and `batched` with array leaves); `build` makes the
nodes on any term kind (or on anything with the term API: the oracles of tests/test_fuzz.py and
PyTorch) by the one step function `apply_op`. The ops are every op of the spec a user reaches
(tests/oracle.py's rows), so a new op joins every property test by its rows alone.
"""
import math
import operator

import numpy as np
from hypothesis import strategies as st

import oracle

UNARY, BINARY = oracle.UNARY, oracle.BINARY
#: A number on one side: "addc" is x + c, "raddc" c + x, ..., "powc" x ** c, "rpowc" rg.pow(c, x).
MIXED = ("addc", "raddc", "subc", "rsubc", "mulc", "rmulc", "divc", "rdivc", "powc", "rpowc")
#: The apply() node of the programs: a Python callable (atan) with its derivative.
APPLY = {"atan": (math.atan, lambda v: 1.0 / (1.0 + v * v))}
#: Operand indices: taken modulo what can be picked, so programs shrink well.
INDEX = st.integers(0, 1 << 20)


def apply_op(op, x, y, c):
    """One step on terms of any kind (x, y terms, c a number): the op's method, operator or
    module function (abs: the builtin when c is 3, so both forms are drawn)."""
    if op == "neg":
        return -x
    if op in UNARY:
        return abs(x) if op == "abs" and c == 3 else getattr(x, op)()
    if op == "add":
        return x + y
    if op == "sub":
        return x - y
    if op == "mul":
        return x * y
    if op == "div":
        return x / y
    if op in oracle.COMPARISONS:
        return getattr(operator, op)(x, y)
    if op in BINARY:  # pow, atan2, maximum, minimum, ...: the method (a term on the left)
        return getattr(x, op)(y)
    if op == "apply":
        return x.apply("atan", *APPLY["atan"])
    if op == "rpowc":
        import rustograd_cy as rg
        return rg.pow(c, x)
    # numpy < 2.1 computes `np.float64 / term` by an object-dtype ufunc loop calling the term's
    # __rtruediv__, then reports the floating-point flags the C kernel set (a Term computes at
    # once: 1.5 / -0.0 = -inf) as a RuntimeWarning; numpy >= 2.1 defers to the term directly.
    # The value is checked either way, against the other kinds.
    with np.errstate(all="ignore"):
        return {
            "addc": lambda: x + c, "raddc": lambda: c + x, "subc": lambda: x - c,
            "rsubc": lambda: c - x, "mulc": lambda: x * c, "rmulc": lambda: c * x,
            "divc": lambda: x / c, "rdivc": lambda: c / x, "powc": lambda: x ** c,
        }[op]()


def steps(ops, constants):
    """Steps (op, i, j, c) with op from `ops` and c drawn from `constants` (a strategy or a list)."""
    if not isinstance(constants, st.SearchStrategy):
        constants = st.sampled_from(list(constants))
    return st.tuples(st.sampled_from(list(ops)), INDEX, INDEX, constants)


def programs(values, step, leaves=(1, 4), length=(1, 14)):
    """(leaf values, steps): between leaves[0] and leaves[1] leaves drawn from `values`, and
    length[0] to length[1] steps drawn from `step` (see `steps`; st.one_of mixes several)."""
    return st.tuples(st.lists(values, min_size=leaves[0], max_size=leaves[1]),
                     st.lists(step, min_size=length[0], max_size=length[1]))


@st.composite
def batched(draw, values, step, length=(1, 25), size=(1, 12), leaves=(1, 4)):
    """(leaf values, {leaf position: array}, steps, batch size): a program some of whose leaves
    (at least one) hold arrays of `size` samples drawn from `values`."""
    n_leaves = draw(st.integers(*leaves))
    n = draw(st.integers(*size))
    leaf_values = [draw(values) for _ in range(n_leaves)]
    flags = draw(st.lists(st.booleans(), min_size=n_leaves, max_size=n_leaves).filter(any))
    arrays = {j: np.array(draw(st.lists(values, min_size=n, max_size=n)))
              for j in range(n_leaves) if flags[j]}
    program = draw(st.lists(step, min_size=length[0], max_size=length[1]))
    return leaf_values, arrays, program, n


def build(make, leaf_values, program, max_uses=None):
    """The nodes of a program: leaves made by make(name, value), then one per step, each picking
    its operands i, j modulo the nodes built so far. With max_uses, a node is an operand at most
    that many times (steps whose operands would exceed it are left out)."""
    nodes = [make(f"x{k}", v) for k, v in enumerate(leaf_values)]
    uses = [0] * len(nodes)
    for op, i, j, c in program:
        free = [k for k, u in enumerate(uses) if max_uses is None or u < max_uses]
        if not free:
            break
        a = free[i % len(free)]
        uses[a] += 1
        b = a
        if op in BINARY:
            free = [k for k, u in enumerate(uses) if max_uses is None or u < max_uses]
            if not free:
                uses[a] -= 1
                break
            b = free[j % len(free)]
            uses[b] += 1
        nodes.append(apply_op(op, nodes[a], nodes[b], c))
        uses.append(0)
    return nodes


@st.composite
def layered(draw):
    """Leaves (some holding arrays), then steps: a random op, or one or two sums of terms built
    interleaved (two chains adding to the same rows in turn cannot keep their order fused)."""
    size = draw(st.integers(1, 20))
    # 0 or 1e-3 <= |x| <= 3: a tinier x makes partials such as 1 / x so large that gradients summed
    # in another order (as a batch sums a uniform node's) cancel differently; that is rounding, which
    # test_batch covers, not what fusion changes.
    magnitudes = st.floats(1e-3, 3)
    values = st.one_of(st.just(0.0), magnitudes, magnitudes.map(lambda x: -x))
    n_leaves = draw(st.integers(2, 5))
    leaf_values = [draw(values) for _ in range(n_leaves)]
    batched = draw(st.lists(st.booleans(), min_size=n_leaves, max_size=n_leaves).filter(any))
    arrays = {j: np.array(draw(st.lists(values, min_size=size, max_size=size)))
              for j in range(n_leaves) if batched[j]}
    index = INDEX
    term = st.tuples(index, index, st.sampled_from(["w*x", "x*w", "plain"]))
    sums = st.tuples(st.just("sum"), st.lists(st.tuples(index, st.lists(term, min_size=1,
                                                                        max_size=6)),
                                              min_size=1, max_size=2), st.booleans())
    ops = st.tuples(st.sampled_from(UNARY + BINARY), index, index)
    steps = draw(st.lists(st.one_of(sums, ops), min_size=1, max_size=10))
    return leaf_values, arrays, steps, size
