"""Read `$RESULT_DIR/val_dict_list.json` and reduce it to the objective (WMLA contract §3.4)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULTS_FILE = "val_dict_list.json"
STREAM_FILE = "metrics.jsonl"  # one JSON object per line, appended as training goes (hpo_report)
STEP_KEYS = ("steps", "step", "epoch", "epochs", "iteration")


class MetricsError(ValueError):
    """The results file is missing or unusable; the message is shown to the user."""


def load_points(result_dir: Path, text: str | None = None) -> list[dict[str, Any]]:
    """The trial's points: val_dict_list.json (the WMLA contract; `text`: its content, when it came
    another way), else the lines of metrics.jsonl."""
    path = result_dir / RESULTS_FILE
    if text is None and not path.exists():
        streamed = read_jsonl(result_dir / STREAM_FILE)
        if streamed:
            return streamed
        raise MetricsError(f"{RESULTS_FILE} was not written to RESULT_DIR")
    try:
        data = json.loads((path.read_text() if text is None else text) or "null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetricsError(f"{RESULTS_FILE} is not valid JSON: {exc}") from None
    if isinstance(data, dict):  # tolerate a single point written without the list
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(p, dict) for p in data):
        raise MetricsError(f"{RESULTS_FILE} must be a non-empty JSON list of objects")
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def step_of(point: dict[str, Any]) -> float | None:
    for key in STEP_KEYS:
        if key in point:
            return _number(point[key])
    return None


def reduce_objective(points: list[dict[str, Any]], metric: str, direction: str) -> float:
    """Best value over the points: min for minimize, max for maximize. NaN anywhere fails."""
    values: list[float] = []
    for i, point in enumerate(points):
        if metric not in point:
            continue
        v = _number(point[metric])
        if v is None:
            raise MetricsError(f"metric {metric!r} is not a number at entry {i}: {point[metric]!r}")
        if not math.isfinite(v):
            raise MetricsError(f"metric {metric!r} is {v} at entry {i}")
        values.append(v)
    if not values:
        keys = sorted({k for p in points for k in p})
        raise MetricsError(f"metric {metric!r} missing from {RESULTS_FILE} (keys found: {', '.join(keys)})")
    return min(values) if direction == "minimize" else max(values)


def summarize(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{name: {min, max, latest}} for every numeric, finite metric (WMLA `metrics`)."""
    out: dict[str, dict[str, float]] = {}
    for point in points:
        for key, raw in point.items():
            if key in STEP_KEYS:
                continue
            v = _number(raw)
            if v is None or not math.isfinite(v):
                continue
            s = out.setdefault(key, {"min": v, "max": v, "latest": v})
            s["min"], s["max"], s["latest"] = min(s["min"], v), max(s["max"], v), v
    return out


def point_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the metric table: every key of every point, JSON-safe (NaN/inf as strings)."""
    rows = []
    for i, point in enumerate(points):
        values = {
            k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in point.items()
        }
        rows.append({"seq": i, "step": step_of(point), "values": values})
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete lines holding JSON objects; a half-written last line and junk lines are skipped."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in text.split(b"\n")[:-1]:
        try:
            item = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


class PointTracker:
    """Follows a running trial's points as the script writes them: val_dict_list.json rewritten
    after every epoch, or metrics.jsonl appended to. `poll()` returns the points not seen yet."""

    def __init__(self, result_dir: Path) -> None:
        self.result_dir = result_dir
        self.sent = 0
        self._signature: tuple[int, int] | None = None
        self._points: list[dict[str, Any]] = []

    def _current(self) -> list[dict[str, Any]]:
        for name in (RESULTS_FILE, STREAM_FILE):
            path = self.result_dir / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            signature = (stat.st_mtime_ns, stat.st_size)
            if signature != self._signature:
                if name == RESULTS_FILE:
                    try:
                        data = json.loads(path.read_text() or "null")
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        return self._points  # caught mid-write: next time
                    points = [data] if isinstance(data, dict) else data
                    if isinstance(points, list):
                        self._points = [p for p in points if isinstance(p, dict)]
                else:
                    self._points = read_jsonl(path)
                self._signature = signature
            return self._points
        return self._points

    def poll(self) -> list[dict[str, Any]]:
        points = self._current()
        fresh = points[self.sent :]
        first = self.sent
        self.sent = max(self.sent, len(points))
        return [{**row, "seq": first + i} for i, row in enumerate(point_rows(fresh))]
