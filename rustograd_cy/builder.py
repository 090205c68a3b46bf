"""rg.rustograd(): build terms from Python statements, the counterpart of the seed's `rustograd!` macro.

    >>> import math
    >>> def sin(x): return math.sin(x)
    >>> def sin_derive(x): return math.cos(x)
    >>> terms = rustograd('''
    ... a = 0.
    ... all = sin(a) + 0.2 * sin(a * 5.)
    ... ''', kind="tape")
    >>> terms.all.eval(), terms.all.derive(terms.a)
    (0.0, 2.0)

The statements are parsed with `ast` and never executed. What each construct becomes:
  * `name = <number>` (optionally signed): a leaf (variable) called `name` holding the number;
  * `name = <expression>`: the expression's term, reachable as `name`;
  * a number inside an expression: a constant leaf named by its source text ("5.", "0.2"); as the
    exponent of `**` it is a plain number, so `x ** 2` is the fast x ** constant op;
  * `+ - * /`, unary `-` and `+`, `**` and parentheses: the term operators; one comparison
    `< <= > >= == !=` (a comparison node, 1.0 or 0.0) and `where(cond, a, b)` (rg.where);
  * `f(x)`: if the namespace holds both `f` and `f_derive`, a user function:
    `x.apply("f", f, f_derive)` (plus `grad_graph=f_grad_graph` when the namespace holds one, so
    gen_graph() can differentiate it). Otherwise, if `f` is a built-in function (one of `rg`'s module
    functions: `UNARY_BUILTINS` of one argument, `BINARY_BUILTINS` of two), the fast op.
    So a user's `sin` WITH `sin_derive` wins over the built-in (the seed's example defines both and
    gets apply nodes, exactly as its hand-built graph); a `sin` without `sin_derive` (e.g.
    `from math import sin`) is the built-in op.
Anything else (other statements, names used before they are assigned, calls of unknown names, a
user function without its `_derive`) raises `BuilderError`, a SyntaxError naming line and column.

The namespace that functions are looked up in is, by default, the caller's: for statements given as
text, the calling frame's locals over its globals; for a decorated function, its closure variables
over the locals of the frame applying the decorator over the function's globals. Builtins are not
looked up.
"""
import ast
import inspect
import sys
import textwrap
from collections import ChainMap

from rustograd_cy._nodes import RcTerm, Term
from rustograd_cy._opspec import SPEC
from rustograd_cy._tape import Tape
from rustograd_cy.errors import BuilderError
from rustograd_cy.functions import where as _where

#: The built-in functions a call may name: the spec's rows with a module function, by arity.
UNARY_BUILTINS = frozenset(op.name for op in SPEC if op.function and op.arity == 1)
BINARY_BUILTINS = frozenset(op.name for op in SPEC if op.function and op.arity == 2)
KINDS = ("rc", "tape", "term")


class Terms(dict):
    """The terms built by rg.rustograd(), by variable name, in the order assigned.

    A dict that also reads as attributes: `terms["all"]` or `terms.all`.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no variable {name!r} was assigned; have {', '.join(self)}") from None

    def __dir__(self):
        return list(self) + list(super().__dir__())


def rustograd(source=None, namespace=None, kind=None, tape=None):
    """Build terms from statements: text, or (as a decorator) the body of a function.

    `kind` is "rc" (RcTerm, the seed's choice), "tape" (TapeTerm) or "term" (Term); by default "tape"
    when `tape=` is given, else "rc". `tape` is the Tape to build on for kind "tape" (default: a new
    one). Returns a `Terms` dict, e.g. `rustograd("x = 1.\\ny = x * x", kind="tape").y`.

    As a decorator, `@rustograd` or `@rustograd(kind="tape")` replaces the function with its Terms.
    """
    if source is None:
        def decorator(f):
            return _build(f, namespace, kind, tape, sys._getframe(1))
        return decorator
    return _build(source, namespace, kind, tape, sys._getframe(1))


def _build(source, namespace, kind, tape, caller):
    kind = _check_kind(kind, tape)
    if callable(source):
        text, filename, line_offset, default_ns = _function_source(source, caller)
        statements = _parse(text, filename, line_offset)
        statements = _function_body(statements, source)
    elif isinstance(source, str):
        default_ns = ChainMap(caller.f_locals, caller.f_globals)
        text, filename, line_offset = source, "<rustograd>", 0
        statements = _parse(text, filename, line_offset)
    else:
        raise TypeError(f"rustograd() takes statements as a str or a function, not {type(source).__name__}")
    ns = default_ns if namespace is None else namespace
    return _Builder(kind, tape, ns, filename, line_offset, text).run(statements)


def _check_kind(kind, tape):
    if kind is None:
        kind = "tape" if tape is not None else "rc"
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, not {kind!r}")
    if tape is not None:
        if kind != "tape":
            raise ValueError(f"tape= is for kind='tape', not kind={kind!r}")
        if not isinstance(tape, Tape):
            raise TypeError(f"tape= takes a Tape, not {type(tape).__name__}")
    return kind


def _dedent_width(text):
    """How many columns textwrap.dedent() removes from text."""
    for line in text.splitlines():
        if line.strip():
            return len(line) - len(line.lstrip()) if textwrap.dedent(text) != text else 0
    return 0


def _parse(text, filename, line_offset):
    try:
        return ast.parse(textwrap.dedent(text), filename=filename).body
    except SyntaxError as e:
        line = (e.lineno or 0) + line_offset
        column = (e.offset or 0) + _dedent_width(text)
        text = " " * _dedent_width(text) + e.text if e.text else None  # the line as written
        raise BuilderError(f"line {line}, column {column}: {e.msg}",
                           (filename, line, column, text)) from None


def _function_source(f, caller):
    try:
        lines, first = inspect.getsourcelines(f)
    except (OSError, TypeError) as e:
        raise TypeError(f"rustograd() cannot read the source of {f!r}: {e}") from None
    filename = inspect.getsourcefile(f) or "<unknown>"
    closure = inspect.getclosurevars(f)
    namespace = ChainMap(dict(closure.nonlocals), caller.f_locals, f.__globals__)
    return "".join(lines), filename, first - 1, namespace


def _function_body(statements, f):
    func = next((n for n in statements if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if func is None:
        raise TypeError(f"rustograd() decorates a def'd function; {f!r} is not one")
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    return body


def _is_number(node):
    return (isinstance(node, ast.Constant) and type(node.value) in (int, float))


def _signed_number(node):
    """The value of `1.5`, `-1.5` or `+1.5`, else None."""
    if _is_number(node):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and _is_number(node.operand):
        v = float(node.operand.value)
        return -v if isinstance(node.op, ast.USub) else v
    return None


_COMPARES = {
    ast.Lt: lambda x, y: x < y, ast.LtE: lambda x, y: x <= y, ast.Gt: lambda x, y: x > y,
    ast.GtE: lambda x, y: x >= y, ast.Eq: lambda x, y: x == y, ast.NotEq: lambda x, y: x != y,
}

_BINOPS = {
    ast.Add: lambda x, y: x + y,
    ast.Sub: lambda x, y: x - y,
    ast.Mult: lambda x, y: x * y,
    ast.Div: lambda x, y: x / y,
    ast.Pow: lambda x, y: x ** y,
}


class _Builder:
    def __init__(self, kind, tape, namespace, filename, line_offset, text):
        self.kind = kind
        self.namespace = namespace
        self.filename = filename
        self.line_offset = line_offset
        self.text = textwrap.dedent(text)  # what was parsed: node positions refer to it
        self.lines = self.text.splitlines()
        self.column_offset = _dedent_width(text)
        self.terms = Terms()
        if kind == "tape":
            self.tape = tape if tape is not None else Tape()
        else:
            self.cls = RcTerm if kind == "rc" else Term

    # -- making leaves ----------------------------------------------------------------------------

    def leaf(self, name, value):
        if self.kind == "tape":
            return self.tape.term(name, value)
        return self.cls(name, value)

    def constant(self, node, value):
        label = ast.get_source_segment(self.text, node) or repr(value)
        if self.kind == "tape":
            return self.tape.constant(value, name=label)
        return self.cls(label, value)

    # -- errors -----------------------------------------------------------------------------------

    def error(self, node, message):
        line = node.lineno + self.line_offset
        column = node.col_offset + 1 + self.column_offset
        text = (" " * self.column_offset + self.lines[node.lineno - 1]
                if node.lineno <= len(self.lines) else None)  # the line as written
        return BuilderError(f"line {line}, column {column}: {message}",
                            (self.filename, line, column, text))

    # -- walking ----------------------------------------------------------------------------------

    def run(self, statements):
        for stmt in statements:
            if not isinstance(stmt, ast.Assign):
                raise self.error(stmt, f"unsupported statement ({type(stmt).__name__}): only assignments "
                                       f"`name = expression` build terms")
            if len(stmt.targets) != 1 or not isinstance(stmt.targets[0], ast.Name):
                raise self.error(stmt.targets[0] if len(stmt.targets) == 1 else stmt,
                                 "assign to one plain name, as in `y = x * x`")
            name = stmt.targets[0].id
            value = _signed_number(stmt.value)
            if value is not None:
                self.terms[name] = self.leaf(name, value)
            else:
                self.terms[name] = self.expr(stmt.value)
        return self.terms

    def expr(self, node):
        # Expressions in statements are shallow enough for Python's own recursion (ast.parse recursed
        # over them already); terms themselves never recurse.
        if isinstance(node, ast.Name):
            term = self.terms.get(node.id)
            if term is None:
                raise self.error(node, f"unknown name {node.id!r}: assign it before use "
                                       f"(e.g. `{node.id} = 1.0` makes a leaf)")
            return term
        if _is_number(node):
            return self.constant(node, float(node.value))
        if isinstance(node, ast.Constant):
            raise self.error(node, f"unsupported literal {node.value!r}: only int and float numbers")
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                if _is_number(node.operand):
                    return self.constant(node, -float(node.operand.value))
                return -self.expr(node.operand)
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand)
            raise self.error(node, f"unsupported operator {type(node.op).__name__}: use + - * / ** and calls")
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.error(node, f"unsupported operator {type(node.op).__name__}: use + - * / ** and calls")
            left = self.expr(node.left)
            if isinstance(node.op, ast.Pow) and _signed_number(node.right) is not None:
                return left ** _signed_number(node.right)  # x ** constant: the fast powc op
            return op(left, self.expr(node.right))
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.error(node, "one comparison at a time: write (a < b) * (b < c) for a < b < c")
            op = _COMPARES.get(type(node.ops[0]))
            if op is None:
                raise self.error(node, f"unsupported comparison {type(node.ops[0]).__name__}: "
                                       f"use < <= > >= == !=")
            return op(self.expr(node.left), self.expr(node.comparators[0]))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.error(node, f"unsupported expression ({type(node).__name__}): use names, numbers, "
                               f"+ - * / **, parentheses and calls f(x)")

    def call(self, node):
        if not isinstance(node.func, ast.Name):
            raise self.error(node.func, "only calls of plain function names, as in `sin(x)`")
        if node.keywords:
            raise self.error(node.keywords[0], "keyword arguments are not supported in calls")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.error(node, "*args are not supported in calls")
        fname = node.func.id
        ns = self.namespace
        derive_name = f"{fname}_derive"
        if fname in ns and derive_name in ns:
            if len(node.args) != 1:
                raise self.error(node, f"user function {fname}() takes one argument, got {len(node.args)}")
            f, df = ns[fname], ns[derive_name]
            for what, obj in ((fname, f), (derive_name, df)):
                if not callable(obj):
                    raise self.error(node.func, f"{what} in the namespace is a {type(obj).__name__}, not a function")
            arg = self.expr(node.args[0])
            grad_graph = ns.get(f"{fname}_grad_graph")
            if grad_graph is not None:
                return arg.apply(fname, f, df, grad_graph=grad_graph)
            return arg.apply(fname, f, df)
        if fname == "where":
            if len(node.args) != 3:
                raise self.error(node, f"where() takes three arguments, got {len(node.args)}")
            return _where(*[self.expr(a) for a in node.args])
        if fname in UNARY_BUILTINS:
            if len(node.args) != 1:
                raise self.error(node, f"{fname}() takes one argument, got {len(node.args)}")
            return getattr(self.expr(node.args[0]), fname)()
        if fname in BINARY_BUILTINS:
            if len(node.args) != 2:
                raise self.error(node, f"{fname}() takes two arguments, got {len(node.args)}")
            x = self.expr(node.args[0])
            if fname == "pow" and _signed_number(node.args[1]) is not None:
                return x ** _signed_number(node.args[1])
            return getattr(x, fname)(self.expr(node.args[1]))
        if fname in ns:
            raise self.error(node.func, f"missing {derive_name}: the namespace has {fname} but not its "
                                        f"derivative; define {derive_name}(x) next to {fname}")
        raise self.error(node.func, f"unknown function {fname!r}: define {fname} and {derive_name} in the "
                                    f"namespace, or use a built-in function")
