"""The README is one page with the two set-up commands; the docs' links resolve; every table
of measured figures names the command that made it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 150
RUN = (
    "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && "
    ".venv/bin/python -m runner"
)
TEST = "bash scripts/test"


def test_the_readme_is_one_page_with_the_two_set_up_commands():
    """A newcomer reads the README in five minutes: the run command, then the test command in
    a step of its own."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    assert readme.index(RUN) < readme.index(f"   {TEST}\n")


@pytest.mark.parametrize("page", [REPO / "README.md", *DOCS], ids=lambda p: p.name)
def test_relative_links_lead_somewhere(page: Path):
    """Every relative link of the README and docs/ names a file (and heading) that exists."""
    text = page.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
            if anchor not in slugs:
                broken.append(target)
    assert broken == []


def tables_with_their_text(text: str) -> list[tuple[str, str]]:
    """Each markdown table of ``text`` with the prose of its section before it."""
    found, prose, table = [], [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            found.append(("\n".join(prose), "\n".join(table)))
            table = []
        if line.startswith("#"):
            prose = []
        prose.append(line)
    return found


def test_every_table_of_measured_figures_names_its_command():
    """In docs/benchmarks.md each table follows the `python -m bench.` command that made it."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    tables = tables_with_their_text(text)
    assert tables
    assert [table[:60] for prose, table in tables if "python -m bench." not in prose] == []
