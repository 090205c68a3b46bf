# Saving and pickling: included by _tape.pyx. A tape's state is its node buffers (as numpy arrays),
# names, apply callables and grad_graphs, array leaves and, in scalar mode, its gradients, under a
# format version. Two formats hold it: pickle (for multiprocessing and Dask; callables by reference,
# as pickle stores functions; loading a pickle runs code from it) and tape.save()'s .npz, which holds
# only arrays and JSON metadata (callables as "module:qualname" references, resolved on load only
# among the functions the caller passes). Both load through _check_state, which checks every field
# before anything is restored. Terms pickle as (tape, index).
import importlib
import io
import json
import pickle

#: Bumped whenever the pickled state's layout changes; load refuses other versions.
PICKLE_FORMAT = 1


cdef object _buffer(void *data, rg_index n, object dtype):
    out = np.empty(n, dtype=dtype)
    cdef unsigned char[::1] view = out.view(np.uint8)
    if n:
        memcpy(&view[0], data, <size_t>n * out.itemsize)
    return out


cdef dict _tape_state(Tape tape, bint for_pickle=True):
    cdef rg_index n = tape.c.size, i
    for i, (f, df, grad_graph) in (tape._funcs.items() if for_pickle else ()):
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
        "arrays": {i: tape._stream.leaf[i].copy() for i in sorted(tape._array_leaves)},
    }


#: The fields of a saved tape's state, each checked by _check_state before anything is restored.
_STATE_FIELDS = ("format", "op", "lhs", "rhs", "value", "valid", "grad", "grad_output", "names",
                 "funcs", "arrays")


def _corrupt(str field, str what):
    return ValueError(f"corrupt saved tape: field {field!r} {what}")


cdef bint _is_index(object k):
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


cdef object _array_field(dict state, str field, object n, str kinds, str expected):
    """state[field] as a 1-D ndarray of n entries whose dtype kind is one of `kinds` (exactly)."""
    a = state[field]
    if type(a) is not np.ndarray:
        raise _corrupt(field, f"is a {type(a).__name__}, not a numpy array of {expected}")
    if a.dtype.kind not in kinds or (kinds == "f" and a.dtype.itemsize != 8):
        raise _corrupt(field, f"has dtype {a.dtype}; it must be {expected}")
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise _corrupt(field, f"has shape {a.shape}; it must be ({n},), one entry per node")
    return a


cdef object _index_field(dict state, str field, object n, int64_t low, int64_t high):
    """state[field] as int64, from any integer dtype (a lossless conversion), every entry checked to
    lie in [low, high): a float, bool or out-of-range entry is refused, never rounded or wrapped."""
    a = _array_field(state, field, n, "iu", "an integer array (int32 or uint8 as saved)")
    if a.shape[0]:
        lo, hi = int(a.min()), int(a.max())
        if lo < low or hi >= high:
            bad = lo if lo < low else hi
            raise _corrupt(field, f"holds {bad}, outside [{low}, {high})")
    return a.astype(np.int64)


cdef object _check_state(object state):
    """Checks every field of a saved tape's state (as _tape_state makes it) before _restore_tape
    uses any: the dtypes (integers converted only losslessly), every op code, operand index, flag,
    name and callable, the constants 0 and 1, and the gradients' output. Returns the op, lhs and rhs
    arrays as int64 and the valid flags as bool; raises ValueError naming the field."""
    if type(state) is not dict:
        raise ValueError(f"corrupt saved tape: its state is a {type(state).__name__}, not a dict")
    version = state.get("format")
    if type(version) is not int or version != PICKLE_FORMAT:
        raise ValueError(f"this saved tape has format {version!r}; this rustograd_cy reads format "
                         f"{PICKLE_FORMAT}: save it again with a matching version")
    missing = [k for k in _STATE_FIELDS if k not in state]
    extra = [k for k in state if k not in _STATE_FIELDS]
    if missing or extra:
        raise ValueError(f"corrupt saved tape: fields missing {missing}, unknown {extra}")
    if type(state["op"]) is np.ndarray and state["op"].ndim == 1:
        n = state["op"].shape[0]
    else:
        n = None
    op = _index_field(state, "op", n, 0, RG_NUM_OPS)
    n = op.shape[0]
    if n < 2 or n > RG_MAX_NODES:
        raise _corrupt("op", f"has {n} nodes; a tape has 2 (the constants 0 and 1) to {RG_MAX_NODES}")
    if op[0] != RG_CONST or op[1] != RG_CONST:
        raise _corrupt("op", "does not start with the constants 0 and 1")
    lhs = _index_field(state, "lhs", n, 0, n)
    rhs = _index_field(state, "rhs", n, 0, n)
    nodes = np.arange(n)
    leaf = op <= RG_CONST
    computed = ~leaf
    bad = np.flatnonzero(leaf & ((lhs != 0) | (rhs != 0)))
    if bad.size:
        raise _corrupt("lhs", f"gives leaf or constant node {bad[0]} operands (they are 0 for leaves)")
    bad = np.flatnonzero(computed & ((lhs >= nodes) | (rhs >= nodes)))
    if bad.size:
        raise _corrupt("lhs" if lhs[bad[0]] >= bad[0] else "rhs",
                       f"has an operand of node {bad[0]} that does not precede it")
    arity = np.array([RG_OP_INFO[k].arity for k in range(<int>RG_NUM_OPS)], dtype=np.int64)[op]
    bad = np.flatnonzero((arity == 1) & (op != RG_POWC) & (lhs != rhs))
    if bad.size:
        raise _corrupt("rhs", f"differs from lhs at unary node {bad[0]} (they are equal for unary ops)")
    bad = np.flatnonzero((op == RG_POWC) & (op[rhs] != RG_CONST))
    if bad.size:
        raise _corrupt("rhs", f"of powc node {bad[0]} is not a constant (its exponent)")

    value = _array_field(state, "value", n, "f", "float64")
    if not (value[0] == 0.0 and not np.signbit(value[0]) and value[1] == 1.0):
        raise _corrupt("value", f"overwrites the constants 0 and 1 (nodes 0 and 1 hold {value[0]!r} "
                                f"and {value[1]!r})")
    valid = _array_field(state, "valid", n, "b", "bool").view(np.uint8) != 0  # (any byte != 0 is True)
    bad = np.flatnonzero(valid & leaf)
    if bad.size:
        raise _corrupt("valid", f"is set on leaf or constant node {bad[0]} (only computed values have it)")
    current = leaf | valid
    bad = np.flatnonzero(valid & ~(current[lhs] & current[rhs]))
    if bad.size:
        raise _corrupt("valid", f"is set on node {bad[0]} while an operand's value is not current")

    arrays = state["arrays"]
    if type(arrays) is not dict:
        raise _corrupt("arrays", f"is a {type(arrays).__name__}, not a dict")
    size = None
    for k, arr in arrays.items():
        if not _is_index(k) or not 0 <= k < n or op[k] != RG_LEAF:
            raise _corrupt("arrays", f"holds an array for {k!r}, which is not a leaf of the tape")
        if type(arr) is not np.ndarray or arr.dtype.kind != "f" or arr.dtype.itemsize != 8 or arr.ndim != 1:
            raise _corrupt("arrays", f"holds for node {k} a {getattr(arr, 'dtype', type(arr).__name__)} "
                                     f"of shape {getattr(arr, 'shape', None)}, not a 1-D float64 array")
        if arr.shape[0] == 0 or (size is not None and arr.shape[0] != size):
            raise _corrupt("arrays", f"holds for node {k} {arr.shape[0]} samples; every array leaf "
                                     f"holds the same number, at least one")
        size = arr.shape[0]
    if arrays and valid.any():
        raise _corrupt("valid", "is set on a batched tape (its values are not stored)")

    grad, output = state["grad"], state["grad_output"]
    if not _is_index(output):
        raise _corrupt("grad_output", f"is a {type(output).__name__}, not an int")
    if grad is None:
        if output != -1:
            raise _corrupt("grad_output", f"is {output} while there are no gradients (it must be -1)")
    else:
        _array_field(state, "grad", n, "f", "float64")
        if arrays:
            raise _corrupt("grad", "is stored for a batched tape (its gradients are not stored)")
        if not 0 <= output < n:
            raise _corrupt("grad_output", f"is {output}, not a node of this tape of {n}")

    names = state["names"]
    if type(names) is not dict:
        raise _corrupt("names", f"is a {type(names).__name__}, not a dict")
    for k, name in names.items():
        if not _is_index(k) or not 0 <= k < n or not (op[k] <= RG_CONST or op[k] == RG_APPLY):
            raise _corrupt("names", f"names {k!r}, which is not a leaf, constant or apply node")
        if type(name) is not str:
            raise _corrupt("names", f"gives node {k} a {type(name).__name__}, not a str")
    for k in np.flatnonzero((op == RG_LEAF) | (op == RG_APPLY)).tolist():
        if k not in names:
            raise _corrupt("names", f"has no name for {OPS[op[k]][0]} node {k}")

    funcs = state["funcs"]
    if type(funcs) is not dict:
        raise _corrupt("funcs", f"is a {type(funcs).__name__}, not a dict")
    applies = set(np.flatnonzero(op == RG_APPLY).tolist())
    for k, entry in funcs.items():
        if not _is_index(k) or k not in applies:
            raise _corrupt("funcs", f"holds callables for {k!r}, which is not an apply node")
        if type(entry) is not tuple or len(entry) != 3:
            raise _corrupt("funcs", f"holds for node {k} a {type(entry).__name__}, not (f, df, grad_graph)")
        f, df, grad_graph = entry
        if not callable(f) or not callable(df) or not (grad_graph is None or callable(grad_graph)):
            raise _corrupt("funcs", f"holds for node {k} something that is not callable")
    if len(funcs) != len(applies):
        missing = sorted(applies - {int(k) for k in funcs})
        raise _corrupt("funcs", f"has no callables for apply node {missing[0]}")
    return op, lhs, rhs, valid


def _restore_tape(state):
    """Unpickle a tape (see Tape.__reduce__), and the last step of Tape.load: nothing is restored
    before _check_state has checked every field."""
    op_, lhs_, rhs_, valid_ = _check_state(state)
    cdef Tape tape = Tape()
    cdef rg_index n = len(op_), i
    cdef _Cone cone
    if rg_tape_reserve(&tape.c, n) != RG_OK:
        raise MemoryError(f"no memory for a tape of {n} nodes")
    cdef const unsigned char[::1] op = op_.astype(np.uint8)
    cdef const int[::1] lhs = lhs_.astype(np.int32)
    cdef const int[::1] rhs = rhs_.astype(np.int32)
    cdef const double[::1] value = np.ascontiguousarray(state["value"], dtype=np.float64)
    cdef const double[::1] view
    cdef const unsigned char[::1] valid = valid_.view(np.uint8)
    memcpy(tape.c.op, &op[0], <size_t>n)
    memcpy(tape.c.lhs, &lhs[0], <size_t>n * sizeof(rg_index))
    memcpy(tape.c.rhs, &rhs[0], <size_t>n * sizeof(rg_index))
    memcpy(tape.c.value, &value[0], <size_t>n * sizeof(double))
    memset(tape.c.grad, 0, <size_t>n * sizeof(double))
    tape.c.size = n
    for i in range(n):
        tape.c.stamp[i] = tape.c.epoch if valid[i] else 0
    tape._names = {int(k): v for k, v in state["names"].items()}
    tape._funcs = {int(k): tuple(v) for k, v in state["funcs"].items()}
    tape._track_terms()
    if state["grad"] is not None:
        grad = np.ascontiguousarray(state["grad"], dtype=np.float64)
        output = int(state["grad_output"])
        # The gradients' invariant (every sweep relies on it): zero outside the output's cone.
        cone = tape._cone(output)
        inside = np.zeros(n, dtype=np.bool_)
        inside[_buffer(cone.idx, cone.n, np.int32)] = True
        bad = np.flatnonzero(~inside & (grad != 0))
        if bad.size:
            raise _corrupt("grad", f"is non-zero at node {bad[0]}, which output {output} does not "
                                   f"depend on")
        view = grad
        memcpy(tape.c.grad, &view[0], <size_t>n * sizeof(double))
        tape._grad_output = output
    for k, arr in state["arrays"].items():
        _set_array(tape, int(k), arr)  # leaves the computed values stale, as any set()
    return tape


def _restore_term(Tape tape, rg_index index):
    """Unpickle a term (see TapeTerm.__reduce__)."""
    if not 0 <= index < tape.c.size:
        raise ValueError(f"corrupt pickled term: node {index} of a tape of {tape.c.size}")
    return tape._wrap(index)


# -- tape.save() / Tape.load(): the safe format ------------------------------------------------------

#: What the JSON metadata of a saved .npz calls its format.
SAVE_FORMAT_NAME = "rustograd_cy.Tape"
_NPZ_ARRAYS = ("op", "lhs", "rhs", "value", "valid", "grad", "array_leaves", "array_values", "meta")


def _reference(func):
    """`module:qualname` of a module-level function (what save() stores), or None if it has none."""
    module = getattr(func, "__module__", None)
    if module is None and isinstance(func, np.ufunc):
        # numpy < 2.1's ufuncs have no __module__ (np.sin is numpy:sin); _saved_reference checks
        # that the name leads back to the function, so another library's ufunc is still refused.
        module = "numpy"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def _resolve(str ref):
    module, _, qualname = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


cdef str _saved_reference(object func, str what, str name, rg_index i):
    """The reference save() stores for an apply node's callable, checked to lead back to it."""
    ref = _reference(func)
    try:
        ok = ref is not None and _resolve(ref) is func
    except Exception:
        ok = False
    if not ok:
        raise ValueError(
            f"cannot save the {what} {func!r} of apply({name!r}) (node {i}): tape.save() stores "
            f"callables as importable module:qualname references, so use a module-level function, "
            f"not a lambda, a local function or a bound method (pickle.dumps(tape) has the same rule)"
        )
    return ref


cdef int _save_npz(Tape tape, object path) except -1:
    """tape.save(path): the state as arrays plus JSON metadata in one .npz, no pickle anywhere."""
    state = _tape_state(tape, False)
    funcs = {}
    for i, (f, df, grad_graph) in state["funcs"].items():
        name = state["names"][i]
        funcs[str(i)] = [_saved_reference(f, "function", name, i),
                         _saved_reference(df, "derivative", name, i),
                         None if grad_graph is None else _saved_reference(grad_graph, "grad_graph", name, i)]
    meta = {"format": SAVE_FORMAT_NAME, "version": PICKLE_FORMAT, "grad_output": state["grad_output"],
            "names": {str(k): v for k, v in state["names"].items()}, "funcs": funcs}
    leaves = sorted(state["arrays"])
    arrays = dict(op=state["op"], lhs=state["lhs"], rhs=state["rhs"], value=state["value"],
                  valid=state["valid"],
                  array_leaves=np.array(leaves, dtype=np.int32),
                  array_values=(np.stack([state["arrays"][k] for k in leaves]) if leaves
                                else np.zeros((0, 0), dtype=np.float64)),
                  meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    if state["grad"] is not None:
        arrays["grad"] = state["grad"]
    if hasattr(path, "write"):  # a file object, as numpy takes
        np.savez(path, **arrays)
    else:
        with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a path without it
            np.savez(f, **arrays)
    return 0


def _function_table(functions):
    """{reference: callable} of Tape.load()'s `functions` (a dict, or an iterable of callables)."""
    if functions is None:
        return {}
    if isinstance(functions, dict):
        items = list(functions.items())
    else:
        try:
            items = [(_reference(f), f) for f in functions]
        except TypeError:
            raise TypeError(f"Tape.load()'s functions= takes callables (a list, or a dict "
                            f"{{'module:qualname': callable}}), not {type(functions).__name__}") from None
    table = {}
    for ref, f in items:
        if not callable(f):
            raise TypeError(f"Tape.load()'s functions= holds {f!r}, which is not callable")
        if ref is None:
            raise ValueError(f"Tape.load()'s functions= holds {f!r}, which has no module:qualname "
                             f"name (a lambda or a local function); pass it in a dict under the "
                             f"name the file uses")
        table[ref] = f
    return table


def _meta_field(dict meta, str key, kind):
    if key not in meta or type(meta[key]) is not kind:
        raise ValueError(f"corrupt saved tape: metadata field {key!r} is missing or not a {kind.__name__}")
    return meta[key]


def _index_keys(dict d, str field):
    """A JSON object's keys (decimal strings) as node indices."""
    out = {}
    for k, v in d.items():
        if not (k.isdigit() and k.isascii()) or len(k) > 10:
            raise ValueError(f"corrupt saved tape: metadata field {field!r} has key {k!r}, not a node index")
        out[int(k)] = v
    return out


cdef dict _npz_state(object npz, object functions):
    """The state (as _tape_state makes it) of a .npz that save() wrote; _check_state checks it."""
    keys = set(npz.files)
    unknown = sorted(keys - set(_NPZ_ARRAYS))
    missing = sorted(set(_NPZ_ARRAYS) - {"grad"} - keys)
    if unknown or missing:
        raise ValueError(f"not a saved tape: arrays missing {missing}, unknown {unknown}")
    raw = npz["meta"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError("corrupt saved tape: its metadata is not a byte string")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"corrupt saved tape: its metadata is not JSON ({exc})") from None
    if type(meta) is not dict or meta.get("format") != SAVE_FORMAT_NAME:
        raise ValueError(f"not a saved tape: its metadata does not say format {SAVE_FORMAT_NAME!r}")
    if set(meta) != {"format", "version", "grad_output", "names", "funcs"}:
        raise ValueError(f"corrupt saved tape: metadata fields {sorted(meta)}")

    names = _index_keys(_meta_field(meta, "names", dict), "names")
    refs = _index_keys(_meta_field(meta, "funcs", dict), "funcs")
    table = _function_table(functions)
    funcs, needed = {}, []
    for i, entry in refs.items():
        if type(entry) is not list or len(entry) != 3 or not all(
                type(r) is str or (r is None and k == 2) for k, r in enumerate(entry)):
            raise ValueError(f"corrupt saved tape: metadata field 'funcs' holds {entry!r} for node {i}")
        for r in entry:
            if r is not None and r not in table:
                needed.append(r)
        funcs[i] = tuple(None if r is None else table.get(r) for r in entry)
    if needed:
        listed = ", ".join(dict.fromkeys(needed))
        raise ValueError(
            f"this tape's apply() nodes call {listed}; a saved tape names its functions but "
            f"Tape.load() calls only those you pass: Tape.load(path, functions=[...]) with these "
            f"functions (or a dict {{'module:qualname': callable}})"
        )
    leaves, rows = npz["array_leaves"], npz["array_values"]
    if (leaves.dtype.kind not in "iu" or leaves.ndim != 1 or rows.ndim != 2
            or rows.shape[0] != leaves.shape[0]):
        raise ValueError("corrupt saved tape: fields 'array_leaves' and 'array_values' disagree")
    return {
        "format": meta["version"],
        "op": npz["op"], "lhs": npz["lhs"], "rhs": npz["rhs"], "value": npz["value"],
        "valid": npz["valid"], "grad": npz["grad"] if "grad" in keys else None,
        "grad_output": meta["grad_output"], "names": names, "funcs": funcs,
        "arrays": {int(k): rows[j] for j, k in enumerate(leaves.tolist())},
    }


def _load_file(path, bint allow_pickle, functions):
    """Tape.load(path): a .npz that save() wrote, or (with allow_pickle) a pickled tape."""
    if hasattr(path, "read"):
        data = path.read()
    else:
        with open(path, "rb") as f:
            data = f.read()
    if data[:4] == b"PK\x03\x04":  # a zip: the .npz of save()
        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path} is not a tape saved by tape.save(): {exc}") from None
        with npz:
            return _restore_tape(_npz_state(npz, functions))
    if not allow_pickle:
        raise ValueError(
            f"{path} is not a tape saved by tape.save() (an .npz); if it is a pickle (which older "
            f"versions' save() wrote), loading it can run any code it holds: pass "
            f"allow_pickle=True only for a file you trust"
        )
    tape = pickle.loads(data)
    if type(tape) is not Tape:
        raise TypeError(f"{path} holds a {type(tape).__name__}, not a Tape")
    return tape
