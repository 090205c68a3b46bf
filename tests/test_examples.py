"""Every example runs in quick mode and writes its files; the curve fit reaches the seed's numbers."""
import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HAVE_DOT = shutil.which("dot") is not None

# Files each example writes in quick mode: (always, only with Graphviz).
WRITES = {
    "arithm": (["graphviz.dot"], ["graphviz.svg", "graphviz.png"]),
    "sine": (["sine.png"], []),
    "mixed_sine": (["mixed_sine.png", "mixed_sine_graphviz.dot"],
                   ["mixed_sine_graphviz.svg", "mixed_sine_graphviz.png"]),
    "curve_fit": (["curve_fit_history.csv", "curve_fit_history.png", "curve_fit.gif",
                   "curve_fit_graph.dot"], ["curve_fit_graph.svg", "curve_fit_graph.png"]),
    "peak_separation": (["peak_separation.gif", "peak_separation_graph.dot"],
                        ["peak_separation_graph.svg", "peak_separation_graph.png",
                         "peak_separation_graph_zoomed.png"]),
    "backprop_animation": (["backprop_frames/dot0.dot", "backprop_frames/dot11.dot"], ["backprop.gif"]),
    "classifier": (["classifier.png"], []),
    "moons_mlp": (["moons_mlp.png"], []),
    "dask_fit": (["dask_fit.png"], []),
    "dask_many_fits": (["dask_many_fits.png"], []),
    "peak_separation_lm": (["peak_separation_lm.png"], []),
    "rosenbrock": (["rosenbrock.png"], []),
}


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.mark.parametrize("name", sorted(WRITES))
def test_example_runs_quick_and_writes_its_files(name, tmp_path):
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    always, rendered = WRITES[name]
    expected = always + (rendered if HAVE_DOT else [])
    for file in expected:
        assert (tmp_path / file).stat().st_size > 0, file
    reported = [line[len("wrote "):] for line in result.stdout.splitlines() if line.startswith("wrote ")]
    for file in expected:
        if "/" not in file:
            assert str(tmp_path / file) in reported


def test_arithm_prints_the_seed_numbers_with_every_kind(capsys):
    arithm = load_example("arithm")
    assert [kind for kind, _ in arithm.KINDS] == ["Term", "RcTerm", "TapeTerm"]
    outputs = []
    for kind, leaf_maker in arithm.KINDS:
        abc = arithm.numbers(leaf_maker())
        assert type(abc).__name__ == kind
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2]
    for line in ["(a + b) * c = 18648.0", "d((a + b) * c) / da = 42.0", "d((a + b) * c) / dc = 444.0",
                 "d((a + b) * c / d) / dc = 222.0", "backprop: a.grad = 42.0, b.grad = 42.0, c.grad = 444.0"]:
        assert line in outputs[0].splitlines()


def test_sine_examples_sample_the_seed_functions_with_term():
    sine = load_example("sine")
    assert [row[1:] for row in sine.sample()] == [(math.sin(x), math.cos(x)) for x, _, _ in sine.sample()]
    mixed_sine = load_example("mixed_sine")
    all_, a = mixed_sine.build_model(0.0)
    assert type(all_).__name__ == "Term" and all_.name == "sin(a) + c * sin(a * 5)"
    rows = mixed_sine.sample()
    assert len(rows) == 81
    for x, y, dy in rows:
        assert y == pytest.approx(math.sin(x) + 0.2 * math.sin(5 * x), rel=1e-15, abs=1e-15)
        assert dy == pytest.approx(math.cos(x) + math.cos(5 * x), rel=1e-15, abs=1e-15)


def test_quick_mode_also_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RUSTOGRAD_QUICK", "1")
    common = load_example("_common")
    assert common.options("x", ["--out", str(tmp_path)]).quick
    monkeypatch.setenv("RUSTOGRAD_QUICK", "0")
    assert not common.options("x", ["--out", str(tmp_path)]).quick


def reference_curve_fit(epochs):
    """The seed's descent in plain floats with hand-derived gradients.

    g = s E with E = exp(-(x - mu)^2 / sigma^2), L = (g - y)^2:
    dL/ds = 2 (g - y) E, dL/dmu = 2 (g - y) g 2 (x - mu) / sigma^2,
    dL/dsigma = 2 (g - y) g 2 (x - mu)^2 / sigma^3.
    """
    xs = [i / 10 for i in range(-40, 40)]
    ys = [0.75 * math.exp(-((x - 1.2) ** 2) / 0.35) for x in xs]
    mu, sigma, scale = 0.0, 1.0, 1.0
    for _ in range(epochs):
        new_mu, new_sigma, new_scale = mu, sigma, scale  # the model's parameters stay fixed
        for x, y in zip(xs, ys):
            d = x - mu
            e = math.exp(-(d * d) / (sigma * sigma))
            g = scale * e
            r = 2.0 * (g - y)
            new_mu -= 0.01 * r * g * 2.0 * d / sigma ** 2
            new_sigma -= 0.01 * r * g * 2.0 * d * d / sigma ** 3
            new_scale -= 0.01 * r * e
        mu, sigma, scale = new_mu, new_sigma, new_scale
    return mu, sigma, scale


def test_curve_fit_100_epochs_matches_the_reference_loop():
    curve_fit = load_example("curve_fit")
    history = curve_fit.fit(100)
    assert len(history) == 101 and history[0][1:4] == (0.0, 1.0, 1.0)
    final = history[-1][1:4]
    expected = reference_curve_fit(100)
    assert final == pytest.approx(expected, abs=1e-9, rel=0)
    mu, sigma, scale = final
    assert (round(mu, 3), round(sigma, 3), round(scale, 3)) == (1.2, 0.596, 0.745)
    assert history[-1][4] < history[50][4] < history[0][4]  # the loss falls


def test_curve_fit_reference_agrees_early_too():
    curve_fit = load_example("curve_fit")
    history = curve_fit.fit(3)
    for epochs in (1, 2, 3):
        assert history[epochs][1:4] == pytest.approx(reference_curve_fit(epochs), abs=1e-12, rel=0)


def test_run_all_lists_the_files_written(tmp_path, monkeypatch, capsys):
    run_all = load_example("run_all")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_all, "EXAMPLES", ["sine", "mixed_sine"])
    monkeypatch.setattr(sys, "argv", ["run_all.py", "--quick"])
    monkeypatch.setattr(run_all, "ensure_graphviz", lambda: HAVE_DOT)
    assert run_all.main() == 0
    listing = capsys.readouterr().out.split("Files written")[1].splitlines()[1:]
    expected = ["out/sine.png", "out/mixed_sine.png", "out/mixed_sine_graphviz.dot"]
    if HAVE_DOT:
        expected += ["out/mixed_sine_graphviz.svg", "out/mixed_sine_graphviz.png"]
    assert [line.strip() for line in listing] == expected
    assert all((tmp_path / path).exists() for path in expected)


def test_run_all_without_graphviz_and_root_says_how_to_install(monkeypatch, capsys):
    run_all = load_example("run_all")
    monkeypatch.setattr(run_all.shutil, "which", lambda name: None)
    monkeypatch.setattr(run_all.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(run_all.subprocess, "run", lambda *a, **k: pytest.fail("must not run apt-get"))
    assert run_all.ensure_graphviz() is False
    assert "apt-get install graphviz" in capsys.readouterr().out


def test_levenberg_marquardt_beats_500_epochs_of_descent_in_at_most_60_evaluations():
    pytest.importorskip("scipy")
    lm = load_example("peak_separation_lm")
    result, res = lm.fit_lm()
    _, curve = lm.fit_gd()
    lm_ssq, gd_ssq = float(result.fun @ result.fun), curve[-1][1]
    assert res.evaluations <= 60 and res.jacobians <= res.evaluations
    assert lm_ssq < gd_ssq and gd_ssq > 1e-5 and lm_ssq < 1e-20
    truth = (-0.3, 0.5 ** 0.5, 0.5, 0.8, 0.35 ** 0.5, 0.75)  # the two peaks the samples come from
    assert max(abs(a - b) for a, b in zip(result.x, truth)) < 1e-9


def test_rosenbrock_bfgs_with_value_and_grad_reaches_the_minimum(capsys):
    pytest.importorskip("scipy")
    rosenbrock = load_example("rosenbrock")
    result, path = rosenbrock.bfgs([-1.2, 1.0])
    assert result.success and abs(result.x - 1.0).max() < 1e-6 and result.nfev < 60
    assert "jac=True" in capsys.readouterr().out
