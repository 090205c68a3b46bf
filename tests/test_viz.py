"""Animation frames of the forward and backward pass, and the GIF they make.

Tests taking the `leaf` fixture (tests/conftest.py) run once per term kind. The kinds sweep in
different topological orders (the tape in creation order, RcTerm and Term depth-first), so the
frames are checked for what every order shares.
"""
import re
import shutil

import pytest

import rustograd_cy as rg

HAVE_DOT = shutil.which("dot") is not None

NODE = re.compile(r'^n\d+ \[label="(?P<label>[^"\\]*)\\ndata:(?P<data>\S+), grad:(?P<grad>\S+)"'
                  r'(?P<attrs>[^\]]*)\];$', re.MULTILINE)


def abc(leaf):
    a, b, c = leaf("a", 123.0), leaf("b", 321.0), leaf("c", 42.0)
    return (a + b) * c


def shown(frame):
    """{label: (data, grad, highlighted)} of a frame, data and grad as the text shows them."""
    return {m["label"]: (m["data"], m["grad"], "color=red" in m["attrs"]) for m in NODE.finditer(frame)}


def highlighted(frame):
    (label,) = [label for label, (_, _, red) in shown(frame).items() if red]
    return label


OPERANDS = {"a + b": ("a", "b"), "(a + b) * c": ("a + b", "c")}
VALUES = {"a": "123.00", "b": "321.00", "c": "42.00", "a + b": "444.00", "(a + b) * c": "18648.00"}
GRADS = {"a": "42.00", "b": "42.00", "c": "444.00", "a + b": "42.00", "(a + b) * c": "1.00"}


def test_frames_walk_forward_then_backward(leaf):
    y = abc(leaf)
    y.eval()
    y.backprop()  # whatever was computed before, the animation starts from the leaves
    frames = rg.viz.animation_frames(y)
    assert len(frames) == 1 + 5 + 5 + 1
    assert shown(frames[0]) == {label: (VALUES[label] if label not in OPERANDS else "None", "None", False)
                                for label in VALUES}

    # forward: one node per frame, operands before users, its value appearing as it is highlighted
    forward = [highlighted(f) for f in frames[1:6]]
    assert sorted(forward) == sorted(VALUES) and forward[-1] == "(a + b) * c"
    for step, frame in enumerate(frames[1:6]):
        done = set(forward[:step + 1])
        assert all(operand in done for operand in OPERANDS.get(forward[step], ()))
        assert shown(frame) == {label: (VALUES[label] if label in done or label not in OPERANDS else "None",
                                        "None", label == forward[step]) for label in VALUES}
    at = forward.index("a + b") + 1
    assert ('label="a + b\\ndata:444.00, grad:None" shape=rect style=filled fillcolor="#7fff7f" color=red'
            in frames[at])

    # backward: the output first, sending its gradient along dashed edges to its operands
    backward = [highlighted(f) for f in frames[6:11]]
    assert sorted(backward) == sorted(VALUES) and backward[0] == "(a + b) * c"
    for step, frame in enumerate(frames[6:11]):
        node = backward[step]
        assert all(user not in backward[step:] for user, operands in OPERANDS.items() if node in operands)
        received = {"(a + b) * c"}.union(*(OPERANDS.get(n, ()) for n in backward[:step + 1]))
        assert shown(frame) == {label: (VALUES[label], GRADS[label] if label in received else "None",
                                        label == node) for label in VALUES}
        assert frame.count("dashed") == len(OPERANDS.get(node, ()))
    assert ('label="(a + b) * c\\ndata:18648.00, grad:1.00" shape=rect style=filled fillcolor="#ffff7f" '
            'color=red' in frames[6])
    assert frames[-1].count("grad:None") == 0 and "color=red" not in frames[-1]
    assert frames[-1] == y.dot()


def test_frames_refuse_options_they_set():
    with pytest.raises(TypeError, match="frame by frame"):
        rg.viz.animation_frames(abc(rg.Tape().term), highlight=None)


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz dot is not installed")
def test_animate_writes_a_gif_with_every_frame(leaf, tmp_path):
    from PIL import Image

    path = tmp_path / "backprop.gif"
    assert rg.viz.animate(abc(leaf), path, duration=100) == 12
    with Image.open(path) as gif:
        assert gif.n_frames == 12
        assert gif.info["loop"] == 0


def test_render_without_graphviz_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(rg.viz.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install graphviz"):
        rg.viz.render("digraph G {}", tmp_path / "g.png")
