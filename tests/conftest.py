"""Shared helpers: the tests import `oracle` (tests/oracle.py) as a plain module."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
