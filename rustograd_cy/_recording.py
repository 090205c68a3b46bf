"""The transforms (rg.grad and friends) recording a function in this thread right now.

Each thread has its own stack of recordings, innermost last. bool() of a comparison has a truth
value only inside a recording of the calling thread on the comparison's tape, and the guards it
records belong to that thread's recordings: another thread recording on the same tape at the same
time must neither make bool() work here nor add its guards to these recordings.
"""

import threading


class Recording:
    """One transform recording f: its name (for messages: "grad"), its tape, and the comparison
    nodes whose truth f tested (bool()), in order, each once (the keys of a dict, so that a loop
    testing a condition at every step stays linear)."""

    __slots__ = ("name", "tape", "tested")

    def __init__(self, name, tape):
        self.name = name
        self.tape = tape
        self.tested = {}

    @property
    def guards(self):
        """The comparison nodes f tested, in the order first tested."""
        return list(self.tested)


class _ThisThread(threading.local):
    def __init__(self):
        self.stack = []


_THIS_THREAD = _ThisThread()


def recordings():
    """This thread's recordings, innermost last (the list itself: push and pop on it)."""
    return _THIS_THREAD.stack


def innermost_name():
    """The name of this thread's innermost recording's transform, or None outside recordings."""
    stack = _THIS_THREAD.stack
    return stack[-1].name if stack else None
