"""rustograd_cy: reverse-mode automatic differentiation of scalar expressions, compiled with Cython.

>>> import rustograd_cy as rg
>>> tape = rg.Tape()
>>> a, b, c = tape.term("a", 123.0), tape.term("b", 321.0), tape.term("c", 42.0)
>>> abc = (a + b) * c
>>> abc.eval(), abc.derive(a), abc.derive(c)
(18648.0, 42.0, 444.0)
"""
from rustograd_cy._nodes import RcTerm, Term
from rustograd_cy import dot, viz
from rustograd_cy.anomaly import detect_anomaly, is_anomaly_enabled
from rustograd_cy._tape import (Tape, TapeTerm, get_num_threads, get_vector_math, set_num_threads,
                                set_vector_math)
from rustograd_cy._tape import blas_info, get_blas, set_blas
from rustograd_cy._tape import get_row_limit, set_row_limit
from rustograd_cy.builder import Terms, rustograd
from rustograd_cy.errors import (
    BranchChangedError,
    BuilderError,
    GradGraphMissingError,
    NonFiniteError,
    RustogradError,
    TapeMismatchError,
    TermWasNotValueError,
    ValueNotDefinedError,
)
from rustograd_cy.functional import grad, hessian, hvp, jacobian, value_and_grad
from rustograd_cy import functions
from rustograd_cy.functions import *  # noqa: F401,F403  (one function per op of the spec)
from rustograd_cy.reductions import mean, sum  # noqa: A004  (rg.sum, like numpy.sum)
from rustograd_cy import nn, optim  # noqa: E402  (after the names they use)

__version__ = "0.1.0"

__all__ = [
    "Tape", "TapeTerm", "RcTerm", "Term", "dot", "viz", "nn", "optim",
    "get_num_threads", "set_num_threads", "get_vector_math", "set_vector_math",
    "set_blas", "get_blas", "blas_info", "set_row_limit", "get_row_limit",
    "rustograd", "Terms", "grad", "value_and_grad", "jacobian", "hessian", "hvp",
    "detect_anomaly", "is_anomaly_enabled",
    "BranchChangedError", "BuilderError", "GradGraphMissingError", "NonFiniteError", "RustogradError", "TapeMismatchError",
    "TermWasNotValueError", "ValueNotDefinedError",
    "mean", "sum",
] + functions.__all__
