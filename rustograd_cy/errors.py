"""The exceptions rustograd_cy raises. Each also derives from the matching built-in exception."""


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


class BuilderError(RustogradError, SyntaxError):
    """rg.rustograd() met statements it cannot turn into terms; `lineno`/`offset` say where.

    `offset` is the 1-based column, as for SyntaxError; the message also names line and column.
    """


# The messages, written once for every term kind. `node` describes the node, e.g. "'a + b' (node 5)"
# on a tape or "'a + b'" for RcTerm and Term; `maker` says how its leaves are made.


#: The TypeError of float(term), math.sin(term) and friends.
NOT_A_NUMBER = (
    "a term is not a number: read its value with term.eval() (or term.data), and use rg.sin(term) "
    "or term.sin() rather than math.sin(term) to build on it"
)


#: The TypeError of `term == number` and `term != number` (on every kind). Terms compare equal only
#: to themselves (the same node), so they stay usable as dict keys and in sets; a comparison with a
#: number, which Python would silently make False, is refused until comparisons become ops.
COMPARE_WITH_NUMBER = (
    "a term is not compared with a number: `term == 0` is not known while the graph is built (it "
    "would always be False). Compare its value instead (term.eval() == 0, term.data == 0); inside "
    "rg.grad and friends a Python branch on a value is recorded once (see retrace=True). Terms "
    "compare equal only to themselves, the same node"
)


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
