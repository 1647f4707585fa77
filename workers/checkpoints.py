"""Checkpoints shared by the rungs of one configuration (Hyperband), with or without a shared FS.

With HPO_SHARED_DIR every machine sees `<shared>/checkpoints/<experiment>/<lineage>` and nothing
is copied. Without it, the directory is zipped into Redis after each rung (if under the cap) and
unpacked before the next one, wherever that runs; over the cap, the next rung starts fresh and the
trial says so in its notes.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from app.config import Settings
from app.keys import checkpoint_key


def checkpoint_dir(settings: Settings, experiment: str, lineage: str | None, result_dir: Path) -> Path:
    if lineage and settings.shared_dir:
        folder = Path(settings.shared_dir) / "checkpoints" / experiment / lineage
    else:
        folder = result_dir / "checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def restore(redis: Any, experiment: str, lineage: str, folder: Path) -> bool:
    """Unpack the configuration's last checkpoint into `folder`; False when there is none."""
    data = redis.get(checkpoint_key(experiment, lineage))
    if not data:
        return False
    root = folder.resolve()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for member in zf.infolist():
            target = (folder / member.filename).resolve()
            if root != target and root not in target.parents:  # written by us, but never trust paths
                continue
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(member))
    return True


def ship(redis: Any, experiment: str, lineage: str, folder: Path, max_bytes: int, ttl_s: int) -> str | None:
    """Zip `folder` into Redis for the next rung; a note when it could not be shipped."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    if not files:
        return None
    size = sum(p.stat().st_size for p in files)
    if size > max_bytes:
        cap = f"the {max_bytes}-byte cap"
        return f"checkpoint of {size} bytes over {cap}: not shipped, the next rung starts fresh"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            zf.write(p, str(p.relative_to(folder)))
    redis.set(checkpoint_key(experiment, lineage), buf.getvalue(), ex=ttl_s)
    return None
