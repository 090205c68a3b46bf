"""Batched replay benchmarks (issue 6): training loops driven from Python, batched vs per-sample,
and peers (PyTorch, JAX) when installed. Prints one table of medians.

Workloads (the seed's examples, 80 samples x = -4.0, -3.9, ..., 3.9; rate 0.01):
  curve fit        s * exp(-(x - mu)^2 / sigma^2) fitted to 0.75 exp(-(x - 1.2)^2 / 0.35)
  peak separation  the sum of two such Gaussians fitted to two peaks
Each epoch sums the gradients of all samples with the parameters fixed, then updates them (the
seed's per-epoch semantics), 100 epochs per timed run. "batched" is one eval() + backprop() +
update per epoch over all 80 samples; "per-sample" is the seed's loop of 80 eval() + backprop().
  MLP step         one training step of examples/moons_mlp.py (2-16-16-1 tanh, 100 points).

    python benchmarks/batch.py [--quick]
"""
import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

import rustograd_cy as rg

ROOT = pathlib.Path(__file__).resolve().parents[1]
RATE = 0.01
EPOCHS = 100
XS = np.arange(-40, 40) / 10
CURVE_Y = 0.75 * np.exp(-((XS - 1.2) ** 2) / 0.35)
PEAKS_Y = 0.75 * np.exp(-((XS - 0.8) ** 2) / 0.35) + 0.5 * np.exp(-((XS + 0.3) ** 2) / 0.5)
CURVE_INIT = (0.0, 1.0, 1.0)  # mu, sigma, scale
PEAKS_INIT = (-1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # mu0, sigma0, scale0, mu1, sigma1, scale1


def gaussian(tape, x, k, exp):
    mu, sigma, scale = tape.term(f"mu{k}", 0.0), tape.term(f"sigma{k}", 1.0), tape.term(f"scale{k}", 1.0)
    x_mu = x - mu
    arg = -(x_mu * x_mu) / sigma / sigma
    g = scale * (arg.exp() if exp == "builtin" else arg.apply("exp", np.exp, np.exp))
    return [mu, sigma, scale], g


def fit_model(peaks, exp="builtin"):
    """(x leaf, y leaf, parameter leaves, per-sample loss) of the curve fit or peak separation."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    params, model = gaussian(tape, x, 0, exp)
    if peaks:
        params1, g1 = gaussian(tape, x, 1, exp)
        params, model = params + params1, model + g1
    y = tape.term("y", 0.0)
    diff = model - y
    return x, y, params, diff * diff


def fit_batched(peaks, exp="builtin"):
    """A run of 100 batched epochs (plain-Python update of the few parameters)."""
    x, y, params, loss = fit_model(peaks, exp)
    x.set(XS)
    y.set(PEAKS_Y if peaks else CURVE_Y)
    init = PEAKS_INIT if peaks else CURVE_INIT

    def run():
        values = list(init)
        for _ in range(EPOCHS):
            for p, v in zip(params, values):
                p.set(v)
            loss.eval()
            loss.backprop()
            values = [v - RATE * p.grad for v, p in zip(values, params)]
        return values

    return run


def fit_batched_sgd(peaks):
    """100 batched epochs with rg.optim.SGD doing the update in C."""
    x, y, params, loss = fit_model(peaks)
    x.set(XS)
    y.set(PEAKS_Y if peaks else CURVE_Y)
    init = PEAKS_INIT if peaks else CURVE_INIT
    opt = rg.optim.SGD(params, lr=RATE)

    def run():
        for p, v in zip(params, init):
            p.set(v)
        for _ in range(EPOCHS):
            loss.eval()
            loss.backprop()
            opt.step()
        return [p.data for p in params]

    return run


def fit_per_sample(peaks):
    """The seed's loop: per epoch, eval() + backprop() per sample, gradients summed in Python."""
    x, y, params, loss = fit_model(peaks)
    ys = PEAKS_Y if peaks else CURVE_Y
    init = PEAKS_INIT if peaks else CURVE_INIT
    samples = list(zip(XS.tolist(), ys.tolist()))

    def run():
        values = list(init)
        for _ in range(EPOCHS):
            for p, v in zip(params, values):
                p.set(v)
            total = [0.0] * len(params)
            for xv, yv in samples:
                x.set(xv)
                y.set(yv)
                loss.eval()
                loss.backprop()
                total = [t + p.grad for t, p in zip(total, params)]
            values = [v - RATE * g for v, g in zip(values, total)]
        return values

    return run


def mlp_step(fuse=True):
    """One SGD step of the moons MLP (data set once, as in training); with fuse=False the Linear
    layers' sums are swept node by node (a test-only switch), to show what fusing them gains."""
    sys.path.insert(0, str(ROOT / "examples"))
    import moons_mlp

    points, labels = moons_mlp.make_moons()
    model = moons_mlp.Model()
    model.tape._fuse_sums = fuse
    model.set_data(points, labels)
    opt = rg.optim.SGD(model.params, lr=0.1)

    def run():
        model.loss.eval()
        model.loss.backprop()
        opt.step()

    return run


def long_batch(threads, size=100_000):
    """eval() + backprop() of a 50-node graph over `size` samples with `threads` threads."""
    tape = rg.Tape()
    x = tape.term("x", 0.0)
    ws = [tape.term(f"w{j}", 0.1 * j) for j in range(6)]
    acc = x
    for w in ws:
        acc = (acc * w + x).tanh() + (w - x) * (w + x) * 0.5
    x.set(np.linspace(-1, 1, size))

    def run():
        before = rg.get_num_threads()
        rg.set_num_threads(threads)
        try:
            acc.eval()
            acc.backprop()
        finally:
            rg.set_num_threads(before)

    return run


# -- peers ----------------------------------------------------------------------------------------

def torch_fit(peaks):
    import torch

    xs = torch.tensor(XS)
    ys = torch.tensor(PEAKS_Y if peaks else CURVE_Y)
    init = PEAKS_INIT if peaks else CURVE_INIT

    def run():
        p = torch.tensor(init, dtype=torch.float64, requires_grad=True)
        for _ in range(EPOCHS):
            model = 0.0
            for k in range(len(init) // 3):
                mu, sigma, scale = p[3 * k], p[3 * k + 1], p[3 * k + 2]
                model = model + scale * torch.exp(-((xs - mu) ** 2) / sigma / sigma)
            loss = ((model - ys) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, p)
            with torch.no_grad():
                p -= RATE * grad
        return p.tolist()

    return run


def torch_mlp_step():
    import torch

    sys.path.insert(0, str(ROOT / "examples"))
    import moons_mlp

    points, labels = moons_mlp.make_moons()
    net = rg.nn.MLP(rg.Tape(), [2, 16, 16, 1], seed=1)
    params = []
    for layer in net.layers:
        w = torch.tensor([[q.data for q in row] for row in layer.weight], dtype=torch.float64,
                         requires_grad=True)
        b = torch.zeros(layer.n_out, dtype=torch.float64, requires_grad=True)
        params += [w, b]
    X, Y = torch.tensor(points), torch.tensor(labels)
    opt = torch.optim.SGD(params, lr=0.1)

    def run():
        h = X
        for k in range(0, len(params), 2):
            h = h @ params[k].T + params[k + 1]
            if k < len(params) - 2:
                h = torch.tanh(h)
        loss = torch.relu(1 - Y * h[:, 0]).mean() + 1e-4 * sum((q * q).sum() for q in params)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return run


def jax_fit(peaks):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    xs, ys = jnp.asarray(XS), jnp.asarray(PEAKS_Y if peaks else CURVE_Y)
    n = len(PEAKS_INIT if peaks else CURVE_INIT) // 3

    def loss(p):
        model = sum(p[3 * k + 2] * jnp.exp(-((xs - p[3 * k]) ** 2) / p[3 * k + 1] / p[3 * k + 1])
                    for k in range(n))
        return ((model - ys) ** 2).sum()

    step = jax.grad(loss)

    @jax.jit
    def train(p):  # the whole 100-epoch loop compiled
        return jax.lax.fori_loop(0, EPOCHS, lambda _, q: q - RATE * step(q), p)

    p0 = jnp.asarray(PEAKS_INIT if peaks else CURVE_INIT)
    train(p0).block_until_ready()  # compile outside the timing
    return lambda: train(p0).block_until_ready()


def jax_mlp_step():
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, str(ROOT / "examples"))
    import moons_mlp

    jax.config.update("jax_enable_x64", True)
    points, labels = moons_mlp.make_moons()
    net = rg.nn.MLP(rg.Tape(), [2, 16, 16, 1], seed=1)
    params = []
    for layer in net.layers:
        params += [jnp.asarray([[q.data for q in row] for row in layer.weight]), jnp.zeros(layer.n_out)]
    X, Y = jnp.asarray(points), jnp.asarray(labels)

    def loss(ps):
        h = X
        for k in range(0, len(ps), 2):
            h = h @ ps[k].T + ps[k + 1]
            if k < len(ps) - 2:
                h = jnp.tanh(h)
        return jnp.maximum(1 - Y * h[:, 0], 0).mean() + 1e-4 * sum((q * q).sum() for q in ps)

    @jax.jit
    def step(ps):
        return [q - 0.1 * g for q, g in zip(ps, jax.grad(loss)(ps))]

    state = [step(params)]
    jax.block_until_ready(state[0])

    def run():
        state[0] = step(state[0])
        jax.block_until_ready(state[0])

    return run


# -- timing and the table -------------------------------------------------------------------------

def median_ms_side_by_side(runs, repeats, warmup=3, rounds=10):
    """{name: median ms per call} of each callable in `runs`, called `repeats[name]` times in
    `rounds` blocks that alternate between the callables, so a change in the machine's load hits
    all of them alike. (Blocks rather than single calls: a library with a thread pool, as PyTorch's,
    loses its spinning threads while another library runs, and would pay to wake them every call.)"""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            block = repeats[name] // rounds + (r < repeats[name] % rounds)
            for _ in range(block):
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def median_ms(run, repeat, warmup=3):
    return median_ms_side_by_side({"run": run}, {"run": repeat}, warmup)["run"]


MLP_TARGET = "faster than jax and torch"


def rows(quick):
    """(workload, implementation, factory returning the timed callable, repeats, target)."""
    r = 5 if quick else 1
    curve, peaks, mlp = "curve fit, 100 epochs", "peak separation, 100 epochs", "MLP step (moons 2-16-16-1)"
    yield curve, "rustograd batched", lambda: fit_batched(False), 200 // r, "<= 0.85 ms"
    yield curve, "rustograd batched, rg.optim.SGD", lambda: fit_batched_sgd(False), 200 // r, "<= 0.85 ms"
    yield curve, "rustograd batched, apply(np.exp)", lambda: fit_batched(False, "apply"), 100 // r, "<= 0.85 ms"
    yield curve, "rustograd per-sample (seed loop)", lambda: fit_per_sample(False), 10 // r, ""
    yield curve, "torch vectorised", lambda: torch_fit(False), 20 // r, ""
    yield curve, "jax, whole loop jit", lambda: jax_fit(False), 100 // r, ""
    yield peaks, "rustograd batched", lambda: fit_batched(True), 200 // r, "<= 1.0 ms"
    yield peaks, "rustograd batched, rg.optim.SGD", lambda: fit_batched_sgd(True), 200 // r, "<= 1.0 ms"
    yield peaks, "rustograd per-sample (seed loop)", lambda: fit_per_sample(True), 10 // r, ""
    yield peaks, "torch vectorised", lambda: torch_fit(True), 20 // r, ""
    yield peaks, "jax, whole loop jit", lambda: jax_fit(True), 100 // r, ""
    yield mlp, "rustograd batched", mlp_step, 2000 // r, MLP_TARGET
    yield mlp, "rustograd batched, sums not fused", lambda: mlp_step(False), 2000 // r, ""
    yield mlp, "torch vectorised", torch_mlp_step, 2000 // r, ""
    yield mlp, "jax jit step", jax_mlp_step, 2000 // r, ""
    yield "long batch (100k samples)", "rustograd batched, 1 thread", lambda: long_batch(1), 30 // r, ""
    yield "long batch (100k samples)", "rustograd batched, 2 threads", lambda: long_batch(2), 30 // r, ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    print("Implementations of one workload are timed side by side, in alternating blocks of calls;")
    print("'vs first' is each median over the first row's.")
    print(f"{'workload':28} {'implementation':34} {'median ms':>10} {'vs first':>9}  target")
    groups = {}
    for workload, name, factory, repeat, target in rows(args.quick):
        groups.setdefault(workload, []).append((name, factory, max(repeat, 3), target))
    for workload, group in groups.items():
        runs, repeats, targets = {}, {}, {}
        for name, factory, repeat, target in group:
            try:
                runs[name] = factory()
            except ImportError as exc:  # a peer that is not installed
                print(f"{workload:28} {name:34} {'-':>10} {'':>9}  (not installed: {exc.name})")
                continue
            repeats[name], targets[name] = repeat, target
        medians = median_ms_side_by_side(runs, repeats)
        first = next(iter(medians.values()))
        for name, ms in medians.items():
            print(f"{workload:28} {name:34} {ms:10.3f} {ms / first:8.2f}x  {targets[name]}", flush=True)


if __name__ == "__main__":
    main()
