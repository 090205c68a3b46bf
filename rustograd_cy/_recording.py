"""The transforms (rg.grad and friends) recording a function in this thread right now.

Each thread has its own stack of recordings, innermost last. bool() of a comparison has a truth
value only inside a recording of the calling thread on the comparison's tape, and the guards it
records belong to that thread's recordings: another thread recording on the same tape at the same
time must neither make bool() work here nor add its guards to these recordings.
"""

import threading

#: Thread ident (threading.get_ident()) -> that thread's recordings, innermost last; a thread has an
#: entry only while it records. A plain dict rather than a threading.local: bool() looks its
#: thread up here at every test (from Cython, by the same ident), and a dict lookup is the cheaper.
BY_THREAD = {}


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


def begin(recording):
    """Push `recording` on this thread's stack (pair it with end(), in a finally)."""
    BY_THREAD.setdefault(threading.get_ident(), []).append(recording)


def end():
    """Pop this thread's innermost recording."""
    ident = threading.get_ident()
    stack = BY_THREAD[ident]
    stack.pop()
    if not stack:
        del BY_THREAD[ident]


def recordings():
    """This thread's recordings, innermost last (empty outside them)."""
    return BY_THREAD.get(threading.get_ident(), ())


def innermost_name():
    """The name of this thread's innermost recording's transform, or None outside recordings."""
    stack = BY_THREAD.get(threading.get_ident())
    return stack[-1].name if stack else None
