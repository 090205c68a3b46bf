"""The dense-layer table of issue 12: one full-batch SGD step of a 2-H-H-1 tanh MLP, side by side.

The step: hinge loss mean(relu(1 - y * score)) + 1e-4 * (sum of squared parameters), float64, lr 0.1,
on B points of two half-moons (examples/moons_mlp.make_moons). Every implementation starts from the
same weights (rg.nn.MLP's, seed 1) and biases 0.
  ours     rg.nn.MLP replayed over the batch (the data leaves hold arrays) + rg.optim.SGD; the loss
           written with rg.mean where the library has it, else as the per-sample loss / B
  torch    the same step vectorised (X @ W.T + b), torch.optim.SGD
  jax      jax.jit of the whole step (grad and update)
Widths H = 16, 64, 128 and batches B = 100, 1000, 10000. In each cell the implementations are timed
in one process, interleaved in blocks of calls (benchmarks/batch.median_ms_side_by_side), and the
table shows medians in ms and each over the faster peer. Thread counts are printed above the table:
by default each implementation uses the machine's cores (ours through rg.set_num_threads).

Cells whose rows (nodes x B x 16 bytes) exceed rg.get_row_limit() stream (ours marked "s"); with
--full-rows our step also runs on full rows (no streaming) side by side, in its own column.

    python benchmarks/mlp_sizes.py [--quick] [--widths 16,64] [--batches 100,1000] [--threads N]
                                   [--full-rows] [--max-gb 4]
"""
import argparse
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))

import rustograd_cy as rg  # noqa: E402
from batch import median_ms_side_by_side  # noqa: E402
from moons_mlp import make_moons  # noqa: E402
from timing import load_average  # noqa: E402

LR = 0.1
DECAY = 1e-4
WIDTHS = (16, 64, 128)
BATCHES = (100, 1000, 10000)


def sizes(width):
    return [2, width, width, 1]


def initial_weights(width):
    """[(W (n_out, n_in), b (n_out,))] per layer: rg.nn.MLP's initial weights, seed 1."""
    net = rg.nn.MLP(rg.Tape(), sizes(width), seed=1)
    return [(np.array([[q.data for q in row] for row in layer.weight]), np.zeros(layer.n_out))
            for layer in net.layers]


def data(batch):
    points, labels = make_moons(batch)
    return points, labels


def build(width):
    """(tape, input leaves, label leaf, parameters, loss) of the step's model."""
    tape = rg.Tape()
    net = rg.nn.MLP(tape, sizes(width), seed=1)
    label = tape.term("label", 0.0)
    params = net.parameters()
    reg = params[0] * params[0]
    for p in params[1:]:
        reg = reg + p * p
    per_sample = (1.0 - label * net.outputs[0]).relu()
    if hasattr(rg, "mean"):
        loss = rg.mean(per_sample) + DECAY * reg
    else:  # (before rg.mean) backprop() differentiates the sum over the batch
        loss = None, per_sample, reg
    return tape, net.inputs, label, params, loss


def ours(width, batch, threads, limit=None):
    """One SGD step of the batched tape, as a callable; `limit`: the row limit (rg.set_row_limit)
    its sweeps run under (None: the default), so full rows or streaming."""
    limit = rg.get_row_limit() if limit is None else limit
    before_limit = rg.set_row_limit(limit)
    points, labels = data(batch)
    tape, inputs, label, params, loss = build(width)
    if isinstance(loss, tuple):
        loss = loss[1] / batch + loss[2] * (DECAY / batch)
    inputs[0].set(points[:, 0])
    inputs[1].set(points[:, 1])
    label.set(labels)
    rg.set_row_limit(before_limit)
    opt = rg.optim.SGD(params, lr=LR)

    def run():
        before = rg.get_num_threads()
        before_limit = rg.set_row_limit(limit)
        rg.set_num_threads(threads)
        try:
            loss.eval()
            loss.backprop()
            opt.step()
        finally:
            rg.set_num_threads(before)
            rg.set_row_limit(before_limit)

    run.params, run.tape = params, tape  # (for the smoke test)
    return run


def torch_step(width, batch):
    import torch

    points, labels = data(batch)
    params = []
    for w, b in initial_weights(width):
        params += [torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)]
    X, Y = torch.tensor(points), torch.tensor(labels)
    opt = torch.optim.SGD(params, lr=LR)

    def run():
        h = X
        for k in range(0, len(params), 2):
            h = h @ params[k].T + params[k + 1]
            if k < len(params) - 2:
                h = torch.tanh(h)
        loss = torch.relu(1 - Y * h[:, 0]).mean() + DECAY * sum((q * q).sum() for q in params)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return run


def jax_step(width, batch):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    points, labels = data(batch)
    params = []
    for w, b in initial_weights(width):
        params += [jnp.asarray(w), jnp.asarray(b)]
    X, Y = jnp.asarray(points), jnp.asarray(labels)

    def loss(ps):
        h = X
        for k in range(0, len(ps), 2):
            h = h @ ps[k].T + ps[k + 1]
            if k < len(ps) - 2:
                h = jnp.tanh(h)
        return jnp.maximum(1 - Y * h[:, 0], 0).mean() + DECAY * sum((q * q).sum() for q in ps)

    @jax.jit
    def step(ps):
        return [q - LR * g for q, g in zip(ps, jax.grad(loss)(ps))]

    state = [step(params)]
    jax.block_until_ready(state[0])

    def run():
        state[0] = step(state[0])
        jax.block_until_ready(state[0])

    return run


def row_bytes(width, batch):
    """Bytes of batch rows (value + gradient) the tape holds for the step: nodes x B x 16."""
    return len(build(width)[0]) * batch * 16


def thread_counts(threads):
    parts = [f"ours {threads}"]
    try:
        import torch

        parts.append(f"torch {torch.get_num_threads()} (intra-op)")
    except ImportError:
        parts.append("torch not installed")
    try:
        import jax  # noqa: F401

        flags = os.environ.get("XLA_FLAGS", "")
        parts.append(f"jax: XLA's default pool ({os.cpu_count()} cores){' ' + flags if flags else ''}")
    except ImportError:
        parts.append("jax not installed")
    return "threads: " + ", ".join(parts)


def repeats_for(width, batch, quick):
    work = width * width * batch  # ~ the step's multiply-adds
    n = int(max(5, min(2000, 3e8 / max(work, 1))))
    return max(3, n // 5) if quick else n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for ours (rg.set_num_threads); default: the machine's cores, "
                             "as PyTorch and XLA use")
    parser.add_argument("--max-gb", type=float, default=4.0,
                        help="skip our full-rows cells whose batch rows would exceed this many GB")
    parser.add_argument("--full-rows", action="store_true",
                        help="also time ours with full rows (no streaming), side by side")
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    load = load_average()
    print(f"MLP 2-H-H-1 tanh, one full-batch SGD step (hinge + 1e-4 L2, float64); load {load}")
    print(thread_counts(args.threads))
    limit = rg.get_row_limit()
    print(f"row limit {limit / 2**20:.0f} MiB: cells whose rows exceed it stream (marked s)")
    head = f"{'H':>4} {'B':>6} {'ours ms':>9} "
    if args.full_rows:
        head += f"{'ours full':>9} "
    print(head + f"{'torch ms':>9} {'jax ms':>9} {'ours/best peer':>15}")
    for width in widths:
        for batch in batches:
            runs, repeats, skipped = {}, {}, None
            rows = row_bytes(width, batch)
            need, streamed = rows / 1e9, rows > limit
            if need > args.max_gb and not streamed:
                skipped = f"ours skipped: {need:.1f} GB of rows"
            else:
                runs["ours"] = ours(width, batch, args.threads)
            if args.full_rows:
                if need > args.max_gb:
                    skipped = f"full rows skipped: {need:.1f} GB"
                else:
                    runs["full"] = ours(width, batch, args.threads, float("inf"))
            for name, factory in (("torch", torch_step), ("jax", jax_step)):
                try:
                    runs[name] = factory(width, batch)
                except ImportError:
                    pass
            n = repeats_for(width, batch, args.quick)
            medians = median_ms_side_by_side(runs, {k: n for k in runs})
            peers = [medians[k] for k in ("torch", "jax") if k in medians]
            names = ("ours", "full", "torch", "jax") if args.full_rows else ("ours", "torch", "jax")
            cells = [f"{medians[k]:9.3f}" if k in medians else f"{'-':>9}" for k in names]
            if streamed and "ours" in medians:
                cells[0] = f"{medians['ours']:8.3f}s"
            ratio = f"{medians['ours'] / min(peers):14.2f}x" if "ours" in medians and peers else f"{'-':>15}"
            note = f"  ({skipped})" if skipped else ""
            print(f"{width:4d} {batch:6d} {' '.join(cells)} {ratio}{note}", flush=True)
            del runs


if __name__ == "__main__":
    main()
