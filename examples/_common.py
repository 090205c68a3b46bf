"""What every example shares: the command line (--quick, --out), matplotlib setup, and saving graphs.

Each example writes into out/ (or --out DIR) and prints one "wrote PATH" line per file, which
examples/run_all.py collects. Quick mode (--quick, or RUSTOGRAD_QUICK=1) does less work so the test
suite can run every example.
"""
import argparse
import os
import sys
from pathlib import Path

import rustograd_cy as rg

# Let the examples import each other's helpers and the package from a source checkout.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def options(description, argv=None):
    """Parse the shared command line: returns an object with .quick (bool) and .out (Path)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("RUSTOGRAD_QUICK", "") not in ("", "0"),
                        help="do less work (fewer epochs, fewer frames); also RUSTOGRAD_QUICK=1")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("RUSTOGRAD_OUT", "out")),
                        help="output folder (default: out, or RUSTOGRAD_OUT)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def wrote(path):
    print(f"wrote {path}", flush=True)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    wrote(path)


_warned = False


def graph_shape(term):
    """(depth, width) of term's graph: the nodes on its longest path, and the most nodes at one
    distance from the leaves (what Graphviz lays out along and across its ranks)."""
    level = {}
    for key, _, _, _, operands, _, _ in term._graph():  # operands come first
        level[key] = 1 + max((level[k] for k in operands), default=-1)
    counts = {}
    for depth in level.values():
        counts[depth] = counts.get(depth, 0) + 1
    return max(level.values()) + 1, max(counts.values())


def vertical_layout(term, target=1.6):
    """Whether term's graph reads better top to bottom: the direction whose picture has the aspect
    (width / height) closer to `target`. A node's box is about 3 times wider than high, and ranks
    are about as far apart as a box is wide (left to right) or high (top to bottom)."""
    import math

    depth, width = graph_shape(term)
    across = math.log(3.0 * depth / width / target)  # left to right: ranks side by side
    down = math.log(3.0 * width / (1.6 * depth) / target)  # top to bottom: ranks stacked
    return abs(down) < abs(across)


def save_graph(term, out, stem, formats=("svg", "png"), **dot_options):
    """Write `term`'s graph as out/stem.dot, and rendered in `formats` when Graphviz is installed.
    Unless `vertical=` is given, the direction is chosen by the graph's shape (vertical_layout), so
    that a long chain is not drawn as a thin strip."""
    dot_options.setdefault("vertical", vertical_layout(term))
    save_dot_text(term.dot(**dot_options), out, stem, formats)


def save_dot_text(text, out, stem, formats=("svg", "png")):
    """Write DOT `text` as out/stem.dot, and rendered in `formats` when Graphviz is installed."""
    global _warned
    dot_path = out / f"{stem}.dot"
    dot_path.write_text(text, encoding="utf-8")
    wrote(dot_path)
    if rg.viz.dot_program() is None:
        if not _warned:
            print(f"note: not rendering graphs: {rg.viz.INSTALL_HINT}", flush=True)
            _warned = True
        return
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        rg.viz.render(text, path, fmt)
        wrote(path)


def frames_to_gif(images, path, duration=100, final_duration=1500):
    """Save a list of Pillow images as a looping GIF (the last frame held longer)."""
    rg.viz.save_gif(images, path, [duration] * (len(images) - 1) + [final_duration])
    wrote(path)


def figure_image(fig):
    """A matplotlib figure as a Pillow RGB image."""
    import numpy as np
    from PIL import Image

    fig.canvas.draw()
    return Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")


def progress(iterable, description):
    """A tqdm progress bar on a terminal, nothing when the output is piped (tests, CI logs)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=description, disable=None, leave=False)
