"""Build the compiled core: Cython modules in rustograd_cy/ linked with the C99 kernels in src/.

Environment switches:
  RUSTOGRAD_CHECKS=1    turn Cython's bounds/wraparound/initialized checks back on
  RUSTOGRAD_SANITIZE=1  build with -fsanitize=address,undefined (see `make test-asan`)
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

CHECKS = os.environ.get("RUSTOGRAD_CHECKS") == "1"
SANITIZE = os.environ.get("RUSTOGRAD_SANITIZE") == "1"

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": CHECKS,
    "wraparound": CHECKS,
    "initializedcheck": CHECKS,
    "cdivision": True,  # IEEE inf/nan instead of ZeroDivisionError
    "embedsignature": True,  # so help() shows the signatures
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


def extension(name, sources):
    return Extension(
        name,
        sources=sources,
        include_dirs=["src", numpy.get_include()],
        depends=["src/rg_ops.h", "src/rg_tape.h", "src/rg_batch.h", "src/rg_optim.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=CFLAGS,
        extra_link_args=LDFLAGS,
    )


setup(
    ext_modules=cythonize(
        [
            extension("rustograd_cy._common", ["rustograd_cy/_common.pyx"]),
            extension("rustograd_cy._tape", ["rustograd_cy/_tape.pyx", "src/rg_tape.c", "src/rg_batch.c"]),
            extension("rustograd_cy._nodes", ["rustograd_cy/_nodes.pyx"]),
            extension("rustograd_cy._optim", ["rustograd_cy/_optim.pyx", "src/rg_optim.c"]),
        ],
        compiler_directives=DIRECTIVES,
    ),
)
