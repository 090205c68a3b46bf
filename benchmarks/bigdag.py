"""The bigdag workload: a random DAG of N nodes shared by the benchmarks and the tests.

LCG s = s*6364136223846793005 + 1442695040888963407 mod 2**64, draw = s >> 33, seed 42. Nodes 0..15
are leaves holding sin(j + 1); node i >= 16 applies op [add, sub, mul, sin, cos, tanh, sin, cos][draw % 8]
to a = i-1-(draw % w) and b = i-1-(draw % w), w = min(i, 64) (three draws in that order; unary ops use
a). The output is node N - 1; at N = 1000 it is 0.5537188726646275.

Two builders. `build` keeps a Python proxy of every node in a list, as naive user code would. For
the tape that once made CPython's cyclic garbage collector dominate the build (every proxy was a
tracked object rescanned by each full collection: about 650 ns/node at N = 10^6 with the list against
about 175 with the GC off); proxies of a tape without apply() callables are now left untracked, since
they cannot close a cycle (Tape._wrap), and the GC-on and GC-off rows should agree.
Node i only ever uses nodes i-64..i-1, so `build_ring` keeps just the last RING nodes in a ring
(plus the output it returns); the graph itself is kept by the term kind (the tape, or the output's
operand references). The benchmarks use the ring for the headline build figure and also report the
keep-every-node variant.
"""
import math

OPS = ("add", "sub", "mul", "sin", "cos", "tanh", "sin", "cos")
LEAVES = 16
VALUE_AT_1000 = 0.5537188726646275


def plan(n):
    """The graph as a list of (op, a, b) for nodes 16..n-1 (op names from OPS)."""
    s = 42
    mask = (1 << 64) - 1
    steps = []
    for i in range(LEAVES, n):
        draws = []
        for _ in range(3):
            s = (s * 6364136223846793005 + 1442695040888963407) & mask
            draws.append(s >> 33)
        w = min(i, 64)
        steps.append((OPS[draws[0] % 8], i - 1 - draws[1] % w, i - 1 - draws[2] % w))
    return steps


def leaf_values():
    return [math.sin(j + 1) for j in range(LEAVES)]


BINARY = ("add", "sub", "mul")


def term_table(cls):
    """The op table for a term class with operators and .sin()/.cos()/.tanh() methods."""
    import operator

    return {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
            "sin": cls.sin, "cos": cls.cos, "tanh": cls.tanh}


def compile_plan(steps, table):
    """The plan as (function, a, b, unary) tuples, so the build loop does no lookups."""
    return [(table[op], a, b, op not in BINARY) for op, a, b in steps]


def build(compiled, leaves):
    """Build the graph from `leaves` (LEAVES terms) and a compiled plan; returns all N nodes."""
    nodes = list(leaves)
    append = nodes.append
    for fn, a, b, unary in compiled:
        append(fn(nodes[a]) if unary else fn(nodes[a], nodes[b]))
    return nodes


RING = 64  # node i uses nodes >= i - 64, so the last 64 nodes are all a builder must keep


def compile_ring(steps, table):
    """The plan for `build_ring`: (function, a slot, b slot, unary) with slots = index mod RING."""
    return [(table[op], a % RING, b % RING, op not in BINARY) for op, a, b in steps]


def build_ring(ring_plan, leaves):
    """Build the graph keeping only the last RING nodes alive here; returns the output (node N-1)."""
    ring = list(leaves) + [None] * (RING - LEAVES)
    slot = LEAVES
    for fn, a, b, unary in ring_plan:
        ring[slot] = fn(ring[a]) if unary else fn(ring[a], ring[b])
        slot = (slot + 1) % RING
    return ring[(slot - 1) % RING]


def cone_size(steps):
    """How many of the N nodes the output depends on (itself included)."""
    n = LEAVES + len(steps)
    needed = bytearray(n)
    needed[n - 1] = 1
    for i in range(n - 1, LEAVES - 1, -1):
        if needed[i]:
            op, a, b = steps[i - LEAVES]
            needed[a] = 1
            if op in BINARY:
                needed[b] = 1
    return sum(needed)


def reference_value(steps):
    """The output computed with plain floats and the math module (the oracle for the benchmarks)."""
    fns = {"add": float.__add__, "sub": float.__sub__, "mul": float.__mul__,
           "sin": math.sin, "cos": math.cos, "tanh": math.tanh}
    values = leaf_values()
    for op, a, b in steps:
        f = fns[op]
        values.append(f(values[a], values[b]) if op in ("add", "sub", "mul") else f(values[a]))
    return values[-1]


if __name__ == "__main__":
    print(reference_value(plan(1000)))
