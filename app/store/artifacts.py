"""Where trial results (zipped result directories) are kept once they leave Redis."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Protocol

PACK = "results.pack"
# `<experiment>/results.pack@<offset>+<length>/<exec id>.attempt-<n>.zip`
PACKED_REF = re.compile(r"^(?P<folder>[^/]+)/results\.pack@(?P<offset>\d+)\+(?P<length>\d+)/[^/]+$")


class ArtifactStore(Protocol):
    def put_result(self, experiment: str, exec_id: str, attempt: int, data: bytes) -> str: ...

    def get_result(self, ref: str) -> bytes | None: ...

    def delete_experiment(self, experiment: str) -> None: ...


class FileArtifactStore:
    """One folder per experiment holding one append-only file, `results.pack`: each result is
    appended to it, and its reference names the byte range and the attempt
    (`exp/results.pack@0+1234/exp-0.attempt-1.zip`).

    Not a file per trial: on the disks we measured, making a file (a new inode) cost from tens of
    µs to nearly 1 ms of kernel CPU, up to more than the rest of what the coordinator does for a
    trial (docs/benchmarks.md); appending to a file costs microseconds. A reference is stored only
    after its bytes are written, so a crash mid-write leaves unreferenced bytes at the end, never a
    reference to a partial result. One writer per experiment (its coordinator). References of the
    older layouts (`<exp>/<exec id>.attempt-<n>.zip`, `<exec id>/attempt-<n>/result.zip`) are
    still read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put_result(self, experiment: str, exec_id: str, attempt: int, data: bytes) -> str:
        folder = self.root / experiment
        try:
            fd = os.open(folder / PACK, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / PACK, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            offset = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return f"{experiment}/{PACK}@{offset}+{len(data)}/{exec_id}.attempt-{attempt}.zip"

    def get_result(self, ref: str) -> bytes | None:
        packed = PACKED_REF.match(ref)
        path = (self.root / (f"{packed['folder']}/{PACK}" if packed else ref)).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return None
        if packed is None:
            return path.read_bytes()
        offset, length = int(packed["offset"]), int(packed["length"])
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        return data if len(data) == length else None

    def delete_experiment(self, experiment: str) -> None:
        folder = (self.root / experiment).resolve()
        if self.root.resolve() in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)
