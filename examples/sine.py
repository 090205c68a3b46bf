"""sin(a) built with apply(), evaluated at 21 points: the plot of its value and its derivative.

Written with the reference-style Term, as the seed writes it: set() the leaf, eval(), derive().
"""
import math

import _common
import rustograd_cy as rg


def sample():
    """[(x, sin(x), d sin(x)/dx)] for x = i / 10 * pi, i in -10..10, as the seed's loop."""
    a = rg.Term("a", 0.0)
    sin_a = a.apply("sin", math.sin, math.cos)
    rows = []
    for i in range(-10, 11):
        x = i / 10 * math.pi
        a.set(x)
        rows.append((x, sin_a.eval(), sin_a.derive(a)))
    return rows


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    rows = sample()
    for x, y, dy in rows:
        print(f"[{x:.4f}, {y:.4f}, {dy:.4f}],")
    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs, ys, dys = zip(*rows)
    ax.plot(xs, ys, "o-", label="sin(a)")
    ax.plot(xs, dys, "s-", label="d sin(a) / da  (derive)")
    ax.set_xlabel("a")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("sin(a) and its derivative")
    _common.save_figure(fig, args.out / "sine.png")


if __name__ == "__main__":
    main()
