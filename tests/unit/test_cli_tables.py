"""`hpo trials`: the table says why a trial failed or stopped, and stays narrow when none did."""

from __future__ import annotations

from rich.console import Console

from app.cli_client import trials_table


def _render(rows: list[dict]) -> str:
    console = Console(width=300, record=True)
    console.print(trials_table(rows))
    return console.export_text()


def _trial(number: int, state: str, reason: str | None = None) -> dict:
    return {"number": number, "state": state, "objective": 0.5 if state == "FINISHED" else None,
            "params": {"x": 0.25}, "worker": "w1", "started_at": None, "reason": reason}  # fmt: skip


def test_reason_column_shows_the_first_line_shortened() -> None:
    long = "exit code 1: " + "x" * 200 + "\nTraceback (most recent call last):"
    rows = [_trial(0, "FINISHED"), _trial(1, "FAILED", long), _trial(2, "EARLY_STOPPED", "asha: rung 1")]
    text = _render(rows)
    assert "reason" in text and "asha: rung 1" in text
    assert "exit code 1: xxx" in text and "Traceback" not in text and "x" * 100 not in text
    assert "…" in text


def test_no_reason_column_when_no_trial_has_one() -> None:
    text = _render([_trial(0, "FINISHED"), _trial(1, "FINISHED")])
    assert "reason" not in text and "x=0.25" in text
