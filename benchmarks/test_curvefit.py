"""The seed's curve fit (100 epochs of 80 samples) for every term kind and installed peer."""
import math

import pytest

import workloads

EPOCHS = 100


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.name) for k in workloads.kinds()])
def test_curve_fit(benchmark, kind):
    if not kind.available:
        pytest.skip(kind.missing)
    params = benchmark.pedantic(kind.curve_fit, args=(EPOCHS,), rounds=3, iterations=1)
    for got, want in zip(params, workloads.float_curve_fit(EPOCHS)):
        assert math.isclose(got, want, rel_tol=1e-9)
