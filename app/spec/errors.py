"""Spec validation errors: one problem per bad field, each naming the field's path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "hyperParams[1].maxDbVal" or "space.lr.high"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """Raised with every problem found, never a traceback for the user."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"invalid experiment spec{f' {self.source}' if self.source else ''}"
        return head + ":\n" + "\n".join(f"  - {p}" for p in self.problems)
