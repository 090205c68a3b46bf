"""The pointer-based term kinds: every node is its own object holding references to its operands.

`RcTerm` computes values lazily and caches them (like the seed's Rc-based terms); `Term` computes each
value eagerly when the node is built and recomputes the whole graph on eval() (like the seed's
reference-based terms). Both run the op table of src/rg_ops.h, as the tape's sweeps do, so the three
kinds agree to the bit where the arithmetic order is the same.

Staleness without walking users: one clock ticks on every set() and clear(). A leaf records when its
value changed; a computed node records when its value was last known current (`stamp`) and when it
last changed (`changed`). A node stamped with the present time is current together with its whole
cone. Any other node is current if it was computed, its operands are current and none of them changed
after its stamp. So a set() costs O(1), graphs that do not contain the leaf stay valid, and the next
eval() of an RcTerm recomputes only what depends on the leaf.

No recursion: traversals use an explicit stack, and dropping the last reference to a deep graph frees
it iteratively (see _Node.__dealloc__).
"""
cimport cython
from cpython.object cimport PyObject
from libc.math cimport isfinite
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, realloc

from rustograd_cy._common cimport anomaly_on, callable_result, check_callables, check_name, is_real
from rustograd_cy._common cimport method_result, real
from rustograd_cy._ctape cimport RG_APPLY, RG_CONST, RG_LEAF, RG_OP_INFO, RG_POW, RG_POWC, rg_partials, rg_value
from rustograd_cy._tape cimport TapeTerm

import numpy as np

from rustograd_cy._ops import OPS
from rustograd_cy.errors import NO_TRUTH_VALUE, TermWasNotValueError, derive_non_leaf_error
from rustograd_cy.errors import non_finite_error, not_a_number_error, read_only_error, set_non_leaf_error
from rustograd_cy.errors import stale_value_error
from rustograd_cy.labels import expression_label
from rustograd_cy import dot as _dot

cdef extern from "Python.h":
    Py_ssize_t _refcount "Py_REFCNT"(PyObject *o)

cdef uint64_t _clock = 1        # the present time: ticks on every set() and clear()
cdef uint64_t _visits = 0       # the mark of the latest traversal
cdef uint64_t _serials = 0      # the latest creation number
cdef bint _sweeping = False     # an eval/derive/backprop is running (maybe calling user code)
cdef list _trash = []           # nodes whose operands are being freed (see _Node.__dealloc__)
cdef bint _draining = False     # some __dealloc__ is emptying _trash


cdef class _Order:
    """A growable array of borrowed node pointers (a traversal's stack or its result)."""

    def __dealloc__(self):
        free(self.items)

    cdef int push(self, PyObject *node) except -1:
        cdef Py_ssize_t cap
        cdef PyObject **items
        if self.n == self.cap:
            cap = self.cap * 2 if self.cap else 64
            if <size_t>cap > (<size_t>-1) // sizeof(PyObject *):
                raise MemoryError("too many nodes to order")
            items = <PyObject **>realloc(self.items, <size_t>cap * sizeof(PyObject *))
            if items == NULL:
                raise MemoryError(f"no memory to order more than {self.n} nodes")
            self.items = items
            self.cap = cap
        self.items[self.n] = node
        self.n += 1
        return 0


cdef class _GradRun:
    """One backprop(): the nodes it reached hold it. A later backprop() that reaches any of them
    supersedes it, and then none of its gradients count: a node never reports an older output's
    gradient beside a newer one's (graphs that share no node keep their own gradients)."""


cdef inline bint _has_grad(_Node n) noexcept:
    """Whether n's grad is from a backprop() not superseded (nor cleared) since."""
    return n.run is not None and not n.run.superseded


cdef inline bint _current(_Node n, uint64_t now) noexcept:
    """Whether n's value is known to be current (leaves always are)."""
    return n.op <= RG_CONST or n.stamp == now


cdef _Order _cone(_Node root, bint skip_current):
    """The nodes root depends on (itself included), operands before users, found depth-first with an
    explicit stack. With skip_current, nodes known current are left out together with their cones."""
    global _visits
    cdef _Order order = _Order.__new__(_Order)
    cdef _Order stack = _Order.__new__(_Order)
    cdef _Node n
    cdef uint64_t now = _clock
    _visits += 1
    cdef uint64_t mark = _visits
    root.visit = mark
    stack.push(<PyObject *>root)
    while stack.n:
        n = <_Node>stack.items[stack.n - 1]
        # A node on the stack cannot be an operand of one above it (that would be a cycle), so
        # marking at push time visits each node once.
        if n.op > RG_CONST and (_descend(n.a, mark, skip_current, now, stack)
                                or _descend(n.b, mark, skip_current, now, stack)):
            continue
        stack.n -= 1
        order.push(<PyObject *>n)
    return order


cdef inline bint _descend(_Node child, uint64_t mark, bint skip_current, uint64_t now,
                          _Order stack) except -1:
    """Push child unless it is visited or (with skip_current) current; whether it was pushed."""
    if child.visit == mark:
        return False
    child.visit = mark
    if skip_current and _current(child, now):
        return False
    stack.push(<PyObject *>child)
    return True


cdef int _compute(_Node n) except -1:
    """n's value from its operands' values."""
    if n.op == RG_APPLY:
        n.value = callable_result(n.funcs[0](n.a.value), n.label, None)
    else:
        n.value = rg_value(n.op, n.a.value, n.b.value)
    return 0


cdef int _forward(_Order order, bint force, object callback, uint64_t now) except -1:
    """Make every node of `order` current: recompute all (force) or only those that are not."""
    cdef Py_ssize_t pos
    cdef _Node n
    for pos in range(order.n):
        n = <_Node>order.items[pos]
        if n.op > RG_CONST and (force or n.stamp != now):
            if force or n.stamp == 0 or n.a.changed > n.stamp or n.b.changed > n.stamp:
                _compute(n)
                n.changed = now
            n.stamp = now
        if callback is not None:
            callback(n)
    return 0


cdef _Node _first_stale(_Order order, uint64_t now):
    """Stamp the nodes of `order` found current; return the first that is not, or None."""
    cdef Py_ssize_t pos
    cdef _Node n, first = None
    for pos in range(order.n):
        n = <_Node>order.items[pos]
        if n.op <= RG_CONST or n.stamp == now:
            continue
        if (n.stamp != 0 and _current(n.a, now) and _current(n.b, now)
                and n.a.changed <= n.stamp and n.b.changed <= n.stamp):
            n.stamp = now
        elif first is None:
            first = n
    return first


cdef int _require_values(_Order order, str caller) except -1:
    cdef _Node stale = _first_stale(order, _clock)
    if stale is not None:
        raise stale_value_error(caller, repr(_label(stale)), stale.changed == 0)
    return 0


cdef int _check_idle() except -1:
    if _sweeping:
        raise RuntimeError(
            "an RcTerm/Term sweep is running (in another thread, or in a callable that the sweep "
            "called): no other eval(), derive(), backprop(), set() or clear() may start until it "
            "ends; read .data, .grad and _graph() instead"
        )
    return 0


cdef enum:  # what _check_finite scans
    SCAN_VALUE, SCAN_GRAD, SCAN_TANGENT


cdef int _check_finite(_Node root, int which, str caller) except -1:
    """The anomaly check of rg.detect_anomaly(): NonFiniteError naming the first node of root's cone
    (in sweep order) whose value, gradient or tangent is NaN or infinite."""
    cdef _Order order = _cone(root, False)
    cdef Py_ssize_t k, pos
    cdef _Node n
    cdef double x
    for k in range(order.n):
        pos = order.n - 1 - k if which == SCAN_GRAD else k
        n = <_Node>order.items[pos]
        x = n.value if which == SCAN_VALUE else (n.grad if which == SCAN_GRAD else n.tangent)
        if not isfinite(x):
            quantity = ("value", "gradient", "tangent")[which]
            op = OPS[n.op][0] if n.op != RG_APPLY else f"apply {n.label!r}"
            raise non_finite_error(caller, quantity, n.serial, _label(n), op, x)
    return 0


cdef tuple _describe(_Node n):
    """(name or None, op name, infix, operand nodes), as Tape._describe gives for tape nodes."""
    name, arity, infix = OPS[n.op]
    if n.op <= RG_CONST:
        return (n.label if n.label is not None else f"{n.value:g}"), name, infix, ()
    if n.op == RG_APPLY:
        return None, n.label, "", (n.a,)
    if arity == 2 or n.op == RG_POWC:
        return None, name, infix, (n.a, n.b)
    return None, name, infix, (n.a,)


def _describe_node(n):
    return _describe(<_Node?>n)


cdef str _label(_Node n):
    if n.op <= RG_CONST:
        return _describe(n)[0]
    return expression_label(n, _describe_node)


cdef inline object _binary(int op, object x, object y):
    """x op y where at least one of them is a node (operator methods land here)."""
    cdef _Node like = <_Node>x if isinstance(x, _Node) else <_Node>y
    cdef _Node a = like._operand(x)
    cdef _Node b = like._operand(y) if a is not None else None
    if b is None:
        return NotImplemented
    return like._make(op, a, b)


cdef inline object _power(object x, object y):
    """x ** y: a constant exponent makes a powc node (not differentiated in the exponent)."""
    if not isinstance(y, (_Node, TapeTerm)) and is_real(y):
        return _binary(RG_POWC, x, y)
    return _binary(RG_POW, x, y)


cdef inline object _unary(int op, _Node x):
    """op(x), a unary op of the table."""
    return x._make(op, x, x)


include "_node_ops.pxi"


cdef class _Node(_NodeOps):
    """What RcTerm and Term share: the whole term API. See their docstrings."""

    def __init__(self, name, value):
        if self.a is not None or self.serial != 0:
            raise TypeError(f"this {type(self).__name__} is already built")
        check_name(name, "a leaf's name")
        global _serials
        self.op = RG_LEAF
        self.value = real(value, "a leaf's value")
        self.label = name
        _serials += 1
        self.serial = _serials

    def __reduce__(self):
        # Also keeps Cython from generating __reduce_cython__, which copied the clocks and serials
        # of this process into the pickle.
        raise TypeError(f"a {type(self).__name__} does not pickle (a node's caches and callables belong "
                        "to this process): record the model on a Tape, which pickles with its terms")

    def __dealloc__(self):
        # CPython frees an object's references inside its dealloc, so dropping the head of a
        # 10^6-deep chain would recurse 10^6 times. Instead each node hands the operands it holds the
        # last reference to over to _trash, and the outermost __dealloc__ frees them one at a time.
        global _draining
        if _trash is None:  # interpreter shutdown
            return
        if self.b is self.a:
            self.b = None  # a unary op's alias: a still holds the operand
        if self.a is not None and _refcount(<PyObject *>self.a) == 1:
            _trash.append(self.a)
            self.a = None
        if self.b is not None and _refcount(<PyObject *>self.b) == 1:
            _trash.append(self.b)
            self.b = None
        if _draining:
            return
        _draining = True
        try:
            while _trash:
                _trash.pop()  # frees the node, which may hand its operands over to _trash
        finally:
            _draining = False

    # -- the kind's policy (overridden by RcTerm and Term) ----------------------------------------

    cdef _Node _new(self):
        raise NotImplementedError

    cdef bint _lazy(self):
        return True

    cdef str _maker(self):
        return f"{type(self).__name__}(name, value)"

    # -- building ---------------------------------------------------------------------------------

    cdef _Node _make(self, int op, _Node a, _Node b, object label=None, object funcs=None):
        global _serials
        cdef _Node n = self._new()
        cdef uint64_t now = _clock
        n.op = op
        n.a = a
        n.b = b
        n.label = label
        n.funcs = funcs
        _serials += 1
        n.serial = _serials
        if not n._lazy() and _current(a, now) and _current(b, now):
            _compute(n)  # the reference style: the value is there as soon as the node is
            n.stamp = n.changed = now
        return n

    cdef _Node _constant(self, double value):
        global _serials
        cdef _Node n = self._new()
        n.op = RG_CONST
        n.value = value
        _serials += 1
        n.serial = _serials
        return n

    cdef _Node _operand(self, object x):
        """x as a node of this kind (numbers become constants); None if x is no operand at all."""
        if type(x) is type(self):
            return <_Node>x
        if isinstance(x, (_Node, TapeTerm)):
            raise TypeError(
                f"cannot combine a {type(self).__name__} with a {type(x).__name__}: build the whole "
                f"expression from one kind of term"
            )
        if is_real(x):
            return self._constant(real(x, "an operand"))
        return None

    # -- the operators and built-in functions are _NodeOps's (one per op of the spec) ------------
    # `==` and the other comparisons build nodes, a term hashes by identity, and unary +, float(),
    # int() and round() are _NodeOps's too (src/opgen.py writes them once for every kind).

    def __bool__(self):
        raise TypeError(NO_TRUTH_VALUE)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, data={self.data!r})"

    # -- user functions ---------------------------------------------------------------------------

    def apply(self, name, f, df):
        """A node computing f(self), with derivative df(self): any Python callables of one float.

        f and df must not start another eval(), derive(), backprop() or set() while a sweep calls
        them (reading .data is fine).
        """
        check_name(name, "apply()'s name")
        check_callables(name, f, df)
        return self._make(RG_APPLY, self, self, name, (f, df))

    def _constant_like(self, value):
        """A constant of the same kind (lets rg.maximum(0.0, x) and friends lift numbers)."""
        return self._constant(real(value, "a constant"))

    # -- evaluation and derivatives ---------------------------------------------------------------

    def eval(self, *, callback=None):
        """Compute the value of this term (and of every node it depends on) and return it.

        `callback(term)`, if given, is called after each node of the sweep, operands first.
        """
        global _sweeping
        cdef bint lazy = self._lazy()
        _check_idle()
        cdef _Order order
        if not (lazy and callback is None and _current(self, _clock)):
            order = _cone(self, lazy and callback is None)
            _sweeping = True
            try:
                _forward(order, not lazy, callback, _clock)
            finally:
                _sweeping = False
        if anomaly_on():
            _check_finite(self, SCAN_VALUE, "eval()")
        return self.value

    def derive(self, var):
        """d(self)/d(var) by a forward-mode sweep, from the values of the last eval().

        `var` is a leaf of the same kind. The gradients of backprop() are left alone.
        """
        global _sweeping
        if type(var) is not type(self):
            raise TypeError(f"derive() takes a {type(self).__name__} leaf, not {type(var).__name__}")
        cdef _Node v = <_Node>var
        if v.op != RG_LEAF:
            raise derive_non_leaf_error(self._maker(), repr(_label(v)))
        _check_idle()
        cdef _Order order = _cone(self, False)
        _require_values(order, "derive()")
        cdef Py_ssize_t pos
        cdef _Node n
        cdef double da, db, dot
        cdef bint check = anomaly_on()
        _sweeping = True
        try:
            for pos in range(order.n):
                n = <_Node>order.items[pos]
                if n.op <= RG_CONST:
                    n.tangent = 1.0 if n is v else 0.0
                    continue
                dot = 0.0
                if n.op == RG_APPLY:
                    if n.a.tangent != 0.0:
                        da = callable_result(n.funcs[1](n.a.value), n.label, None)
                        if da != 0.0:
                            dot = da * n.a.tangent
                else:
                    rg_partials(n.op, n.a.value, n.b.value, n.value, &da, &db)
                    # Zero tangents contribute nothing, even where a partial is infinite, and
                    # zero partials nothing where a tangent is (as the tape's sweeps).
                    if n.a.tangent != 0.0 and da != 0.0:
                        dot += da * n.a.tangent
                    if RG_OP_INFO[n.op].arity == 2 and n.b.tangent != 0.0 and db != 0.0:
                        dot += db * n.b.tangent
                n.tangent = dot
        finally:
            _sweeping = False
        if check:
            _check_finite(self, SCAN_VALUE, "derive()")
            _check_finite(self, SCAN_TANGENT, "derive()")
        return self.tangent

    def backprop(self, *, callback=None):
        """Compute d(self)/d(node) for every node this term depends on; read them as `.grad`.

        Needs the values of the last eval(). `callback(term)`, if given, is called as each node's
        gradient becomes final, output first. Afterwards a node this term does not depend on reports
        `.grad` None if an earlier backprop() that shared nodes with this one had reached it.
        """
        global _sweeping
        _check_idle()
        cdef _Order order = _cone(self, False)
        _require_values(order, "backprop()")
        cdef Py_ssize_t pos
        cdef _Node n
        cdef double g, da, db
        cdef _GradRun run = _GradRun.__new__(_GradRun)
        for pos in range(order.n):
            n = <_Node>order.items[pos]
            n.grad = 0.0
            if n.run is not None and n.run is not run:
                n.run.superseded = True  # its other nodes' gradients are stale now: None
            n.run = run
        self.grad = 1.0
        _sweeping = True
        try:
            for pos in range(order.n - 1, -1, -1):
                n = <_Node>order.items[pos]
                g = n.grad
                if n.op > RG_CONST and g != 0.0:
                    if n.op == RG_APPLY:
                        da = callable_result(n.funcs[1](n.a.value), n.label, None)
                        if da != 0.0:
                            n.a.grad += g * da
                    else:
                        # Zero gradients and zero partials contribute nothing (no 0 * inf).
                        rg_partials(n.op, n.a.value, n.b.value, n.value, &da, &db)
                        if da != 0.0:
                            n.a.grad += g * da
                        if RG_OP_INFO[n.op].arity == 2 and db != 0.0:
                            n.b.grad += g * db
                if callback is not None:
                    callback(n)
        except BaseException:
            # A callable raised: leave no half-accumulated gradients behind.
            _drop_grads(order)
            raise
        finally:
            _sweeping = False
        if anomaly_on():  # the gradients stay, for a look at them
            _check_finite(self, SCAN_VALUE, "backprop()")
            _check_finite(self, SCAN_GRAD, "backprop()")

    def jacobian(self, leaves):
        """The derivatives of this term with respect to each leaf of `leaves` (a sequence of leaves
        of this kind) as a 1-D array, from one reverse sweep; `.grad` is left alone. A leaf this
        term does not depend on gets 0. Needs the values of the last eval(), as backprop() does.
        (On a batched tape, TapeTerm.jacobian() gives one row per sample.)
        """
        global _sweeping
        if isinstance(leaves, _Node):
            raise TypeError("jacobian() takes a sequence of leaves, e.g. y.jacobian([a]) "
                            "(for one leaf, y.derive(a) gives the same number)")
        try:
            items = list(leaves)
        except TypeError:
            raise TypeError(f"jacobian() takes a sequence of {type(self).__name__} leaves, not "
                            f"{type(leaves).__name__}") from None
        cdef _Node n
        for k, leaf in enumerate(items):
            if type(leaf) is not type(self):
                raise TypeError(f"jacobian() takes {type(self).__name__} leaves; item {k} is a "
                                f"{type(leaf).__name__}")
            if (<_Node>leaf).op != RG_LEAF:
                raise TermWasNotValueError(f"jacobian() is with respect to leaves made by "
                                           f"{self._maker()}; item {k}, {_label(<_Node>leaf)!r}, is not one")
        _check_idle()
        cdef _Order order = _cone(self, False)
        _require_values(order, "jacobian()")
        cdef Py_ssize_t pos
        cdef double g, da, db
        for leaf in items:
            (<_Node>leaf).tangent = 0.0  # (derive()'s scratch holds the adjoints here)
        for pos in range(order.n):
            (<_Node>order.items[pos]).tangent = 0.0
        self.tangent = 1.0
        _sweeping = True
        try:
            for pos in range(order.n - 1, -1, -1):
                n = <_Node>order.items[pos]
                g = n.tangent
                if n.op > RG_CONST and g != 0.0:
                    if n.op == RG_APPLY:
                        da = callable_result(n.funcs[1](n.a.value), n.label, None)
                        if da != 0.0:
                            n.a.tangent += g * da
                    else:
                        rg_partials(n.op, n.a.value, n.b.value, n.value, &da, &db)
                        if da != 0.0:
                            n.a.tangent += g * da
                        if RG_OP_INFO[n.op].arity == 2 and db != 0.0:
                            n.b.tangent += g * db
        finally:
            _sweeping = False
        out = np.array([(<_Node>leaf).tangent for leaf in items], dtype=np.float64)
        if anomaly_on():
            _check_finite(self, SCAN_VALUE, "jacobian()")
            for k in range(len(items)):
                if not isfinite(out[k]):
                    leaf = items[k]
                    raise non_finite_error("jacobian()", "gradient", (<_Node>leaf).serial,
                                           _label(<_Node>leaf), "leaf", out[k])
        return out

    def set(self, value):
        """Give this leaf a new value; what depends on it is stale until the next eval()."""
        global _clock
        if self.op != RG_LEAF:
            what = "a constant" if self.op == RG_CONST else "an operation node"
            raise set_non_leaf_error(self._maker(), repr(_label(self)), what)
        cdef double v = real(value, "set()'s value")
        _check_idle()
        _clock += 1
        self.value = v
        self.changed = _clock

    def clear(self):
        """Drop the computed values of this term's graph: eval() must run again before derivatives."""
        global _clock
        _check_idle()
        cdef _Order order = _cone(self, False)
        cdef Py_ssize_t pos
        cdef _Node n
        for pos in range(order.n):
            n = <_Node>order.items[pos]
            if n.op > RG_CONST:
                n.stamp = 0
        _clock += 1  # other outputs sharing these nodes must not trust their own stamps

    def clear_grad(self):
        """Drop the gradients of this term's graph: `.grad` is None until the next backprop()."""
        _check_idle()
        _drop_grads(_cone(self, False))

    # -- drawing (rustograd_cy/dot.py, shared by every term kind) ---------------------------------

    def dot(self, file=None, **options):
        """Graphviz DOT of the graph this term depends on, written to `file` or returned."""
        return _dot.dot(self, file, **options)

    def to_graphviz(self, **options):
        """The graph as a `graphviz.Source` (the graphviz package); options as `dot()`."""
        return _dot.to_graphviz(self, **options)

    def _repr_svg_(self):
        """Jupyter shows a term as its graph when Graphviz is installed."""
        return _dot.repr_svg(self)

    # -- reading ----------------------------------------------------------------------------------

    @property
    def data(self):
        """The value: a leaf's own, else the one computed by eval(); None if never computed or stale."""
        if _current(self, _clock):
            return self.value
        if self.stamp == 0:
            return None
        _first_stale(_cone(self, True), _clock)
        return self.value if self.stamp == _clock else None

    @property
    def grad(self):
        """d(output)/d(self) from the last backprop() that reached this node, or None: before any,
        after clear_grad(), or when a later backprop() of another output reached a node of the same
        graph but not this one (never an older output's gradient)."""
        return self.grad if _has_grad(self) else None

    @data.setter
    def data(self, value):
        raise read_only_error("data")

    @grad.setter
    def grad(self, value):
        raise read_only_error("grad")

    @property
    def name(self):
        """The leaf's or function's name, or for an operation its expression, such as '(a + b) * c'."""
        return _label(self)

    def _key(self):
        """This node's identity in `_graph()` records (its creation number)."""
        return self.serial

    def _graph(self):
        """The nodes this term depends on, operands first, as records for drawing:
        (key, name or None, op, infix, operand keys, data, grad). An apply node has its function's
        name as op; a leaf its name as name."""
        cdef _Order order = _cone(self, False)
        cdef uint64_t now = _clock
        cdef Py_ssize_t pos
        cdef _Node n
        _first_stale(order, now)
        records = []
        for pos in range(order.n):
            n = <_Node>order.items[pos]
            name, op, infix, operands = _describe(n)
            records.append((
                n.serial, name, op, infix, tuple([(<_Node>o).serial for o in operands]),
                n.value if _current(n, now) else None, n.grad if _has_grad(n) else None,
            ))
        return records


cdef int _drop_grads(_Order order) except -1:
    cdef Py_ssize_t pos
    cdef _Node n
    for pos in range(order.n):
        n = <_Node>order.items[pos]
        n.grad = 0.0
        n.run = None
    return 0


# The docstring opens with the constructor's signature in CPython's text-signature form
# (`Name(args)\n--\n`), which inspect.signature(), help() and the API reference read.
cdef class RcTerm(_Node):
    """RcTerm(name, value)\n--\n
    A leaf named `name` holding the number `value`; operations on it make the other nodes.

    A pointer-based term: each node holds its operands, so terms can be returned from functions
    and kept in objects freely. Values are computed lazily by eval() and cached; after a set(),
    eval() recomputes only what depends on the changed leaf.

    >>> a, b = RcTerm("a", 2.0), RcTerm("b", 3.0)
    >>> ab = a * b
    >>> ab.eval(), ab.derive(a)
    (6.0, 3.0)
    """

    def __init__(self, name, value):
        """A leaf called `name` (a str) holding the number `value`; build on it with + - * / ** and
        the built-in functions."""
        _Node.__init__(self, name, value)

    cdef _Node _new(self):
        return RcTerm.__new__(RcTerm)

    cdef bint _lazy(self):
        return True


cdef class Term(_Node):
    """Term(name, value)\n--\n
    A leaf named `name` holding the number `value`; operations on it make the other nodes.

    A reference-style term: each node holds its operands and computes its value as soon as it
    is built (best for a calculation run once). After a set(), eval() recomputes the whole graph.

    >>> a, b = Term("a", 2.0), Term("b", 3.0)
    >>> ab = a * b
    >>> ab.data, ab.derive(b)
    (6.0, 2.0)
    """

    def __init__(self, name, value):
        """A leaf called `name` (a str) holding the number `value`; build on it with + - * / ** and
        the built-in functions (each new node computes its value at once)."""
        _Node.__init__(self, name, value)

    cdef _Node _new(self):
        return Term.__new__(Term)

    cdef bint _lazy(self):
        return False
