"""Animation frames of the forward and backward pass, and the GIF they make."""
import shutil

import pytest

import rustograd_cy as rg

HAVE_DOT = shutil.which("dot") is not None


def abc():
    tape = rg.Tape()
    a, b, c = tape.term("a", 123.0), tape.term("b", 321.0), tape.term("c", 42.0)
    return (a + b) * c


def test_frames_walk_forward_then_backward():
    y = abc()
    y.eval()
    y.backprop()  # whatever was computed before, the animation starts from the leaves
    frames = rg.viz.animation_frames(y)
    assert len(frames) == 1 + 5 + 5 + 1
    assert frames[0].count("data:None") == 2 and "color=red" not in frames[0]
    # forward: one more value per frame, the new node highlighted
    assert [f.count("data:None") for f in frames[1:6]] == [2, 2, 2, 1, 0]
    assert 'label="a + b\\ndata:444.00, grad:None" shape=rect style=filled fillcolor="#7fff7f" color=red' in frames[4]
    # backward: the output first, sending its gradient along dashed edges to its two operands
    assert 'label="(a + b) * c\\ndata:18648.00, grad:1.00" shape=rect style=filled fillcolor="#ffff7f" color=red' in frames[6]
    assert frames[6].count("dashed") == 2
    assert "grad:None" not in frames[7]
    assert frames[-1].count("grad:None") == 0 and "color=red" not in frames[-1]
    assert frames[-1] == y.dot()


def test_frames_refuse_options_they_set():
    with pytest.raises(TypeError, match="frame by frame"):
        rg.viz.animation_frames(abc(), highlight=None)


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz dot is not installed")
def test_animate_writes_a_gif_with_every_frame(tmp_path):
    from PIL import Image

    path = tmp_path / "backprop.gif"
    assert rg.viz.animate(abc(), path, duration=100) == 12
    with Image.open(path) as gif:
        assert gif.n_frames == 12
        assert gif.info["loop"] == 0


def test_render_without_graphviz_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(rg.viz.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install graphviz"):
        rg.viz.render("digraph G {}", tmp_path / "g.png")
