"""Report a training metric while the trial runs: `report(step=3, loss=0.12, accuracy=0.97)`.

Standard library only: copy this file next to your script if hpo-queue is not installed where it
runs. Each call appends one JSON line to `$RESULT_DIR/metrics.jsonl` (./metrics.jsonl outside a
trial); the worker streams new lines to the coordinator, which stores them and lets early
stopping (ASHA, median rule) decide. Writing `val_dict_list.json` after every epoch works too.
"""

from __future__ import annotations

import json
import os
from typing import Any


def report(step: int | float | None = None, **metrics: Any) -> None:
    point: dict[str, Any] = {} if step is None else {"steps": step}
    for name, value in metrics.items():
        # numpy and torch scalars become plain floats; NaN is written as NaN (and fails the trial)
        point[name] = value if isinstance(value, bool | int | float | str) else float(value)
    path = os.path.join(os.environ.get("RESULT_DIR", "."), "metrics.jsonl")
    with open(path, "a") as fh:  # one write per line: a reader never sees half a point twice
        fh.write(json.dumps(point) + "\n")
        fh.flush()
