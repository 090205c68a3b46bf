"""Vector math (libmvec) in batched sweeps: within a few ulp of libm for every input, and the same
value for an input wherever it falls in a batch, a chunk or a thread's share."""
import os
import platform

import numpy as np
import pytest

import rustograd_cy as rg
from rustograd_cy import _tape
from rustograd_cy._opspec import SPEC

OPS = tuple(op.name for op in SPEC if op.vmath)  # the spec's vector-math flags
MAX_ULP = 4  # what we measured; glibc documents libmvec as accurate to a few ulp
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-310]


def glibc_has_libmvec_math():
    name, version = platform.libc_ver()
    return (platform.machine() == "x86_64" and name == "glibc"
            and tuple(int(p) for p in version.split(".")[:2]) >= (2, 35))


@pytest.fixture
def vector_math():
    before = rg.get_vector_math()
    if not rg.set_vector_math(True):
        pytest.skip("built without vector math")
    yield
    rg.set_vector_math(before)


def inputs(op, rng):
    if op == "exp":
        xs = np.concatenate([rng.uniform(-745, 710, 40_000), rng.uniform(-1, 1, 20_000)])
    elif op == "log":
        xs = np.concatenate([10.0 ** rng.uniform(-320, 308, 40_000), rng.uniform(0.5, 2, 20_000),
                             -rng.uniform(0, 10, 100)])
    elif op in ("sin", "cos"):
        xs = np.concatenate([rng.uniform(-10, 10, 30_000), rng.uniform(-1e6, 1e6, 20_000),
                             rng.uniform(-1e300, 1e300, 1_000)])
    else:
        xs = np.concatenate([rng.uniform(-25, 25, 40_000), rng.uniform(-1e-6, 1e-6, 20_000)])
    return np.concatenate([xs, SPECIAL])


def batched(op, xs):
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = getattr(x, op)()
    x.set(xs)
    with np.errstate(all="ignore"):
        return y.eval()


def test_on_by_default_where_glibc_has_it():
    if not glibc_has_libmvec_math() or os.environ.get("RUSTOGRAD_VECTOR_MATH") == "0":
        pytest.skip("no libmvec here, or built without it on purpose")
    assert rg.get_vector_math()


def test_switching_it_off_and_on():
    before = rg.get_vector_math()
    try:
        assert rg.set_vector_math(False) is False and rg.get_vector_math() is False
        assert rg.set_vector_math(True) is before  # on only where built in
    finally:
        rg.set_vector_math(before)


@pytest.fixture(params=[-1, 0, 1, 2], ids=["cpu", "sse2", "avx2", "avx512"])
def level(request, vector_math):
    """Each of libmvec's entry points this CPU can run (the widest by default)."""
    if not _tape._test_force_vector_level(request.param):
        pytest.skip("this CPU lacks that instruction set")
    yield request.param
    _tape._test_force_vector_level(-1)


@pytest.mark.parametrize("op", OPS)
def test_within_a_few_ulp_of_libm(op, level):
    xs = inputs(op, np.random.default_rng(OPS.index(op)))
    fast = batched(op, xs)
    rg.set_vector_math(False)
    exact = batched(op, xs)  # libm, one sample at a time
    rg.set_vector_math(True)
    # Non-finite results and exact zeros must agree exactly; the rest within MAX_ULP.
    special = ~np.isfinite(exact) | (exact == 0)
    np.testing.assert_array_equal(fast[special], exact[special])
    ulp = np.abs(fast[~special] - exact[~special]) / np.spacing(np.abs(exact[~special]))
    assert ulp.max() <= MAX_ULP, f"{op}: {ulp.max()} ulp at x = {xs[~special][ulp.argmax()]!r}"


@pytest.mark.parametrize("op", OPS)
def test_a_value_does_not_depend_on_its_place_in_the_batch(op, level):
    xs = np.random.default_rng(7).uniform(0.1, 3.0, 203)
    whole = batched(op, xs)
    for start, stop in [(0, 1), (3, 16), (5, 13), (100, 203), (1, 202)]:
        np.testing.assert_array_equal(batched(op, xs[start:stop]), whole[start:stop])
