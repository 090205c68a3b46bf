"""Least squares fit of a Gaussian by gradient descent on the tape, as the seed's tape_curve_fit.

Data: x_i = i / 10 for i in -40..39, y_i = 0.75 exp(-(x_i - 1.2)^2 / 0.35). Model:
g = scale * exp(-((x - mu) * (x - mu)) / sigma / sigma), loss = (g - y)^2 per sample. Each epoch
keeps the model's parameters fixed while every sample's gradient (times the rate) is subtracted,
giving the next epoch's parameters. The tape is recorded once for one sample and replayed over all
80 samples at once (batched: x and y hold the sample arrays), one eval() + backprop() per epoch.
Writes the animated fit, the parameter history (PNG and CSV) and the graph.
"""
import math

import numpy as np

import _common
import rustograd_cy as rg

RATE = 0.01
INIT = (0.0, 1.0, 1.0)  # mu, sigma, scale
EPOCHS = 100
QUICK_EPOCHS = 10


def truth(x):
    return 0.75 * math.exp(-((x - 1.2) ** 2) / 0.35)


SAMPLES = [i / 10 for i in range(-40, 40)]
TRUTH = [truth(x) for x in SAMPLES]


class Model:
    """The seed's per-sample expression, built once on a tape and replayed over many samples."""

    def __init__(self):
        tape = rg.Tape()
        self.x = tape.term("x", 0.0)
        self.mu = tape.term("mu", INIT[0])
        self.sigma = tape.term("sigma", INIT[1])
        self.scale = tape.term("scale", INIT[2])
        self.params = [self.mu, self.sigma, self.scale]
        x_mu = self.x - self.mu
        # np.exp takes a number (one sample) as well as an array (a batch of samples).
        self.gaussian = self.scale * (-(x_mu * x_mu) / self.sigma / self.sigma).apply(
            "exp", np.exp, np.exp)
        self.sample_y = tape.term("y", 0.0)
        diff = self.gaussian - self.sample_y
        self.loss = diff * diff

    def set_params(self, mu, sigma, scale):
        self.mu.set(mu)
        self.sigma.set(sigma)
        self.scale.set(scale)

    def values(self):
        """The current (mu, sigma, scale)."""
        return tuple(p.data for p in self.params)

    def set_samples(self, xs=SAMPLES, ys=TRUTH):
        """x and y hold whole arrays: the tape is batched, loss.eval() returns one loss per sample."""
        self.x.set(xs)
        self.sample_y.set(ys)

    def curve(self, params, xs):
        """The model's gaussian at each of `xs` for `params` (one batched eval)."""
        self.set_params(*params)
        self.sample_y.set(0.0)  # the gaussian does not read y; x alone sets the batch to len(xs)
        self.x.set(xs)
        return self.gaussian.eval().tolist()


def fit(epochs=EPOCHS, model=None):
    """Run `epochs` epochs from INIT: returns [(epoch, mu, sigma, scale, loss)], epoch 0 = INIT."""
    model = model or Model()
    model.set_params(*INIT)
    model.set_samples()
    opt = rg.optim.SGD(model.params, lr=RATE)  # p -= RATE * p.grad for each parameter, in C
    history = []
    for i in range(epochs + 1):
        losses = model.loss.eval()  # the 80 per-sample losses at this epoch's parameters
        history.append((i, *model.values(), float(losses.sum())))
        if i == epochs:
            break
        # backprop() differentiates the sum of the 80 losses: each parameter's .grad is the sum of
        # its per-sample gradients, all at this epoch's fixed parameters -- exactly what the seed's
        # loop subtracts sample by sample (only the summation order differs, ~1e-15).
        model.loss.backprop()
        opt.step()
    return history


def frame_epochs(last):
    """The epochs drawn in the animation: every one at first, then ever sparser (as the seed's 1.2x)."""
    chosen = [0]
    for t in range(1, last + 1):
        if t <= 10 or chosen[-1] * 1.1 < t or t == last:
            chosen.append(t)
    return chosen


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    model = Model()
    history = fit(epochs, model)
    shown = history[:: max(1, epochs // 10)]
    for i, mu, sigma, scale, loss in shown + ([history[-1]] if shown[-1] != history[-1] else []):
        print(f"epoch {i:3d}: mu = {mu:.6f}, sigma = {sigma:.6f}, scale = {scale:.6f}, loss = {loss:.6g}")
    _, mu, sigma, scale, _ = history[-1]
    print(f"final: mu = {mu!r}, sigma = {sigma!r}, scale = {scale!r}")

    csv = args.out / "curve_fit_history.csv"
    csv.write_text("epoch,mu,sigma,scale,loss\n" + "".join(
        f"{i},{mu!r},{sigma!r},{scale!r},{loss!r}\n" for i, mu, sigma, scale, loss in history))
    _common.wrote(csv)

    plt = _common.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    epochs_axis = [h[0] for h in history]
    for column, name in ((1, "mu"), (2, "sigma"), (3, "scale")):
        ax1.plot(epochs_axis, [h[column] for h in history], label=name)
    ax1.set_xlabel("epoch")
    ax1.set_title("parameters")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.semilogy(epochs_axis, [h[4] for h in history])
    ax2.set_xlabel("epoch")
    ax2.set_title("loss (sum over samples)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    _common.save_figure(fig, args.out / "curve_fit_history.png")

    xs = [i / 50 for i in range(-200, 200)]
    init_curve = model.curve(INIT, xs)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    images = []
    for t in _common.progress(frame_epochs(epochs), "curve_fit.gif frames"):
        _, mu, sigma, scale, loss = history[t]
        ax.clear()
        ax.plot(SAMPLES, TRUTH, "o", ms=3, color="tab:blue", label="samples")
        ax.plot(xs, init_curve, "--", color="gray", label="initial model")
        ax.plot(xs, model.curve((mu, sigma, scale), xs), color="tab:red", label="model")
        ax.set_ylim(-0.05, 1.1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"epoch {t}: mu={mu:.3f} sigma={sigma:.3f} scale={scale:.3f}", fontsize=10)
        ax.legend(loc="upper left", fontsize=9, frameon=False)
        fig.tight_layout()
        images.append(_common.figure_image(fig))
    plt.close(fig)
    _common.frames_to_gif(images, args.out / "curve_fit.gif")

    # The graph at the start of the descent, where the gradients are far from zero.
    # x and y set back to numbers: the tape is per-sample again, its graph the seed's.
    model.set_params(*INIT)
    model.x.set(1.0)
    model.sample_y.set(truth(1.0))
    model.loss.eval()
    model.loss.backprop()
    _common.save_graph(model.loss, args.out, "curve_fit_graph", precision=3,
                       outputs={"gaussian": model.gaussian, "loss": model.loss})

if __name__ == "__main__":
    main()
