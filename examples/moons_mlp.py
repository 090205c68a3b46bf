"""Train a 2-16-16-1 tanh MLP on two half-moons with batched replay, then plot its decision boundary.

The workload of issue 6 (micrograd's demo): 100 points from numpy.random.default_rng(0), hinge loss
mean + 1e-4 * sum of squared parameters, full-batch SGD with lr = 1.0 - 0.9 * k / 100, 100 steps.
The graph is one sample's; the tape replays it over all 100 at once (the data leaves hold arrays),
and rg.mean reduces the per-sample hinge losses over the batch, so the loss is one number.

Writes out/moons_mlp.png (or --out DIR). --quick (or RUSTOGRAD_QUICK=1) draws a coarser boundary.
"""
import numpy as np

import _common
import rustograd_cy as rg

N = 100
STEPS = 100


def make_moons(n=N, seed=0):
    """(points (n, 2), labels -1 for moon A and +1 for moon B)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n // 2)
    a = np.stack([np.cos(t), np.sin(t)], axis=1)
    b = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    points = np.concatenate([a, b]) + rng.normal(0, 0.1, (n, 2))
    return points, np.concatenate([-np.ones(n // 2), np.ones(n // 2)])


class Model:
    """The MLP with its score and per-sample loss, on one tape."""

    def __init__(self, seed=1):
        self.tape = rg.Tape()
        self.net = rg.nn.MLP(self.tape, [2, 16, 16, 1], activation="tanh", seed=seed)
        self.score = self.net.outputs[0]
        self.label = self.tape.term("label", 0.0)
        params = self.net.parameters()
        reg = params[0] * params[0]
        for p in params[1:]:
            reg = reg + p * p
        self.loss = rg.mean((1.0 - self.label * self.score).relu()) + 1e-4 * reg
        self.params = params

    def set_data(self, points, labels=0.0):
        """Point the input (and label) leaves at a batch; scalars first, so the batch may resize."""
        self.label.set(0.0)
        self.net.inputs[1].set(0.0)
        self.net.inputs[0].set(points[:, 0])
        self.net.inputs[1].set(points[:, 1])
        self.label.set(labels)

    def predict(self, points):
        self.set_data(points)
        return self.score.eval()


def train(model, points, labels, steps=STEPS, progress=None):
    """Full-batch SGD; returns the loss before each step."""
    model.set_data(points, labels)
    opt = rg.optim.SGD(model.params, lr=1.0)
    losses = []
    for k in range(steps):
        opt.lr = 1.0 - 0.9 * k / steps
        losses.append(model.loss.eval())
        model.loss.backprop()
        opt.step()
        if progress is not None:
            progress.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            progress.update()
    return losses


def accuracy(model, points, labels):
    return float(np.mean((model.predict(points) > 0) == (labels > 0)))


def plot(model, points, labels, path, resolution):
    plt = _common.pyplot()
    gx, gy = np.meshgrid(np.linspace(-1.5, 2.5, resolution), np.linspace(-1.0, 1.5, resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    scores = model.predict(grid).reshape(gx.shape)  # one batched sweep over the whole grid
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.contourf(gx, gy, scores > 0, levels=1, colors=["#f4c7c3", "#c6dbef"], alpha=0.9)
    ax.contour(gx, gy, scores, levels=[0.0], colors="k", linewidths=1)
    ax.scatter(*points[labels < 0].T, c="#d62728", s=18, label="moon A (-1)")
    ax.scatter(*points[labels > 0].T, c="#1f77b4", s=18, label="moon B (+1)")
    ax.set_title(f"2-16-16-1 tanh MLP, {STEPS} full-batch SGD steps: training accuracy "
                 f"{accuracy(model, points, labels):.0%}", fontsize=10)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="lower left", fontsize=9, framealpha=0.9)
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv=None):
    from tqdm import tqdm

    args = _common.options(__doc__.splitlines()[0], argv)
    points, labels = make_moons()
    model = Model()
    with tqdm(total=STEPS, desc="training", unit="step") as progress:
        losses = train(model, points, labels, progress=progress)
    acc = accuracy(model, points, labels)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, training accuracy {acc:.0%}")
    plot(model, points, labels, args.out / "moons_mlp.png", resolution=60 if args.quick else 250)


if __name__ == "__main__":
    main()
