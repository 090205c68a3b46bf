"""Loading saved tapes as a hostile file would have them: every corrupted field is refused with a
ValueError naming it (or the tape loads and computes exactly what its arrays say), nothing crashes,
and the default format runs no code.

The loads run in child processes (tests/_load_child.py), many per process, so that a crash is a
failure that names its signal and its case. Under `make test-asan` the children inherit the
sanitizers.
"""
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import rustograd_cy as rg

CHILD = os.path.join(os.path.dirname(__file__), "_load_child.py")
TIMEOUT = 300  # seconds for one child (a hang, such as the old grad_output overflow, fails)


def scalar_model():
    """Every kind of node: named and unnamed constants, unary, binary, powc, apply; values and
    gradients stored."""
    tape = rg.Tape()
    a, b = tape.term("a", 0.5), tape.term("b", 2.0)
    c = tape.constant(3.0, name="three")
    y = (a * b).apply("sin", np.sin, np.cos) + rg.maximum(a, 0.25) / b ** 3.0 - c * a.exp() + 7.5
    y.eval()
    y.backprop()
    return tape, y


def batched_model():
    tape, y = scalar_model()
    tape._term_at(2).set(np.array([0.1, 0.2, 0.3]))
    return tape, y


def state_of(tape):
    restore, (state,) = tape.__reduce__()
    return state


def run_child(states):
    """The child's records for `states`, in order; a crash, a hang or a sanitizer report fails with
    the signal and the case that was loading."""
    data = pickle.dumps(states)
    try:
        proc = subprocess.run([sys.executable, CHILD], input=data, capture_output=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        started = [ln for ln in (exc.stdout or b"").decode().splitlines() if ln.startswith("start")]
        pytest.fail(f"the loader hung at {started[-1] if started else 'startup'}")
    lines = proc.stdout.decode().splitlines()
    started = [ln for ln in lines if ln.startswith("start")]
    stderr = proc.stderr.decode()
    if proc.returncode != 0 or "done" not in lines or "Sanitizer" in stderr:
        how = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        pytest.fail(f"the loading process died ({how}) at {started[-1] if started else 'startup'}:"
                    f"\n{stderr[-3000:]}")
    return [json.loads(ln) for ln in lines if ln.startswith("{")]


class _Crash:
    def __reduce__(self):
        return signal.raise_signal, (signal.SIGSEGV,)


def test_a_crash_in_the_child_is_a_failure_naming_it():
    """The harness is not vacuous: a child killed by a signal fails the test and says so."""
    with pytest.raises(pytest.fail.Exception, match="the loading process died"):
        run_child([_Crash()])


# -- the cases of issue 13, one by one ---------------------------------------------------------------

def regression_cases():
    """(description, corrupted state, field named by the refusal)."""
    tape, y = scalar_model()
    n = len(tape)
    last = n - 1
    cases = []

    def case(what, field, change, model=scalar_model):
        s = state_of(model()[0])
        change(s)
        cases.append((what, s, field))

    def at(key, i, v, dtype=None):
        def change(s):
            a = s[key].astype(dtype) if dtype is not None else s[key].copy()
            a[i] = v
            s[key] = a
        return change

    case("op codes as int8 with -1 (wrapped to 255)", "op", at("op", last, -1, np.int8))
    case("op codes as int16 with -1", "op", at("op", last, -1, np.int16))
    case("op codes as float", "op", lambda s: s.update(op=s["op"].astype(np.float64)))
    case("op code past the table", "op", at("op", last, 200))
    case("lhs as float with NaN", "lhs", at("lhs", last, np.nan, np.float64))
    case("lhs as float with a fraction", "lhs", at("lhs", last, 2.5, np.float64))
    case("lhs as float, whole numbers", "lhs", lambda s: s.update(lhs=s["lhs"].astype(np.float64)))
    case("rhs negative", "rhs", at("rhs", last, -1))
    case("lhs past the end (int64)", "lhs", at("lhs", last, 2 ** 40, np.int64))
    case("lhs after its node", "lhs", at("lhs", last, last))
    case("grad_output = n", "grad_output", lambda s: s.update(grad_output=n))
    case("grad_output past the end by 10^5", "grad_output", lambda s: s.update(grad_output=n + 10 ** 5))
    case("grad_output below -1", "grad_output", lambda s: s.update(grad_output=-2))
    case("grad_output a float", "grad_output", lambda s: s.update(grad_output=float(last)))
    case("grad_output without gradients", "grad_output", lambda s: s.update(grad=None))
    case("constant 0 overwritten", "value", at("value", 0, 5.0))
    case("constant 0 made -0.0", "value", at("value", 0, -0.0))
    case("constant 1 overwritten", "value", at("value", 1, 2.0))
    case("value as float32", "value", lambda s: s.update(value=s["value"].astype(np.float32)))
    case("valid flag on a leaf", "valid", at("valid", 2, True))
    case("valid flags as int", "valid", lambda s: s.update(valid=s["valid"].astype(np.int8)))
    case("valid on a batched tape (rows never written)", "valid",
         lambda s: s.update(valid=s["valid"] | (s["op"] > 1)), model=batched_model)

    def stale_operand(s):
        v = s["valid"].copy()
        v[:] = False
        v[last] = True  # the output marked current, its operands not
        s["valid"] = v
    case("valid output over stale operands", "valid", stale_operand)
    case("gradient outside the output's cone", "grad", lambda s: s.update(grad_output=2))
    case("apply node without a name", "names",
         lambda s: s["names"].pop(next(i for i in s["funcs"])))
    case("leaf without a name", "names", lambda s: s["names"].pop(2))
    case("name of an op node", "names", lambda s: s["names"].__setitem__(last, "x"))
    case("name not a str", "names", lambda s: s["names"].__setitem__(2, 3))
    case("callables missing", "funcs", lambda s: s.update(funcs={}))
    case("callables not callable", "funcs",
         lambda s: s["funcs"].__setitem__(next(iter(s["funcs"])), (1, 2, None)))
    case("array for an op node", "arrays", lambda s: s.update(arrays={last: np.ones(2)}))
    case("arrays of two lengths", "arrays",
         lambda s: s["arrays"].update({3: np.ones(5)}), model=batched_model)
    case("array of ints", "arrays",
         lambda s: s["arrays"].update({2: np.arange(3)}), model=batched_model)
    case("op as a list", "op", lambda s: s.update(op=s["op"].tolist()))
    case("op 2-D", "op", lambda s: s.update(op=s["op"].reshape(1, -1)))
    case("lhs shorter", "lhs", lambda s: s.update(lhs=s["lhs"][:-1]))
    unary = next(i for i, (code, l, r, v) in enumerate(tape._nodes(0, n))
                 if rg._ops.OPS[code][1] == 1 and code not in (OPS_BY_NAME["apply"], OPS_BY_NAME["powc"]))
    case("a unary node with lhs != rhs", "rhs", at("rhs", unary, 0))
    return cases


OPS_BY_NAME = rg._ops.OP_CODES


@pytest.fixture(scope="module")
def regression_records():
    cases = regression_cases()
    return cases, run_child([s for _, s, _ in cases])


def test_every_case_of_the_issue_is_refused_naming_its_field(regression_records):
    cases, records = regression_records
    assert len(records) == len(cases)
    for (what, _, field), record in zip(cases, records):
        assert record["outcome"] == "refused", (what, record)
        assert record["type"] == "ValueError", (what, record)
        assert f"field {field!r}" in record["message"], (what, record)


def test_the_uncorrupted_states_load_and_compute_what_they_hold():
    records = run_child([state_of(scalar_model()[0]), state_of(batched_model()[0])])
    assert [r["outcome"] for r in records] == ["accepted", "accepted"], records


def test_lossless_integer_dtypes_are_accepted():
    s = state_of(scalar_model()[0])
    for key in ("op", "lhs", "rhs"):
        s[key] = s[key].astype(np.int64)
    s["op"] = s["op"].astype(">u2")
    tape = rg._tape._restore_tape(s)
    assert state_of(tape)["op"].dtype == np.uint8
    assert tape._term_at(len(tape) - 1).data == scalar_model()[1].data


def test_state_that_is_no_dict_or_lacks_fields():
    restore = rg._tape._restore_tape
    with pytest.raises(ValueError, match="not a dict"):
        restore([1, 2])
    s = state_of(scalar_model()[0])
    del s["valid"]
    with pytest.raises(ValueError, match=r"fields missing \['valid'\]"):
        restore(s)
    s = state_of(scalar_model()[0])
    s["extra"] = 1
    with pytest.raises(ValueError, match=r"unknown \['extra'\]"):
        restore(s)


# -- the fuzz test: random corruptions of the fields and their dtypes ---------------------------------

ARRAY_FIELDS = ("op", "lhs", "rhs", "value", "valid", "grad")
DTYPES = ("int8", "uint8", "int16", ">i4", "int32", "int64", "uint64", "float32", "float64", "bool",
          "complex128")
SPECIALS = (-1, -2, 0, 1, 2, 3, 23, 24, 200, 255, 256, 2 ** 31 - 1, -2 ** 31, 2 ** 40, 0.5, 2.5,
            float("nan"), float("inf"), -0.0, True, 10 ** 5)


@st.composite
def corruption(draw):
    """A description of one change to a state: (field, how, arguments)."""
    kind = draw(st.sampled_from(["dtype", "element", "length", "shape", "type", "scalar", "names",
                                 "funcs", "arrays", "flag", "drop", "extra"]))
    index = draw(st.integers(0, 30))
    if kind == "dtype":
        return ("dtype", draw(st.sampled_from(ARRAY_FIELDS)), draw(st.sampled_from(DTYPES)))
    if kind == "element":
        return ("element", draw(st.sampled_from(ARRAY_FIELDS)), index, draw(st.sampled_from(SPECIALS)))
    if kind == "length":
        return ("length", draw(st.sampled_from(ARRAY_FIELDS)), draw(st.sampled_from([-3, -1, 1, 4])))
    if kind == "shape":
        return ("shape", draw(st.sampled_from(ARRAY_FIELDS)), None)
    if kind == "type":
        return ("type", draw(st.sampled_from(ARRAY_FIELDS + ("names", "funcs", "arrays"))),
                draw(st.sampled_from(["list", "none", "int"])))
    if kind == "scalar":
        return ("scalar", draw(st.sampled_from(["grad_output", "format"])),
                draw(st.sampled_from(SPECIALS + (None, "1", 10 ** 9, 2 ** 63))))
    if kind == "names":
        return ("names", draw(st.sampled_from(["drop", "add", "int", "strkey"])), index)
    if kind == "funcs":
        return ("funcs", draw(st.sampled_from(["drop", "add", "noncallable", "short"])), index)
    if kind == "arrays":
        return ("arrays", draw(st.sampled_from(["add", "length", "ints", "2d", "empty", "drop"])), index)
    if kind == "flag":
        return ("flag", index, None)
    if kind == "drop":
        return ("drop", draw(st.sampled_from(ARRAY_FIELDS + ("names", "funcs", "arrays",
                                                              "grad_output"))), None)
    return ("extra", None, None)


def corrupt(state, change):
    """Apply one described change (changes that do not fit this state leave it alone)."""
    kind, a, b, *rest = change + (None,) if len(change) == 3 else change
    n = len(state["op"]) if hasattr(state.get("op"), "__len__") else 0
    if kind in ("dtype", "element", "length", "shape") and not isinstance(state.get(a), np.ndarray):
        return
    if kind == "type" and a not in state:
        return
    if kind == "dtype":
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # complex to real
                state[a] = state[a].astype(b)
        except (TypeError, ValueError):
            pass
    elif kind == "element":
        arr = state[a]
        if arr.size == 0 or arr.ndim != 1:
            return
        v = rest[0]
        if isinstance(v, float) and arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
        try:
            with np.errstate(all="ignore"):
                arr = arr.copy()
                arr[b % arr.size] = v
        except (OverflowError, ValueError, TypeError):
            return
        state[a] = arr
    elif kind == "length":
        arr = state[a]
        state[a] = arr[:b] if b < 0 else np.concatenate([arr, arr[:b]])
    elif kind == "shape":
        state[a] = state[a].reshape(1, -1)
    elif kind == "type":
        state[a] = {"list": lambda v: list(v) if hasattr(v, "__iter__") else [v],
                    "none": lambda v: None, "int": lambda v: 3}[b](state[a])
    elif kind == "scalar":
        state[a] = b
    elif kind == "names" and isinstance(state.get("names"), dict):
        names = state["names"]
        key = b % max(n, 1)
        if a == "drop":
            names.pop(sorted(names, key=repr)[b % len(names)], None) if names else None
        elif a == "add":
            names[key] = "added"
        elif a == "int":
            names[key] = 7
        else:
            names[str(key)] = "strkey"
    elif kind == "funcs" and isinstance(state.get("funcs"), dict):
        funcs = state["funcs"]
        key = b % max(n, 1)
        if a == "drop":
            funcs.clear()
        elif a == "add":
            funcs[key] = (np.sin, np.cos, None)
        elif a == "noncallable" and funcs:
            funcs[next(iter(funcs))] = (np.sin, 2.0, None)
        elif a == "short" and funcs:
            funcs[next(iter(funcs))] = (np.sin, np.cos)
    elif kind == "arrays" and isinstance(state.get("arrays"), dict):
        arrays = state["arrays"]
        key = b % max(n, 1)
        size = len(next(iter(arrays.values()))) if arrays else 3
        if a == "add":
            arrays[key] = np.linspace(0.0, 1.0, size)
        elif a == "length":
            arrays[key] = np.ones(size + 1)
        elif a == "ints":
            arrays[key] = np.arange(size)
        elif a == "2d":
            arrays[key] = np.ones((1, size))
        elif a == "empty":
            arrays[key] = np.ones(0)
        else:
            arrays.clear()
    elif (kind == "flag" and isinstance(state.get("valid"), np.ndarray) and state["valid"].size
          and state["valid"].ndim == 1):
        valid = state["valid"].copy()
        valid[a % valid.size] = not valid[a % valid.size]
        state["valid"] = valid
    elif kind == "drop":
        state.pop(a, None)
    elif kind == "extra":
        state["extra"] = 1


MODELS = {"scalar": scalar_model, "batched": batched_model}


@st.composite
def corrupted_state(draw):
    model = draw(st.sampled_from(sorted(MODELS)))
    changes = draw(st.lists(corruption(), min_size=1, max_size=3))
    return model, changes


def allowed_refusal(record):
    return (record["type"] == "ValueError"
            and ("corrupt saved tape" in record["message"] or "format" in record["message"]))


# Each example is a batch of 25 loads in one child process; shrinking such a batch would rerun the
# child hundreds of times, so failures are reported as drawn (the message names the case).
@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.lists(corrupted_state(), min_size=25, max_size=25))
def test_fuzzed_states_are_refused_or_load_what_they_hold(cases):
    states = []
    for model, changes in cases:
        state = state_of(MODELS[model]()[0])
        for change in changes:
            corrupt(state, change)
        states.append(state)
    records = run_child(states)
    assert len(records) == len(states)
    bad = [(model, changes, record) for (model, changes), record in zip(cases, records)
           if not (allowed_refusal(record) if record["outcome"] == "refused"
                   else record["outcome"] == "accepted")]
    assert not bad, bad[0]


# -- the safe format: tape.save() / Tape.load() -------------------------------------------------------

def test_save_and_load_keep_values_names_and_gradients(tmp_path):
    tape, y = scalar_model()
    path = tmp_path / "tape"  # no suffix: save() writes exactly this path
    tape.save(path)
    assert path.exists() and path.read_bytes()[:2] == b"PK"
    tape2 = rg.Tape.load(path, functions=[np.sin, np.cos])
    assert len(tape2) == len(tape)
    for i in range(len(tape)):
        t, t2 = tape._term_at(i), tape2._term_at(i)
        assert (t2.name, t2.data, t2.grad) == (t.name, t.data, t.grad)
    y2 = tape2._term_at(y.index)
    a, a2 = tape._term_at(2), tape2._term_at(2)
    a.set(0.7)
    a2.set(0.7)
    assert y2.eval() == y.eval()
    assert y2.derive(a2) == y.derive(a)


def test_save_and_load_a_batched_tape(tmp_path):
    tape, y = batched_model()
    tape.save(tmp_path / "t.npz")
    tape2 = rg.Tape.load(tmp_path / "t.npz", functions={"numpy:sin": np.sin, "numpy:cos": np.cos})
    assert tape2.batch_size == 3
    np.testing.assert_array_equal(tape2._term_at(2).data, tape._term_at(2).data)
    np.testing.assert_array_equal(tape2._term_at(y.index).eval(), y.eval())


def test_load_calls_only_the_functions_it_is_given(tmp_path):
    tape, y = scalar_model()
    tape.save(tmp_path / "t.npz")
    with pytest.raises(ValueError, match=r"call numpy:sin, numpy:cos.*functions="):
        rg.Tape.load(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="numpy:cos"):
        rg.Tape.load(tmp_path / "t.npz", functions=[np.sin])


def test_save_refuses_a_lambda_naming_its_node(tmp_path):
    tape = rg.Tape()
    x = tape.term("x", 1.0)
    y = x.apply("cube", lambda v: v ** 3, lambda v: 3 * v ** 2)
    with pytest.raises(ValueError, match=rf"apply\('cube'\) \(node {y.index}\).*lambda"):
        tape.save(tmp_path / "t.npz")
    assert not (tmp_path / "t.npz").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_crafted_pickle_is_not_run_by_default(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ValueError, match="allow_pickle=True"):
        rg.Tape.load(path)
    assert not marker.exists()
    with pytest.raises(TypeError, match="not a Tape"):  # the flag does what it says
        rg.Tape.load(path, allow_pickle=True)
    assert marker.exists()


def test_an_object_array_in_an_npz_is_not_unpickled(tmp_path):
    marker = tmp_path / "ran"
    tape, y = scalar_model()
    path = tmp_path / "t.npz"
    tape.save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(marker)
    arrays["op"] = evil
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        rg.Tape.load(path, functions=[np.sin, np.cos])
    assert not marker.exists()


def test_a_pickled_tape_loads_only_with_allow_pickle(tmp_path):
    tape, y = scalar_model()
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps(tape))
    with pytest.raises(ValueError, match="allow_pickle"):
        rg.Tape.load(path)
    assert len(rg.Tape.load(path, allow_pickle=True)) == len(tape)


@pytest.mark.parametrize("field, value, match", [
    ("op", np.arange(3, dtype=np.float64), "field 'op'"),
    ("grad", np.ones(2), "field 'grad'"),
    ("meta", np.frombuffer(b"{not json", dtype=np.uint8), "not JSON"),
    ("array_values", np.ones(3), "array_leaves"),
    ("extra", np.ones(1), "unknown"),
])
def test_a_corrupted_npz_is_refused(tmp_path, field, value, match):
    tape, y = scalar_model()
    path = tmp_path / "t.npz"
    tape.save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays[field] = value
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match=match):
        rg.Tape.load(path, functions=[np.sin, np.cos])


def test_corrupted_metadata_is_refused(tmp_path):
    tape, y = scalar_model()
    path = tmp_path / "t.npz"
    tape.save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    meta = json.loads(arrays["meta"].tobytes())
    for change, match in [(lambda m: m.update(grad_output=10 ** 6), "field 'grad_output'"),
                          (lambda m: m["names"].pop("2"), "field 'names'"),
                          (lambda m: m["names"].update({"x": "y"}), "not a node index"),
                          (lambda m: m.update(format="other"), "not a saved tape"),
                          (lambda m: m.update(version=2), "format 2")]:
        m = json.loads(json.dumps(meta))
        change(m)
        arrays["meta"] = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        with pytest.raises(ValueError, match=match):
            rg.Tape.load(path, functions=[np.sin, np.cos])
