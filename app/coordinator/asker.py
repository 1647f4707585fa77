"""Run optimizers' ask() off the coordinator loop when they are slow.

Cheap searchers answer inline. A `blocking` one (the GP) is pickled to a separate process, so a
fit of several seconds never stalls event handling or other experiments' dispatch; ask() does
not mutate the optimizer, so running it on a copy is exact.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

from app.optimizers import Optimizer
from app.space import Config


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _ask(optimizer: Optimizer, n: int, running: list[Config]) -> list[Config]:
    return optimizer.ask(n, running)


class Asker:
    def __init__(self, processes: int = 1) -> None:
        self.processes = max(processes, 1)
        self._pool: ProcessPoolExecutor | None = None
        self._threads: ThreadPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_sigint,
            )
        return self._pool

    def submit(self, optimizer: Optimizer, n: int, running: Sequence[Config]) -> Future[list[Config]]:
        if optimizer.blocking:
            return self._executor().submit(_ask, optimizer, n, list(running))
        if getattr(optimizer, "in_thread", False):  # waits on a process of its own (plugins)
            if self._threads is None:
                self._threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ask")
            return self._threads.submit(optimizer.ask, n, list(running))
        future: Future[list[Config]] = Future()
        try:
            future.set_result(optimizer.ask(n, list(running)))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        if self._pool is not None:
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:  # an ask in progress is abandoned, not awaited
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
            self._pool = None
