"""Build the compiled core: Cython modules in rustograd_cy/ linked with the C99 kernels in src/.

Environment switches:
  RUSTOGRAD_CHECKS=1    turn Cython's bounds/wraparound/initialized checks back on
  RUSTOGRAD_SANITIZE=1  build with -fsanitize=address,undefined (see `make test-asan`)
  RUSTOGRAD_VECTOR_MATH=0  build without vector math (libmvec), which is used when the toolchain has it
  RUSTOGRAD_NO_EXTENSIONS=1  declare no extensions: the Makefile's editable install, after which
                           `setup.py build_ext --inplace` compiles them once (not a second time)
"""
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# The op table's derived files (C kernels, term methods, stubs) from the one spec,
# rustograd_cy/_opspec.py; generated here, never committed.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "src"))
import opgen  # noqa: E402

opgen.generate(HERE)

CHECKS = os.environ.get("RUSTOGRAD_CHECKS") == "1"
SANITIZE = os.environ.get("RUSTOGRAD_SANITIZE") == "1"
NO_EXTENSIONS = os.environ.get("RUSTOGRAD_NO_EXTENSIONS") == "1"

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": CHECKS,
    "wraparound": CHECKS,
    "initializedcheck": CHECKS,
    "cdivision": True,  # IEEE inf/nan instead of ZeroDivisionError
    "embedsignature": True,  # so help() shows the signatures,
    "embedsignature.format": "python",  # written as Python (x: float), not C (double x)
}

# -fno-math-errno lets sqrt compile to one instruction; -ffp-contract=off keeps a*b+c unfused so the
# sweeps round exactly like the pure-Python oracle and the other term kinds. -fno-trapping-math (no
# effect on results: nothing here enables FP traps) lets the batched reverse sweep's "skip zero
# adjoints" select vectorise. -pthread for the batched sweeps' threads.
CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-pthread"]
LDFLAGS = ["-pthread"]
if SANITIZE:
    CFLAGS += ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined"]
    LDFLAGS += ["-fsanitize=address,undefined"]


VECTOR_MATH_PROBE = r"""
#include <math.h>
__attribute__((const, simd("notinbranch"))) extern double vtanh(double) __asm__("tanh");
__attribute__((const, simd("notinbranch"))) extern double vexpm1(double) __asm__("expm1");
double in[64], out[64];
int main(void) {
    for (int i = 0; i < 64; i++) out[i] = vtanh(in[i]) + vexpm1(in[i]);
    return out[0] != 0.0;
}
"""


def has_vector_math():
    """Whether this C compiler and libc give libmvec (glibc's vector libm, x86-64): the probe must
    compile, link against it and run. RUSTOGRAD_VECTOR_MATH=0 turns vector math off at build time."""
    if os.environ.get("RUSTOGRAD_VECTOR_MATH") == "0" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(VECTOR_MATH_PROBE)
        try:
            built = subprocess.run(cc + ["-O3", "-fno-math-errno", src, "-o", exe, "-lmvec", "-lm"],
                                   capture_output=True).returncode == 0
            return built and subprocess.run([exe]).returncode == 0
        except OSError:
            return False


VECTOR_MATH = has_vector_math()
MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
LIBRARIES = []
if VECTOR_MATH:
    MACROS.append(("RG_VECTOR_MATH", "1"))
    LIBRARIES = ["mvec", "m"]


def extension(name, sources):
    return Extension(
        name,
        sources=sources,
        include_dirs=["src", numpy.get_include()],
        depends=["src/rg_ops.h", "src/rg_ops_gen.h", "src/rg_tape.h", "src/rg_batch.h", "src/rg_plan.h",
                 "src/rg_optim.h", "src/rg_vmath.h"],
        define_macros=MACROS,
        libraries=LIBRARIES,
        extra_compile_args=CFLAGS,
        extra_link_args=LDFLAGS,
    )


setup(
    # RUSTOGRAD_NO_EXTENSIONS=1: see the docstring.
    ext_modules=[] if NO_EXTENSIONS else cythonize(
        [
            extension("rustograd_cy._common", ["rustograd_cy/_common.pyx"]),
            extension("rustograd_cy._ops", ["rustograd_cy/_ops.pyx"]),
            extension("rustograd_cy._tape", ["rustograd_cy/_tape.pyx", "src/rg_tape.c",
                                             "src/rg_batch.c", "src/rg_plan.c",
                                             "src/rg_vmath.c"]),
            extension("rustograd_cy._nodes", ["rustograd_cy/_nodes.pyx"]),
            extension("rustograd_cy._optim", ["rustograd_cy/_optim.pyx", "src/rg_optim.c"]),
        ],
        compiler_directives=DIRECTIVES,
    ),
)
