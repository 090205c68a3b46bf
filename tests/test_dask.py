"""rustograd_cy.dask on a real LocalCluster (2 worker processes, one thread each, bounded memory):
value and gradients equal one process's, fit equals rg.optim's loop, a killed worker changes
nothing, bad input is refused before anything is sent; and the local scheduler path."""
import logging
import os
import signal
import subprocess
import sys
import threading

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

import rustograd_cy as rg
import rustograd_cy.dask as rgd
from rustograd_cy.errors import TapeMismatchError, TermWasNotValueError

N = 6000
CHUNK = 1100  # 6 chunks, the last one shorter
START = {"a": 0.7, "mu": 0.2, "w": 1.6, "b": 0.1}


@pytest.fixture(scope="module")
def client():
    """One cluster for the module: starting worker processes is the slow part."""
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB",
                           dashboard_address=":0", silence_logs=logging.CRITICAL)
    # Not the default client: client=None tests the local scheduler unless a test makes it current.
    c = Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def samples(n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, n)
    y = 1.2 * np.exp(-((x - 0.5) ** 2) * 2.0) - 0.3 + rng.normal(0.0, 0.05, n)
    return x, y


def model(start=START):
    """A peak plus offset, squared error per sample: (a exp(-w (x - mu)^2) + b - y)^2."""
    tape = rg.Tape()
    x, y = tape.term("x", 0.0), tape.term("y", 0.0)
    a, mu, w, b = (tape.term(name, value) for name, value in start.items())
    d = x - mu
    r = a * (-(w * d * d)).exp() + b - y
    return tape, r * r, [a, mu, w, b], x, y


def dask_data(x, y, xs, ys, chunk=CHUNK):
    return {x: da.from_array(xs, chunks=chunk), y: da.from_array(ys, chunks=chunk)}


def single_process(loss, params, x, y, xs, ys):
    """(value, grads, scale) on the whole arrays in this process; scale: the summed |per-sample
    gradient| of each parameter, the magnitude the summation order's rounding is measured on."""
    x.set(xs)
    y.set(ys)
    values = loss.eval()
    loss.backprop()
    grads = np.array([p.grad for p in params])
    scale = np.array([np.abs(loss.derive(p)).sum() for p in params])
    x.set(0.0)
    y.set(0.0)
    return values.sum(), grads, scale, np.abs(values).sum()


def assert_same_sums(got, want):
    value, grads = got
    ref_value, ref_grads, scale, value_scale = want
    assert abs(value - ref_value) <= 1e-12 * value_scale
    assert np.all(np.abs(grads - ref_grads) <= 1e-12 * scale), (grads, ref_grads)
    assert np.all(np.abs(ref_grads) > 1e-3 * scale)  # not a cancellation: relative 1e-12 means something


def test_value_and_grad_on_the_cluster_equals_one_process(client):
    xs, ys = samples()
    tape, loss, params, x, y = model()
    want = single_process(loss, params, x, y, xs, ys)
    with get_task_stream(client) as stream:
        got = rgd.value_and_grad(loss, params, dask_data(x, y, xs, ys), client=client)
    assert_same_sums(got, want)
    assert isinstance(got[0], float) and got[1].shape == (4,)
    tasks = [t for t in stream.data if "_partial" in str(t["key"])]
    assert len(tasks) == 6 and len({t["worker"] for t in tasks}) == 2  # one per chunk, both workers
    assert [p.data for p in params] == list(START.values())  # the parameters keep their values


def test_the_client_leaves_its_whole_arrays_on_its_own_tape(client):
    """Data leaves holding whole arrays here: the workers get the tape without them."""
    xs, ys = samples()
    tape, loss, params, x, y = model()
    want = single_process(loss, params, x, y, xs, ys)
    x.set(xs)
    y.set(ys)
    assert_same_sums(rgd.value_and_grad(loss, params, dask_data(x, y, xs, ys), client=client), want)
    assert tape.batch_size == N  # untouched
    z = tape.term("z", 0.0)
    z.set(np.zeros(N))
    with pytest.raises(ValueError, match=r"leaf 'z' \(node \d+\) holds an array but is not in data"):
        rgd.value_and_grad(loss, params, dask_data(x, y, xs, ys), client=client)


def test_current_client_is_used_when_none_is_given(client):
    xs, ys = samples(2000)
    tape, loss, params, x, y = model()
    want = single_process(loss, params, x, y, xs, ys)
    with client.as_current(), get_task_stream(client) as stream:
        got = rgd.value_and_grad(loss, params, dask_data(x, y, xs, ys, chunk=500))
    assert_same_sums(got, want)
    assert len([t for t in stream.data if "_partial" in str(t["key"])]) == 4


def test_local_scheduler_without_a_client():
    xs, ys = samples()
    tape, loss, params, x, y = model()
    want = single_process(loss, params, x, y, xs, ys)
    assert rgd._current_client(None) is None
    with dask.config.set(scheduler="threads", num_workers=2):
        assert_same_sums(rgd.value_and_grad(loss, params, dask_data(x, y, xs, ys)), want)


def test_big_chunks_are_swept_in_slices():
    xs, ys = samples(1000)
    tape, loss, params, x, y = model()
    want = single_process(loss, params, x, y, xs, ys)
    slice_bytes = 16 * len(tape) * 70  # rows for 70 samples at a time
    problem = rgd._Problem(loss, params, dask_data(x, y, xs, ys, chunk=1000), slice_bytes)
    assert problem.slice == 70
    theta = problem.values()
    got = rgd._partial(problem.payload, theta, problem.slice, xs, ys)
    assert_same_sums(got, want)
    # 15 slices of 66 or 67 samples, each size on its own copy of the tape (its rows kept)
    sizes = sorted(k[2] for k in rgd._replicas if k[0] == problem.payload[0])
    assert sizes == [66, 67]
    assert [rgd._replicas[(problem.payload[0], threading.get_ident(), s)].tape.batch_size
            for s in sizes] == sizes
    again = rgd._partial(problem.payload, theta, problem.slice, xs, ys)  # the same, on kept replicas
    assert again[0] == got[0] and list(again[1]) == list(got[1])
    assert rgd._partial(problem.payload, theta, problem.slice, xs[:0], ys[:0])[0] == 0.0
    rgd._forget(problem.payload[0])
    assert not [k for k in rgd._replicas if k[0] == problem.payload[0]]
    with dask.config.set(scheduler="synchronous"):
        assert_same_sums(rgd.value_and_grad(loss, params, dask_data(x, y, xs, ys, chunk=1000),
                                            max_bytes=slice_bytes), want)


def reference_fit(optimizer, steps, xs, ys, **kw):
    """rg.optim's loop in one process on the whole arrays."""
    tape, loss, params, x, y = model()
    x.set(xs)
    y.set(ys)
    opt = {"sgd": rg.optim.SGD, "adam": rg.optim.Adam}[optimizer](params, **kw)
    for _ in range(steps):
        loss.eval()
        loss.backprop()
        opt.step()
    return np.array([p.data for p in params])


@pytest.mark.parametrize("optimizer, kw", [("sgd", {"lr": 2e-5, "momentum": 0.5}),
                                           ("adam", {"lr": 0.05, "betas": (0.8, 0.99)})])
def test_fit_takes_the_steps_of_rg_optim(client, optimizer, kw):
    xs, ys = samples()
    steps = 12
    want = reference_fit(optimizer, steps, xs, ys, **kw)
    tape, loss, params, x, y = model()
    values = []
    got = rgd.fit(loss, params, dask_data(x, y, xs, ys), optimizer=optimizer, steps=steps,
                  client=client, callback=lambda step, value: values.append((step, value)), **kw)
    np.testing.assert_allclose(got, want, rtol=1e-11)
    assert list(got) == [p.data for p in params]  # left in the leaves
    assert not np.allclose(got, list(START.values()), rtol=1e-3)  # it did move
    assert [s for s, _ in values] == list(range(steps)) and values[-1][1] < values[0][1]


def worker_pids(client):
    return sorted(client.run(os.getpid).values())


def test_a_worker_killed_mid_fit_changes_nothing(client):
    xs, ys = samples()
    kw = dict(optimizer="adam", lr=0.05, steps=10, client=client)
    tape, loss, params, x, y = model()
    undisturbed = rgd.fit(loss, params, dask_data(x, y, xs, ys), **kw)
    before = worker_pids(client)
    killed = []

    def kill_one(step, value):
        if step == 3:
            os.kill(before[0], signal.SIGKILL)
            killed.append(before[0])

    tape, loss, params, x, y = model()
    got = rgd.fit(loss, params, dask_data(x, y, xs, ys), callback=kill_one, **kw)
    assert killed
    # Each chunk's sums do not depend on which worker made them, and are added in chunk order.
    np.testing.assert_array_equal(got, undisturbed)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it; leave the cluster whole
    after = worker_pids(client)
    assert before[0] not in after and len(after) == 2


def test_every_worker_killed_mid_fit_changes_nothing(client):
    """With every worker gone, the tape's scattered copies are lost (they have no lineage for the
    scheduler to recompute): the step sends them again, and the data chunks are recomputed. Seen
    once with one worker killed, where the other held no copy of them."""
    xs, ys = samples()
    kw = dict(optimizer="sgd", lr=0.01, steps=6, client=client)
    tape, loss, params, x, y = model()
    undisturbed = rgd.fit(loss, params, dask_data(x, y, xs, ys), **kw)
    before = worker_pids(client)

    def kill_all(step, value):
        if step == 2:
            for pid in before:
                os.kill(pid, signal.SIGKILL)

    tape, loss, params, x, y = model()
    got = rgd.fit(loss, params, dask_data(x, y, xs, ys), callback=kill_all, **kw)
    np.testing.assert_array_equal(got, undisturbed)
    client.wait_for_workers(2, timeout=60)
    assert not set(before) & set(worker_pids(client))


@pytest.fixture
def bad(client, monkeypatch):
    """Whether anything reached the cluster: scatter/compute/map/submit fail the test if called."""
    def sent(*args, **kwargs):
        raise AssertionError("work was sent before the input was checked")

    for name in ("scatter", "compute", "map", "submit", "persist"):
        monkeypatch.setattr(client, name, sent)
    xs, ys = samples(100)
    tape, loss, params, x, y = model()
    return client, tape, loss, params, x, y, dask_data(x, y, xs, ys, chunk=30)


def test_bad_data_is_refused_before_anything_is_sent(bad):
    client, tape, loss, params, x, y, data = bad
    cases = [
        ({x: data[x], y: data[y].rechunk(40)}, ValueError, r"must have the same chunks"),
        ({x: data[x], tape.term("u", 0.0) + 1: data[y]}, TermWasNotValueError, r"is not one"),
        ({x: data[x], rg.Tape().term("y", 0.0): data[y]}, TapeMismatchError, r"another tape"),
        ({x: data[x], y: da.zeros((100, 2), chunks=30)}, ValueError, r"shape \(100, 2\).*1-D"),
        ({x: data[x], y: np.zeros(100)}, TypeError, r"1-D dask arrays"),
        ({x: data[x], y: da.from_array(np.array(["a"] * 100), chunks=30)}, TypeError, r"real numbers"),
        ({}, TypeError, r"non-empty dict"),
        ({x: data[x], params[0]: data[y]}, ValueError, r"both a parameter and a data leaf"),
    ]
    for d, error, message in cases:
        for call in (lambda: rgd.value_and_grad(loss, params, d, client=client),
                     lambda: rgd.fit(loss, params, d, lr=0.1, steps=1, client=client)):
            with pytest.raises(error, match=message):
                call()


def test_bad_params_are_refused_before_anything_is_sent(bad):
    client, tape, loss, params, x, y, data = bad
    other = rg.Tape().term("a", 1.0)
    cases = [
        ([], ValueError, r"empty"),
        (params + [other], TapeMismatchError, r"another tape"),
        (params + [params[0] * 2], TermWasNotValueError, r"is not one"),
        (params + [params[0]], ValueError, r"listed twice"),
        (params + [1.0], TypeError, r"not float"),
    ]
    for p, error, message in cases:
        with pytest.raises(error, match=message):
            rgd.value_and_grad(loss, p, data, client=client)
    d = {x: data[x]}  # y not in data, so it may hold an array ...
    mu = params[1]
    mu.set(np.zeros(100))  # ... and a parameter holding one is not shared
    with pytest.raises(ValueError, match=r"parameter 'mu' .* holds an array: parameters are shared"):
        rgd.value_and_grad(loss, params, d, client=client)
    mu.set(0.0)
    with pytest.raises(TypeError, match=r"TapeTerm"):
        rgd.value_and_grad(2.0, params, data, client=client)
    with pytest.raises(TypeError, match=r"Client"):
        rgd.value_and_grad(loss, params, data, client="tcp://localhost:8786")
    with pytest.raises(ValueError, match=r"optimizer is one of"):
        rgd.fit(loss, params, data, optimizer="lbfgs", lr=0.1, steps=1, client=client)
    with pytest.raises(ValueError, match=r"max_bytes"):
        rgd.value_and_grad(loss, params, data, client=client, max_bytes=0)


def test_without_dask_the_import_says_how_to_install_it():
    code = ("import sys; sys.modules['dask'] = None\n"
            "try:\n    import rustograd_cy.dask\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install rustograd-cy[dask]" in out.stdout
    import rustograd_cy  # noqa: F401  (the package itself never needs dask)
    assert "rustograd_cy.dask" not in subprocess.run(
        [sys.executable, "-c", "import sys, rustograd_cy; print(list(sys.modules))"],
        capture_output=True, text=True, timeout=60).stdout


def load_example(name):
    import importlib.util
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    spec = importlib.util.spec_from_file_location(f"example_{name}", examples / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(examples))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(examples))
    return module


def test_many_fits_example_fits_each_pixel_on_its_own():
    """examples/dask_many_fits.py's block fit: each pixel's peak is recovered, and a pixel's result
    does not depend on which other pixels share its chunk (the fits never mix)."""
    ex = load_example("dask_many_fits")
    cube, lam = ex.spectra((6, 8))
    amp, mu, width = ex.truth((6, 8))
    fitted = ex.fit_block(cube, lam, 300)
    assert fitted.shape == (6, 8, 3)
    rms = [np.sqrt(np.mean((fitted[..., k] - t) ** 2)) for k, t in enumerate((amp, mu, width))]
    start = lam[cube.argmax(axis=2)]  # the brightest channel, where each fit starts
    assert rms[1] < 0.005 < np.sqrt(np.mean((start - mu) ** 2)) and rms[2] < 0.005 and rms[0] < 0.05
    alone = ex.fit_block(cube[2:3, 3:5], lam, 300)
    np.testing.assert_allclose(alone, fitted[2:3, 3:5], rtol=1e-12)


def test_dask_fit_example_reaches_the_peaks_in_process():
    """examples/dask_fit.py's model and data on the local scheduler, at 2 * 10^4 samples."""
    ex = load_example("dask_fit")
    with dask.config.set(scheduler="threads"):
        fitted, times, model = ex.run(None, 20_000, 150, chunks=5000)
    assert len(times) == 150
    np.testing.assert_allclose(fitted, ex.matched_truth(fitted), atol=0.03)


def test_benchmark_measures_at_a_small_size(client):
    """benchmarks/dask_steps.py's two measurements run (times are never checked)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    try:
        import dask_steps as bench
    finally:
        sys.path.pop(0)
    assert bench.single_process_step(3000, 2) > 0
    assert bench.dask_step(client, 3000, 2) > 0
