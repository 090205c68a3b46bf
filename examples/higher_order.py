"""sin and its first four derivatives, and a Gaussian's, built as graphs with gen_graph().

Writes out/higher_order.png (or --out DIR); --quick (or RUSTOGRAD_QUICK=1) uses fewer points.
"""
import math

import _common
import rustograd_cy as rg


def derivatives(y, x, n):
    """[y, dy/dx, ..., d^n y/dx^n], each a term on the tape (optim=True shares nodes)."""
    terms = [y]
    for _ in range(n):
        terms.append(terms[-1].gen_graph(x, optim=True))
    return terms


def sample(terms, x, xs):
    rows = []
    for v in xs:
        x.set(v)
        rows.append([t.eval() for t in terms])
    return list(zip(*rows))


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    plt = _common.pyplot()
    n_points = 41 if args.quick else 401
    xs = [-2 * math.pi + 4 * math.pi * i / (n_points - 1) for i in range(n_points)]
    gs = [-4 + 8 * i / (n_points - 1) for i in range(n_points)]

    tape = rg.Tape()
    x = tape.term("x", 0.0)
    sines = derivatives(x.sin(), x, 4)
    gauss = derivatives(rg.exp(-(x * x) / 2), x, 4)
    print(f"tape: {len(tape)} nodes for sin, exp(-x^2/2) and 4 derivatives of each")
    for k, t in enumerate(sines):
        print(f"  d^{k}/dx^{k} sin(x) = {t.name}")
    for k, t in enumerate(gauss[:3]):
        print(f"  d^{k}/dx^{k} exp(-x^2/2) = {t.name}")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for k, ys in enumerate(sample(sines, x, xs)):
        ax1.plot(xs, ys, label=f"d^{k} sin/dx^{k}" if k else "sin(x)", lw=2.5 - 0.4 * k)
    ax1.set_title("sin(x) and its first four derivatives")
    ax1.legend(fontsize=8, loc="upper right")
    for k, ys in enumerate(sample(gauss, x, gs)):
        ax2.plot(gs, ys, label=f"order {k}")
    ax2.set_title("exp(-x²/2) and its first four derivatives")
    ax2.legend(fontsize=8, loc="upper right")
    for ax in (ax1, ax2):
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_xlabel("x")
    fig.tight_layout()
    path = args.out / "higher_order.png"
    _common.save_figure(fig, path)
    return [path]


if __name__ == "__main__":
    main()
