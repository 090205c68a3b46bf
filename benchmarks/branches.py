"""Replay cost of Python branches inside rg.grad (issue 15): a guarded function against the same
arithmetic without branches, against one whose inputs alternate between two branch patterns, and
against retrace=True (recording every call). Medians of one call each, side by side in one process.

The function is a chain of `steps` updates y = y * a + sin(y); the guarded version tests `y > -1e9`
(always true) before each update, so it has `steps` guards and the same arithmetic. The per-guard
cost is (guarded - unguarded) / steps per call.

    .venv/bin/python benchmarks/branches.py [--steps N]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rustograd_cy as rg  # noqa: E402
from timing import load_average, median_time  # noqa: E402


def plain(steps):
    def f(x):
        y = x
        for _ in range(steps):
            y = y * 0.999 + rg.sin(y)
        return y
    return f


def guarded(steps):
    def f(x):
        y = x
        for _ in range(steps):
            if y > -1e9:
                y = y * 0.999 + rg.sin(y)
        return y
    return f


def two_branches(steps):
    def f(x):
        y = x if x > 0 else -x  # the first guard picks one of two recorded tapes
        for _ in range(steps):
            if y > -1e9:
                y = y * 0.999 + rg.sin(y)
        return y
    return f


def per_call(g, inputs, budget):
    g(inputs[0])  # record outside the clock
    calls = len(inputs)

    def run():
        for v in inputs:
            g(v)
    seconds, _, _ = median_time(run, budget=budget)
    return seconds / calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--budget", type=float, default=0.5)
    args = parser.parse_args(argv)
    load = load_average()
    print(f"Replay of rg.grad(f) per call, median (load average: {load})")
    print(f"{'steps':>6} {'unguarded':>11} {'guarded':>11} {'per guard':>10} {'alternating':>12} "
          f"{'retrace=True':>13} {'retrace/guarded':>16}")
    for steps in args.steps:
        same = [0.5, 0.7, 0.9, 1.1] * 5
        alternating = [0.5, -0.7, 0.9, -1.1] * 5
        t_plain = per_call(rg.grad(plain(steps)), same, args.budget)
        g = rg.grad(guarded(steps))
        t_guard = per_call(g, same, args.budget)
        a = rg.grad(two_branches(steps))
        t_alt = per_call(a, alternating, args.budget)
        t_retrace = per_call(rg.grad(guarded(steps), retrace=True), same[:4], args.budget)
        assert g.recordings == 1 and a.recordings == 2, (g.recordings, a.recordings)
        per_guard = (t_guard - t_plain) / steps
        print(f"{steps:>6} {t_plain * 1e6:>9.1f}us {t_guard * 1e6:>9.1f}us {per_guard * 1e9:>8.1f}ns "
              f"{t_alt * 1e6:>10.1f}us {t_retrace * 1e6:>11.1f}us {t_retrace / t_guard:>15.1f}x")


if __name__ == "__main__":
    main()
