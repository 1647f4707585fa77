"""Text of the dispatch report: marked blocks inside the docs section, and the footer lines."""

from __future__ import annotations

import re


def replace_block(text: str, key: str, body: str) -> str:
    """Replace `<!-- key:begin -->...<!-- key:end -->` in `text` with `body`, or append the block."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    return (text.rstrip() + "\n\n" + block).lstrip("\n")


def section_body(path_text: str, key: str) -> str:
    """The current body of a marked section of a document ('' when absent)."""
    m = re.search(
        rf"<!-- {re.escape(key)}:begin -->\n?(.*?)\n?<!-- {re.escape(key)}:end -->", path_text, re.S
    )
    return m.group(1) if m else ""


def footer(
    command: str,
    date: str,
    machine: str,
    load_before: str,
    load_after: str,
    wall_s: float,
    code: str = "",
    storage: str = "",
) -> str:
    return (
        f"Command: `{command}`  \n"
        f"Date: {date}{f', code at {code}' if code else ''}  \n"
        f"Machine: {machine}; load average (1/5/15 min) before {load_before}, after {load_after}; "
        f"wall time {wall_s:.0f} s." + (f"  \nStorage: {storage}." if storage else "")
    )
