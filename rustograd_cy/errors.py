"""The exceptions rustograd_cy raises. Each also derives from the matching built-in exception."""
import ast
import linecache
import sys

from rustograd_cy import _opspec
from rustograd_cy._recording import innermost_name


class RustogradError(Exception):
    """Base class of every error this library raises on its own account."""


class ValueNotDefinedError(RustogradError, RuntimeError):
    """derive() or backprop() would use values that were never computed or are stale since a set()."""


class TermWasNotValueError(RustogradError, ValueError):
    """A leaf-only operation (set(), or derive() with respect to a variable) got an inner node."""


class TapeMismatchError(RustogradError, ValueError):
    """Terms of two different tapes were combined."""


class NonFiniteError(RustogradError, FloatingPointError):
    """A value, gradient or tangent is NaN or infinite while the anomaly check is on
    (`rg.detect_anomaly()` or `tape.check_finite = True`).

    `index` is the node's tape index (for RcTerm/Term its creation number, as in drawings), `label`
    its expression, `op` its op name, `quantity` "value", "gradient" or "tangent", `number` the
    offending float.
    """

    def __init__(self, message, index=None, label=None, op=None, quantity=None, number=None):
        super().__init__(message)
        self.index = index
        self.label = label
        self.op = op
        self.quantity = quantity
        self.number = number


class GradGraphMissingError(RustogradError, TypeError):
    """gen_graph() reached an apply() node made without grad_graph=, so it cannot build its derivative."""


class BranchChangedError(RustogradError, RuntimeError):
    """A guard flipped: a comparison that a Python branch tested while rg.grad (or a friend) recorded
    the function has another outcome at the values being swept, so the recorded graph is the other
    branch's. The transforms catch it on their own tapes and record that branch; it reaches the user
    on a tape of their own (a transform composed on their terms), and in batch mode when samples
    take different branches.

    `index` is the comparison's node, `label` its expression, `outcome` the truth recorded, `sample`
    the first sample of the batch that differs (None outside batch mode).
    """

    def __init__(self, message, index=None, label=None, outcome=None, sample=None):
        super().__init__(message)
        self.index = index
        self.label = label
        self.outcome = outcome
        self.sample = sample


def branch_changed_error(index, label, outcome, sample, batch_size):
    """The BranchChangedError of guard node `index` (recorded `outcome`), flipped at `sample` of a
    batch (sample None: in scalar mode)."""
    guard = f"the guard {label!r} (node {index}), {outcome} when the function was recorded,"
    if sample is None:
        return BranchChangedError(
            f"{guard} is {not outcome} now: this graph holds the other branch of a Python `if`. "
            f"Call the transform again (rg.grad(f)(...) records the branch taken), or use "
            f"rg.where(cond, a, b) to keep both branches in one graph",
            index, label, outcome, None)
    return BranchChangedError(
        f"{guard} is {not outcome} for sample {sample} of the batch of {batch_size}: a Python branch "
        f"takes one side for the whole batch. Use rg.where(cond, a, b) for a choice per sample",
        index, label, outcome, sample)


class BuilderError(RustogradError, SyntaxError):
    """rg.rustograd() met statements it cannot turn into terms; `lineno`/`offset` say where.

    `offset` is the 1-based column, as for SyntaxError; the message also names line and column,
    and shows the source line with a caret under that column.
    """

    def __str__(self):
        text = str(self.msg)
        if self.text:
            line = self.text.rstrip("\r\n")
            text += f"\n    {line}"
            if self.offset and self.offset > 0:
                text += "\n    " + " " * (self.offset - 1) + "^"
        return text


# The messages, written once for every term kind. `node` describes the node, e.g. "'a + b' (node 5)"
# on a tape or "'a + b'" for RcTerm and Term; `maker` says how its leaves are made.


#: The TypeError of float(term), math.sin(term) and friends.
NOT_A_NUMBER = (
    "a term is not a number: read its value with term.eval() (or term.data), and use rg.sin(term) "
    "or term.sin() rather than math.sin(term) to build on it"
)


#: The TypeError of bool(term) (an `if`, `and`, `max()` on a term) outside a recording, on every kind.
NO_TRUTH_VALUE = (
    "a term has no truth value outside rg.grad and friends: its value is not known while the graph "
    "is built. For a choice by value use rg.where(x > 0, a, b) (per sample in batch mode; "
    "rg.maximum and rg.minimum for max and min), or run the Python branch inside rg.grad(f) "
    "(and value_and_grad, jacobian, hessian, hvp), which records the branch taken and records again "
    "when it flips; to look at a value, compare term.eval() or term.data"
)

#: The TypeError of bool() of a term that is not a comparison, inside a recording.
NOT_A_CONDITION = (
    "only a comparison has a truth value inside rg.grad and friends: write the condition out "
    "(`if x != 0:` rather than `if x:`)"
)


# The functions rg.<name> that build nodes, for naming the one to use instead of math.<name>: the
# op spec's module functions.
_RG_FUNCTIONS = frozenset(op.name for op in _opspec.SPEC if op.function)

def _called_function():
    """The function that user code is calling right now, as written ("math.exp"), read from the
    source position of the frame's current call (Python >= 3.11); None when it cannot be known."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("rustograd_cy"):
        frame = frame.f_back
    if frame is None or not hasattr(frame.f_code, "co_positions"):
        return None
    try:
        line, end_line, col, end_col = list(frame.f_code.co_positions())[frame.f_lasti // 2]
        if None in (line, end_line, col, end_col):
            return None
        lines = [linecache.getline(frame.f_code.co_filename, k, frame.f_globals)
                 for k in range(line, end_line + 1)]
        if not all(lines):
            return None
        lines[-1] = lines[-1].encode()[:end_col].decode(errors="replace")
        lines[0] = lines[0].encode()[col:].decode(errors="replace")
        call = ast.parse("".join(lines).strip(), mode="eval").body
    except (IndexError, ValueError, SyntaxError, UnicodeError):
        return None
    if not isinstance(call, ast.Call):
        return None
    try:
        return _callee_name(call.func, frame) or ast.unparse(call.func)
    except Exception:  # an attribute lookup of the user's objects failed: say less
        return ast.unparse(call.func)


def _callee_name(expr, frame):
    """The qualified name of the C function or type a call expression of plain names and
    attributes refers to (so `fn(x)` with fn = math.exp says math.exp), or None."""
    path = []
    while isinstance(expr, ast.Attribute):
        path.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    scopes = (frame.f_locals, frame.f_globals, frame.f_builtins)
    obj = next((scope[expr.id] for scope in scopes if expr.id in scope), None)
    for attr in reversed(path):
        obj = getattr(obj, attr, None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if obj is None or not isinstance(name, str) or name == "<lambda>":
        return None
    module = getattr(obj, "__module__", None)
    if module in (None, "builtins") or not isinstance(module, str):
        return name
    return f"{module.split('.')[0]}.{name}"


def not_a_number_error(conversion="float"):
    """The TypeError of a term used where a number is wanted: `float(term)`, `int(term)`,
    `round(term)` (conversion "float", "int", "round"), or a function of numbers such as
    math.exp(term), which is named when the source shows it."""
    called = _called_function() if conversion == "float" else conversion
    tracing = innermost_name()  # the transform recording f in this thread, if any
    if called is None and tracing:  # Python < 3.11 cannot name the call; still say why
        return TypeError(f"inside rg.{tracing}(f), f gets terms, not numbers, so a function of "
                         f"numbers (math.sin, float, ...) cannot compute on them: build f from "
                         f"arithmetic and the rg functions (rg.exp, rg.sin, ...), which the "
                         f"transform can differentiate")
    if called is None:
        return TypeError(NOT_A_NUMBER)
    short = called.rsplit(".", 1)[-1]
    if tracing:
        where = (f"inside rg.{tracing}(f), f gets terms, not numbers, so {called}() cannot "
                 f"compute on them")
        if short in _RG_FUNCTIONS:
            return TypeError(f"{where}: use rg.{short}(x) (or np.{short}(x) on an array argument) "
                             f"so that rg.{tracing} can differentiate it")
        return TypeError(f"{where}: build f from arithmetic and the rg functions (rg.exp, rg.sin, "
                         f"...), which the transform can differentiate")
    head = f"{called}(term): a term is not a number"
    if short in _RG_FUNCTIONS and called != short:
        return TypeError(f"{head}; use rg.{short}(term) or term.{short}() to build on it, or read "
                         f"its value with term.eval() (or term.data)")
    if conversion == "round":
        return TypeError(f"{head}: round its value instead, round(term.eval(), ndigits) (or "
                         f"term.data)")
    example = f", e.g. {called}(term.eval())" if called in ("float", "int") else " and pass that"
    return TypeError(f"{head}: read its value with term.eval() (or term.data){example}")


def read_only_error(attribute):
    """The AttributeError of assigning to a term's .data or .grad (`p.data -= lr * p.grad`)."""
    if attribute == "data":
        return AttributeError(
            "term.data is read-only: give a leaf a new value with p.set(value) (a descent step: "
            "p.set(p.data - lr * p.grad)), or let rg.optim.SGD(params, lr) / rg.optim.Adam update "
            "tape parameters in one call (opt.step())"
        )
    return AttributeError("term.grad is read-only: backprop() computes it, clear_grad() drops it")


def stale_value_error(caller, node, never_computed):
    """The ValueNotDefinedError of derive()/backprop() meeting a value that is not current."""
    why = "was never computed" if never_computed else "is stale since a set() or clear()"
    return ValueNotDefinedError(
        f"{caller} needs the value of {node}, which {why}: call eval() on the output first"
    )


def set_non_leaf_error(maker, node, what):
    """The TermWasNotValueError of set() on a constant or an operation node (`what` says which)."""
    return TermWasNotValueError(f"set() changes leaves made by {maker}; {node} is {what}")


def derive_non_leaf_error(maker, node):
    """The TermWasNotValueError of derive() with respect to something other than a leaf."""
    return TermWasNotValueError(f"derive() is with respect to a leaf made by {maker}; {node} is not one")


def non_finite_error(caller, quantity, index, label, op, number):
    """The NonFiniteError of the anomaly check: the first node whose `quantity` is not finite."""
    return NonFiniteError(
        f"{caller}: the {quantity} of node {index} {label!r} (op {op}) is {number!r}, the first "
        f"{quantity} in the sweep that is not finite; check that node's inputs (a log or sqrt of a "
        f"negative number, a division by 0, an overflowing exp, a NaN leaf), or turn the check off "
        f"(tape.check_finite = False, or leave rg.detect_anomaly()) to get IEEE inf/NaN results",
        index, label, op, quantity, number,
    )
