"""Where trial results (zipped result directories) are kept once they leave Redis."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol


class ArtifactStore(Protocol):
    def put_result(self, experiment: str, exec_id: str, attempt: int, data: bytes) -> str: ...

    def get_result(self, ref: str) -> bytes | None: ...

    def delete_experiment(self, experiment: str) -> None: ...


class FileArtifactStore:
    """`<root>/<experiment>/<exec id>.attempt-<n>.zip`, written atomically. One folder per experiment,
    not per trial: making two folders per trial cost more than writing its zip. References of the
    older layout (`<exec id>/attempt-<n>/result.zip`) are still read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put_result(self, experiment: str, exec_id: str, attempt: int, data: bytes) -> str:
        folder = self.root / experiment
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{exec_id}.attempt-{attempt}.zip"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return str(path.relative_to(self.root))

    def get_result(self, ref: str) -> bytes | None:
        path = (self.root / ref).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return None
        return path.read_bytes()

    def delete_experiment(self, experiment: str) -> None:
        folder = (self.root / experiment).resolve()
        if self.root.resolve() in folder.parents:
            shutil.rmtree(folder, ignore_errors=True)
