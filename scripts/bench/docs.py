"""Write a benchmark's table into docs/benchmarks.md between `<!-- KEY:begin -->` markers."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, key: str, heading: str, body: str) -> None:
    """Replace the marked section (or append it under `heading`), leaving the rest untouched."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
