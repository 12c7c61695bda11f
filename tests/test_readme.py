"""The README cannot go stale: its figures are generated from committed files, and it stays short."""

from __future__ import annotations

import re
import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import readme  # noqa: E402  (tools/ is not a package)

LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_quotes_the_committed_reports_exactly():
    """Every figure in a generated block equals what reports/ hold (make readme rewrites them)."""
    text = (ROOT / "README.md").read_text()
    assert readme.update(text, ROOT) == text, "README.md is stale: run make readme"


def test_the_readme_is_short_and_links_every_doc_and_tool():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{doc.name})" in text, doc.name
    for tool in (ROOT / "tools").glob("*.py"):
        assert f"tools/{tool.name}" in text, tool.name


def test_every_relative_link_in_the_readme_and_docs_exists():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in LINK.findall(page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}"


def test_make_readme_rewrites_a_stale_block(tmp_path):
    stale = (ROOT / "README.md").read_text().replace(" ms  accuracy ", " ms  accuracy 9", 1)  # in a block
    assert stale != (ROOT / "README.md").read_text()
    assert readme.update(stale, ROOT) == (ROOT / "README.md").read_text()
