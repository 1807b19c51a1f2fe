"""Every relative link and image in the README, the docs and the experiment reports
points at a file of the checkout, so a figure or a report that was never committed (an
ignore pattern that also matched it, say) fails here on a clean clone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [ROOT / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
    + list((ROOT / "benchmarks").glob("*.md"))
    + list((ROOT / "kernels").glob("*.md"))
    + list((ROOT / "experiments").glob("*/REPORT.md"))
)
#: ``[text](target)`` and ``![alt](target)``; the target up to a ``#`` anchor.
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _relative_links(document: Path) -> list[str]:
    return [t for t in LINK.findall(document.read_text()) if "://" not in t and ":" not in t]


def test_the_link_pattern_finds_links_images_and_anchored_links_only():
    text = "[a](docs/x.md) ![b](fig/y.png) [c](z.md#part) [d](#anchor) [e](https://x.org/a)"
    assert LINK.findall(text) == ["docs/x.md", "fig/y.png", "z.md", "https://x.org/a"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_of_the_checkout(document):
    missing = [
        target
        for target in _relative_links(document)
        if not (document.parent / target).resolve().exists()
    ]
    assert not missing, f"{document.relative_to(ROOT)} links to missing files: {missing}"
