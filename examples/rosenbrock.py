"""Newton's method on the Rosenbrock function with rg.grad and rg.hessian, and scipy's BFGS with
rg.value_and_grad.

Prints the iterations and writes out/rosenbrock.png (both paths over the contours), or into --out DIR;
--quick (or RUSTOGRAD_QUICK=1) draws a coarser picture. The BFGS part needs scipy (the [fit] extra)
and is left out, with a note, without it.
"""
import numpy as np

import _common
import rustograd_cy as rg


def rosenbrock(v):
    return (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2


def newton(start, tol=1e-12, max_iter=50):
    """Newton steps x <- x - H^-1 g; the first call records the tape, the rest replay it."""
    value_and_grad = rg.value_and_grad(rosenbrock)
    hessian = rg.hessian(rosenbrock)
    x = np.array(start, dtype=float)
    path = [x.copy()]
    print(f"{'iter':>4} {'x':>22} {'y':>22} {'f':>12} {'|grad|':>10}")
    for it in range(max_iter):
        f, g = value_and_grad(x)
        print(f"{it:4d} {x[0]:22.16f} {x[1]:22.16f} {f:12.4e} {np.linalg.norm(g):10.3e}")
        if np.linalg.norm(g) < tol:
            break
        x = x - np.linalg.solve(hessian(x), g)
        path.append(x.copy())
    return np.array(path)


def bfgs(start):
    """scipy.optimize.minimize(fun, x0, jac=True): fun returns (value, gradient), which is what
    rg.value_and_grad(f) gives. Returns (result, path), or None without scipy."""
    try:
        from scipy.optimize import minimize
    except ImportError:
        print("note: scipy is not installed, so BFGS is left out (pip install 'rustograd-cy[fit]')")
        return None
    path = [np.array(start, dtype=float)]
    result = minimize(rg.value_and_grad(rosenbrock), np.array(start, dtype=float), jac=True,
                      method="BFGS", callback=lambda xk: path.append(np.array(xk)))
    print(f"BFGS (scipy.optimize.minimize(rg.value_and_grad(rosenbrock), x0, jac=True)): "
          f"x = ({result.x[0]:.10f}, {result.x[1]:.10f}), f = {result.fun:.3e}, "
          f"{result.nit} iterations, {result.nfev} evaluations of value and gradient")
    return result, np.array(path)


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    plt = _common.pyplot()
    path = newton([-1.2, 1.0])
    quasi = bfgs([-1.2, 1.0])
    n = 120 if args.quick else 400
    gx, gy = np.meshgrid(np.linspace(-2, 2, n), np.linspace(-3.5, 3, n))
    z = (1 - gx) ** 2 + 100 * (gy - gx ** 2) ** 2
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contour(gx, gy, np.log10(z + 1e-3), levels=25, cmap="viridis")
    ax.plot(path[:, 0], path[:, 1], "o-", color="crimson", label=f"Newton: {len(path) - 1} steps")
    if quasi is not None:
        result, bpath = quasi
        ax.plot(bpath[:, 0], bpath[:, 1], ".-", color="tab:blue", lw=1, ms=4,
                label=f"scipy BFGS: {result.nit} steps, {result.nfev} evaluations")
    ax.plot([1], [1], "*", color="black", markersize=14, label="minimum (1, 1)")
    ax.set_title("Rosenbrock from (-1.2, 1):\nNewton with rg.hessian, scipy's BFGS with rg.value_and_grad",
                 fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="lower left", framealpha=0.95)
    fig.tight_layout()
    out = args.out / "rosenbrock.png"
    _common.save_figure(fig, out)
    return [out]


if __name__ == "__main__":
    main()
