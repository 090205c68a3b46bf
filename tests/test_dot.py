"""The DOT writer: one node per distinct term, one edge per operand use, labels, values, options.

Tests taking the `leaf` fixture (tests/conftest.py) run once per term kind: the writer is shared.
"""
import io
import math
import shutil
import subprocess
import warnings
from collections import Counter

import pytest

import rustograd_cy as rg
from rustograd_cy.dot import DotMixin, write_records

with warnings.catch_warnings():
    # pydot 4.0 builds its parser with pyparsing's camelCase names, deprecated by pyparsing 3.3.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pydot
    import pydot.dot_parser

HAVE_DOT = shutil.which("dot") is not None


def parse(text):
    """(labels by node id, Counter of (source label, target label)) via pydot, a real DOT parser."""
    (graph,) = pydot.graph_from_dot_data(text)
    labels = {}
    for node in graph.get_nodes():
        if node.get_name() in ("node", "edge", "graph"):
            continue  # default-attribute statements
        label = node.get("label").strip('"').split("\\n")[0]
        labels[node.get_name()] = label.replace('\\"', '"')
    edges = Counter((labels[e.get_source()], labels[e.get_destination()]) for e in graph.get_edges()
                    if e.get("style") is None)
    return labels, edges


def peak_separation_model(leaf):
    x = leaf("x", 0.0)

    def gaussian(i):
        mu, sigma, scale = leaf(f"mu{i}", 0.0), leaf(f"sigma{i}", 1.0), leaf(f"scale{i}", 1.0)
        x_mu = x - mu
        return scale * (-(x_mu * x_mu) / sigma / sigma).apply("exp", math.exp, math.exp)

    return gaussian(0) + gaussian(1)


def test_abc_graph_labels_and_edges(leaf):
    a, b, c = leaf("a", 123.0), leaf("b", 321.0), leaf("c", 42.0)
    labels, edges = parse(((a + b) * c).dot())
    assert sorted(labels.values()) == sorted(["a", "b", "c", "a + b", "(a + b) * c"])
    assert edges == Counter({("a", "a + b"): 1, ("b", "a + b"): 1, ("a + b", "(a + b) * c"): 1,
                             ("c", "(a + b) * c"): 1})


def test_square_by_product_has_two_edges(leaf):
    x = leaf("x", 3.0)
    labels, edges = parse((x * x).dot())
    assert len(labels) == 2
    assert edges == Counter({("x", "x * x"): 2})


def test_peak_separation_graph_edge_by_edge(leaf):
    y = peak_separation_model(leaf)
    labels, edges = parse(y.dot(show_values=False, label_depth=100))
    expected = Counter()
    g = []
    for i in (0, 1):
        xm = f"x - mu{i}"
        sq = f"({xm}) * ({xm})"
        neg = f"-({sq})"
        d1 = f"{neg} / sigma{i}"
        d2 = f"{d1} / sigma{i}"
        ex = f"exp({d2})"
        gi = f"scale{i} * {ex}"
        g.append(gi)
        expected.update([("x", xm), (f"mu{i}", xm), (xm, sq), (xm, sq), (sq, neg), (neg, d1),
                         (f"sigma{i}", d1), (d1, d2), (f"sigma{i}", d2), (d2, ex), (f"scale{i}", gi),
                         (ex, gi)])
    expected.update([(g[0], f"{g[0]} + {g[1]}"), (g[1], f"{g[0]} + {g[1]}")])
    assert edges == expected
    # one node per distinct term: 7 leaves, 7 operations per Gaussian, the sum
    assert len(labels) == 7 + 2 * 7 + 1 == len(set(labels.values()))
    # x is one node feeding both Gaussians
    assert sum(n for (src, _), n in edges.items() if src == "x") == 2


def test_labels_are_cut_below_the_depth_limit(leaf):
    y = peak_separation_model(leaf)
    labels, _ = parse(y.dot(label_depth=2))
    assert "scale0 * … + scale1 * …" in labels.values()  # operations 2 levels down are cut
    assert "scale1 * exp(…)" in labels.values()
    assert "x - mu0" in labels.values()


def test_values_precision_and_colours_follow_the_state(leaf):
    a, b = leaf("a", 1.0), leaf("b", 2.0)
    ab = a / b
    ab.clear()  # a Term has computed its value as it was built
    before = ab.dot(precision=3)
    assert 'label="a\\ndata:1.000, grad:None"' in before
    assert 'label="a / b\\ndata:None, grad:None" shape=rect];' in before  # no fill: nothing computed
    ab.eval()
    evaluated = ab.dot(precision=3)
    assert 'label="a / b\\ndata:0.500, grad:None" shape=rect style=filled fillcolor="#7fff7f"' in evaluated
    ab.backprop()
    done = ab.dot(precision=1)
    assert 'label="b\\ndata:2.0, grad:-0.2" shape=rect style=filled fillcolor="#ffff7f"' in done
    assert "data:" not in ab.dot(show_values=False)


def test_vertical_highlight_connect_to_and_outputs(leaf):
    a, b = leaf("a", 1.0), leaf("b", 2.0)
    s = a + b
    p = s * b
    text = p.dot(vertical=True, highlight=s, connect_to=[a, b], outputs={"out": p, "sum": s})
    assert 'rankdir="TB"' in text
    (graph,) = pydot.graph_from_dot_data(text)
    nodes = {n.get_name(): n for n in graph.get_nodes()}
    ids = {n.get("label").strip('"').split("\\n")[0]: name for name, n in nodes.items() if n.get("label")}
    assert nodes[ids["a + b"]].get("color") == "red"
    assert [n for n in nodes.values() if n.get("color") == "red"] == [nodes[ids["a + b"]]]
    dashed = [(e.get_source(), e.get_destination()) for e in graph.get_edges()
              if e.get("style") == '"dashed,bold"']
    assert dashed == [(ids["a + b"], ids["a"]), (ids["a + b"], ids["b"])]
    assert nodes[ids["out"]].get("shape") == "oval" and nodes[ids["sum"]].get("shape") == "oval"
    bold = {(e.get_source(), e.get_destination()) for e in graph.get_edges() if e.get("style") == '"bold"'}
    assert bold == {(ids["(a + b) * b"], ids["out"]), (ids["a + b"], ids["sum"])}


def test_option_errors_say_what_to_do(leaf):
    a, b = leaf("a", 1.0), leaf("b", 2.0)
    with pytest.raises(ValueError, match="not a node of this graph"):
        (a * a).dot(highlight=b)
    with pytest.raises(ValueError, match="give highlight too"):
        (a * b).dot(connect_to=b)
    with pytest.raises(TypeError, match="outputs must be"):
        (a * b).dot(outputs=[a])


@pytest.mark.parametrize("other", ["tape", "rc", "term"])
def test_terms_of_another_graph_are_refused(leaf, kind, other):
    # Keys are only unique within one graph: tape indices restart on each tape, and RcTerm/Term
    # serials are plain counters, so a foreign term's key can name an unrelated node here.
    a, b = leaf("a", 1.0), leaf("b", 2.0)
    y = a * b
    foreign = {"tape": rg.Tape().term, "rc": rg.RcTerm, "term": rg.Term}[other]("z", 1.0)
    why = "another tape" if kind == other == "tape" else "of kind"
    for options in ({"highlight": foreign}, {"highlight": a, "connect_to": [b, foreign]},
                    {"outputs": {"z": foreign}}):
        if kind == other != "tape":
            with pytest.raises(ValueError, match="not a node of this graph: pass a term"):
                y.dot(**options)
        else:
            with pytest.raises(ValueError, match=f"not a node of this graph \\(.*{why}"):
                y.dot(**options)
    # iterables of terms are read once
    text = y.dot(highlight=iter([a]), connect_to=(t for t in [b]), outputs=iter([("y", y)]))
    assert text.count("color=red") == 1 and text.count("dashed") == 1 and "output0" in text


def test_writes_to_a_file_and_escapes_names(leaf):
    q = leaf('say "hi" \\ there', 1.0)
    buffer = io.StringIO()
    assert (q * 2).dot(buffer) is None
    labels, _ = parse(buffer.getvalue())
    assert 'say "hi" \\\\ there' in labels.values()


def test_deep_chain_without_recursion(leaf):
    x = leaf("x", 0.5)
    y = x
    for _ in range(30000):
        y = y * 1.0001  # a constant node per use
    y.eval()
    text = y.dot()
    assert text.count("shape=rect") == 1 + 2 * 30000  # x, the constants, the products
    assert "x * 1.0001 * 1.0001" in text and "… * 1.0001 * 1.0001 * 1.0001 * 1.0001" in text


class FakeTerm(DotMixin):
    """A term kind that only has _graph()/_key(): the DOT writer needs nothing else."""

    def __init__(self, records):
        self.records = records

    def _graph(self):
        return self.records

    def _key(self):
        return self.records[-1][0]


def test_other_term_kinds_only_need_graph_records():
    records = [("u", "u", "leaf", "", (), 2.0, None), ("k", "3", "const", "", (), 3.0, None),
               ("p", None, "pow", "**", ("u", "k"), 8.0, None), ("f", None, "sq", "", ("p",), None, None)]
    term = FakeTerm(records)
    labels, edges = parse(term.dot())
    assert sorted(labels.values()) == sorted(["u", "3", "u ** 3", "sq(u ** 3)"])
    assert edges == Counter({("u", "u ** 3"): 1, ("3", "u ** 3"): 1, ("u ** 3", "sq(u ** 3)"): 1})
    assert term.dot() == write_records(records)


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz dot is not installed")
def test_graphviz_accepts_the_text(leaf):
    y = peak_separation_model(leaf)
    y.eval()
    y.backprop()
    svg = subprocess.run(["dot", "-Tsvg"], input=y.dot(outputs={"y": y}), capture_output=True,
                         text=True, check=True).stdout
    assert svg.count('class="node"') == 22 + 1
    assert svg.count('class="edge"') == 26 + 1


def test_to_graphviz_is_a_source(leaf):
    graphviz = pytest.importorskip("graphviz")
    x = leaf("x", 1.0)
    source = (x * x).to_graphviz(show_values=False)
    assert isinstance(source, graphviz.Source)
    assert source.source == (x * x).dot(show_values=False)


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz dot is not installed")
def test_repr_svg_for_jupyter(leaf):
    pytest.importorskip("graphviz")
    x = leaf("x", 1.0)
    svg = (x.sin())._repr_svg_()
    assert "<svg" in svg and "sin(x)" in svg
