"""Graphviz DOT output, written once for every term kind.

A term kind only has to provide `_graph()` — the nodes its term depends on, operands first, as records
``(key, name or None, op, infix, operand keys, data, grad)`` — and `_key()`, its own key in those
records. Everything else (labels, colours, edges, highlights, outputs) happens here.

>>> import rustograd_cy as rg
>>> tape = rg.Tape()
>>> a, b = tape.term("a", 1.0), tape.term("b", 2.0)
>>> print((a * b).dot(show_values=False))  # doctest: +ELLIPSIS
digraph G {
...
"""
from rustograd_cy.errors import TapeMismatchError
from rustograd_cy.labels import expression_label

#: Fill colours by state, as in the seed's pictures.
VALUE_COLOR = "#7fff7f"  # the value is computed
GRAD_COLOR = "#ffff7f"  # the gradient is computed too

#: Operations deeper than this below a node are written "…" in its label, so that the labels of
#: big graphs stay readable: "(x - mu) * (x - mu)" rather than the whole loss expression.
LABEL_DEPTH = 4


def _quote(text):
    """`text` as a DOT string literal (the only DOT escape we use is \\n, added after quoting)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _key_of(term_or_key):
    key = getattr(term_or_key, "_key", None)
    return key() if callable(key) else term_or_key


def _items(option):
    """A term, a key, or an iterable of them -> list of them."""
    if option is None:
        return []
    if hasattr(option, "_key") or isinstance(option, (int, str)):
        return [option]
    return list(option)


def _keys(option):
    """A term, a key, or an iterable of them -> list of keys."""
    return [_key_of(item) for item in _items(option)]


def _output_pairs(outputs):
    """outputs as [(name, term or key)]: a mapping {name: term} or an iterable of (name, term) pairs."""
    if outputs is None:
        return []
    items = outputs.items() if hasattr(outputs, "items") else outputs
    try:
        items = list(items)
    except TypeError:
        raise TypeError(
            "outputs must be a dict {name: term} or a list of (name, term) pairs, "
            f"not {type(outputs).__name__}"
        ) from None
    pairs = []
    for item in items:
        try:
            name, term = item
        except (TypeError, ValueError):
            raise TypeError(
                "outputs must be a dict {name: term} or a list of (name, term) pairs, "
                f"got an item {item!r}"
            ) from None
        pairs.append((str(name), term))
    return pairs


def _refuse_other_graphs(term, items, what):
    """Raise if one of `items` is a term of another kind or another tape than `term`: keys are only
    unique within one graph, so its key could name an unrelated node of this one."""
    for item in items:
        if not hasattr(item, "_key"):
            continue
        if type(item) is not type(term):
            raise ValueError(
                f"{what} is not a node of this graph (it is of kind {type(item).__name__}, the graph of "
                f"kind {type(term).__name__}): pass a term the drawn term depends on"
            )
        if getattr(item, "tape", None) is not getattr(term, "tape", None):
            raise TapeMismatchError(
                f"{what} is not a node of this graph (it belongs to another tape): pass a term of the "
                f"drawn term's tape"
            )


def _check_options(file, precision, label_depth):
    if file is not None and not callable(getattr(file, "write", None)):
        raise TypeError(
            f"file must be an open text file (anything with write()), not {type(file).__name__}: "
            f"use `with open(path, 'w') as f: term.dot(f)`, or omit it to get the DOT text"
        )
    for name, value in (("precision", precision), ("label_depth", label_depth)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, not {value!r}")


def write_records(records, file=None, *, show_values=True, vertical=False, highlight=None,
                  connect_to=None, outputs=None, precision=2, label_depth=LABEL_DEPTH):
    """DOT text of a graph given as `_graph()` records; see `dot()` for the options.

    The layer below `dot()`: animations pass records whose values are masked frame by frame.
    """
    _check_options(file, precision, label_depth)
    records = list(records)
    ids = {}  # key -> DOT node id, in record order
    described = {}  # key -> (name, op, infix, operand keys), for the labels
    for key, name, op, infix, operands, _, _ in records:
        ids[key] = f"n{len(ids)}"
        described[key] = (name, op, infix, tuple(operands))

    def require(key, what):
        if key not in ids:
            raise ValueError(f"{what} is not a node of this graph: pass a term the drawn term depends on")
        return ids[key]

    highlighted = [require(k, "highlight") for k in _keys(highlight)]
    targets = [require(k, "connect_to") for k in _keys(connect_to)]
    if targets and not highlighted:
        raise ValueError("connect_to draws an edge from the highlighted node: give highlight too")
    out_pairs = [(name, require(_key_of(t), f"output {name!r}")) for name, t in _output_pairs(outputs)]

    def fmt(v):
        return "None" if v is None else f"{v:.{precision}f}"

    lines = ["digraph G {", f'rankdir="{"TB" if vertical else "LR"}";', "newrank=true;",
             'node [fontname="Helvetica"];']
    highlighted_set = set(highlighted)
    for key, name, _, _, _, data, grad in records:
        node_id = ids[key]
        label = name if name is not None else expression_label(key, described.__getitem__, label_depth)
        label = _quote(label)
        if show_values:
            label = label[:-1] + f'\\ndata:{fmt(data)}, grad:{fmt(grad)}"'
        attrs = [f"label={label}", "shape=rect"]
        if grad is not None:
            attrs.append(f'style=filled fillcolor="{GRAD_COLOR}"')
        elif data is not None:
            attrs.append(f'style=filled fillcolor="{VALUE_COLOR}"')
        if node_id in highlighted_set:
            attrs.append("color=red penwidth=2")
        lines.append(f"{node_id} [{' '.join(attrs)}];")
    for key, _, _, _, operands, _, _ in records:
        for operand in operands:  # one edge per use: x * x has two edges from x
            lines.append(f"{ids[operand]} -> {ids[key]};")
    for source in highlighted:
        for target in targets:
            lines.append(f'{source} -> {target} [style="dashed,bold" color=green constraint=false];')
    for i, (name, node_id) in enumerate(out_pairs):
        lines.append(f"output{i} [label={_quote(name)} shape=oval];")
        lines.append(f'{node_id} -> output{i} [style="bold"];')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if file is None:
        return text
    file.write(text)
    return None


def dot(term, file=None, *, show_values=True, vertical=False, highlight=None, connect_to=None,
        outputs=None, precision=2, label_depth=LABEL_DEPTH):
    """Write the graph `term` depends on as Graphviz DOT to `file`, or return it as a str.

    One node per distinct term, one edge per operand use (x * x has two edges from x). Leaves are
    labelled by name, operations by their expression ("(a + b) * c"), cut to "…" below `label_depth`
    levels. With `show_values`, labels show data and grad (None when not computed) with `precision`
    decimals. Nodes are filled green once their value is computed and yellow once their gradient is.

    - `vertical`: top-to-bottom instead of left-to-right.
    - `highlight`: a term (or several) drawn with a red border.
    - `connect_to`: a term (or several) that gets a dashed green edge from the highlighted node.
    - `outputs`: named output ovals, as {name: term} or [(name, term), ...].

    >>> import rustograd_cy as rg
    >>> x = rg.Tape().term("x", 3.0)
    >>> "two edges" if (x * x).dot().count("n0 -> n1") == 2 else "?"
    'two edges'
    """
    highlight, connect_to, outputs = _items(highlight), _items(connect_to), _output_pairs(outputs)
    _refuse_other_graphs(term, highlight, "highlight")
    _refuse_other_graphs(term, connect_to, "connect_to")
    for name, output in outputs:
        _refuse_other_graphs(term, [output], f"output {name!r}")
    return write_records(term._graph(), file, show_values=show_values, vertical=vertical,
                         highlight=highlight, connect_to=connect_to, outputs=outputs,
                         precision=precision, label_depth=label_depth)


def to_graphviz(term, **options):
    """The graph of `term` as a `graphviz.Source` (needs the `graphviz` package); options as `dot()`."""
    try:
        import graphviz
    except ImportError:
        raise ImportError(
            "to_graphviz() needs the graphviz package: pip install graphviz "
            "(or the extra: pip install rustograd-cy[examples])"
        ) from None
    return graphviz.Source(dot(term, **options))


def repr_svg(term):
    """SVG of the graph of `term` for Jupyter, or None when Graphviz is not available."""
    try:
        import graphviz
    except ImportError:
        return None
    try:
        return graphviz.Source(dot(term)).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        return None


class DotMixin:
    """`dot`, `to_graphviz` and `_repr_svg_` methods for a term class that has `_graph()`/`_key()`.

    Compiled (cdef) classes cannot inherit from it; they define the same three one-line methods.
    """

    def dot(self, file=None, **options):
        """Graphviz DOT of this term's graph; see `rustograd_cy.dot.dot`."""
        return dot(self, file, **options)

    def to_graphviz(self, **options):
        """This term's graph as a `graphviz.Source`."""
        return to_graphviz(self, **options)

    def _repr_svg_(self):
        return repr_svg(self)

