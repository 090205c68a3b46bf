"""The exceptions rustograd_cy raises. Each also derives from the matching built-in exception."""


class RustogradError(Exception):
    """Base class of every error this library raises on its own account."""


class ValueNotDefinedError(RustogradError, RuntimeError):
    """derive() or backprop() would use values that were never computed or are stale since a set()."""


class TermWasNotValueError(RustogradError, ValueError):
    """A leaf-only operation (set(), or derive() with respect to a variable) got an inner node."""


class TapeMismatchError(RustogradError, ValueError):
    """Terms of two different tapes were combined."""


class GradGraphMissingError(RustogradError, TypeError):
    """gen_graph() reached an apply() node made without grad_graph=, so it cannot build its derivative."""


class BuilderError(RustogradError, SyntaxError):
    """rg.rustograd() met statements it cannot turn into terms; `lineno`/`offset` say where.

    `offset` is the 1-based column, as for SyntaxError; the message also names line and column.
    """


# The messages, written once for every term kind. `node` describes the node, e.g. "'a + b' (node 5)"
# on a tape or "'a + b'" for RcTerm and Term; `maker` says how its leaves are made.


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
