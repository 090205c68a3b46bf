"""help() and inspect.signature() of the public names: real constructor signatures for the compiled
classes, and none of the pickling helpers Cython would generate."""
import inspect
import pickle
import pydoc

import pytest

import rustograd_cy as rg

SIGNATURES = {
    rg.Tape: "()",
    rg.RcTerm: "(name, value)",
    rg.Term: "(name, value)",
    rg.optim.SGD: "(params, lr, momentum=0.0)",
    rg.optim.Adam: "(params, lr=0.001, betas=(0.9, 0.999), eps=1e-08)",
}


@pytest.mark.parametrize("cls", list(SIGNATURES), ids=lambda c: c.__name__)
def test_compiled_classes_show_their_constructor(cls):
    assert str(inspect.signature(cls)) == SIGNATURES[cls]
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert f"{cls.__name__}{SIGNATURES[cls]}" in text
    # The docstring is what follows the signature, not the signature again.
    assert not cls.__doc__.lstrip().startswith(cls.__name__ + "(")
    assert cls.__doc__.strip()


def test_the_adam_and_sgd_signatures_are_their_init():
    tape = rg.Tape()
    w = tape.term("w", 1.0)
    for cls in (rg.optim.SGD, rg.optim.Adam):
        bound = inspect.signature(cls).bind([w], 0.1)
        assert cls(*bound.args, **bound.kwargs).lr == 0.1


CLASSES = [getattr(rg, n) for n in rg.__all__ if inspect.isclass(getattr(rg, n))] + [
    rg.optim.SGD, rg.optim.Adam, rg.nn.MLP, rg.nn.Linear]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_help_shows_no_generated_pickling_helpers(cls):
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    for internal in ("__reduce_cython__", "__setstate_cython__", "__pyx_state"):
        assert internal not in text


def test_compiled_functions_show_python_signatures():
    assert str(inspect.signature(rg.set_num_threads)) == "(n)"
    assert str(inspect.signature(rg.Tape.term)) == "(self, name, value)"
    assert rg.set_num_threads.__doc__.startswith("set_num_threads(n: int)")


@pytest.mark.parametrize("make", [rg.RcTerm, rg.Term], ids=["rc", "term"])
def test_a_pointer_term_refuses_to_pickle_and_says_what_to_do(make):
    a = make("a", 2.0)
    with pytest.raises(TypeError, match="record the model on a Tape"):
        pickle.dumps(a * a)


@pytest.mark.parametrize("cls", [rg.optim.SGD, rg.optim.Adam], ids=lambda c: c.__name__)
def test_an_optimizer_refuses_to_pickle_and_says_what_to_do(cls):
    tape = rg.Tape()
    with pytest.raises(TypeError, match="pickle its tape"):
        pickle.dumps(cls([tape.term("w", 1.0)], 0.1))
