"""What a new user hit (issue 16), each with the error or behaviour it now gets, on every kind."""
import pydoc

import numpy as np
import pytest

import rustograd_cy as rg


def test_callback_is_keyword_only(leaf):
    x = leaf("x", 2.0)
    y = x * x
    with pytest.raises(TypeError, match="positional"):
        y.eval(x)
    y.eval()
    with pytest.raises(TypeError, match="positional"):
        y.backprop(x)
    seen = []
    y.eval(callback=seen.append)
    y.backprop(callback=seen.append)
    assert len(seen) >= 4 and x.grad == 4.0


def test_assigning_data_or_grad_says_what_to_do(leaf):
    p = leaf("p", 1.0)
    loss = p * p
    loss.eval()
    loss.backprop()
    with pytest.raises(AttributeError, match=r"read-only: give a leaf a new value with p\.set\(value\)"
                                             r".*rg\.optim"):
        p.data -= 0.1 * p.grad
    with pytest.raises(AttributeError, match=r"term\.grad is read-only.*clear_grad\(\)"):
        p.grad = 0.0
    assert p.data == 1.0 and p.grad == 2.0
    p.set(p.data - 0.1 * p.grad)  # what the message suggests
    assert p.data == 0.8


def test_tape_takes_no_arguments():
    with pytest.raises(TypeError, match="0 positional arguments"):
        rg.Tape(5)
    with pytest.raises(TypeError):
        rg.Tape(size=5)
    assert len(rg.Tape()) == 2  # the constants 0 and 1


@pytest.mark.parametrize("cls", [rg.RcTerm, rg.Term])
def test_pointer_kind_constructors_show_their_signature_in_help(cls):
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert f"{cls.__name__}(name, value)" in text
    assert "holding the number `value`" in text
    with pytest.raises(TypeError):
        cls("a")


def test_a_parser_error_shows_the_line_and_a_caret_once():
    with pytest.raises(rg.BuilderError) as info:
        rg.rustograd("a = ")
    text = str(info.value)
    lines = text.splitlines()
    assert lines[0].startswith("line 1, column 5: ") and text.count("line 1") == 1
    assert lines[1] == "    a = " and lines[2] == "    " + " " * 4 + "^"
    with pytest.raises(rg.BuilderError) as info:
        rg.rustograd("""
        a = 1.0
        b = a +* 2.0
        """)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("line 3, column ")
    column = info.value.offset
    assert lines[1] == "    " + "        b = a +* 2.0"
    assert lines[2].index("^") == 4 + column - 1 and "b = a +* 2.0"[column - 9] == "*"


def test_an_unknown_name_error_points_at_it():
    with pytest.raises(rg.BuilderError) as info:
        rg.rustograd("a = 1.0\nb = a * nowhere")
    lines = str(info.value).splitlines()
    assert lines[1] == "    b = a * nowhere" and lines[2] == "    " + " " * 8 + "^"


def test_after_backprop_of_another_output_no_kind_reports_an_older_gradient(kind, leaf):
    a, b = leaf("a", 3.0), leaf("b", 2.0)
    y = a * b
    z = a * 4.0  # does not use b
    y.eval()
    y.backprop()
    assert b.grad == 3.0 and a.grad == 2.0
    z.eval()
    z.backprop()
    assert a.grad == 4.0 and z.grad == 1.0
    # The tape knows every node: 0.0 outside z's cone; RcTerm/Term: None (z's sweep never saw b).
    assert b.grad == (0.0 if kind == "tape" else None)
    assert y.grad == (0.0 if kind == "tape" else None)
    y.backprop()  # and back: y's gradients again, z's node left out
    assert b.grad == 3.0 and a.grad == 2.0
    assert z.grad == (0.0 if kind == "tape" else None)


@pytest.mark.parametrize("cls", [rg.RcTerm, rg.Term])
def test_pointer_kind_graphs_that_share_no_node_keep_their_gradients(cls):
    a, b = cls("a", 1.0), cls("b", 2.0)
    y = a * b
    y.eval()
    y.backprop()
    other = cls("c", 5.0) * 2.0  # another model: no node in common with y
    other.eval()
    other.backprop()
    assert a.grad == 2.0 and b.grad == 1.0 and y.grad == 1.0
    w = b * 3.0  # shares b: y's gradients are superseded, all of them
    w.eval()
    w.backprop()
    assert b.grad == 3.0 and a.grad is None and y.grad is None
    assert other.grad == 1.0  # still its own
    w.clear_grad()
    assert b.grad is None


def test_batched_tape_gives_zero_outside_the_latest_cone_too():
    tape = rg.Tape()
    x, a, b = tape.term("x", 0.0), tape.term("a", 1.0), tape.term("b", 2.0)
    x.set(np.array([1.0, 2.0]))
    y = a * b * x
    z = a * x
    y.eval()
    y.backprop()
    z.eval()
    z.backprop()
    assert b.grad == 0.0 and a.grad == 3.0
