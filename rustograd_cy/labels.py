"""Expression labels for operation nodes, derived when asked for (building a node formats nothing).

Shared by every term kind and the DOT writer: a node is described by a function returning
(name or None, op name, infix symbol, operand nodes).
"""

# Binding strength of each infix symbol; functions and leaves bind tightest.
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
_BINARY_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4, **dict.fromkeys(_COMPARISONS, 0)}
_NEG_PRECEDENCE = 3
_ATOM = 5
ELLIPSIS = "…"


def _precedence(infix, arity):
    if not infix:
        return _ATOM
    return _NEG_PRECEDENCE if arity == 1 else _BINARY_PRECEDENCE[infix]


def _needs_parens(parent_prec, parent_infix, child_prec, position):
    if child_prec != parent_prec:
        return child_prec < parent_prec
    # Equal strength: a - (b - c), a / (b * c) and (a ** b) ** c keep their parentheses.
    if parent_infix == "**":
        return position == 0
    if parent_infix in _COMPARISONS:  # (a < b) < c is not Python's chained a < b < c
        return True
    return position == 1 and parent_infix in ("-", "/")


def expression_label(root, describe, max_depth=4):
    """The expression computing `root`, e.g. "(a + b) * c".

    Operations deeper than `max_depth` below the root are written as "…", so labels stay short in
    big graphs. Iterative (an explicit stack), so deep graphs cannot overflow anything.
    """
    done = {}  # (node, depth) -> (text, precedence)
    stack = [(root, 0, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if (node, depth) in done and not expanded:
            continue
        name, op, infix, operands = describe(node)
        if name is not None:
            done[node, depth] = (name, _ATOM)
            continue
        if depth >= max_depth:
            done[node, depth] = (ELLIPSIS, _ATOM)
            continue
        if not expanded:
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in operands)
            continue
        prec = _precedence(infix, len(operands))
        parts = []
        for position, child in enumerate(operands):
            text, child_prec = done[child, depth + 1]
            if infix and _needs_parens(prec, infix, child_prec, position):
                text = f"({text})"
            parts.append(text)
        if not infix:
            text = f"{op}({', '.join(parts)})"
        elif len(parts) == 1:
            text = f"{infix}{parts[0]}"
        else:
            text = f" {infix} ".join(parts)
        done[node, depth] = (text, prec)
    return done[root, 0][0]
