"""Peak separation by Levenberg-Marquardt: scipy.optimize.least_squares fed by term.jacobian().

The seed's two-Gaussian fit (examples/peak_separation.py), from the seed's starting point, solved
the way people who fit curves solve it: least_squares(residuals, x0, jac=..., method="lm"), where
the residuals are the batched tape's 80 values of y - sample_y and the Jacobian (80 x 6) is one
`residual.jacobian(params)` sweep. Beside it, 500 epochs of the seed's gradient descent (rate 0.01).
Prints both fits' sum of squares and evaluations, and writes out/peak_separation_lm.png: both fits
over the samples, and the sum of squares against the evaluations (one eval() + one derivative
sweep each). Needs scipy (pip install "rustograd-cy[fit]").
"""
import sys

import numpy as np

import _common
import peak_separation as seed
import rustograd_cy as rg

try:
    from scipy.optimize import least_squares
except ImportError:  # scipy is an optional extra
    least_squares = None

NAMES = ("mu0", "sigma0", "scale0", "mu1", "sigma1", "scale1")


class Residuals:
    """The model's residuals y(x_i) - y_i over the 80 samples as functions of the 6 parameters, for
    least_squares: `__call__` (fun) and `jacobian` (jac), counting the sweeps and recording the sum
    of squares at each evaluation."""

    def __init__(self, model=None):
        self.model = model or seed.Model()
        self.model.set_samples()
        self.residual = self.model.y - self.model.sample_y  # one node more on the same tape
        self.at = None
        self.evaluations = 0
        self.jacobians = 0
        self.history = []  # (evaluation number, sum of squares)

    def _at(self, p):
        if self.at is None or not np.array_equal(p, self.at):
            self.model.set_params([float(v) for v in p])
            self.values = self.residual.eval()  # one batched sweep: 80 residuals
            self.at = np.array(p, dtype=float)
            self.evaluations += 1
            self.history.append((self.evaluations, float(self.values @ self.values)))
        return self.values

    def __call__(self, p):
        return self._at(p)

    def jacobian(self, p):
        self._at(p)
        self.jacobians += 1
        return self.residual.jacobian(self.model.params)  # (80, 6): one reverse sweep


def fit_lm(model=None):
    """least_squares(..., method="lm") from the seed's INIT: (result, Residuals)."""
    if least_squares is None:
        raise ImportError("examples/peak_separation_lm.py needs scipy: pip install 'rustograd-cy[fit]' "
                          "(or pip install scipy)")
    res = Residuals(model)
    result = least_squares(res, np.array(seed.INIT), jac=res.jacobian, method="lm")
    return result, res


def fit_gd(epochs=seed.EPOCHS):
    """The seed's gradient descent: (parameters after `epochs`, [(epoch, sum of squares)])."""
    model = seed.Model()
    model.set_params(seed.INIT)
    model.set_samples()
    opt = rg.optim.SGD(model.params, lr=seed.RATE)
    curve = []
    for epoch in range(1, epochs + 1):
        curve.append((epoch, float(np.sum(model.loss.eval()))))  # the loss at this epoch's start
        model.loss.backprop()
        opt.step()
    final = float(np.sum(model.loss.eval()))
    curve.append((epochs + 1, final))
    return model.values(), curve


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    if least_squares is None:
        sys.exit("examples/peak_separation_lm.py needs scipy: pip install 'rustograd-cy[fit]' "
                 "(or .venv/bin/pip install scipy)")
    epochs = seed.QUICK_EPOCHS if args.quick else seed.EPOCHS
    result, res = fit_lm()
    gd_params, gd_curve = fit_gd(epochs)
    lm_ssq = float(result.fun @ result.fun)
    print(f"gradient descent, {epochs} epochs: sum of squares {gd_curve[-1][1]:.3e} after {epochs} "
          f"evaluations (eval + backprop)")
    print(f"Levenberg-Marquardt (least_squares, method='lm'): sum of squares {lm_ssq:.3e} after "
          f"{res.evaluations} evaluations ({result.nfev} residual calls, {res.jacobians} jacobian() "
          f"sweeps); {result.message}")
    print("LM:  " + ", ".join(f"{n} = {v:.6f}" for n, v in zip(NAMES, result.x)))
    print("GD:  " + ", ".join(f"{n} = {v:.6f}" for n, v in zip(NAMES, gd_params)))

    plt = _common.pyplot()
    xs = np.linspace(-4.0, 4.0, 400)
    model = seed.Model()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(seed.SAMPLES, seed.TRUTH, "o", ms=3, color="tab:blue", label="samples")
    for params, style, color, width, label in (
            (tuple(result.x), "-", "tab:red", 3, f"Levenberg-Marquardt, {res.evaluations} evaluations"),
            (gd_params, "--", "tab:orange", 1.5, f"gradient descent, {epochs} epochs")):
        g0, g1, y = model.curves(params, xs)
        left.plot(xs, y, style, color=color, lw=width, label=label)
    g0, g1, _ = model.curves(tuple(result.x), xs)
    left.plot(xs, g0, ":", color="tab:gray", label="LM's two peaks")
    left.plot(xs, g1, ":", color="tab:gray")
    left.set_xlabel("x")
    left.set_ylabel("y")
    left.set_ylim(-0.05, 1.25)
    left.set_title("the two-peak fit")
    left.legend(loc="upper left", fontsize=9, frameon=False)
    right.semilogy(*zip(*gd_curve), color="tab:orange", label="gradient descent (eval + backprop)")
    right.semilogy(*zip(*res.history), "o-", ms=3, color="tab:red",
                   label=f"Levenberg-Marquardt ({res.evaluations} evals, {res.jacobians} jacobian() sweeps)")
    right.set_xscale("log")
    right.set_xlabel("evaluations (log scale)")
    right.set_ylabel("sum of squared residuals")
    right.set_title("sum of squares against evaluations")
    right.legend(loc="lower left", fontsize=9, frameon=False)
    fig.tight_layout()
    out = args.out / "peak_separation_lm.png"
    _common.save_figure(fig, out)
    return [out]


if __name__ == "__main__":
    main()
