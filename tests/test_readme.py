"""The snippets of the README and of every page in docs/ are doctests: the output a page shows is the
output the code prints. Each page is its own doctest namespace, so each imports what it uses."""
import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_pages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/guide.md", "docs/internals.md", "docs/guarantees.md",
            "docs/benchmarks.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_snippets(page):
    text = page.read_text(encoding="utf-8")
    result = doctest.testfile(
        str(page), module_relative=False, encoding="utf-8",
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    # A page that shows snippets must run them (a doctest parser that found none would pass silently).
    if ">>> " in text:
        assert result.attempted > 0
    assert result.failed == 0


def anchors(page):
    """The anchors GitHub (and MyST) give the headings of a Markdown page: lower case, punctuation
    dropped, spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+\s+(.*)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_links_resolve(page):
    """Every relative link and image of a page points at a file of the repository, and a link to a
    heading of a page (`guide.md#errors`) at a heading that page has."""
    text = page.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve()
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            missing.append(target)
    assert not missing, f"{page.name}: links to missing files: {missing}"
