"""pytest-benchmark suite of batched replay (issue 6): `pytest benchmarks/test_bench_batch.py`.
The workloads are those of benchmarks/batch.py, which prints them as one table with the peers."""
import pytest

import batch  # benchmarks/ is on sys.path (conftest.py)


@pytest.mark.parametrize("peaks", [False, True], ids=["curve_fit", "peak_separation"])
def test_fit_100_epochs_batched(benchmark, peaks):
    values = benchmark(batch.fit_batched(peaks))
    assert values == batch.fit_batched_sgd(peaks)()  # the C update rounds as the Python one


@pytest.mark.parametrize("peaks", [False, True], ids=["curve_fit", "peak_separation"])
def test_fit_100_epochs_batched_sgd(benchmark, peaks):
    benchmark(batch.fit_batched_sgd(peaks))


@pytest.mark.parametrize("peaks", [False, True], ids=["curve_fit", "peak_separation"])
def test_fit_100_epochs_per_sample(benchmark, peaks):
    benchmark.pedantic(batch.fit_per_sample(peaks), rounds=5, iterations=1)


def test_mlp_step(benchmark):
    benchmark(batch.mlp_step())
