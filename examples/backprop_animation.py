"""The animated forward and backward pass of (a + b) * c, as the seed's backprop.gif.

Each frame is the graph after one more node is computed: first forward (values appear, green), then
backward (gradients appear, yellow; a dashed green edge shows where the highlighted node sends its
gradient). Also writes one .dot file per frame, which is all there is without Graphviz. The full run
animates the curve-fit loss too.

The (a + b) * c model is built with RcTerm, as the seed's animation is; the curve-fit loss with the
tape, as the seed's curve fit is.
"""
import math

import _common
import rustograd_cy as rg


def abc_model():
    a, b, c = rg.RcTerm("a", 123.0), rg.RcTerm("b", 321.0), rg.RcTerm("c", 42.0)
    return (a + b) * c


def curve_fit_loss():
    """The curve-fit example's loss at one sample, with its starting parameters."""
    tape = rg.Tape()
    x, mu = tape.term("x", 1.0), tape.term("mu", 0.0)
    sigma, scale = tape.term("sigma", 1.0), tape.term("scale", 1.0)
    x_mu = x - mu
    g = scale * (-(x_mu * x_mu) / sigma / sigma).apply("exp", math.exp, math.exp)
    diff = g - tape.term("y", 0.75 * math.exp(-(0.2 ** 2) / 0.35))
    return diff * diff


def animate(term, out, stem, duration=600, **options):
    frames = rg.viz.animation_frames(term, **options)
    frame_dir = out / f"{stem}_frames"
    frame_dir.mkdir(exist_ok=True)
    for i, text in enumerate(frames):
        (frame_dir / f"dot{i}.dot").write_text(text, encoding="utf-8")
    _common.wrote(f"{frame_dir}/ ({len(frames)} frames as .dot files)")
    if rg.viz.dot_program() is None:
        print(f"note: not rendering {stem}.gif: {rg.viz.INSTALL_HINT}", flush=True)
        return
    path = out / f"{stem}.gif"
    rg.viz.animate(term, path, duration=duration, **options)
    _common.wrote(path)


def main(argv=None):
    args = _common.options(__doc__.splitlines()[0], argv)
    animate(abc_model(), args.out, "backprop")
    if not args.quick:
        animate(curve_fit_loss(), args.out, "backprop_curve_fit", duration=400, precision=3)


if __name__ == "__main__":
    main()
