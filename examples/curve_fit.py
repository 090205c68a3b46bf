"""Least squares fit of a Gaussian by gradient descent on the tape, as the seed's tape_curve_fit.

Data: x_i = i / 10 for i in -40..39, y_i = 0.75 exp(-(x_i - 1.2)^2 / 0.35). Model:
g = scale * exp(-((x - mu) * (x - mu)) / sigma / sigma), loss = (g - y)^2 per sample. Each epoch
keeps the model's parameters fixed while every sample's gradient (times the rate) is subtracted from
copies, which become the next epoch's parameters. Writes the animated fit, the parameter history
(PNG and CSV) and the graph.
"""
import math

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
    """The seed's expression, built once on a tape and replayed for every sample."""

    def __init__(self):
        tape = rg.Tape()
        self.x = tape.term("x", 0.0)
        self.mu = tape.term("mu", INIT[0])
        self.sigma = tape.term("sigma", INIT[1])
        self.scale = tape.term("scale", INIT[2])
        x_mu = self.x - self.mu
        self.gaussian = self.scale * (-(x_mu * x_mu) / self.sigma / self.sigma).apply(
            "exp", math.exp, math.exp)
        self.sample_y = tape.term("y", 0.0)
        diff = self.gaussian - self.sample_y
        self.loss = diff * diff

    def set_params(self, mu, sigma, scale):
        self.mu.set(mu)
        self.sigma.set(sigma)
        self.scale.set(scale)

    def epoch(self, mu, sigma, scale):
        """One epoch of the seed's descent from (mu, sigma, scale): returns the next parameters."""
        self.set_params(mu, sigma, scale)
        for x, y in zip(SAMPLES, TRUTH):
            self.x.set(x)
            self.sample_y.set(y)
            self.loss.eval()
            self.loss.backprop()
            mu -= RATE * self.mu.grad
            sigma -= RATE * self.sigma.grad
            scale -= RATE * self.scale.grad
        return mu, sigma, scale

    def total_loss(self, mu, sigma, scale):
        self.set_params(mu, sigma, scale)
        total = 0.0
        for x, y in zip(SAMPLES, TRUTH):
            self.x.set(x)
            self.sample_y.set(y)
            total += self.loss.eval()
        return total

    def curve(self, params, xs):
        self.set_params(*params)
        values = []
        for x in xs:
            self.x.set(x)
            values.append(self.gaussian.eval())
        return values


def fit(epochs=EPOCHS, model=None):
    """Run `epochs` epochs from INIT: returns [(epoch, mu, sigma, scale, loss)], epoch 0 = INIT."""
    model = model or Model()
    params = INIT
    history = [(0, *params, model.total_loss(*params))]
    for i in range(1, epochs + 1):
        params = model.epoch(*params)
        history.append((i, *params, model.total_loss(*params)))
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
        ax.set_title(f"epoch {t}: mu={mu:.3f} sigma={sigma:.3f} scale={scale:.3f}")
        ax.legend(loc="upper left")
        images.append(_common.figure_image(fig))
    plt.close(fig)
    _common.frames_to_gif(images, args.out / "curve_fit.gif")

    # The graph at the start of the descent, where the gradients are far from zero.
    model.set_params(*INIT)
    model.x.set(1.0)
    model.sample_y.set(truth(1.0))
    model.loss.eval()
    model.loss.backprop()
    _common.save_graph(model.loss, args.out, "curve_fit_graph", precision=3,
                       outputs={"gaussian": model.gaussian, "loss": model.loss})

if __name__ == "__main__":
    main()
