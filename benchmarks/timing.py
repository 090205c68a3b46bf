"""Timing and memory helpers: medians of repeated runs, bytes retained by a build.

>>> seconds, runs, result = median_time(lambda: sum(range(100)), budget=0.01)
"""
import gc
import os
import time
import tracemalloc
from statistics import median


def load_average():
    """The machine's load averages over 1, 5 and 15 minutes, as printed beside the figures."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def median_time(fn, budget=1.0, min_runs=3, max_runs=25):
    """Median seconds of fn() over repeated runs: at least `min_runs` unless one run alone takes
    longer than 3 * budget, and more while the total stays within `budget`.

    Returns (median seconds, number of runs, the last run's result). Only fn() itself is timed: the
    previous result is dropped between runs, outside the clock. The garbage collector stays on, as
    it is for a user.
    """
    times, result, start = [], None, time.perf_counter()
    while len(times) < max_runs:
        result = None
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        if elapsed > 3 * budget or (len(times) >= min_runs and elapsed > budget):
            break
    return median(times), len(times), result


def rss_bytes():
    """This process's resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def retained_bytes(make, method):
    """Bytes still held after `make()` (its result kept alive), by `method` "rss" or "tracemalloc".

    RSS deltas see every heap (C, C++, Python) but also allocator slack; tracemalloc sees exactly the
    Python allocator's blocks (objects, including Cython extension types) and nothing from malloc.
    """
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    else:
        before = rss_bytes()
        kept = make()
        gc.collect()
        after = rss_bytes()
    del kept
    return after - before
