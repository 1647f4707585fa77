"""Which GPUs of this machine are taken, by whom: a JSON table under an exclusive file lock.

Every process of a worker (the Celery main process that admits tasks, the pool processes that run
them) and every worker on the machine sharing one `HPO_WORKER_DIR` sees the same table, so two
trials never hold the same GPU. A grant records the Celery task id, the pid of the pool process
and, once the trial started, its process group. A grant whose pool process died is taken back only
when its trial's process group is gone too: a GPU is reused only after every process on it ended.
GPUs still holding memory after their trial ended can be put aside (`quarantine`) until a later
check finds them free.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.process import group_alive, pid_alive


@dataclass
class Grant:
    task_id: str
    gpus: list[str]
    pid: int | None = None  # the process that admitted it, then the pool process running the trial
    pgid: int | None = None  # the trial's process group, once started
    taken: bool = False  # a pool process runs it (before that, the worker's main process admitted it)


@dataclass
class Table:
    grants: dict[str, Grant] = field(default_factory=dict)
    quarantined: list[str] = field(default_factory=list)

    def busy(self) -> set[str]:
        return {g for grant in self.grants.values() for g in grant.gpus} | set(self.quarantined)


def _pid_alive(pid: int | None) -> bool:
    # None: admitted by the main process, not yet picked up by a pool process
    return pid is None or pid_alive(pid)


class GpuAllocator:
    """Grants disjoint sets of `gpu_ids`; safe across processes through `fcntl.flock`."""

    def __init__(self, path: Path, gpu_ids: list[str]) -> None:
        self.path = path
        self.gpu_ids = list(gpu_ids)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = path.with_suffix(".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Table]:
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                table = self._read()
                self._drop_dead(table)
                yield table
                self._write(table)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> Table:
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return Table()
        grants = {k: Grant(**v) for k, v in raw.get("grants", {}).items()}
        return Table(grants=grants, quarantined=list(raw.get("quarantined", [])))

    def _write(self, table: Table) -> None:
        tmp = self.path.with_suffix(".tmp")
        data = {"grants": {k: vars(g) for k, g in table.grants.items()}, "quarantined": table.quarantined}
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    @staticmethod
    def _drop_dead(table: Table) -> None:
        for task_id, grant in list(table.grants.items()):
            if not _pid_alive(grant.pid) and (grant.pgid is None or not group_alive(grant.pgid)):
                del table.grants[task_id]

    # --- the operations ---------------------------------------------------------------
    def acquire(self, task_id: str, count: int, pid: int | None = None) -> list[str] | None:
        """Admit `task_id`: the GPUs granted to it (the same when asked again), None when too few are free."""
        with self._locked() as table:
            grant = table.grants.get(task_id)
            if grant is not None:
                return list(grant.gpus)
            busy = table.busy()
            free = [g for g in self.gpu_ids if g not in busy]
            if count > len(free):
                return None
            table.grants[task_id] = Grant(task_id=task_id, gpus=free[:count], pid=pid)
            return free[:count]

    def take(self, task_id: str, count: int, pid: int) -> tuple[list[str], bool] | None:
        """A pool process takes the grant to run the task: (GPUs, True), granting it now if needed.

        (GPUs, False) when another live process already runs this task id (a redelivered copy of a
        running attempt: it will not run it, and must not give those GPUs back); None when too few
        GPUs are free.
        """
        with self._locked() as table:
            grant = table.grants.get(task_id)
            if grant is not None and grant.taken and grant.pid != pid:
                return list(grant.gpus), False
            if grant is None:
                busy = table.busy()
                free = [g for g in self.gpu_ids if g not in busy]
                if count > len(free):
                    return None
                grant = table.grants[task_id] = Grant(task_id=task_id, gpus=free[:count])
            grant.pid, grant.taken = pid, True
            return list(grant.gpus), True

    def started(self, task_id: str, pgid: int) -> None:
        with self._locked() as table:
            if task_id in table.grants:
                table.grants[task_id].pgid = pgid

    def release(
        self, task_id: str, still_in_use: Callable[[list[str]], list[str]] | None = None
    ) -> list[str]:
        """Give the grant back; GPUs that `still_in_use` names are quarantined. Returns those."""
        with self._locked() as table:
            grant = table.grants.pop(task_id, None)
            if grant is None:
                return []
            held = still_in_use(grant.gpus) if still_in_use else []
            table.quarantined = sorted(set(table.quarantined) | set(held))
            return held

    def recheck_quarantine(self, still_in_use: Callable[[list[str]], list[str]]) -> list[str]:
        """Free quarantined GPUs whose memory was released; the ones still held are returned."""
        with self._locked() as table:
            if table.quarantined:
                table.quarantined = sorted(still_in_use(table.quarantined))
            return list(table.quarantined)

    def snapshot(self) -> Table:
        with self._locked() as table:
            return table

    def free_count(self) -> int:
        with self._locked() as table:
            return len([g for g in self.gpu_ids if g not in table.busy()])
