"""Shared helpers: the tests import `oracle` (tests/oracle.py) as a plain module, and tests of
behaviour common to every term kind take the `leaf` fixture."""
import os
import sys

import pytest
from hypothesis import HealthCheck, settings

import rustograd_cy as rg

sys.path.insert(0, os.path.dirname(__file__))

# `make test-pythons` runs the suite against the package installed in a venv, and says where it must be.
_installed_in = os.environ.get("RUSTOGRAD_TEST_INSTALLED_IN")
if _installed_in and not os.path.realpath(rg.__file__).startswith(os.path.realpath(_installed_in) + os.sep):
    raise RuntimeError(f"the tests import rustograd_cy from {rg.__file__}, not from {_installed_in}")

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
