"""Memory of a streamed training step (issue 12, item 2), and its gradients against 1000-sample slices.

One step of the 2-16-16-1 tanh MLP (rg.nn.MLP, seed 1): loss = rg.mean(hinge) + 1e-4 * sum(p^2) on B
points of two half-moons (examples/moons_mlp.make_moons), loss.eval() and loss.backprop(), in this
fresh process. Printed: the peak resident memory (VmHWM) before the step (after imports, data and
graph) and after it, the growth, the tape's nbytes, and what full rows (nodes x B x 16 bytes) would
need. Then the same gradients computed on 1000-sample slices of the data (one tape replayed per
slice: rg.sum(hinge) per slice, summed, / B, plus the penalty's) and the largest difference relative
to the largest gradient.

    python benchmarks/stream_memory.py [--samples 2000000] [--slice 1000] [--threads 1]
"""
import argparse
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

import rustograd_cy as rg  # noqa: E402
from moons_mlp import make_moons  # noqa: E402

DECAY = 1e-4


def peak_rss_mib():
    """This process's peak resident set (VmHWM), MiB (Linux; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model(reduce):
    """(tape, inputs, y, loss, parameters) of the step's graph, built in scalar mode."""
    tape = rg.Tape()
    mlp = rg.nn.MLP(tape, [2, 16, 16, 1], seed=1)
    y = tape.term("y", 0.0)
    hinge = rg.relu(1.0 - y * mlp.outputs[0])
    params = mlp.parameters()
    reg = sum(p * p for p in params)
    loss = reduce(hinge) + DECAY * reg if reduce is rg.mean else reduce(hinge)
    return tape, mlp.inputs, y, loss, params


def streamed_step(X, Y):
    tape, (x0, x1), y, loss, params = model(rg.mean)
    nodes = len(tape)
    before = peak_rss_mib()
    t0 = time.perf_counter()
    x0.set(X[:, 0])
    x1.set(X[:, 1])
    y.set(Y)
    value = loss.eval()
    loss.backprop()
    seconds = time.perf_counter() - t0
    after = peak_rss_mib()
    grads = np.array([p.grad for p in params])
    info = dict(before=before, after=after, nodes=nodes, nbytes=tape.nbytes, seconds=seconds,
                streamed=rg._tape._test_streamed(tape), value=value,
                pvalues=np.array([p.data for p in params]))
    return grads, info


def sliced_grads(X, Y, width):
    """The same gradients from slices of `width` samples (a shorter last slice)."""
    tape, (x0, x1), y, loss, params = model(rg.sum)
    total = np.zeros(len(params))
    for s in range(0, len(Y), width):
        x0.set(X[s:s + width, 0])
        x1.set(X[s:s + width, 1])
        y.set(Y[s:s + width])
        loss.eval()
        loss.backprop()
        total += [p.grad for p in params]
        if len(Y) - s - width < width and s + width < len(Y):  # the last slice is shorter:
            for leaf in (x0, x1, y):                           # the batch size changes
                leaf.set(0.0)
    pvalues = np.array([p.data for p in params])
    return total / len(Y) + 2 * DECAY * pvalues


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--slice", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    rg.set_num_threads(args.threads)
    X, Y = make_moons(args.samples, seed=0)
    X, Y = np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(Y, dtype=np.float64)
    grads, info = streamed_step(X, Y)
    full_rows = info["nodes"] * args.samples * 16 / 2**20
    print(f"2-16-16-1 MLP, one step (eval + backprop) on {args.samples} samples, "
          f"{args.threads} sweep thread(s); row limit {rg.get_row_limit() / 2**20:.0f} MiB; "
          f"streamed: {info['streamed'][0]}, {info['streamed'][1]} samples per chunk")
    print(f"  peak RSS before the step {info['before']:.0f} MiB (imports, data, graph), after "
          f"{info['after']:.0f} MiB: growth {info['after'] - info['before']:.0f} MiB; "
          f"tape.nbytes {info['nbytes'] / 2**20:.1f} MiB; full rows would need {full_rows:.0f} MiB "
          f"({info['nodes']} nodes); step {info['seconds']:.2f} s; loss {info['value']:.6f}")
    t0 = time.perf_counter()
    sliced = sliced_grads(X, Y, args.slice)
    worst = np.max(np.abs(grads - sliced)) / np.max(np.abs(sliced))
    each = np.max(np.abs(grads - sliced) / np.maximum(np.abs(sliced), 1e-300))
    print(f"  gradients vs {args.slice}-sample slices ({time.perf_counter() - t0:.1f} s): largest "
          f"difference {worst:.2e} of the largest gradient; largest per-parameter relative "
          f"difference {each:.2e}")
    print(f"  load: {os.getloadavg()[0]:.2f} (shared machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
