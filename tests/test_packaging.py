"""The package as a user gets it: the sdist holds what builds, `pip install <sdist>` (build isolation)
works in a fresh venv, the wheel pip built there holds only what runs, and the README's quick tour
runs against that install from outside this tree.

Installing compiles the whole package again (minutes on 2 cores), and `make test-pythons` (part of
.ci/run) installs the sdist into fresh venvs already, so the checks run against those installs:
.ci/test-pythons sets RUSTOGRAD_TEST_INSTALLED_IN (the venv) and RUSTOGRAD_TEST_SDIST (the sdist it
installed). In `make test` the sdist check runs on a fresh sdist of the tree (no compile) and the
install checks are skipped, unless RUSTOGRAD_TEST_PACKAGING=1 asks for an install of their own.
"""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = ("_common", "_tape", "_nodes", "_optim")

INSTALLED_IN = os.environ.get("RUSTOGRAD_TEST_INSTALLED_IN")
GIVEN_SDIST = os.environ.get("RUSTOGRAD_TEST_SDIST")

pytestmark = pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")


def run(*args, cwd=None):
    """Run a command; on failure the error shows its output."""
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """The sdist test-pythons installed, else a fresh one of this tree."""
    if GIVEN_SDIST:
        return Path(GIVEN_SDIST)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", out, ROOT)
    (path,) = out.glob("rustograd_cy-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory, request):
    """The python of a fresh venv with the sdist installed by pip, which builds it in an isolated
    environment: test-pythons' venv, or (RUSTOGRAD_TEST_PACKAGING=1) one made here."""
    if INSTALLED_IN:
        return Path(INSTALLED_IN) / "bin" / "python"
    if os.environ.get("RUSTOGRAD_TEST_PACKAGING") != "1":
        pytest.skip("make test-pythons checks its installs from the sdist (RUSTOGRAD_TEST_PACKAGING=1: "
                    "install one here, minutes)")
    sdist = request.getfixturevalue("sdist")
    env = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", env)
    python = env / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", sdist)
    return python


def test_the_sdist_holds_what_builds_and_nothing_built(sdist):
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n[len(top) + 1:] for n in tar.getnames() if n.startswith(top + "/")}
    sources = [p.relative_to(ROOT).as_posix() for pattern in (
        "rustograd_cy/*.py", "rustograd_cy/*.pyx", "rustograd_cy/*.pxi", "rustograd_cy/*.pxd",
        "rustograd_cy/*.pyi", "rustograd_cy/py.typed", "src/*.c", "src/*.h", "tests/*.py") for p in
        ROOT.glob(pattern)]
    assert len(sources) > 30
    wanted = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in", *sources}
    assert wanted - names == set()
    built = {n for n in names if n.endswith((".so", ".o", ".pyc")) or
             (n.startswith("rustograd_cy/") and n.endswith(".c"))}
    assert built == set()


@pytest.mark.slow
def test_the_installed_wheel_holds_only_what_runs(installed):
    # From outside the tree, whose rustograd_cy.egg-info (the editable install's) would answer instead.
    outside = installed.parent
    record = run(installed, "-c", "import importlib.metadata as m; "
                 "print('\\n'.join(str(f) for f in m.files('rustograd-cy')))", cwd=outside).split()
    package = [f for f in record if f.startswith("rustograd_cy/")]
    for ext in EXTENSIONS:
        assert any(f.startswith(f"rustograd_cy/{ext}.") and f.endswith(".so") for f in package), ext
        assert f"rustograd_cy/{ext}.pyi" in package
    assert "rustograd_cy/py.typed" in package
    assert "rustograd_cy/_tape.pxd" in package
    assert [f for f in package if f.endswith((".c", ".pyx", ".pxi", ".h"))] == []
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in record)
    metadata = run(installed, "-c", "import importlib.metadata as m; print(m.metadata('rustograd-cy'))",
                   cwd=outside)
    assert "License-Expression: MIT" in metadata
    assert "Programming Language :: Python :: 3.9" in metadata


@pytest.mark.slow
def test_the_readme_quick_tour_runs_from_outside_the_tree(installed, tmp_path):
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    where = run(installed, "-c", "import rustograd_cy; print(rustograd_cy.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(installed.parent.parent)
    out = run(installed, "-m", "doctest", "-v", "-o", "ELLIPSIS", "-o", "NORMALIZE_WHITESPACE",
              "README.md", cwd=tmp_path)
    assert " passed and 0 failed." in out and out.rstrip().endswith("Test passed.")
