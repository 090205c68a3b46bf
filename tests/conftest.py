"""Shared helpers: the tests import `oracle` (tests/oracle.py) as a plain module, and tests of
behaviour common to every term kind take the `leaf` fixture."""
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

import rustograd_cy as rg

sys.path.insert(0, os.path.dirname(__file__))

# Property tests never fail for being slow on a loaded machine, and in CI (CI=true) they draw the same
# examples every run, so a landing cannot hinge on a lucky draw. Locally they explore new examples.
settings.register_profile("local", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("local"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")

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
