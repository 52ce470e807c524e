"""The README and docs/ link only to files of this repository that exist (no `../` out of it),
and to anchors that exist in the file they name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_every_link_stays_in_the_repository_and_resolves() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = []
    for doc in documents:
        text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # code is not links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # https://, mailto: ...: not a file
            file_part, _, anchor = target.partition("#")
            path = (doc.parent / file_part).resolve() if file_part else doc
            if not path.is_relative_to(ROOT.resolve()) or not path.exists():
                problems.append(f"{doc.name}: {target} (no such file in the repository)")
            elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
                problems.append(f"{doc.name}: {target} (no such heading)")
    assert not problems, problems
    assert len((ROOT / "README.md").read_text().splitlines()) < 200, "keep the front page short"
