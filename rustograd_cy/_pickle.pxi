# Pickling: included by _tape.pyx. A tape pickles as its node buffers (as numpy arrays), names,
# apply callables and grad_graphs (by reference, as pickle stores functions), array leaves and, in scalar mode, its
# gradients, under a format version that load checks. Terms pickle as (tape, index).
import pickle

#: Bumped whenever the pickled state's layout changes; load refuses other versions.
PICKLE_FORMAT = 1


cdef object _buffer(void *data, rg_index n, object dtype):
    out = np.empty(n, dtype=dtype)
    cdef unsigned char[::1] view = out.view(np.uint8)
    if n:
        memcpy(&view[0], data, <size_t>n * out.itemsize)
    return out


cdef dict _tape_state(Tape tape):
    cdef rg_index n = tape.c.size, i
    for i, (f, df, grad_graph) in tape._funcs.items():
        for what, func in (("function", f), ("derivative", df), ("grad_graph", grad_graph)):
            try:
                pickle.dumps(func)
            except Exception as exc:
                raise pickle.PicklingError(
                    f"cannot pickle the {what} {func!r} of apply({tape._names[i]!r}) (node {i}): "
                    f"callables are stored by reference, so use a module-level function, not a "
                    f"lambda or a local function ({exc})"
                ) from None
    # Computed nodes whose value is current (one vectorised pass: tapes can hold 10^7 nodes).
    ops = _buffer(tape.c.op, n, np.uint8)
    valid = (ops > RG_CONST) & (_buffer(tape.c.stamp, n, np.uint32) == tape.c.epoch)
    scalar_grads = tape._grad_output >= 0 and tape.b.size == 0
    return {
        "format": PICKLE_FORMAT,
        "op": ops,
        "lhs": _buffer(tape.c.lhs, n, np.int32),
        "rhs": _buffer(tape.c.rhs, n, np.int32),
        "value": _buffer(tape.c.value, n, np.float64),
        "valid": valid if tape.b.size == 0 else np.zeros(n, dtype=np.bool_),
        "grad": _buffer(tape.c.grad, n, np.float64) if scalar_grads else None,
        "grad_output": tape._grad_output if scalar_grads else -1,
        "names": dict(tape._names),
        "funcs": dict(tape._funcs),
        "arrays": {i: _row(tape.b.value, tape.b.size, i) for i in sorted(tape._array_leaves)},
    }


cdef int _check_state(dict state) except -1:
    version = state.get("format")
    if version != PICKLE_FORMAT:
        raise ValueError(f"this pickled tape has format {version!r}; this rustograd_cy reads format "
                         f"{PICKLE_FORMAT}: save it again with a matching version")
    n = len(state["op"])
    for key in ("lhs", "rhs", "value", "valid"):
        if len(state[key]) != n:
            raise ValueError(f"corrupt pickled tape: {key} has {len(state[key])} entries for {n} nodes")
    op, lhs, rhs = state["op"], state["lhs"], state["rhs"]
    computed = op > RG_CONST
    if n < 2 or (op >= RG_NUM_OPS).any() or op[0] != RG_CONST or op[1] != RG_CONST:
        raise ValueError("corrupt pickled tape: bad op codes")
    nodes = np.arange(n)
    if ((lhs[computed] < 0) | (lhs[computed] >= nodes[computed])
            | (rhs[computed] < 0) | (rhs[computed] >= nodes[computed])).any():
        raise ValueError("corrupt pickled tape: an operand does not precede its node")
    if set(np.flatnonzero(op == RG_APPLY).tolist()) != set(state["funcs"]):
        raise ValueError("corrupt pickled tape: apply nodes and their callables disagree")
    if any(not 0 <= i < n or op[i] != RG_LEAF for i in state["arrays"]):
        raise ValueError("corrupt pickled tape: an array is stored for a node that is not a leaf")
    return 0


def _restore_tape(dict state):
    """Unpickle a tape (see Tape.__reduce__)."""
    _check_state(state)
    cdef Tape tape = Tape()
    cdef rg_index n = len(state["op"]), i
    if rg_tape_reserve(&tape.c, n) != RG_OK:
        raise MemoryError(f"no memory for a tape of {n} nodes")
    cdef unsigned char[::1] op = np.ascontiguousarray(state["op"], dtype=np.uint8)
    cdef int[::1] lhs = np.ascontiguousarray(state["lhs"], dtype=np.int32)
    cdef int[::1] rhs = np.ascontiguousarray(state["rhs"], dtype=np.int32)
    cdef double[::1] value = np.ascontiguousarray(state["value"], dtype=np.float64)
    cdef double[::1] view
    memcpy(tape.c.op, &op[0], <size_t>n)
    memcpy(tape.c.lhs, &lhs[0], <size_t>n * sizeof(rg_index))
    memcpy(tape.c.rhs, &rhs[0], <size_t>n * sizeof(rg_index))
    memcpy(tape.c.value, &value[0], <size_t>n * sizeof(double))
    memset(tape.c.grad, 0, <size_t>n * sizeof(double))
    tape.c.size = n
    for i in np.flatnonzero(state["valid"]).tolist():
        tape.c.stamp[i] = tape.c.epoch
    for i in np.flatnonzero(~np.asarray(state["valid"], dtype=bool)).tolist():
        tape.c.stamp[i] = 0
    tape._names = {int(k): str(v) for k, v in state["names"].items()}
    tape._funcs = {int(k): (f, df, grad_graph) for k, (f, df, grad_graph) in state["funcs"].items()}
    tape._track_terms()
    if state["grad"] is not None:
        grad = np.ascontiguousarray(state["grad"], dtype=np.float64)
        if len(grad) != n:
            raise ValueError("corrupt pickled tape: grad has the wrong length")
        view = grad
        memcpy(tape.c.grad, &view[0], <size_t>n * sizeof(double))
        tape._grad_output = state["grad_output"]
    for i, arr in state["arrays"].items():
        _set_array(tape, i, arr)  # leaves the computed values stale, as any set()
    return tape


def _restore_term(Tape tape, rg_index index):
    """Unpickle a term (see TapeTerm.__reduce__)."""
    if not 0 <= index < tape.c.size:
        raise ValueError(f"corrupt pickled term: node {index} of a tape of {tape.c.size}")
    return tape._wrap(index)
