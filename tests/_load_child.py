"""Runs tape states through the loader in a process of its own, so that a crash is a failure with a
signal instead of the end of the test run (tests/test_loader.py starts it).

stdin: a pickled list of states (as `Tape.__reduce__` makes them, some corrupted). For each, stdout
gets `start <k>` before the load and, after it, one JSON line: {"case": k, "outcome": "refused",
"type": ..., "message": ...}, or {"case": k, "outcome": "accepted"} once the loaded tape has been
exercised (values, gradients, derivatives, drawing, pickling) and compared with a reference tape
rebuilt node by node from the same arrays through the public API; a difference is "wrong".
"""
import json
import math
import pickle
import sys

import numpy as np

import rustograd_cy as rg
from rustograd_cy._ops import OPS
from rustograd_cy._tape import _restore_tape

LEAF, CONST, APPLY = (next(k for k, op in enumerate(OPS) if op[0] == name)
                      for name in ("leaf", "const", "apply"))


def same(a, b):
    """Bit-for-bit equality of two results (floats, arrays or None), NaN equal to NaN."""
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def rebuild(state):
    """A tape built through the public API with the nodes the state's arrays describe."""
    op, lhs, rhs, value = (np.asarray(state[k]) for k in ("op", "lhs", "rhs", "value"))
    names, funcs = state["names"], state["funcs"]
    tape = rg.Tape()
    terms = [tape.zero(), tape.one()]
    for i in range(2, len(op)):
        code = int(op[i])
        if code == LEAF:
            t = tape.term(names[i], float(value[i]))
        elif code == CONST:
            t = tape.constant(float(value[i]), name=names.get(i, f"c{i}"))
        elif code == APPLY:
            f, df, grad_graph = funcs[i]
            t = terms[int(lhs[i])].apply(names[i], f, df, grad_graph)
        else:
            t = tape._term_at(tape._push_node(code, int(lhs[i]), int(rhs[i])))
        assert t.index == i, (t.index, i)
        terms.append(t)
    for i, arr in state["arrays"].items():
        terms[int(i)].set(arr)
    return tape, terms


def exercise(state, tape):
    """None if the loaded tape holds and computes what its state's arrays say, else why not."""
    n = len(tape)
    if n != len(state["op"]):
        return f"{n} nodes loaded from {len(state['op'])}"
    loaded = [tape._term_at(i) for i in range(n)]
    ref_tape, ref = rebuild(state)
    value, valid = np.asarray(state["value"]), np.asarray(state["valid"])
    batched = bool(state["arrays"])
    for i, t in enumerate(loaded):  # before any sweep: exactly what was saved
        op = int(state["op"][i])
        if batched:
            expected = ref[i].data if op <= CONST else None
        elif op <= CONST or valid[i]:
            expected = float(value[i])
        else:
            expected = None
        if not same(t.data, expected):
            return f"node {i}: data {t.data!r}, saved {expected!r}"
        expected_grad = None if state["grad"] is None else float(state["grad"][i])
        if not same(t.grad, expected_grad):
            return f"node {i}: grad {t.grad!r}, saved {expected_grad!r}"
        t.name
    repr(loaded[-1])
    pickle.loads(pickle.dumps(tape))
    for out in sorted({n - 1, int(state["grad_output"]) if state["grad_output"] >= 0 else n - 1}):
        a, b = loaded[out].eval(), ref[out].eval()
        if not same(a, b):
            return f"eval of node {out}: {a!r}, the rebuilt tape {b!r}"
        loaded[out].backprop()
        ref[out].backprop()
        for i in range(n):
            if not same(loaded[i].grad, ref[i].grad):
                return f"grad of node {i} from {out}: {loaded[i].grad!r} vs {ref[i].grad!r}"
        for i in range(n):
            if int(state["op"][i]) == LEAF:
                a, b = loaded[out].derive(loaded[i]), ref[out].derive(ref[i])
                if not same(a, b):
                    return f"derive of node {out} by {i}: {a!r} vs {b!r}"
        if not batched:  # (dot() cannot print a batch's values yet)
            loaded[out].dot()
    return None


def main():
    states = pickle.load(sys.stdin.buffer)
    out = sys.stdout
    for k, state in enumerate(states):
        out.write(f"start {k}\n")
        out.flush()
        try:
            tape = _restore_tape(state)
        except Exception as exc:
            record = {"case": k, "outcome": "refused", "type": type(exc).__name__, "message": str(exc)}
        else:
            try:
                why = exercise(state, tape)
            except Exception as exc:
                why = f"{type(exc).__name__} while using the loaded tape: {exc}"
            record = {"case": k, "outcome": "accepted" if why is None else "wrong", "why": why}
        out.write(json.dumps(record) + "\n")
        out.flush()
    out.write("done\n")


if __name__ == "__main__":
    main()
