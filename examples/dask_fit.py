"""Peak separation on a Dask cluster: the seed's two-Gaussian fit, on 10^7 noisy samples.

Truth: 0.75 exp(-(x - 0.8)^2 / 0.35) + 0.5 exp(-(x + 0.3)^2 / 0.5), x uniform in [-4, 4), plus
normal noise of deviation 0.05. The samples are made on the workers (dask.array.random, 10 chunks)
and never come to this process. The model is peak_separation.py's, with the tape's own exp (the C
sweeps; no Python callable) and the squared error divided by the number of samples (a mean, so the
rate does not depend on it). rustograd_cy.dask.fit sends the tape to each worker once and takes Adam
steps on the gradients summed over the chunks. Runs in a LocalCluster of 2 worker processes (one
thread each); point the same code at a real cluster with Client("tcp://scheduler:8786").
Prints the time per step and the fitted parameters, and draws the fit (dask_fit.png).
Options: --samples N, --steps N, --workers N, --scheduler tcp://host:8786 (a running cluster instead
of the LocalCluster); --quick is 10^5 samples, 15 steps, and threads in one process (quick to start).
"""
import argparse
import contextlib
import statistics
import sys
import time

import numpy as np

import _common
import rustograd_cy as rg

TRUTH = (0.8, np.sqrt(0.35), 0.75, -0.3, np.sqrt(0.5), 0.5)  # mu0, sigma0, scale0, mu1, sigma1, scale1
NAMES = ("mu0", "sigma0", "scale0", "mu1", "sigma1", "scale1")
INIT = (-1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # peak_separation.py's start
NOISE = 0.05
LR = 0.1


def truth(x, p=TRUTH):
    """The two-Gaussian curve at x (numpy or dask arrays) for parameters p."""
    mu0, s0, a0, mu1, s1, a1 = p
    return a0 * np.exp(-((x - mu0) ** 2) / s0 ** 2) + a1 * np.exp(-((x - mu1) ** 2) / s1 ** 2)


class Model:
    """peak_separation.py's tape, with .exp() and a mean squared error over `samples` samples."""

    def __init__(self, samples):
        tape = rg.Tape()
        self.x = tape.term("x", 0.0)
        self.y = tape.term("y", 0.0)

        def gaussian(i):
            mu, sigma, scale = (tape.term(f"{n}{i}", v) for n, v in
                                zip(("mu", "sigma", "scale"), INIT[3 * i:3 * i + 3]))
            x_mu = self.x - mu
            return (mu, sigma, scale), scale * (-(x_mu * x_mu) / sigma / sigma).exp()

        params0, g0 = gaussian(0)
        params1, g1 = gaussian(1)
        self.params = list(params0 + params1)
        diff = g0 + g1 - self.y
        self.loss = diff * diff / samples


def make_data(samples, chunks, seed=1):
    """x and y as lazy dask arrays: each chunk is generated on the worker that first needs it."""
    import dask.array as da

    rng = da.random.default_rng(seed)
    x = rng.uniform(-4.0, 4.0, samples, chunks=chunks)
    y = truth(x) + rng.normal(0.0, NOISE, samples, chunks=chunks)
    return x, y


def run(client, samples, steps, chunks):
    """Fit on `client`: returns (fitted values, [seconds per step], model)."""
    import rustograd_cy.dask as rgd

    model = Model(samples)
    x, y = make_data(samples, chunks)
    stamps = [time.perf_counter()]
    fitted = rgd.fit(model.loss, model.params, {model.x: x, model.y: y}, optimizer="adam", lr=LR,
                     steps=steps, client=client, callback=lambda step, value: stamps.append(
                         time.perf_counter()))
    return fitted, list(np.diff(stamps)), model


def matched_truth(fitted):
    """TRUTH with its two peaks in the order the fit found them (g0 starts at mu = -1, so it
    usually takes the peak at -0.3)."""
    return TRUTH if abs(fitted[0] - TRUTH[0]) <= abs(fitted[0] - TRUTH[3]) else TRUTH[3:] + TRUTH[:3]


def draw(fitted, path):
    plt = _common.pyplot()
    rng = np.random.default_rng(2)
    xs = rng.uniform(-4.0, 4.0, 3000)
    ys = truth(xs) + rng.normal(0.0, NOISE, xs.shape)
    grid = np.linspace(-4.0, 4.0, 400)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(xs, ys, ".", ms=1.5, color="tab:blue", alpha=0.35, label="3000 of the noisy samples")
    ax.plot(grid, truth(grid), color="black", lw=1, label="truth")
    for k, color in ((0, "tab:orange"), (1, "tab:green")):
        one = np.array(fitted, dtype=float)
        one[2 + 3 * (1 - k)] = 0.0  # the other Gaussian's scale to 0: this one alone
        ax.plot(grid, truth(grid, one), "--", color=color, label=f"fitted g{k}")
    ax.plot(grid, truth(grid, fitted), color="tab:red", lw=1.5, label="fitted g0 + g1")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Peak separation fitted on a Dask cluster (rustograd_cy.dask.fit, Adam)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--samples", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", help="address of a running cluster, e.g. tcp://scheduler:8786")
    own, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    args = _common.options(__doc__.splitlines()[0], rest)
    samples = own.samples or (10 ** 5 if args.quick else 10 ** 7)
    steps = own.steps or (15 if args.quick else 150)
    chunks = -(-samples // 10)

    from distributed import Client, LocalCluster

    if own.scheduler:  # a running cluster: the same fit, the samples made on its workers
        cluster, where = contextlib.nullcontext(), f"the cluster at {own.scheduler}"
        client = Client(own.scheduler)
    else:  # quick mode: worker threads in this process (starts in a second); else 2 processes
        cluster = LocalCluster(n_workers=own.workers, threads_per_worker=1, processes=not args.quick,
                               memory_limit="3GiB", dashboard_address=":0", silence_logs=40)
        client = Client(cluster)
        where = f"{own.workers} local workers ({'threads' if args.quick else 'processes'})"
    with cluster, client:
        print(f"{samples:,} samples in {-(-samples // chunks)} chunks on {where}, {steps} Adam steps")
        fitted, times, _ = run(client, samples, steps, chunks)
    print(f"first step {times[0]:.3f} s (makes the samples on the workers), then median "
          f"{statistics.median(times[1:]) if steps > 1 else float('nan'):.3f} s per step")
    print("fitted: " + ", ".join(f"{n} = {v:.4f}" for n, v in zip(NAMES, fitted)))
    print("truth:  " + ", ".join(f"{n} = {v:.4f}" for n, v in zip(NAMES, matched_truth(fitted))))
    draw(fitted, args.out / "dask_fit.png")


if __name__ == "__main__":
    main()
