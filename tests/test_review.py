"""Regression tests for bugs found in review."""
import numpy as np
import pytest

import rustograd_cy as rg


def _overcommit_refuses_huge_mallocs():
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() in ("0", "2")
    except OSError:
        return False


@pytest.mark.skipif(not _overcommit_refuses_huge_mallocs(),
                    reason="needs a kernel that refuses a multi-terabyte malloc")
def test_a_batch_too_big_for_memory_leaves_the_tape_in_scalar_mode():
    # 2^17 nodes x 2^22 samples of rows is 4 TiB: set() must fail with MemoryError and leave the
    # tape as it was (scalar mode, its values and gradients), not batched with no array leaf.
    tape = rg.Tape()
    x = tape.term("x", 2.0)
    y = x * x
    for _ in range(1 << 17):
        tape.constant(3.0)
    assert y.eval() == 4.0
    y.backprop()
    with pytest.raises(MemoryError):
        x.set(np.ones(1 << 22))
    assert tape.batch_size is None
    assert x.grad == 4.0
    x.set(3.0)
    assert y.eval() == 9.0
    y.backprop()
    assert x.grad == 6.0
