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

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    names = ["f", "f'", "f''", "f'''", "f''''"]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for ax, terms, points in ((ax1, sines, xs), (ax2, gauss, gs)):
        for k, ys in enumerate(sample(terms, x, points)):
            # the 4th derivative of sin is sin: drawn dashed on top, so that both stay visible
            style = dict(dashes=(2, 2), lw=2.2, zorder=3) if k == 4 else dict(lw=3.4 - 0.5 * k)
            ax.plot(points, ys, color=colors[k], label=names[k], **style)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_xlabel("x")
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
    ax1.set_title("f(x) = sin(x)  (f'''' = f: dashed, on top of f)", fontsize=10)
    ax2.set_title("f(x) = exp(-x²/2)", fontsize=10)
    ax1.set_xlim(xs[0], xs[-1])
    ax2.set_xlim(gs[0], gs[-1])
    handles, labels = ax1.get_legend_handles_labels()
    fig.suptitle("A function and its first four derivatives, each built with gen_graph()")
    fig.legend(handles, labels, loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = args.out / "higher_order.png"
    _common.save_figure(fig, path)
    return [path]


if __name__ == "__main__":
    main()
