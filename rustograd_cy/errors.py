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
