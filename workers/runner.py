"""Run one trial attempt: directory, config.json, environment, subprocess, logs, metrics, report.

The process is `python main args` (mode "subprocess"), or with mode "forkserver" a fork of a
pre-warmed server (workers.forkserver) set up the same way; either leads its own process group.
With mode "function" the trial is a call of `main`'s function in the slot's function server
(workers/function_server.py), a process that stays for the next trial when this one went well.

Layout (WMLA §3.1), RESULT_DIR = <worker dir>/results/<user>/batchworkdir/<exec id>:
    _submitted_code/<model dir>/   the unpacked code; the process's cwd; config.json goes here
    log/stdout, log/stderr          LOG_DIR: the script's output
    checkpoint/                     CHECKPOINT_DIR
    val_dict_list.json              written by the script
The outcome goes back as a `finished` event on the experiment's stream; the zipped result
directory goes to Redis under `result_key`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis.exceptions import RedisError

from app.config import Settings
from app.keys import (
    claim_key,
    current_attempt_key,
    decode_stop,
    events_stream,
    lease_key,
    log_key,
    result_key,
    stop_key,
)
from app.messages import TrialEvent, TrialTask, publish_event
from workers import metrics
from workers.checkpoints import checkpoint_dir, restore, ship
from workers.codecache import CodeUnavailable, fetch_code
from workers.environment import cpu_count, scrub, secrets_of, trial_env
from workers.forkserver import FUNCTION_SCRIPT, ForkServerError, ForkServers, FunctionCall, unsupported
from workers.prespawn import Spares
from workers.process import GroupRegistry, Trial, spawn, stop_process, wait_exit
from workers.ready_dirs import ReadyDir
from workers.results import CODE_DIR, tail, zip_results
from workers.trash import Trash

log = logging.getLogger("hpo.worker")
T = TypeVar("T")
CLAIM_TTL_S = 30 * 86400
REFILL_AFTER_S = 0.05  # the next trial's spare interpreter and directory are made this long into a trial
HANDOVER_WAIT_S = 0.2  # at most this long for the background thread to hand a finished directory on
# KEYS: claim, stop flag, current attempt, lease, events stream. ARGV: token, claim TTL, attempt,
# worker, lease TTL, the encoded `started` event. The claim is ours also when a retried call's SET
# had succeeded before its reply was lost (the second call finds our token).
CLAIM_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local current = redis.call('GET', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 or (current and tonumber(current) > tonumber(ARGV[3])) then
  redis.call('DEL', KEYS[4])  -- ours, reserved with its bundle, but it is not to run
  return 0
end
redis.call('SET', KEYS[4], ARGV[4], 'EX', ARGV[5])
redis.call('XADD', KEYS[5], '*', 'e', ARGV[6])
return 1
"""

# A bundle's trials (KEYS: claim, lease of each), taken for this delivery (ARGV[1]) before the first
# runs: a worker that dies holding them leaves claimed trials whose leases lapse, which the
# coordinator runs again, instead of trials that wait in no queue. Each still starts through
# CLAIM_SCRIPT, which accepts its own token. Returns 1 for each trial taken, 0 for one held by
# another delivery.
RESERVE_SCRIPT = """
local taken = {}
for i = 1, #KEYS, 2 do
  redis.call('SET', KEYS[i], ARGV[1], 'NX', 'EX', ARGV[2])
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('SET', KEYS[i + 1], ARGV[3], 'EX', ARGV[4])
    taken[#taken + 1] = 1
  else
    taken[#taken + 1] = 0
  end
end
return taken
"""


@dataclass
class Ran:
    """An attempt whose process has ended: what its `finished` event is made of."""

    task: TrialTask
    result_dir: Path
    outcome: Outcome
    started: float
    ended: float
    made: tuple[Path, Path] | None = None  # (the code's cache copy, its config.json) once prepared
    results: str | None = None  # val_dict_list.json's text a function trial sent back (not on disk)


@dataclass
class Outcome:
    status: str  # ok | failed | stopped
    reason: str | None = None
    objective: float | None = None
    exit_code: int | None = None
    points: list[dict[str, Any]] | None = None
    summary: dict[str, Any] | None = None
    notes: list[str] | None = None


class TrialRunner:
    def __init__(
        self,
        settings: Settings,
        redis: Any,
        *,
        worker: str,
        slot: int = 0,
        slots: int = 1,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.worker = worker
        self.slot = slot
        self.slots = max(slots, 1)
        root = settings.effective_worker_dir.resolve()
        self.cache_dir = root / "code"
        self.results_fs = root / "results"
        self.registry = GroupRegistry(root / "pgids")
        self.trash = Trash(self.results_fs / ".trash")
        self._devices: list[str] = []
        self._on_spawn: Callable[[int], None] | None = None
        self._forkservers: ForkServers | None = None
        self._spares: Spares | None = None
        self._refill: str | None = None  # a spare to start (for this interpreter) while the trial runs
        self.ready_dir = ReadyDir(self.results_fs / ".ready", discard_dir=self.trash.discard)
        # (code id, code, its config.json's place in it): the next trial's directory
        self._next_dir: tuple[str, Path, str] | None = None
        self._claim_script = redis.register_script(CLAIM_SCRIPT)
        self._reserve_script = redis.register_script(RESERVE_SCRIPT)
        self._waiting: list[TrialTask] = []  # reserved trials of the running bundle, not started yet
        self._concluder: ThreadPoolExecutor | None = None  # see conclude_later
        self._concluding = 0  # attempts handed to it and not concluded yet
        self._concluded = threading.Condition()
        self._made: tuple[Path, Path] | None = None  # the current attempt's directory (Ran.made)
        self._results: str | None = None  # the current attempt's results, sent back (Ran.results)
        self._kept: set[int] = set()  # kept function processes, registered in `registry` until closed

    # --- the whole attempt -----------------------------------------------------------
    def run(
        self,
        task: TrialTask,
        devices: list[str] | None = None,
        on_spawn: Callable[[int], None] | None = None,
    ) -> TrialEvent | None:
        """Run the attempt on `devices` (its GPUs) and publish its events; None when it was not ours.

        `on_spawn` learns the trial's process group as soon as it exists.
        """
        ran = self.attempt(task, devices, on_spawn)
        return None if ran is None else self.conclude(ran)

    def new_token(self) -> str:
        """A delivery's claim token: a redelivered copy of the task has another."""
        return f"{self.worker}:{uuid.uuid4().hex}"

    def reserve(self, tasks: list[TrialTask], token: str) -> None:
        """Claim a bundle's trials for this delivery before the first runs (RESERVE_SCRIPT); their
        leases are renewed with the running trial's until each starts (`attempt` with `token`)."""
        keys: list[str] = []
        for t in tasks:
            keys += [claim_key(t.exec_id, t.attempt), lease_key(t.exec_id, t.attempt)]
        args = [token, CLAIM_TTL_S, self.worker, self._lease_ttl]
        taken = self._retrying(lambda: self._reserve_script(keys=keys, args=args), "bundle reservation")
        # only ours: the lease of a trial another delivery holds is that delivery's to keep or lose
        self._waiting = [t for t, ours in zip(tasks, taken, strict=True) if ours]

    def attempt(
        self,
        task: TrialTask,
        devices: list[str] | None = None,
        on_spawn: Callable[[int], None] | None = None,
        token: str | None = None,
    ) -> Ran | None:
        """Claim the attempt (with `token`: as reserved with its bundle), announce it and run its
        process to the end; None when it was not ours. Its `finished` event is what `conclude`
        (now or on the background thread) publishes."""
        self._devices = list(devices or [])
        self._on_spawn = on_spawn
        self._waiting = [t for t in self._waiting if t.exec_id != task.exec_id] if token else []
        token = self._token = token or self.new_token()
        started = time.time()
        if not self._retrying(lambda: self._claim(task, token, started), "claim"):
            return None  # not ours, cancelled or superseded (see _claim)
        result_dir = self.results_fs / (task.owner or "hpo") / "batchworkdir" / task.exec_id
        self._made = self._results = None
        try:
            outcome = self._execute(task, result_dir)
        except CodeUnavailable as exc:
            outcome = Outcome(status="failed", reason=str(exc))
        except Exception as exc:  # report anything unexpected instead of losing the attempt
            outcome = Outcome(status="failed", reason=f"worker error: {type(exc).__name__}: {exc}")
        return Ran(task, result_dir, outcome, started, time.time(), self._made, self._results)

    def conclude(self, ran: Ran) -> TrialEvent:
        """Zip the results and publish them with the `finished` event (one transaction)."""
        task, result_dir, outcome = ran.task, ran.result_dir, ran.outcome
        result = self._zip(task, result_dir, ran.results)
        log_dir = result_dir / "log"
        stderr_tail = tail(log_dir / "stderr", self.settings.log_tail_bytes)
        event = self._event(
            task,
            "finished",
            status=outcome.status,
            objective=outcome.objective,
            reason=_with_tail(outcome.reason, stderr_tail) if outcome.status == "failed" else outcome.reason,
            exit_code=outcome.exit_code,
            started_at=ran.started,
            ended_at=ran.ended,
            points=outcome.points or [],
            metrics_summary=outcome.summary,
            stdout_tail=tail(log_dir / "stdout", self.settings.log_tail_bytes),
            stderr_tail=stderr_tail,
            result_key=result[0] if result else None,
            notes=outcome.notes or [],
        )
        self._retrying(lambda: self._finish(event, result), f"finished event of {task.exec_id}")
        if not self.settings.keep_trial_dirs and not self._recycle(ran):
            self.trash.discard(result_dir)
        return event

    def _recycle(self, ran: Ran) -> bool:
        """The finished directory becomes the next trial's, when it can (workers.ready_dirs)."""
        if ran.made is None:
            return False
        code, config_file = ran.made
        return self.ready_dir.recycle(ran.task.code.sha256, code, ran.result_dir, config_file)

    def conclude_later(self, ran: Ran) -> None:
        """Conclude on this runner's background thread, in order, so the slot takes its next task
        while this one's results are zipped and published (a few ms between every two trials).
        The attempt's lease outlives that by far; were the process killed first, the lease would
        lapse and the coordinator would run the attempt again."""
        if self._concluder is None:
            self._concluder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpo-conclude")
        with self._concluded:
            self._concluding += 1
        self._concluder.submit(self._conclude_logged, ran)

    def _conclude_logged(self, ran: Ran) -> None:
        try:
            self.conclude(ran)
        except Exception:
            log.exception("could not publish the end of %s; its lease will lapse", ran.task.exec_id)
        finally:
            with self._concluded:
                self._concluding -= 1
                self._concluded.notify_all()

    def _await_handover(self, code_id: str) -> None:
        """With no directory of this code ready but a finished trial still being concluded, wait
        (up to HANDOVER_WAIT_S) for it to hand its directory on: after short trials the background
        thread can run a trial or two behind, and copying the code makes new files, which costs
        more than the wait."""
        with self._concluded:
            self._concluded.wait_for(
                lambda: self._concluding == 0 or self.ready_dir.ready_for(code_id), timeout=HANDOVER_WAIT_S
            )

    def drain(self) -> None:
        """Wait for the concludes handed to the background thread (before this process forks or exits)."""
        if self._concluder is not None:
            self._concluder.shutdown(wait=True)
            self._concluder = None

    def _event(self, task: TrialTask, kind: str, **fields: Any) -> TrialEvent:
        return TrialEvent(
            kind=kind,  # type: ignore[arg-type]
            experiment=task.experiment,
            trial_id=task.trial_id,
            exec_id=task.exec_id,
            attempt=task.attempt,
            worker=self.worker,
            **fields,
        )

    # --- preparing and running the process -------------------------------------------
    def _prepare(self, task: TrialTask, result_dir: Path) -> tuple[Path, dict[str, str], Path]:
        """(cwd, environment, the cwd's original in the code cache: where a function trial's
        module is imported from, the same for every trial of the code)."""
        if result_dir.exists():  # an earlier attempt on this machine: start clean
            shutil.rmtree(result_dir)
        code_root = result_dir / CODE_DIR
        code = self._retrying(lambda: fetch_code(self.redis, task.code, self.cache_dir), "code fetch")
        folder = _model_folder(code, task.model_dir)  # the copy's layout is the cache's
        config = os.path.join(folder, "config.json")
        self._await_handover(task.code.sha256)
        if not self.ready_dir.take(task.code.sha256, result_dir, config):  # made while the last trial ran
            shutil.copytree(code, code_root)
        self._next_dir = (task.code.sha256, code, config)
        cwd = code_root / folder
        if not (cwd / task.main).is_file():
            found = sorted(str(p.relative_to(code_root)) for p in code_root.rglob("*") if p.is_file())[:20]
            raise CodeUnavailable(
                f"model main {task.main!r} not found in the code archive (files: {', '.join(found)})"
            )
        (cwd / "config.json").write_text(json.dumps(task.params, indent=1))
        self._made = (code, cwd / "config.json")
        log_dir = result_dir / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        ckpt = checkpoint_dir(self.settings, task.experiment, task.checkpoint_key, result_dir)
        if task.checkpoint_key and not self.settings.shared_dir:
            lineage = task.checkpoint_key
            self._retrying(lambda: restore(self.redis, task.experiment, lineage, ckpt), "checkpoint fetch")
        data_fs = self.settings.effective_data_fs.resolve()
        user = task.owner or os.environ.get("USER", "hpo")
        wmla = {
            "RESULT_DIR": str(result_dir),
            "LOG_DIR": str(log_dir),
            "CHECKPOINT_DIR": str(ckpt),
            "DATA_DIR": str(data_fs / task.data_path if task.data_path else data_fs),
            "DLI_DATA_FS": str(data_fs),
            "DLI_RESULT_FS": str(self.results_fs),
            "DLI_EXECID": task.exec_id,
            "APP_ID": task.exec_id,
            "DLI_WORK_DIR": str(code_root),
            "MODEL_FILE_LOCATION": str(code_root),
            "USER": user,
            "DLI_SUBMIT_USERNAME": user,
        }
        env = trial_env(
            self._worker_env,
            secrets=(),
            wmla=wmla,
            cuda_visible_devices=",".join(self._devices),
            extra=task.env,
            threads=cpu_count() // self.slots,
        )
        return cwd, env, code / folder

    def _start(
        self, task: TrialTask, cwd: Path, env: dict[str, str], log_dir: Path, source_dir: Path
    ) -> tuple[Trial, list[str]]:
        """The trial's process: forked by a pre-warmed server (a call in the function server) when
        asked and possible (else noted), else a fresh interpreter, the spare one of this slot when
        there is one (workers.prespawn)."""
        python = self.settings.worker_python or sys.executable
        command = launch_command(python, task, len(self._devices))
        plain = command == [python, task.main, *task.args] and unsupported() is None
        out, err = log_dir / "stdout", log_dir / "stderr"
        notes: list[str] = []
        if task.mode in ("forkserver", "function"):
            function = None
            if task.mode == "function":
                function = (source_dir / task.main, task.function or "main", task.objective_metric)
            why = None if plain else (unsupported() or "a multi-GPU trial starts under torchrun")
            if why is None:
                try:
                    trial = self._start_in_server(task, python, cwd, env, out, err, function)
                    return trial, []
                except (ForkServerError, OSError) as exc:
                    why = str(exc)
            notes.append(f"{task.mode} mode unavailable ({why}); ran the trial as a subprocess")
            with err.open("a") as fh:
                fh.write(f"hpo: {notes[0]}\n")
            if function is not None:  # the same call, in a process of its own
                call = ["--call", task.main, function[1], function[2], *task.args]
                shim = task.model_copy(update={"main": str(FUNCTION_SCRIPT), "args": call})
                command = launch_command(python, shim, len(self._devices))
        elif plain and self.settings.prespawn:
            proc = self.spares.spawn(python, main=task.main, args=task.args, cwd=cwd, env=env,
                                     stdout=out, stderr=err)  # fmt: skip
            self._refill = python  # the next trial's spare, started once this trial is under way
            if proc is not None:
                # its /proc environ is the spare's: the registry knows it by its start time
                self.registry.add(proc.pid, task.exec_id, forked=True)
                return proc, notes
        self.drain()  # the fork runs preexec code: not beside our background thread
        proc = spawn(command, cwd=cwd, env=env, stdout=out, stderr=err)
        self.registry.add(proc.pid, task.exec_id)
        return proc, notes

    def _start_in_server(
        self,
        task: TrialTask,
        python: str,
        cwd: Path,
        env: dict[str, str],
        out: Path,
        err: Path,
        function: tuple[Path, str, str] | None,
    ) -> Trial:
        """A fork of the pre-warmed server, or with `function` a call in the function server: a
        fresh one for a trial with GPUs (one a CPU trial used imported the module without them)."""
        fresh = function is not None and bool(self._devices)
        if fresh or not self.forkservers.running(python, task.preload, function and function[0]):
            self.drain()  # starting a server forks with preexec code: not beside our background thread
        trial = self.forkservers.spawn(python, task.preload, main=task.main, args=task.args, cwd=cwd,
                                       env=env, stdout=out, stderr=err, function=function,
                                       fresh=fresh, results_file=self.settings.keep_trial_dirs,
                                       tick=lambda: self._renew_lease(task))  # fmt: skip
        if trial.pid not in self._kept:  # a kept function process is registered already
            self.registry.add(trial.pid, task.exec_id, forked=True)
        return trial

    def _unregister(self, pid: int) -> None:
        """A trial's group, or a kept function process (whatever closed it), is gone."""
        self.registry.remove(pid)
        self._kept.discard(pid)

    def _renew_lease(self, task: TrialTask) -> None:
        """While a forkserver imports its preload (seconds for torch): this attempt is alive."""
        with contextlib.suppress(RedisError):
            self.redis.set(lease_key(task.exec_id, task.attempt), self.worker, ex=self._lease_ttl)

    def _base_env(self) -> dict[str, str]:
        """The trials' environment before the trial's own part (WMLA variables, GPUs, spec env)."""
        return trial_env(
            self._worker_env,
            secrets=(),
            wmla={},
            cuda_visible_devices="",
            extra={},
            threads=cpu_count() // self.slots,
        )

    @functools.cached_property
    def _worker_env(self) -> dict[str, str]:
        """The worker's environment less our settings and secrets, read once: nothing changes it
        while the worker runs, and filtering it was most of what a trial's environment cost."""
        return scrub(os.environ, secrets_of([self.settings.broker_url, self.settings.database_url]))

    @property
    def forkservers(self) -> ForkServers:
        """This pool process's pre-warmed servers, started on first use, in the trials' base environment."""
        if self._forkservers is None:
            self._forkservers = ForkServers(self._base_env(), on_close=self._unregister)
        return self._forkservers

    @property
    def spares(self) -> Spares:
        """This pool process's spare interpreter for subprocess trials (workers.prespawn)."""
        if self._spares is None:
            self._spares = Spares(self._base_env())
        return self._spares

    def _execute(self, task: TrialTask, result_dir: Path) -> Outcome:
        cwd, env, source_dir = self._prepare(task, result_dir)
        log_dir = result_dir / "log"
        proc, notes = self._start(task, cwd, env, log_dir, source_dir)
        if self._on_spawn is not None:
            self._on_spawn(proc.pid)
        tracker = metrics.PointTracker(result_dir)
        keep = False  # a function server that served this trial well serves the next one
        try:
            with _kill_on_terminate(proc, self.settings.kill_grace_s):
                stopped, code = self._wait(task, proc, log_dir, tracker)
            keep = isinstance(proc, FunctionCall) and stopped is None and code == 0 and not self._devices
        finally:
            if isinstance(proc, FunctionCall) and not keep:
                stop_process(proc, 0.0)  # the call has ended or was stopped: the server and its group go
                proc.close_server()
            elif not keep:
                stop_process(proc, 0.5)  # leftovers of the group (e.g. data loader workers)
            if not keep:
                self._unregister(proc.pid)
        if isinstance(proc, FunctionCall):
            self._results = proc.results
        outcome = self._read_results(task, result_dir, code, self._results)
        if keep and outcome.status != "ok":  # e.g. no metrics: the next trial starts afresh too
            proc.close_server()  # type: ignore[attr-defined]
        elif keep:  # its registry entry (known by its start time) stays until it is closed
            self._kept.add(proc.pid)
        if stopped is not None:  # keep what it reported before it was stopped
            status = "failed" if stopped == "timeout" else "stopped"
            objective = self._partial_objective(task, result_dir) if status == "stopped" else None
            reason = _stop_reason(task, stopped)
            outcome = Outcome(status=status, reason=reason, exit_code=code, objective=objective,
                              points=outcome.points, summary=outcome.summary)  # fmt: skip
        outcome.notes = notes + self._ship_checkpoint(task, result_dir)
        return outcome

    @staticmethod
    def _partial_objective(task: TrialTask, result_dir: Path) -> float | None:
        try:
            points = metrics.load_points(result_dir)
            return metrics.reduce_objective(points, task.objective_metric, task.direction)
        except metrics.MetricsError:
            return None

    def _ship_checkpoint(self, task: TrialTask, result_dir: Path) -> list[str]:
        if not task.checkpoint_key or self.settings.shared_dir:
            return []
        folder = checkpoint_dir(self.settings, task.experiment, task.checkpoint_key, result_dir)
        note = self._retrying(
            lambda: ship(self.redis, task.experiment, task.checkpoint_key, folder,  # type: ignore[arg-type]
                         self.settings.checkpoint_max_bytes, self.settings.result_ttl_s),
            "checkpoint upload",
        )  # fmt: skip
        return [note] if note else []

    def _stream_points(self, task: TrialTask, tracker: metrics.PointTracker) -> None:
        """New evaluation points reach the coordinator while the trial runs (early stopping)."""
        now = time.monotonic()
        if now - self._last_points < self.settings.metrics_poll_s:
            return
        self._last_points = now
        fresh = tracker.poll()
        if fresh:
            publish_event(self.redis, self._event(task, "metric", points=fresh))

    @property
    def _lease_ttl(self) -> int:
        return max(math.ceil(self.settings.lease_timeout_s), 1)

    def _superseded(self, task: TrialTask) -> int | None:
        """The attempt that replaced this one, if the coordinator declared this one lost."""
        current = self.redis.get(current_attempt_key(task.exec_id))
        return int(current) if current is not None and int(current) > task.attempt else None

    def _heartbeat(self, task: TrialTask) -> int | None:
        """Renew the lease (and the claim, in case the broker restarted empty); say if superseded."""
        now = time.monotonic()
        if now - self._last_beat < self.settings.heartbeat_s:
            return None
        self._last_beat = now
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(lease_key(task.exec_id, task.attempt), self.worker, ex=self._lease_ttl)
            pipe.set(claim_key(task.exec_id, task.attempt), self._token, ex=CLAIM_TTL_S)
            for waiting in self._waiting:  # the bundle's reserved trials behind this one
                pipe.set(lease_key(waiting.exec_id, waiting.attempt), self.worker, ex=self._lease_ttl)
            pipe.execute()
        return self._superseded(task)

    def _claim(self, task: TrialTask, token: str, started: float) -> bool:
        """Take this attempt and, if taken, set its lease and append its `started` event, in one
        round trip (CLAIM_SCRIPT). False when it is not ours to run: a redelivery of an attempt
        someone already took, cancelled before it started (the coordinator recorded that), or
        replaced by a later attempt while it waited in the queue."""
        event = self._event(task, "started", started_at=started, gpus=self._devices)
        keys = [claim_key(task.exec_id, task.attempt), stop_key(task.exec_id),
                current_attempt_key(task.exec_id), lease_key(task.exec_id, task.attempt),
                events_stream(task.experiment)]  # fmt: skip
        args = [token, CLAIM_TTL_S, task.attempt, self.worker, self._lease_ttl, event.encode()["e"]]
        return bool(self._claim_script(keys=keys, args=args))

    def _retrying(self, call: Callable[[], T], what: str) -> T:
        """A broker call retried through an outage (up to HPO_PUBLISH_RETRY_S): work that was done,
        or a result that exists, must not be lost to a broker restart."""
        deadline = time.monotonic() + self.settings.publish_retry_s
        delay = 0.2
        while True:
            try:
                return call()
            except RedisError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("broker unreachable (%s); retrying the %s", exc, what)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _publish(self, event: TrialEvent) -> None:
        self._retrying(lambda: publish_event(self.redis, event), f"{event.kind} event of {event.exec_id}")

    def _share_logs(self, task: TrialTask, log_dir: Path) -> None:
        """Every few seconds, the tails of stdout/stderr go to Redis for `hpo logs --follow`."""
        now = time.monotonic()
        if now - self._last_log_share < self.settings.log_share_s:
            return
        self._last_log_share = now
        with self.redis.pipeline(transaction=False) as pipe:
            for stream in ("stdout", "stderr"):
                pipe.set(
                    log_key(task.exec_id, stream),
                    tail(log_dir / stream, self.settings.live_log_bytes),
                    ex=3600,
                )
            pipe.execute()

    def _wait(
        self, task: TrialTask, proc: Any, log_dir: Path, tracker: metrics.PointTracker
    ) -> tuple[str | None, int]:
        """(why it was stopped or None, exit code)."""
        self._last_log_share = self._last_points = self._last_beat = time.monotonic()
        deadline = time.monotonic() + task.timeout_s if task.timeout_s else None
        poll = max(self.settings.stop_poll_s, 0.05)
        if self._refill is not None or self._next_dir is not None:  # not at once: that would slow this start
            code = wait_exit(proc, REFILL_AFTER_S)
            self._make_ahead(running=code is None)
            if code is not None:
                return None, code
        while True:
            code = wait_exit(proc, poll)
            if code is not None:
                return None, code
            if deadline is not None and time.monotonic() > deadline:
                return "timeout", stop_process(proc, self.settings.kill_grace_s)
            try:  # a broker outage must not end a healthy trial: skip this round
                flag = self.redis.get(stop_key(task.exec_id))
                if flag is not None:
                    why, force = decode_stop(flag)
                    return why, stop_process(proc, 0.0 if force else self.settings.kill_grace_s)
                newer = self._heartbeat(task)
                if newer is not None:
                    return f"superseded by attempt {newer}", stop_process(proc, self.settings.kill_grace_s)
                self._share_logs(task, log_dir)
                self._stream_points(task, tracker)
            except RedisError as exc:
                log.warning("broker unreachable while running %s: %s", task.exec_id, exc)

    def _make_ahead(self, running: bool) -> None:
        """The next trial's spare interpreter, and its directory if this trial is still running
        (after one that ended at once, the next trial makes its own as it would anyway)."""
        if self._refill is not None:
            self.spares.refill(self._refill)
            self._refill = None
        if self._next_dir is not None and running:
            self.ready_dir.make(*self._next_dir)
        self._next_dir = None

    def _read_results(self, task: TrialTask, result_dir: Path, code: int, sent: str | None) -> Outcome:
        """The outcome from the results file, or from `sent` (a function trial's, not on disk)."""
        try:
            points = metrics.load_points(result_dir, sent)
        except metrics.MetricsError as exc:
            reason = f"training script exited with code {code}" if code != 0 else str(exc)
            return Outcome(status="failed", reason=reason, exit_code=code)
        rows, summary = metrics.point_rows(points), metrics.summarize(points)
        if code != 0:
            return Outcome(
                status="failed",
                reason=f"training script exited with code {code}",
                exit_code=code,
                points=rows,
                summary=summary,
            )
        try:
            objective = metrics.reduce_objective(points, task.objective_metric, task.direction)
        except metrics.MetricsError as exc:
            return Outcome(status="failed", reason=str(exc), exit_code=code, points=rows, summary=summary)
        return Outcome(status="ok", objective=objective, exit_code=code, points=rows, summary=summary)

    def _zip(self, task: TrialTask, result_dir: Path, results: str | None) -> tuple[str, bytes] | None:
        """The result directory zipped (size-capped), with `results` as its val_dict_list.json when
        it is not on disk, and the key it is uploaded under."""
        if not result_dir.exists():
            return None
        extra = {metrics.RESULTS_FILE: results.encode()} if results is not None else None
        data, _ = zip_results(result_dir, self.settings.result_max_bytes, extra)
        return result_key(task.exec_id, task.attempt), data

    def _finish(self, event: TrialEvent, result: tuple[str, bytes] | None) -> None:
        """The result upload and the `finished` event in one transaction: the event never names a
        result that is not there."""
        with self.redis.pipeline(transaction=True) as pipe:
            if result is not None:
                pipe.set(result[0], result[1], ex=self.settings.result_ttl_s)
            publish_event(pipe, event)
            pipe.execute()


@functools.lru_cache(maxsize=64)
def _model_folder(code: Path, model_dir: str | None) -> str:
    """The trial's working folder within its code ("" for the top): `model_dir` when the code has
    it, else the one folder the code holds, if that is all it holds (code in the cache never
    changes, so this is worked out once per code and model_dir)."""
    if model_dir and (code / model_dir).is_dir():
        folder = os.path.normpath(model_dir)
        return "" if folder == "." else folder
    entries = list(os.scandir(code))
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0].name
    return ""


def launch_command(python: str, task: TrialTask, gpus: int) -> list[str]:
    """`python main args`, or torchrun with one process per GPU for a multi-GPU trial."""
    if task.launcher == "torchrun" and max(gpus, task.gpus) > 1:
        nproc = max(gpus, task.gpus)
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                task.main, *task.args]  # fmt: skip
    return [python, task.main, *task.args]


def _stop_reason(task: TrialTask, why: str) -> str:
    if why == "timeout":
        return f"trial timed out after {task.timeout_s:g} s"
    return f"stopped: {why}"


def _with_tail(reason: str | None, stderr_tail: str, lines: int = 15) -> str | None:
    if reason is None or not stderr_tail.strip():
        return reason
    last = "\n".join(stderr_tail.rstrip().splitlines()[-lines:])
    return f"{reason}\n--- last lines of stderr ---\n{last}"


@contextlib.contextmanager
def _kill_on_terminate(proc: Any, grace_s: float):  # type: ignore[no-untyped-def]
    """If this worker process is told to terminate, take the trial's process group with it."""

    def handler(signum: int, _frame: Any) -> None:
        stop_process(proc, grace_s)
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
