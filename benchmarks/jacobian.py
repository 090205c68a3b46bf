"""term.jacobian(params) against one backprop(): the seed's peak-separation residuals over 10^5 samples,
6 shared parameters. jacobian() writes 10^5 x 6 per-sample derivatives from one node-by-node reverse
sweep; backprop() runs the planned, fused sweep and sums them. Medians, side by side in one process.

    .venv/bin/python benchmarks/jacobian.py [--samples N]
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rustograd_cy as rg  # noqa: E402
from timing import load_average, median_time  # noqa: E402


def peaks(samples, use_apply=False):
    """(tape, x, y, params, residual) of the seed's two-Gaussian model, batched over `samples`."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    params, model = [], 0.0
    for k, init in enumerate(((-1.0, 1.0, 1.0), (1.0, 1.0, 1.0))):
        mu, sigma, scale = (tape.term(f"{n}{k}", v) for n, v in zip(("mu", "sigma", "scale"), init))
        x_mu = x - mu
        z = -(x_mu * x_mu) / sigma / sigma
        model = model + scale * (z.apply("exp", np.exp, np.exp) if use_apply else z.exp())
        params += [mu, sigma, scale]
    y = tape.term("y", 0.0)
    xs = np.linspace(-4.0, 4.0, samples)
    x.set(xs)
    y.set(0.75 * np.exp(-((xs - 0.8) ** 2) / 0.35) + 0.5 * np.exp(-((xs + 0.3) ** 2) / 0.5))
    return tape, x, y, params, model - y


def measure(samples, use_apply=False, budget=2.0):
    tape, x, y, params, residual = peaks(samples, use_apply)
    residual.eval()
    jac = residual.jacobian(params)
    residual.backprop()
    # The columns sum to what backprop() sums (to rounding): the two do the same work.
    assert all(math.isclose(jac[:, k].sum(), p.grad, rel_tol=1e-9, abs_tol=1e-9)
               for k, p in enumerate(params))
    rows = []
    for name, fn in (("backprop()", residual.backprop),
                     ("jacobian(params)", lambda: residual.jacobian(params)),
                     ("eval()", residual.eval)):
        seconds, runs, _ = median_time(fn, budget=budget, min_runs=7)
        rows.append((name, seconds, runs))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args(argv)
    load = load_average()
    print(f"load average: {load}")
    print(f"peak separation residuals, {args.samples} samples x 6 shared parameters; medians; the "
          f"machine may be shared, so compare the rows of one run only")
    print(f"{'model':<22} {'sweep':<18} {'median ms':>10} {'runs':>5} {'vs backprop':>12}")
    for label, use_apply in (("built-in exp", False), ("apply(np.exp)", True)):
        rows = measure(args.samples, use_apply)
        base = rows[0][1]
        for name, seconds, runs in rows:
            print(f"{label:<22} {name:<18} {seconds * 1e3:10.3f} {runs:5d} {seconds / base:11.2f}x")
    load = load_average()
    print(f"load average: {load}")


if __name__ == "__main__":
    main()
