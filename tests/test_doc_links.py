"""The links between the project's Markdown files lead somewhere: each linked file exists,
and each ``#anchor`` names a heading of it, as GitHub makes anchors from headings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md")])
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercased, punctuation but ``-`` and ``_`` dropped,
    spaces made ``-``.

    Example:
        >>> anchor("Whole models: read as the module that runs them")
        'whole-models-read-as-the-module-that-runs-them'
        >>> anchor("`diagnose()` of an ONNX graph")
        'diagnose-of-an-onnx-graph'
    """
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # no headings in code
    return {anchor(m[1]) for m in re.finditer(r"^#+ (.*)$", text, flags=re.M)}


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [
        link
        for link in _LINK.findall(text)
        if not re.match(r"[a-z]+:", link)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_leads_to_a_file_and_heading(document: Path) -> None:
    broken = []
    for link in _links(document):
        target, _, fragment = link.partition("#")
        linked = (document.parent / target).resolve() if target else document
        if not linked.exists():
            broken.append(f"{link} (no file {target})")
        elif fragment and linked.suffix == ".md" and fragment not in _anchors(linked):
            broken.append(f"{link} (no heading #{fragment} in {linked.name})")
    assert not broken, f"{document.relative_to(ROOT)}: {'; '.join(broken)}"
