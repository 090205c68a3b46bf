"""sin(a) + 0.2 * sin(5 a): its value and derivative over [-2 pi, 2 pi], and its graph at a = 1.

Written with the reference-style Term as the seed writes it: the model is built for each point (a
Term computes its value as it is built), then derived with respect to a.
"""
import math

import _common
import rustograd_cy as rg


def build_model(a_val):
    """(all, a) for all = sin(a) + c * sin(a * 5), with the seed's names."""
    a = rg.Term("a", a_val)
    sin_a = a.apply("sin", math.sin, math.cos)
    ten = rg.Term("5", 5.0)  # the seed's name for it
    b = a * ten
    c = rg.Term("c", 0.2)
    sin_b = b.apply("sin", math.sin, math.cos)
    c_sin_b = c * sin_b
    return sin_a + c_sin_b, a


def sample(per_pi=20):
    """[(x, value, derivative)] for x = i / per_pi * pi, i in -2 per_pi..2 per_pi (the seed's 81
    points by default; the picture uses 10 times as many, as the derivative's 5a term swings fast)."""
    rows = []
    for i in range(-2 * per_pi, 2 * per_pi + 1):
        x = i / per_pi * math.pi
        all_, a = build_model(x)
        rows.append((x, all_.eval(), all_.derive(a)))
    return rows


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    rows = sample(per_pi=50 if args.quick else 200)
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    xs, ys, dys = zip(*rows)
    ax.plot(xs, ys, lw=2, label="f(a) = sin(a) + 0.2 sin(5a)")
    ax.plot(xs, dys, lw=1.2, label="f'(a) = cos(a) + cos(5a), by derive()")
    ax.set_title("sin(a) + 0.2 sin(5a) and its derivative (Term, apply() nodes)")
    ax.set_xlabel("a")
    ax.set_ylabel("value")
    ax.set_xlim(-2 * math.pi, 2 * math.pi)
    ax.set_ylim(-2.2, 3.0)  # head room above the curves for the legend
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    _common.save_figure(fig, args.out / "mixed_sine.png")

    # Drawn at a = 1, where the nodes' values and gradients differ (at a = 0 they were all 0.00).
    all_, a = build_model(1.0)
    all_.eval()
    all_.backprop()
    _common.save_graph(all_, args.out, "mixed_sine_graphviz")


if __name__ == "__main__":
    main()
