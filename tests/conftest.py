"""Fixtures shared by the tests that hold for every term kind."""
import pytest

import rustograd_cy as rg

#: The three term kinds, by the names the parametrised test ids show.
KINDS = ("tape", "rc", "term")


@pytest.fixture(params=KINDS)
def kind(request):
    """Each term kind in turn: "tape" (TapeTerm), "rc" (RcTerm), "term" (Term)."""
    return request.param


@pytest.fixture
def leaf(kind):
    """A leaf maker `leaf(name, value)` of the kind under test; TapeTerm leaves share one fresh tape."""
    if kind == "tape":
        return rg.Tape().term
    return {"rc": rg.RcTerm, "term": rg.Term}[kind]
