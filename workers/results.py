"""Ship a trial's result directory back through Redis as a size-capped zip."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from workers.metrics import RESULTS_FILE

CODE_DIR = "_submitted_code"
CHECKPOINT_DIR = "checkpoint"  # shipped separately (or not at all): not part of the results
ALWAYS = (RESULTS_FILE, "metrics.jsonl")


def _files(result_dir: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(result_dir):
        if Path(root) == result_dir:
            dirs[:] = [d for d in dirs if d not in (CODE_DIR, CHECKPOINT_DIR)]
        out += [Path(root) / f for f in files]
    return sorted(out)


def zip_results(result_dir: Path, max_bytes: int) -> tuple[bytes, bool]:
    """(zip bytes, truncated). Over the cap only the results file and the logs go in."""
    files = _files(result_dir)
    total = sum(f.stat().st_size for f in files if f.is_file())
    truncated = total > max_bytes
    if truncated:
        log_dir = result_dir / "log"
        files = [f for f in files if f.name in ALWAYS or log_dir in f.parents]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        budget = max_bytes
        for f in files:
            if not f.is_file():
                continue
            data = f.read_bytes()
            if truncated and len(data) > budget // 4:  # keep the end of oversized logs
                data = data[-(budget // 4) :]
            zf.writestr(str(f.relative_to(result_dir)), data)
        if truncated:
            zf.writestr("_truncated.txt", f"result directory was {total} bytes, over the {max_bytes} cap\n")
    return buf.getvalue(), truncated


def tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - max_bytes, 0))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
