"""The higher-order and Rosenbrock examples run (quick mode) and write their pictures."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytest.importorskip("matplotlib")


def run(script, tmp_path):
    env = dict(os.environ, RUSTOGRAD_QUICK="1", RUSTOGRAD_OUT=str(tmp_path), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("script, picture", [("higher_order.py", "higher_order.png"),
                                             ("rosenbrock.py", "rosenbrock.png")])
def test_example_writes_its_picture(script, picture, tmp_path):
    out = run(script, tmp_path)
    path = tmp_path / picture
    assert f"wrote {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rosenbrock_newton_converges(tmp_path):
    out = run("rosenbrock.py", tmp_path)
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+\s", line)]
    x, y, grad = float(rows[-1][1]), float(rows[-1][2]), float(rows[-1][4])
    assert abs(x - 1) < 1e-12 and abs(y - 1) < 1e-12 and grad < 1e-12
    assert len(rows) < 20


def test_higher_order_prints_the_fourth_derivative_of_sin_as_sin(tmp_path):
    out = run("higher_order.py", tmp_path)
    assert "d^4/dx^4 sin(x) = sin(x)" in out
