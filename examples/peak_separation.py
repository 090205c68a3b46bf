"""Peak separation: fit the sum of two Gaussians to a mixed signal, as the seed's peak_separation.

Truth: 0.75 exp(-(x - 0.8)^2 / 0.35) + 0.5 exp(-(x + 0.3)^2 / 0.5) at x_i = i / 10, i in -40..39.
The model shares x between the two Gaussians (one node with two consumers) and squares (x - mu_k)
by multiplying it with itself (two edges into the product): both show in the graph.
Same descent as curve_fit.py: 500 epochs at rate 0.01 from mu0 = -1, mu1 = 1, sigma = scale = 1,
each epoch one batched eval() + backprop() over all 80 samples and one rg.optim.SGD step.
"""
import math

import numpy as np

import _common
import rustograd_cy as rg

RATE = 0.01
EPOCHS = 500
QUICK_EPOCHS = 10
INIT = (-1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # mu0, sigma0, scale0, mu1, sigma1, scale1


def truth(x):
    return 0.75 * math.exp(-((x - 0.8) ** 2) / 0.35) + 0.5 * math.exp(-((x + 0.3) ** 2) / 0.5)


SAMPLES = [i / 10 for i in range(-40, 40)]
TRUTH = [truth(x) for x in SAMPLES]


class Model:
    def __init__(self):
        tape = rg.Tape()
        self.x = tape.term("x", 0.0)
        self.squares = []  # (x - mu_k) * (x - mu_k), drawn on their own as the zoomed graph

        def gaussian(i):
            mu = tape.term(f"mu{i}", 0.0)
            sigma = tape.term(f"sigma{i}", 1.0)
            scale = tape.term(f"scale{i}", 1.0)
            x_mu = self.x - mu
            square = x_mu * x_mu
            self.squares.append(square)
            # np.exp takes a number (one sample) as well as an array (a batch of samples).
            g = scale * (-square / sigma / sigma).apply("exp", np.exp, np.exp)
            return (mu, sigma, scale), g

        params0, self.g0 = gaussian(0)
        params1, self.g1 = gaussian(1)
        self.params = params0 + params1
        self.y = self.g0 + self.g1
        self.sample_y = tape.term("y", 0.0)
        diff = self.y - self.sample_y
        self.loss = diff * diff

    def set_params(self, values):
        for term, value in zip(self.params, values):
            term.set(value)

    def values(self):
        return tuple(term.data for term in self.params)

    def set_samples(self, xs=SAMPLES, ys=TRUTH):
        """x and y hold whole arrays: the tape is batched, loss.eval() returns one loss per sample."""
        self.x.set(xs)
        self.sample_y.set(ys)

    def curves(self, values, xs):
        """(g0, g1, y), each an array of the values at `xs`, for the parameters `values`."""
        self.set_params(values)
        self.sample_y.set(0.0)  # the model does not read y; x alone sets the batch to len(xs)
        self.x.set(xs)
        self.y.eval()  # one batched sweep; .data of an inner node is then its array of values
        return self.g0.data, self.g1.data, self.y.data


def train(epochs=EPOCHS, model=None, progress=iter):
    """Run `epochs` epochs from INIT: returns [(epoch, parameters)] at the epochs to draw."""
    model = model or Model()
    model.set_params(INIT)
    model.set_samples()
    opt = rg.optim.SGD(model.params, lr=RATE)  # p -= RATE * p.grad for each parameter, in C
    history = [(0, INIT)]
    for i in progress(range(1, epochs + 1)):
        model.loss.eval()
        # backprop() differentiates the sum of the 80 losses: each parameter's .grad is the sum of
        # its per-sample gradients, all at this epoch's fixed parameters -- exactly what the seed's
        # loop subtracts sample by sample (only the summation order differs, ~1e-15).
        model.loss.backprop()
        opt.step()
        if history[-1][0] * 1.1 < i or i <= 10 or i == epochs:
            history.append((i, model.values()))
    return history


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    epochs = QUICK_EPOCHS if args.quick else EPOCHS
    model = Model()
    history = train(epochs, model, lambda steps: _common.progress(steps, "peak separation epochs"))
    values = history[-1][1]
    names = ("mu0", "sigma0", "scale0", "mu1", "sigma1", "scale1")
    print("final: " + ", ".join(f"{n} = {v:.6f}" for n, v in zip(names, values)))

    plt = _common.pyplot()
    xs = [i / 50 for i in range(-200, 200)]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    images = []
    for t, vals in _common.progress(history, "peak_separation.gif frames"):
        g0, g1, y = model.curves(vals, xs)
        ax.clear()
        ax.plot(SAMPLES, TRUTH, "o", ms=3, color="tab:blue", label="samples")
        ax.plot(xs, g0, "--", color="tab:orange", label="g0")
        ax.plot(xs, g1, "--", color="tab:green", label="g1")
        ax.plot(xs, y, color="tab:red", label="g0 + g1")
        ax.set_ylim(-0.05, 1.6)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"epoch {t}: mu0={vals[0]:.2f} sigma0={vals[1]:.2f} "
                     f"mu1={vals[3]:.2f} sigma1={vals[4]:.2f}", fontsize=10)
        ax.legend(loc="upper left", fontsize=9, frameon=False)
        fig.tight_layout()
        images.append(_common.figure_image(fig))
    plt.close(fig)
    _common.frames_to_gif(images, args.out / "peak_separation.gif")

    # x and y set back to numbers: the tape is per-sample again, its graph the seed's.
    model.set_params(INIT)
    model.x.set(0.0)
    model.sample_y.set(0.0)
    model.y.eval()
    model.y.backprop()
    _common.save_graph(model.y, args.out, "peak_separation_graph", show_values=False)
    # The zoomed graph: only the nodes up to the two squares (x feeding both Gaussians, two edges
    # into each square), drawn as a graph of its own rather than cut out of the big picture.
    records = {rec[0]: rec for square in model.squares for rec in square._graph()}
    text = rg.dot.write_records([records[k] for k in sorted(records)], show_values=False,
                                vertical=False)
    _common.save_dot_text(text, args.out, "peak_separation_graph_zoomed", formats=("png",))

if __name__ == "__main__":
    main()
