"""sin(a) + 0.2 * sin(5 a): its value and derivative over [-2 pi, 2 pi], and its graph at a = 0.

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


def sample():
    """[(x, value, derivative)] for x = i / 20 * pi, i in -40..40."""
    rows = []
    for i in range(-40, 41):
        x = i / 20 * math.pi
        all_, a = build_model(x)
        rows.append((x, all_.eval(), all_.derive(a)))
    return rows


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    rows = sample()
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs, ys, dys = zip(*rows)
    ax.plot(xs, ys, label="sin(a) + 0.2 sin(5a)")
    ax.plot(xs, dys, label="derivative (derive)")
    ax.set_xlabel("a")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    _common.save_figure(fig, args.out / "mixed_sine.png")

    all_, a = build_model(0.0)
    all_.eval()
    all_.backprop()
    _common.save_graph(all_, args.out, "mixed_sine_graphviz")


if __name__ == "__main__":
    main()
