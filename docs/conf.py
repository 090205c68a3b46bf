"""Sphinx configuration of the HTML reference (`make docs`): the guide pages of docs/ (MyST Markdown)
and an API page generated from the docstrings of every name in `rustograd_cy.__all__`.

The package is imported, so it must be built first (`make docs` does it). Warnings are errors (-W).
"""
import inspect
import re
import types

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import rustograd_cy as rg

project = "rustograd-cy"
author = "The rustograd-cy authors"
copyright = "2026, " + author
release = version = rg.__version__

extensions = ["sphinx.ext.autodoc", "myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"rustograd-cy {release}"

# The docstrings write code in single backquotes, as Markdown does.
default_role = "code"
myst_heading_anchors = 3  # the pages link to each other's headings (guide.md#errors)
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
# A compiled class keeps the same signature twice (its docstring's first line and __text_signature__);
# the docstring's is used and taken out of the text.
autodoc_docstring_signature = True

#: The pages in the order of the contents, after the README (index). Pages of docs/ not listed here
#: are added after them, so a new page needs no edit of this file.
PAGES = ["guide", "internals", "guarantees", "benchmarks", "api"]


def _kind(obj):
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "exception"
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "data"


#: The API page's sections: title, the kinds it holds, and for functions, from which module.
SECTIONS = [
    ("Terms, tapes and settings", "class function", lambda o: getattr(o, "__module__", "") not in
     ("rustograd_cy.functions", "rustograd_cy.functional")),
    ("Functions of terms", "function", lambda o: o.__module__ == "rustograd_cy.functions"),
    ("Derivatives of Python functions", "function", lambda o: o.__module__ == "rustograd_cy.functional"),
    ("Errors", "exception", lambda o: True),
    ("Modules", "module", lambda o: True),
]


class PublicApi(SphinxDirective):
    """`{rg-api}`: autodoc entries for every name of `rustograd_cy.__all__`, by section. The list is
    the package's own, so a new public name appears here without an edit; a name no section takes, or
    without a docstring, is a warning (an error under -W)."""

    def run(self):
        taken, text = set(), []
        for title, kinds, wanted in SECTIONS:
            names = [n for n in rg.__all__ if n not in taken and _kind(getattr(rg, n)) in kinds.split()
                     and wanted(getattr(rg, n))]
            if not names:
                continue
            text += [title, "-" * len(title), ""]
            for name in names:
                taken.add(name)
                obj = getattr(rg, name)
                if not (obj.__doc__ or "").strip():
                    self.state.document.reporter.warning(f"rustograd_cy.{name} has no docstring")
                kind = _kind(obj)
                if kind == "module":
                    text += [f".. automodule:: rustograd_cy.{name}", ""]
                elif kind == "class" and any(b.__module__.startswith("rustograd_cy.")
                                             for b in obj.__mro__[1:]):
                    # The term classes inherit their API from compiled base classes (RcTerm and
                    # Term from _Node; the op methods from a base generated from the op spec).
                    text += [f".. autoclass:: rustograd_cy.{name}", "   :inherited-members:", ""]
                else:
                    text += [f".. auto{kind}:: rustograd_cy.{name}", ""]
        for name in sorted(set(rg.__all__) - taken):
            self.state.document.reporter.warning(f"rustograd_cy.{name} is in no section of the API page")
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(text, source="rustograd_cy.__all__"), node)
        return node.children


def _plain_docstring(app, what, name, obj, options, lines):
    """The docstrings are plain text, read by help() as they are: `|x|` is an absolute value and
    `*args` a star, not reST substitutions and emphasis. Outside `code` and doctest lines, | and *
    are kept literally."""
    for i, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...")):
            continue
        parts = line.split("`")
        for j in range(0, len(parts), 2):  # the even parts are outside backquotes
            parts[j] = re.sub(r"(?<!\\)([*|])", r"\\\1", parts[j])
        lines[i] = "`".join(parts)


def _rewrite_links(app, docname, source):
    """The pages link to the README as ../README.md (right on GitHub); here the README is the index."""
    source[0] = re.sub(r"\]\(\.\./README\.md", "](index.md", source[0])
    if docname == root_doc:
        others = sorted(set(app.env.found_docs) - set(PAGES) - {root_doc})
        source[0] = source[0].replace("<!-- more pages -->", "\n".join(others))


def setup(app):
    app.add_directive("rg-api", PublicApi)
    app.connect("source-read", _rewrite_links)
    app.connect("autodoc-process-docstring", _plain_docstring)
    return {"parallel_read_safe": True}
