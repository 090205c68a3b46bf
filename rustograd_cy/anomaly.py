"""The anomaly check: NaN and infinity found where they first appear, instead of at the end.

By default values follow IEEE arithmetic (log(-1) is NaN, 1/0 is inf) and nothing is checked. Inside
`detect_anomaly()` (or for one tape with `tape.check_finite = True`) every eval(), derive() and
backprop() scans its cone after the sweep, in C, and raises `NonFiniteError` (a FloatingPointError)
naming the first node whose value, tangent or gradient is not finite. The sweep has finished, so the
tape holds the numbers it computed and stays usable. Off, the check costs one flag test per sweep.
"""
from contextlib import contextmanager

from rustograd_cy._common import _anomaly_enabled, _anomaly_enter, _anomaly_exit
from rustograd_cy.errors import NonFiniteError

__all__ = ["detect_anomaly", "is_anomaly_enabled", "NonFiniteError"]


@contextmanager
def detect_anomaly():
    """Check every sweep of every term kind for NaN/inf while the block runs (blocks nest; the flag
    is process-wide, like PyTorch's).

    >>> import rustograd_cy as rg
    >>> x = rg.Tape().term("x", -1.0)
    >>> try:
    ...     with rg.detect_anomaly():
    ...         x.log().eval()
    ... except FloatingPointError as e:
    ...     print(e.index, e.label, e.op, e.quantity)
    3 log(x) log value
    """
    _anomaly_enter()
    try:
        yield
    finally:
        _anomaly_exit()


def is_anomaly_enabled():
    """Whether a detect_anomaly() block is open."""
    return _anomaly_enabled()
