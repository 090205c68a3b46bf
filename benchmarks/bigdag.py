"""The bigdag workload: a random DAG of N nodes shared by the benchmarks and the tests.

LCG s = s*6364136223846793005 + 1442695040888963407 mod 2**64, draw = s >> 33, seed 42. Nodes 0..15
are leaves holding sin(j + 1); node i >= 16 applies op [add, sub, mul, sin, cos, tanh, sin, cos][draw % 8]
to a = i-1-(draw % w) and b = i-1-(draw % w), w = min(i, 64) (three draws in that order; unary ops use
a). The output is node N - 1; at N = 1000 it is 0.5537188726646275.
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
