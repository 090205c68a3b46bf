"""Function transformations in the style of JAX, on the tape: grad, value_and_grad, jacobian,
hessian, hvp.

    >>> import rustograd_cy as rg
    >>> rg.grad(lambda x, y: x * rg.sin(y))(2.0, 0.0)
    0.0
    >>> rg.hessian(lambda v: v[0] ** 2 * v[1])([1.0, 3.0]).tolist()
    [[6.0, 2.0], [2.0, 0.0]]

How f sees its inputs: every positional argument is a float (f gets a TapeTerm) or a 1-D float
array or list (f gets a numpy object array of TapeTerms, so indexing, slicing, `+ - * /` with
arrays, `np.sum`, `@`, and the numpy functions sin, cos, exp, log, sqrt, tanh, square work
elementwise; the rg functions work on each element). Every argument becomes leaves on the tape,
differentiated or not. f returns a term or a number (grad, value_and_grad, hessian, hvp), or a
sequence / 1-D array of them (jacobian). Results are floats for float arguments and numpy arrays
for array arguments (shape: output shape + input shape for jacobian, (n, n) for hessian).

Composition, as in JAX: a transform called with terms (inside another transform's recording, so
on its tape) records f on that same tape and returns its derivative as graph nodes (by gen_graph,
forward mode from each input), which the outer transform differentiates again:
`rg.grad(rg.grad(f))(x)` is f''(x), and `rg.jacobian(rg.grad(f))(v)` equals `rg.hessian(f)(v)`.
The inner derivative is with respect to the inner arguments only; values f closes over are held
fixed, as in JAX.

Replay: the first call records f on a tape; a later call whose arguments have the same shapes sets
the leaves to the new values and replays the recorded tape (no Python of f runs). Python branches on
values work: while f is recorded, `bool()` of a comparison (`if x > 0:`, `x * x if x > y else -x`,
`max(x, y)`, `while err > tol:`) returns its truth at the values of this call and records a guard
(the comparison node and the outcome taken). Every replay checks the guards as part of the sweep
(one comparison per guard); if one flips, f is recorded again for that branch pattern, and up to
`MAX_RECORDINGS` recorded tapes per argument shape are kept (most recently used first), so inputs
that alternate between branches replay instead of re-recording. Threads that call one transform
each record and replay their own tapes. Values peeked with `x.eval()` or
`x.data` are not guarded: a branch on those is replayed as recorded. `retrace=True` records f
afresh on every call. Called with terms on a tape of the user's (composed), the guards stay on that
tape: a sweep where one flips raises BranchChangedError, and in batch mode one that differs between
samples raises it naming the first such sample (use rg.where for a choice per sample).
"""
import threading

import numpy as np

from rustograd_cy._ops import OP_CODES
from rustograd_cy._tape import Tape, TapeTerm
from rustograd_cy.derivatives import gen_graph as _gen_graph
from rustograd_cy import _recording
from rustograd_cy.errors import BranchChangedError, TapeMismatchError
from rustograd_cy.functions import is_real as _is_real


class _Trace:
    """One recording of f: its tape, the leaves per argument, the outputs, and cached extras."""

    def __init__(self, f, args, vector_output, name="grad"):
        self.tape = tape = Tape()
        self.leaves = []
        traced_args = []
        for k, (arg, shape) in enumerate(args):
            if shape is None:
                leaf = tape.term(f"x{k}", arg)
                self.leaves.append([leaf])
                traced_args.append(leaf)
            else:
                leaves = [tape.term(f"x{k}[{j}]", float(v)) for j, v in enumerate(arg)]
                self.leaves.append(leaves)
                arr = np.empty(len(leaves), dtype=object)
                arr[:] = leaves
                traced_args.append(arr)
        out, self.guards = _record(f, traced_args, name, tape)
        self.out_shape, outputs = _outputs(tape, out, vector_output)
        self.outputs = _guarded(tape, outputs, self.guards)
        self.extra = {}

    def set(self, args):
        for leaves, (arg, shape) in zip(self.leaves, args):
            values = [arg] if shape is None else arg
            for leaf, v in zip(leaves, values):
                leaf.set(float(v))

    def eval(self):
        return [o.eval() for o in self.outputs]


def _record(f, args, name, tape):
    """(f(*args), the guards recorded), f recorded on `tape` by the transform `name` (named in the
    message of math.exp(term)). While it runs, bool() of a comparison on this tape in this thread
    gives its truth and records a guard (in Tape._guards, node -> outcome, which the sweeps check,
    and in this recording's list: rustograd_cy._recording)."""
    recording = _recording.Recording(name, tape)
    _recording.begin(recording)
    try:
        out = f(*args)
    finally:
        _recording.end()
    return out, recording.guards


_GUARD = OP_CODES["guard"]


def _guarded(tape, terms, guards):
    """The terms made to depend on the guard nodes, so that every sweep of them computes the
    comparisons and checks them (Tape._check_guards): guard(t, G), where G chains the guards.
    guard(v, c) is v, with derivative 1 in v and none in c. Without guards, the terms themselves."""
    if not guards:
        return terms
    node = guards[0]
    for g in guards[1:]:
        node = tape._push_node(_GUARD, node, g)
    return [tape._term_at(tape._push_node(_GUARD, t.index, node)) for t in terms]


def _guard_result(tape, result, guards):
    """A composed transform's result (a term, an array of terms, or tuples of them) guarded."""
    if not guards:
        return result
    if isinstance(result, TapeTerm):
        return _guarded(tape, [result], guards)[0]
    if isinstance(result, tuple):
        return tuple(_guard_result(tape, r, guards) for r in result)
    if isinstance(result, np.ndarray) and result.dtype == object:
        out = np.empty(result.shape, dtype=object)
        out.ravel()[:] = [_guard_result(tape, r, guards) for r in result.ravel()]
        return out
    return result


#: Recorded tapes a transform keeps per argument shape, one per branch pattern, most recently used
#: first; the least recently used is dropped when a new pattern needs room.
MAX_RECORDINGS = 8


def _composing(args):
    """Whether a transform call is inside another's recording: it got terms, or f is being recorded
    (then f may close over terms even when its arguments are numbers)."""
    return bool(_recording.recordings()) or any(_is_traced(a) for a in args)


def _is_traced(arg):
    """Whether a transform's argument holds terms (it is called inside another transform)."""
    if isinstance(arg, TapeTerm):
        return True
    if isinstance(arg, np.ndarray):
        return arg.dtype == object and any(isinstance(a, TapeTerm) for a in arg.ravel())
    if isinstance(arg, (list, tuple)):
        return any(isinstance(a, TapeTerm) for a in arg)
    return False


def _d(out, var):
    """d out/d var as a term (the tape's 0 where out does not depend on var)."""
    d = _gen_graph(out, var, optim=True, _any_node=True)
    return out.tape.zero() if d is None else d


def _terms_array(items):
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _outputs(tape, out, vector_output):
    """(output shape, list of terms) of what f returned."""
    if vector_output and not isinstance(out, TapeTerm) and not _is_real(out):
        items = list(np.asarray(out, dtype=object).ravel()) if not isinstance(out, (list, tuple)) else list(out)
        if isinstance(out, np.ndarray) and out.ndim != 1:
            raise ValueError(f"jacobian() needs f to return a scalar or a 1-D sequence, got shape {out.shape}")
        return (len(items),), [_as_term(tape, o) for o in items]
    if isinstance(out, np.ndarray) and out.shape == ():
        out = out[()]
    if isinstance(out, (list, tuple, np.ndarray)):
        raise ValueError("this transform needs f to return a scalar; use jacobian() for vector outputs")
    return (), [_as_term(tape, out)]


def _as_term(tape, x):
    if isinstance(x, TapeTerm):
        return x
    if _is_real(x):
        return tape.constant(float(x))
    raise TypeError(
        f"f must return terms built from its arguments (or numbers), not {type(x).__name__}; "
        f"use the rg functions (rg.sin(x)) rather than math's"
    )


class _Transform:
    """Checks arguments, records or replays f, and leaves the derivative to a subclass."""

    vector_output = False
    name = "grad"

    def __init__(self, f, argnums=0, retrace=False):
        if not callable(f):
            raise TypeError(f"expected a function, got {type(f).__name__}")
        self.f = f
        self.argnums = argnums
        self.retrace = retrace
        # (thread, argument shapes) -> recorded traces, most recently used first. Each thread
        # records and replays its own: a tape sweeps for one thread at a time, so threads sharing
        # one transform would meet each other's busy tapes (or set each other's arguments).
        self._traces = {}
        self.recordings = 0  # how many times f was recorded
        self.max_recordings = MAX_RECORDINGS
        self.__wrapped__ = f
        self.__name__ = getattr(f, "__name__", type(self).__name__)
        self.__doc__ = getattr(f, "__doc__", None)

    def _args(self, args):
        checked = []
        for k, arg in enumerate(args):
            if _is_real(arg):
                try:
                    checked.append((float(arg), None))
                except OverflowError:
                    raise OverflowError(f"argument {k} is an int too large for a float (|x| < 1.8e308)") from None
                continue
            arr = np.asarray(arg)
            if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise TypeError(
                    f"argument {k} must be a float or a 1-D array of floats, got "
                    f"{type(arg).__name__} of shape {getattr(arr, 'shape', None)} and dtype {arr.dtype}"
                )
            checked.append((arr.astype(np.float64), len(arr)))
        return checked

    def _argnums(self, nargs):
        nums = (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)
        for n in nums:
            if not isinstance(n, int) or not -nargs <= n < nargs:
                raise ValueError(f"argnums={self.argnums!r} does not fit a call with {nargs} arguments")
        return [n % nargs for n in nums]

    def _trace(self, args):
        """(trace, its output values) for these arguments: the most recently used recording whose
        guards hold at them, else a new recording of f (see the module docstring)."""
        key = (threading.get_ident(), tuple(shape for _, shape in args))
        traces = () if self.retrace else self._traces.setdefault(key, [])
        for k, trace in enumerate(traces):
            trace.set(args)
            try:
                values = trace.eval()
            except BranchChangedError:
                if not trace.guards:  # a guard of a tape this one does not own: not ours to handle
                    raise
                continue
            if k:
                traces.insert(0, traces.pop(k))
            return trace, values
        trace = _Trace(self.f, [(a, s) for a, s in args], self.vector_output, self.name)
        self.recordings += 1
        if not self.retrace:
            traces.insert(0, trace)
            del traces[self.max_recordings:]
        return trace, trace.eval()

    def clear_cache(self):
        """Forget the recorded tapes: the next call records f again."""
        self._traces.clear()

    def __call__(self, *args):
        if _composing(args):
            return self._composed(args)
        args = self._args(args)
        nums = self._argnums(len(args))
        trace, values = self._trace(args)
        result = self._derivative(trace, args, nums, values)
        return result

    # -- called with terms: inside another transform, on its tape -----------------------------------

    def _composed(self, args):
        """Record f on the arguments' tape and return the derivative as terms (see the module
        docstring). Numbers among the arguments become fresh leaves, so that they can be
        differentiated too."""
        tape = None
        for a in args:
            for t in ([a] if isinstance(a, TapeTerm) else
                      (np.asarray(a, dtype=object).ravel() if _is_traced(a) else [])):
                if isinstance(t, TapeTerm):
                    if tape is not None and t.tape is not tape:
                        raise TapeMismatchError(f"{self.name}() got terms of two different tapes")
                    tape = t.tape
        if tape is None:  # numbers only, inside a recording: record there
            tape = _recording.recordings()[-1].tape
        leaves, traced, shapes = [], [], []
        for k, a in enumerate(args):
            if isinstance(a, TapeTerm) or _is_real(a):
                term = a if isinstance(a, TapeTerm) else tape.term(f"x{k}", float(a))
                leaves.append([term])
                traced.append(term)
                shapes.append(None)
                continue
            items = list(np.asarray(a, dtype=object).ravel())
            if np.ndim(a) != 1:
                raise TypeError(f"argument {k} must be a term, a float or a 1-D array of them")
            terms = [t if isinstance(t, TapeTerm) else tape.term(f"x{k}[{j}]", float(t))
                     for j, t in enumerate(items)]
            leaves.append(terms)
            traced.append(_terms_array(terms))
            shapes.append(len(terms))
        nums = self._argnums(len(args))
        out, guards = _record(self.f, traced, self.name, tape)
        out_shape, outputs = _outputs(tape, out, self.vector_output)
        return _guard_result(tape, self._symbolic(outputs, out_shape, leaves, shapes, nums, args), guards)

    def _symbolic_grads(self, output, leaves, shapes, nums):
        grads = tuple(self._terms_like([_d(output, u) for u in leaves[n]], shapes[n]) for n in nums)
        return grads[0] if isinstance(self.argnums, int) else grads

    @staticmethod
    def _terms_like(terms, shape):
        return terms[0] if shape is None else _terms_array(terms)

    @staticmethod
    def _shape_like(values, shape):
        return float(values[0]) if shape is None else np.array(values, dtype=np.float64)

    def _grads(self, trace, output, args, nums):
        """d output/d argument for each argument in nums, from one backprop()."""
        output.backprop()
        grads = tuple(self._shape_like([leaf.grad for leaf in trace.leaves[n]], args[n][1]) for n in nums)
        return grads[0] if isinstance(self.argnums, int) else grads


class _Grad(_Transform):
    def _derivative(self, trace, args, nums, values):
        _scalar_output(trace, "grad")
        return self._grads(trace, trace.outputs[0], args, nums)

    def _symbolic(self, outputs, out_shape, leaves, shapes, nums, args):
        _scalar_shape(out_shape, "grad")
        return self._symbolic_grads(outputs[0], leaves, shapes, nums)


class _ValueAndGrad(_Transform):
    name = "value_and_grad"

    def _derivative(self, trace, args, nums, values):
        _scalar_output(trace, "value_and_grad")
        return values[0], self._grads(trace, trace.outputs[0], args, nums)

    def _symbolic(self, outputs, out_shape, leaves, shapes, nums, args):
        _scalar_shape(out_shape, "value_and_grad")
        return outputs[0], self._symbolic_grads(outputs[0], leaves, shapes, nums)


class _Jacobian(_Transform):
    vector_output = True
    name = "jacobian"

    def _symbolic(self, outputs, out_shape, leaves, shapes, nums, args):
        jacs = []
        for n in nums:
            rows = [[_d(o, u) for u in leaves[n]] for o in outputs]
            shape = out_shape + (() if shapes[n] is None else (shapes[n],))
            if shape == ():
                jacs.append(rows[0][0])
                continue
            jac = np.empty(shape, dtype=object)
            jac.ravel()[:] = [t for row in rows for t in row]  # (a view: jac is contiguous)
            jacs.append(jac)
        return jacs[0] if isinstance(self.argnums, int) else tuple(jacs)

    def _derivative(self, trace, args, nums, values):
        jacs = []
        for n in nums:
            rows = []
            for out in trace.outputs:
                out.backprop()
                rows.append([leaf.grad for leaf in trace.leaves[n]])
            jac = np.array(rows, dtype=np.float64).reshape(trace.out_shape + _in_shape(args[n]))
            jacs.append(float(jac) if jac.shape == () else jac)
        return jacs[0] if isinstance(self.argnums, int) else tuple(jacs)


class _Hessian(_Transform):
    name = "hessian"

    def _symbolic(self, outputs, out_shape, leaves, shapes, nums, args):
        _scalar_shape(out_shape, "hessian")
        n = _single(self.argnums, nums, "hessian")
        grads = [_d(outputs[0], u) for u in leaves[n]]
        if shapes[n] is None:
            return _d(grads[0], leaves[n][0])
        hess = np.empty((shapes[n], shapes[n]), dtype=object)
        for i, g in enumerate(grads):
            for j, u in enumerate(leaves[n]):
                hess[i, j] = _d(g, u)
        return hess

    def _gradient_graph(self, trace, n):
        """The terms of d f/d x_i (None where f does not depend on x_i), made once per trace."""
        grads = trace.extra.get(("grad", n))
        if grads is None:
            grads = [trace.outputs[0].gen_graph(leaf, optim=True) for leaf in trace.leaves[n]]
            trace.extra[("grad", n)] = grads
        return grads

    def _derivative(self, trace, args, nums, values):
        _scalar_output(trace, "hessian")
        n = _single(self.argnums, nums, "hessian")
        leaves = trace.leaves[n]
        hess = np.zeros((len(leaves), len(leaves)))
        for i, g in enumerate(self._gradient_graph(trace, n)):
            if g is None:
                continue
            g.eval()
            g.backprop()
            hess[i] = [leaf.grad for leaf in leaves]
        return float(hess[0, 0]) if args[n][1] is None else hess


class _Hvp(_Hessian):
    name = "hvp"

    def __call__(self, *args):
        if len(args) < 2:
            raise TypeError("hvp(f)(*args, v) takes f's arguments followed by the vector v")
        if _composing(args):
            *args, v = args
            hess = _Hessian(self.f, self.argnums)._composed(tuple(args))
            if not isinstance(hess, np.ndarray):
                return hess * v
            return hess.dot(np.asarray(v, dtype=object))
        *args, v = args
        args = self._args(args)
        n = _single(self.argnums, self._argnums(len(args)), "hvp")
        v = self._args([v])[0]
        if v[1] != args[n][1]:
            raise ValueError(f"v must have the shape of argument {n}: "
                             f"{'a float' if args[n][1] is None else args[n][1]} elements")
        trace, _ = self._trace(args)
        _scalar_output(trace, "hvp")
        # s = sum_i v_i * df/dx_i with v as leaves; ds/dx = H v (H is symmetric), in one backprop().
        key = ("hvp", n)
        if key not in trace.extra:
            tape = trace.tape
            vs = [tape.term(f"v[{i}]", 0.0) for i in range(len(trace.leaves[n]))]
            s = tape.zero()
            for vi, g in zip(vs, self._gradient_graph(trace, n)):
                if g is not None:
                    s = s + vi * g
            trace.extra[key] = (vs, s)
        vs, s = trace.extra[key]
        for leaf, value in zip(vs, [v[0]] if v[1] is None else v[0]):
            leaf.set(float(value))
        s.eval()
        s.backprop()
        return self._shape_like([leaf.grad for leaf in trace.leaves[n]], args[n][1])


def _in_shape(arg):
    return () if arg[1] is None else (arg[1],)


def _scalar_shape(shape, name):
    if shape != ():
        raise ValueError(f"{name}() needs f to return a scalar; use jacobian() for vector outputs")


def _scalar_output(trace, name):
    if trace.out_shape != ():
        raise ValueError(f"{name}() needs f to return a scalar; use jacobian() for vector outputs")


def _single(argnums, nums, name):
    if not isinstance(argnums, int):
        raise ValueError(f"{name}() differentiates with respect to one argument: argnums must be an int")
    return nums[0]


def grad(f, argnums=0, retrace=False):
    """The gradient of scalar f with respect to argument `argnums` (an int, or a tuple: a tuple of
    gradients). A float argument gives a float, an array argument an array of its shape.

    >>> grad(lambda x: x * x)(3.0)
    6.0
    """
    return _Grad(f, argnums, retrace)


def value_and_grad(f, argnums=0, retrace=False):
    """(f(x), grad(f)(x)) from one recording and one backward sweep."""
    return _ValueAndGrad(f, argnums, retrace)


def jacobian(f, argnums=0, retrace=False):
    """The Jacobian of f (scalar or 1-D output): shape output shape + argument shape, by one
    backprop() per output."""
    return _Jacobian(f, argnums, retrace)


def hessian(f, argnums=0, retrace=False):
    """The Hessian of scalar f with respect to argument `argnums` (an int): an (n, n) array for an
    array argument, a float for a float one. The gradient is built once as graph nodes (gen_graph)
    and each row is one backprop() of it."""
    return _Hessian(f, argnums, retrace)


def hvp(f, argnums=0, retrace=False):
    """Hessian-vector product: hvp(f)(*args, v) = hessian(f)(*args) @ v, with one backward sweep
    (the Hessian is never formed)."""
    return _Hvp(f, argnums, retrace)
