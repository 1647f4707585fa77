"""Ship a trial's result directory back through Redis as a size-capped zip."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

from workers.metrics import RESULTS_FILE

CODE_DIR = "_submitted_code"
CHECKPOINT_DIR = "checkpoint"  # shipped separately (or not at all): not part of the results
ALWAYS = (RESULTS_FILE, "metrics.jsonl")


def _files(result_dir: Path) -> list[str]:
    """The result files, as paths relative to `result_dir` (strings: this runs for every trial)."""
    root = os.fspath(result_dir)
    out = []
    for folder, dirs, files in os.walk(root):
        if folder == root:
            dirs[:] = [d for d in dirs if d not in (CODE_DIR, CHECKPOINT_DIR)]
            out += files
        else:
            rel = os.path.relpath(folder, root)
            out += [os.path.join(rel, f) for f in files]
    return sorted(out)


def zip_results(
    result_dir: Path, max_bytes: int, extra: dict[str, bytes] | None = None
) -> tuple[bytes, bool]:
    """(zip bytes, truncated), with the `extra` files (name relative to the directory: content) in
    place of any on disk. Over the cap only the results file and the logs go in."""
    root = os.fspath(result_dir)
    extra = extra or {}
    sizes = {name: len(data) for name, data in extra.items()}
    for rel in _files(result_dir):
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and rel not in extra:
            sizes[rel] = st.st_size
    total = sum(sizes.values())
    truncated = total > max_bytes
    names = sorted(sizes)
    if truncated:
        names = [n for n in names if os.path.basename(n) in ALWAYS or n.startswith("log" + os.sep)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        budget = max_bytes
        for rel in names:
            try:
                data = extra[rel] if rel in extra else _read(os.path.join(root, rel))
            except OSError:
                continue
            if truncated and len(data) > budget // 4:  # keep the end of oversized logs
                data = data[-(budget // 4) :]
            zf.writestr(rel, data)
        if truncated:
            zf.writestr("_truncated.txt", f"result directory was {total} bytes, over the {max_bytes} cap\n")
    return buf.getvalue(), truncated


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - max_bytes, 0))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
