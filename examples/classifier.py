"""A small neural classifier on the tape: two interleaved half moons, a 2-10-1 network, per-sample SGD.

The network is built once from scalar TapeTerm operations (tanh hidden layer, sigmoid output,
cross-entropy loss written in a form that cannot overflow) and replayed for every sample: set the
inputs and the label, eval, backprop, step each weight. Writes the decision boundary.
"""
import math

import numpy as np

import _common
import rustograd_cy as rg

HIDDEN = 10
RATE = 0.05
EPOCHS = 150
QUICK_EPOCHS = 3


def moons(n, noise, rng):
    """n points in two interleaved half circles: (points of shape (n, 2), labels 0/1)."""
    half = n // 2
    t = rng.uniform(0, math.pi, n)
    outer = np.stack([np.cos(t[:half]), np.sin(t[:half])], axis=1)
    inner = np.stack([1 - np.cos(t[half:]), 0.5 - np.sin(t[half:])], axis=1)
    points = np.concatenate([outer, inner]) + rng.normal(0, noise, (n, 2))
    labels = np.concatenate([np.zeros(half), np.ones(n - half)])
    return points - points.mean(axis=0), labels


class Network:
    def __init__(self, rng):
        tape = rg.Tape()
        self.inputs = [tape.term("x0", 0.0), tape.term("x1", 0.0)]
        self.label = tape.term("t", 0.0)
        self.weights = []

        def weight(name, scale):
            w = tape.term(name, float(rng.normal(0, scale)))
            self.weights.append(w)
            return w

        hidden = []
        for j in range(HIDDEN):
            z = weight(f"b{j}", 0.1)
            for i, x in enumerate(self.inputs):
                z = z + weight(f"w{i}_{j}", 1.0) * x
            hidden.append(z.tanh())
        logit = weight("c", 0.1)
        for j, h in enumerate(hidden):
            logit = logit + weight(f"v{j}", 1.0 / math.sqrt(HIDDEN)) * h
        self.logit = logit
        self.probability = logit.sigmoid()
        # Cross-entropy of sigmoid(logit): log(1 + exp(z)) - t z, as relu(z) + log(1 + exp(-|z|)) - t z.
        self.loss = logit.relu() + (1 + (-logit.abs()).exp()).log() - self.label * logit

    def set_input(self, point):
        for term, value in zip(self.inputs, point):
            term.set(float(value))

    def step(self, point, label):
        self.set_input(point)
        self.label.set(float(label))
        loss = self.loss.eval()
        self.loss.backprop()
        for w in self.weights:
            w.set(w.data - RATE * w.grad)
        return loss

    def predict(self, point):
        self.set_input(point)
        return self.probability.eval()


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    rng = np.random.default_rng(1)
    points, labels = moons(120, 0.12, rng)
    net = Network(rng)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    losses = []
    for _ in _common.progress(range(epochs), "classifier epochs"):
        order = rng.permutation(len(points))
        losses.append(sum(net.step(points[k], labels[k]) for k in order) / len(points))
    accuracy = np.mean([(net.predict(p) > 0.5) == bool(t) for p, t in zip(points, labels)])
    print(f"{len(net.weights)} weights, {epochs} epochs: mean loss {losses[-1]:.4f}, "
          f"training accuracy {accuracy:.1%}")

    steps = 30 if args.quick else 100
    xs = np.linspace(points[:, 0].min() - 0.5, points[:, 0].max() + 0.5, steps)
    ys = np.linspace(points[:, 1].min() - 0.5, points[:, 1].max() + 0.5, steps)
    grid = np.array([[net.predict((x, y)) for x in xs] for y in ys])

    plt = _common.pyplot()
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    contour = ax.contourf(xs, ys, grid, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
    ax.contour(xs, ys, grid, levels=[0.5], colors="k", linewidths=1.5)
    labels_arr = np.asarray(labels)
    for cls, marker, color in ((0, "o", "#08306b"), (1, "^", "#67000d")):
        chosen = points[labels_arr == cls]
        ax.scatter(chosen[:, 0], chosen[:, 1], marker=marker, c=color, edgecolors="white",
                   linewidths=0.6, s=26, label=f"class {cls}")
    ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
    fig.colorbar(contour, ax=ax, label="P(class 1)")
    ax.set_title(f"decision boundary, P(class 1) = 0.5 (training accuracy {accuracy:.0%})", fontsize=10)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax_loss.plot(range(1, epochs + 1), losses)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("mean cross-entropy")
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    _common.save_figure(fig, args.out / "classifier.png")


if __name__ == "__main__":
    main()
