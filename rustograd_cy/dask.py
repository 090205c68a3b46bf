"""Data-parallel training on Dask: the same tape, its samples spread over a cluster's workers.

Needs the optional extra: `pip install rustograd-cy[dask]` (dask[array] and distributed).

`loss` is a per-sample term on a tape, `params` a list of its shared leaves (numbers, not arrays),
`data` a dict from the tape's data leaves to 1-D dask arrays with the same chunks. Each task sets the
data leaves to one chunk's samples, runs the batched C sweeps (`eval()`, `backprop()`) and returns
that chunk's loss sum and parameter gradients; the client adds the partial sums in chunk order.

- `value_and_grad(loss, params, data)` -> (summed loss, numpy array of summed gradients);
- `fit(loss, params, data, optimizer="sgd" | "adam", lr=..., steps=...)` takes the steps that
  `rustograd_cy.optim` takes in one process (the same C update, fed the summed gradients), leaves the
  fitted values in the parameter leaves and returns them.

The tape is pickled once per call (a fit's data chunks are persisted on the workers once as well);
each step sends only the parameter values and gets back one number and one gradient per parameter
per chunk. A chunk whose batch rows would pass `max_bytes` is swept in slices. With `client=None`
the current `dask.distributed` client is used, or without one Dask's local threaded scheduler.
See docs/dask.md.
"""
import collections.abc
from concurrent.futures import CancelledError  # distributed's FutureCancelledError derives from it
import os
import pickle
import threading
import uuid

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without dask
    raise ImportError(
        "rustograd_cy.dask needs Dask, an optional extra: pip install rustograd-cy[dask] "
        "(it installs dask[array] and distributed)"
    ) from exc

from rustograd_cy import _optim, optim
from rustograd_cy._ops import OP_CODES
from rustograd_cy._tape import Tape, TapeTerm
from rustograd_cy.errors import TapeMismatchError, TermWasNotValueError

__all__ = ["value_and_grad", "fit", "DEFAULT_MAX_BYTES"]

#: Batch rows a task holds at once (values and gradients, 16 bytes per tape node and sample); a chunk
#: needing more is swept in slices of fewer samples.
DEFAULT_MAX_BYTES = 256 * 2**20
PAYLOAD_RESENDS = 2  # times a step sends the tape again after every copy of it was lost

_LEAF = OP_CODES["leaf"]
_OPTIMIZERS = {"sgd": optim.SGD, "adam": optim.Adam}


# -- checks at the door (nothing is sent before they pass) ----------------------------------------

def _node(term):
    return f"{term.name!r} (node {term.index})"


def _holds_array(term):
    return np.ndim(term.data) != 0


class _Problem:
    """A checked (loss, params, data) and the pickled tape that every worker gets once."""

    def __init__(self, loss, params, data, max_bytes):
        if type(loss) is not TapeTerm:
            raise TypeError(f"loss is a term of a Tape (a TapeTerm), not {type(loss).__name__}")
        tape = loss.tape
        params = list(params)
        if not params:
            raise ValueError("params lists the shared leaves to differentiate; it is empty")
        for p in params:
            if type(p) is not TapeTerm:
                raise TypeError(f"params are leaves made by tape.term(), not {type(p).__name__}")
            if p.tape is not tape:
                raise TapeMismatchError(f"parameter {_node(p)} is a leaf of another tape than the loss")
        _optim.gather(params)  # leaves, listed once (the optimizer's own checks and messages)
        if not isinstance(data, collections.abc.Mapping) or not data:
            raise TypeError("data is a non-empty dict from the tape's data leaves to 1-D dask arrays")
        leaves, arrays = [], []
        # Nodes by index: terms hash by identity and `==` builds a comparison node, so two proxies
        # of one leaf are two dict keys (and `leaf in params` would compare).
        param_nodes, data_nodes = {p.index for p in params}, set()
        for leaf, arr in data.items():
            if type(leaf) is not TapeTerm:
                raise TypeError(f"data's keys are leaves made by tape.term(), not {type(leaf).__name__}")
            if leaf.tape is not tape:
                raise TapeMismatchError(f"data leaf {_node(leaf)} is a leaf of another tape than the loss")
            if tape._nodes(leaf.index, leaf.index + 1)[0][0] != _LEAF:
                raise TermWasNotValueError(
                    f"data's keys are leaves made by tape.term(), set to each chunk's samples; "
                    f"{_node(leaf)} is not one"
                )
            if leaf.index in param_nodes:
                raise ValueError(f"{_node(leaf)} is both a parameter and a data leaf")
            if leaf.index in data_nodes:
                raise ValueError(f"{_node(leaf)} is a key of data twice (two terms of one leaf)")
            data_nodes.add(leaf.index)
            if not isinstance(arr, da.Array):
                raise TypeError(
                    f"data[{leaf.name!r}] is a {type(arr).__name__}; data holds 1-D dask arrays "
                    f"(dask.array.from_array(values, chunks=...))"
                )
            if arr.ndim != 1:
                raise ValueError(
                    f"data[{leaf.name!r}] has shape {arr.shape}: data holds 1-D arrays, one value per "
                    f"sample"
                )
            if arr.dtype.kind not in "iuf":
                raise TypeError(f"data[{leaf.name!r}] has dtype {arr.dtype}; data holds real numbers")
            if any(np.isnan(c) for c in arr.chunks[0]):
                raise ValueError(f"data[{leaf.name!r}] has unknown chunk sizes: call "
                                 f"compute_chunk_sizes() on it first")
            if arr.shape[0] == 0:
                raise ValueError(f"data[{leaf.name!r}] is empty: there are no samples")
            if arrays and arr.chunks != arrays[0].chunks:
                raise ValueError(
                    f"data[{leaf.name!r}] and data[{leaves[0].name!r}] must have the same chunks "
                    f"(each task sets every data leaf to one chunk's samples), but they have "
                    f"{_chunks(arr)} and {_chunks(arrays[0])}: rechunk one like the other "
                    f"(arr.rechunk(other.chunks))"
                )
            leaves.append(leaf)
            arrays.append(arr)
        for p in params:
            if _holds_array(p):
                raise ValueError(
                    f"parameter {_node(p)} holds an array: parameters are shared leaves, one number "
                    f"for every sample (set() it to a number)"
                )
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.tape, self.loss, self.params, self.leaves, self.arrays = tape, loss, params, leaves, arrays
        self.chunks = arrays[0].chunks[0]
        self.samples = int(arrays[0].shape[0])
        # Each sweep holds values and gradients of every node for each sample of its slice.
        self.slice = max(1, int(max_bytes // (16 * len(tape))))
        self.payload = (uuid.uuid4().hex, self._pickle())

    def _pickle(self):
        """The tape and the node indices of loss, params and data leaves, as one pickle.

        Terms pickle as (tape, index), so they come back on the worker's copy of the tape. Arrays the
        data leaves hold here are left out (the copy is made without them)."""
        what = (self.tape, self.loss, self.params, self.leaves)
        if self.tape.batch_size is None:
            return pickle.dumps(what, protocol=pickle.HIGHEST_PROTOCOL)
        tape, loss, params, leaves = pickle.loads(pickle.dumps(what, protocol=pickle.HIGHEST_PROTOCOL))
        for leaf in leaves:
            leaf.set(0.0)
        if tape.batch_size is not None:
            stray = [i for i, (op, *_) in enumerate(tape._nodes(0, len(tape)))
                     if op == _LEAF and _holds_array(tape._term_at(i))]
            raise ValueError(
                f"leaf {_node(self.tape._term_at(stray[0]))} holds an array but is not in data: "
                f"put it in data (as a dask array) or set() it to a number"
            )
        return pickle.dumps((tape, loss, params, leaves), protocol=pickle.HIGHEST_PROTOCOL)

    def values(self):
        """The parameters' current values, in params order."""
        return np.array([p.data for p in self.params], dtype=np.float64)


def _chunks(arr):
    c = arr.chunks[0]
    return str(c) if len(c) <= 6 else f"{len(c)} chunks ({', '.join(map(str, c[:3]))}, ...)"


# -- what a task runs on a worker -----------------------------------------------------------------

# (token, thread id, batch size) -> _Replica, least recently used first: each thread of each worker
# unpickles the tape once per fit and batch size. A tape keeps its batch rows between steps only while
# its batch size stays: changing it frees and allocates them again (0.2 s -> 1.5 s per 10^6 samples of
# peak separation), so each size of slice gets its own copy.
_replicas = collections.OrderedDict()
_replicas_lock = threading.Lock()
_SIZES = 4  # batch sizes kept per fit and thread (a chunk's slices, the shorter last chunk's)
_KEEP = 8  # replicas of other fits kept per process (ended without _forget reaching this worker)


class _Replica:
    """A worker's copy of the tape, its loss, parameters and data leaves."""

    def __init__(self, blob):
        self.tape, self.loss, self.params, self.leaves = pickle.loads(blob)

    def sums(self, theta, slices):
        """(loss summed over these samples, gradients summed over them) at parameters `theta`;
        `slices` are the data leaves' values, all of this replica's batch size."""
        for p, v in zip(self.params, theta):
            p.set(float(v))
        for leaf, values in zip(self.leaves, slices):
            leaf.set(values)
        value = float(np.sum(self.loss.eval()))
        self.loss.backprop()
        return value, np.array([p.grad for p in self.params], dtype=np.float64)


def _replica(payload, size):
    """This thread's replica of the payload's tape for batches of `size` samples."""
    token, blob = payload
    thread = threading.get_ident()
    key = (token, thread, size)
    with _replicas_lock:
        replica = _replicas.get(key)
        if replica is not None:
            _replicas.move_to_end(key)
            return replica
    replica = _Replica(blob)
    with _replicas_lock:
        mine = [k for k in _replicas if k[:2] == (token, thread)]
        for k in mine[:max(0, len(mine) - _SIZES + 1)]:  # the least recently used sizes
            del _replicas[k]
        others = [k for k in _replicas if k[0] != token]
        for k in others[:max(0, len(others) - _KEEP)]:  # and the oldest of other fits
            del _replicas[k]
        _replicas[key] = replica
    return replica


def _slices(n, slice_size):
    """Bounds of ceil(n / slice_size) slices of n samples whose sizes differ by 1 at most."""
    k = -(-n // slice_size)
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def _partial(payload, theta, slice_size, *chunks):
    """One task: a chunk's (loss sum, gradient sums), swept in slices of at most `slice_size`
    samples on this thread's replicas of the tape."""
    chunks = [np.asarray(c) for c in chunks]
    value, grads = 0.0, np.zeros(len(theta))
    for start, stop in _slices(len(chunks[0]), slice_size):
        v, g = _replica(payload, stop - start).sums(theta, [c[start:stop] for c in chunks])
        value += v
        grads += g
    return value, grads


def _forget(token):
    """Drop this process's replicas of one fit's tape (run on every worker when the fit ends)."""
    with _replicas_lock:
        for key in [k for k in _replicas if k[0] == token]:
            del _replicas[key]
    return os.getpid()


# -- the client side ------------------------------------------------------------------------------

def _current_client(client):
    if client is not None:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover
            raise TypeError("client= is a dask.distributed Client, and distributed is not installed")
        if not isinstance(client, Client):
            raise TypeError(f"client is a dask.distributed Client, not {type(client).__name__}")
        return client
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - dask without distributed: the local scheduler
        return None
    try:
        return default_client()
    except ValueError:  # no client started: Dask's local scheduler
        return None


class _Session:
    """Where a problem's steps run: a distributed client, or Dask's local scheduler (client None).

    Opening it sends the tape (scattered to every worker once) and, if `persist`, computes the data
    chunks into worker memory; closing it releases both."""

    def __init__(self, problem, client, persist):
        self.problem = problem
        self.client = _current_client(client)
        self.payload = None
        self.blocks = None
        self.persist = persist

    def __enter__(self):
        p = self.problem
        if self.client is None:
            arrays = dask.persist(*p.arrays) if self.persist else p.arrays
            self.blocks = list(zip(*[a.to_delayed().ravel().tolist() for a in arrays]))
            self.payload = p.payload
        else:
            self.payload = self.client.scatter(p.payload, broadcast=True, hash=False)
            # Every chunk of every data array as a future: computed (persisted) on the workers once,
            # with its lineage kept by the scheduler, so a lost worker's chunks are recomputed.
            flat = [d for a in p.arrays for d in a.to_delayed().ravel().tolist()]
            futures = self.client.compute(flat)
            n = len(p.chunks)
            self.blocks = list(zip(*[futures[k * n:(k + 1) * n] for k in range(len(p.arrays))]))
        return self

    def __exit__(self, *exc):
        # Our futures are dropped, not cancelled: the scheduler releases what no one else holds (a
        # chunk the user persisted stays).
        self.blocks = self.payload = None
        if self.client is None:
            _forget(self.problem.payload[0])
        else:
            try:
                self.client.run(_forget, self.problem.payload[0])
            except Exception:  # a worker gone with the cluster took its replicas with it
                pass
        return False

    def value_and_grad(self, theta):
        """(loss sum, gradient sums) over every chunk at parameters `theta`, added in chunk order."""
        p = self.problem
        theta = np.asarray(theta, dtype=np.float64)
        if self.client is None:
            parts = [dask.delayed(_partial, pure=False)(self.payload, theta, p.slice, *block)
                     for block in self.blocks]
            results = dask.compute(*parts)
        else:
            results = self._run_partials(theta)
        value, grads = 0.0, np.zeros(len(p.params))
        for v, g in results:
            value += v
            grads += g
        return value, grads


    def _run_partials(self, theta):
        """Every chunk's (loss sum, gradient sums) from the workers, in chunk order.

        The data chunks have lineage: the scheduler recomputes a lost worker's. The scattered tape
        has none: lost with every worker that held a copy, it cancels the step's tasks, and the step
        sends it again and runs once more (a worker killed mid-fit must change nothing)."""
        p, n = self.problem, len(self.blocks)
        for attempt in range(PAYLOAD_RESENDS + 1):
            futures = self.client.map(_partial, [self.payload] * n, [theta] * n, [p.slice] * n,
                                      *zip(*self.blocks), pure=False)
            try:
                return self.client.gather(futures)
            except CancelledError:
                if attempt == PAYLOAD_RESENDS:
                    raise
                self.payload = self.client.scatter(p.payload, broadcast=True, hash=False)


def value_and_grad(loss, params, data, client=None, *, max_bytes=DEFAULT_MAX_BYTES):
    """(loss summed over every sample, numpy array of the summed gradients in `params` order).

    `loss` is a per-sample term on a tape, `params` a list of its shared leaves, `data` a dict from
    its data leaves to 1-D dask arrays with the same chunks. The numbers are the ones one process
    gets by setting the whole arrays and calling `loss.eval()` / `loss.backprop()`, to the rounding
    of summing per chunk. `client=None` uses the current dask.distributed client, or Dask's local
    scheduler; `max_bytes` bounds the batch rows a task holds (larger chunks are swept in slices).
    The parameter leaves keep their values; bad input raises before anything is sent.
    """
    problem = _Problem(loss, params, data, max_bytes)
    with _Session(problem, client, persist=False) as session:
        return session.value_and_grad(problem.values())


def fit(loss, params, data, *, optimizer="sgd", lr, steps, client=None, callback=None,
        max_bytes=DEFAULT_MAX_BYTES, **optimizer_args):
    """Minimise the summed loss over every sample of `data`: `steps` steps of `rustograd_cy.optim`'s
    SGD or Adam (`optimizer="sgd"` or `"adam"`, `lr`, and their own keywords: momentum; betas, eps)
    fed the gradients summed across chunks, as one process would take them on the whole arrays.

    The tape goes to each worker once, the data chunks are persisted on the workers once; each step
    sends the parameter values and gathers one (loss, gradients) per chunk. `callback(step, value)`,
    if given, is called after each step with the loss sum at that step's starting parameters. The
    fitted values are left in the parameter leaves and returned as a numpy array.
    Arguments as `value_and_grad`.
    """
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer is one of {sorted(_OPTIMIZERS)}, not {optimizer!r}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps is a whole number >= 0, got {steps!r}")
    problem = _Problem(loss, params, data, max_bytes)
    opt = _OPTIMIZERS[optimizer](problem.params, lr=lr, **optimizer_args)
    with _Session(problem, client, persist=True) as session:
        for step in range(int(steps)):
            value, grads = session.value_and_grad(problem.values())
            opt.step(grads)
            if callback is not None:
                callback(step, value)
    return problem.values()
