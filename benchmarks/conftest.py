"""pytest-benchmark suites: `.venv/bin/python -m pytest benchmarks` (BENCH_N=100000 for bigger graphs).

Each test times one thing; the numbers it checks are values, never times.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
