"""Time per fit step on Dask (rustograd_cy.dask.fit) beside the single-process batched step.

Workload: examples/dask_fit.py's peak separation (two Gaussians, 6 parameters, Adam), on 10^6 and
10^7 samples in 10 chunks. Columns, medians of the timed steps (the first step of each fit, which
also makes the samples on the workers, is left out):
  one process    loss.eval() + loss.backprop() + opt.step() on the whole arrays in this process
                 (at 10^7, in slices of 10^6 samples, gradients summed: the whole batch would need
                 ~4 GB of rows)
  dask, 1 / 2    rustograd_cy.dask.fit in a LocalCluster of 1 or 2 worker processes, one thread each
  overhead       the same fit on 10 chunks of 10 samples: what a step costs in scheduling and
                 messages alone (map, gather, pickled parameters and partial sums)

    python benchmarks/dask_steps.py [--quick] [--steps N]

Only ratios within one run mean anything on a shared machine: the load average is printed beside them.
"""
import argparse
import logging
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import dask_fit  # noqa: E402  (the example's model and data)
import rustograd_cy as rg  # noqa: E402
import rustograd_cy.dask as rgd  # noqa: E402
from timing import load_average  # noqa: E402

SLICE = 10 ** 6


def single_process_step(samples, steps, seed=1):
    """Median seconds of one batched step in this process (numpy samples, slices of SLICE)."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-4.0, 4.0, samples)
    ys = dask_fit.truth(xs) + rng.normal(0.0, dask_fit.NOISE, samples)
    model = dask_fit.Model(samples)
    opt = rg.optim.Adam(model.params, lr=dask_fit.LR)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        if samples <= SLICE:
            model.x.set(xs)
            model.y.set(ys)
            model.loss.eval()
            model.loss.backprop()
            opt.step()
        else:
            grads = np.zeros(len(model.params))
            for start in range(0, samples, SLICE):
                model.x.set(xs[start:start + SLICE])
                model.y.set(ys[start:start + SLICE])
                model.loss.eval()
                model.loss.backprop()
                grads += [p.grad for p in model.params]
            opt.step(grads)
        times.append(time.perf_counter() - t0)
    model.x.set(0.0)
    model.y.set(0.0)
    return statistics.median(times)


def dask_step(client, samples, steps):
    """Median seconds per step of rgd.fit on `client` (the first step left out)."""
    fitted, times, _ = dask_fit.run(client, samples, steps + 1, chunks=-(-samples // 10))
    assert np.all(np.isfinite(fitted))
    return statistics.median(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^5 samples only, 2 steps")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    args = parser.parse_args(argv)
    sizes = [10 ** 5] if args.quick else [10 ** 6, 10 ** 7]
    steps = 2 if args.quick else args.steps

    from distributed import Client, LocalCluster

    rows = {n: {"one process": single_process_step(n, steps)} for n in sizes}
    overhead = {}
    for workers in (1, 2):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit="4GiB", dashboard_address=":0",
                               silence_logs=logging.CRITICAL)
        with cluster, Client(cluster) as client:
            overhead[workers] = dask_step(client, 100, steps)
            for n in sizes:
                rows[n][f"dask, {workers} worker{'s' if workers > 1 else ''}"] = dask_step(
                    client, n, steps)
    columns = list(rows[sizes[0]])
    print(f"\nrustograd_cy.dask.fit: seconds per Adam step, peak separation, 10 chunks "
          f"(medians of {steps} steps)")
    print(f"{'samples':>10}" + "".join(f"{c:>18}" for c in columns))
    for n in sizes:
        print(f"{n:>10.0e}" + "".join(f"{rows[n][c]:>18.4f}" for c in columns))
    print(f"{'overhead':>10}{'':>18}" + "".join(f"{overhead[w]:>18.4f}" for w in (1, 2))
          + "   (10 chunks of 10 samples)")
    load = load_average()
    print(f"machine: shared with other jobs; load average: {load}")
    return rows, overhead


if __name__ == "__main__":
    main()
