"""The forkserver trial mode against the real runner, Redis and processes: a forked trial gets what a
subprocess trial gets, the preload runs once per worker process, crashes, cancel, timeout and a
killed worker behave as in subprocess mode, and the mode falls back to a subprocess when it cannot
work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from app.config import Settings
from app.keys import stop_key
from app.messages import TrialTask
from app.store.models import ExperimentState, TrialState
from app.store.repository import Store
from tests.helpers import (
    PER_TRIAL_ENV,
    RUNNER_SCRIPT,
    drive,
    process_alive,
    quad_spec,
    read_probe,
    submit_quad,
    trial_dir,
    trial_task,
    until,
)
from workers import runner as runner_module
from workers.forkserver import ForkServers
from workers.process import GroupRegistry
from workers.runner import TrialRunner

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture()
def counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The preload probe module is importable by the server; each import adds a line here."""
    path = tmp_path / "preloads.txt"
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES / "prewarm_lib"))
    monkeypatch.setenv("PRELOAD_COUNTER", str(path))
    return path


@pytest.fixture()
def runner(tmp_path: Path, redis_url: str, redis_client: redis.Redis, counter: Path):  # type: ignore[no-untyped-def]
    settings = Settings(
        home=tmp_path, broker_url=redis_url, keep_trial_dirs=True, stop_poll_s=0.1, kill_grace_s=1.0
    )
    trial_runner = TrialRunner(settings, redis_client, worker="fork/0")
    yield trial_runner
    trial_runner.forkservers.close()


def _task(redis_client: redis.Redis, name: str, **fields) -> TrialTask:  # type: ignore[no-untyped-def]
    base = dict(params={"x": 0.5}, args=["--flag", "value"], mode="forkserver", preload=["hpo_preload_probe"])
    exec_id = f"fork-{name}-{time.time_ns()}"
    return trial_task(redis_client, FIXTURES / "prewarm", exec_id, **{**base, **fields})


def test_a_forked_trial_reports_its_metric_and_gets_what_a_subprocess_gets(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    forked = _task(redis_client, "ok")
    event = runner.run(forked)
    assert event is not None and event.status == "ok", event.reason
    assert event.objective == pytest.approx(0.25) and event.exit_code == 0
    assert event.notes == []
    plain = _task(redis_client, "plain", mode="subprocess", preload=[])
    assert runner.run(plain).status == "ok"
    fp, sp = read_probe(runner, forked), read_probe(runner, plain)
    assert fp["preloaded"] and not sp["preloaded"]
    assert fp["ppid"] != os.getpid() and sp["ppid"] == os.getpid()  # forked by the server
    for probe, task in ((fp, forked), (sp, plain)):
        assert probe["pgid"] == probe["pid"] == probe["sid"]  # its own session and group
        assert probe["argv"] == ["train.py", "--flag", "value"]
        assert probe["name"] == "__main__" and probe["stdin"] == "/dev/null"
        assert probe["cwd"] == str(trial_dir(runner, task) / "_submitted_code" / "prewarm")
        assert probe["path0"] == probe["cwd"] and probe["file"] == f"{probe['cwd']}/train.py"
        assert probe["env"]["RESULT_DIR"] == str(trial_dir(runner, task))
        assert not [k for k in probe["env"] if k.startswith("HPO_")]
        assert "probe written" in (trial_dir(runner, task) / "log" / "stdout").read_text()
    same = {k: v for k, v in fp["env"].items() if k not in PER_TRIAL_ENV}
    assert same == {k: v for k, v in sp["env"].items() if k not in PER_TRIAL_ENV}


def test_preload_runs_once_for_three_trials(
    runner: TrialRunner, redis_client: redis.Redis, counter: Path
) -> None:
    probes = []
    for i in range(3):
        task = _task(redis_client, f"once{i}", preload=["hpo_preload_probe", "numpy"])
        assert runner.run(task).status == "ok"
        probes.append(read_probe(runner, task))
    assert len(counter.read_text().splitlines()) == 1
    assert len({p["ppid"] for p in probes}) == 1 and len({p["pid"] for p in probes}) == 3
    assert all(p["preloaded"] for p in probes)
    assert len({p["draw"] for p in probes}) == 3  # numpy's global generator is reseeded per trial
    other = _task(redis_client, "other", preload=["hpo_preload_probe"])  # another preload list
    assert runner.run(other).status == "ok"
    assert len(counter.read_text().splitlines()) == 2


def test_a_crashing_script_fails_with_its_traceback(runner: TrialRunner, redis_client: redis.Redis) -> None:
    task = _task(redis_client, "crash", params={"mode": "crash"})
    event = runner.run(task)
    assert event.status == "failed" and event.exit_code == 1
    stderr = (trial_dir(runner, task) / "log" / "stderr").read_text()
    assert stderr.startswith("Traceback (most recent call last):")
    assert 'train.py", line' in stderr and "in fail_deeply" in stderr
    assert stderr.rstrip().endswith("RuntimeError: deliberate crash in the trial")
    assert "runpy" not in stderr and "forkserver" not in stderr  # only the script's frames
    assert "RuntimeError: deliberate crash" in event.reason
    event = runner.run(_task(redis_client, "exit", params={"mode": "exit", "code": 7}))
    assert event.status == "failed" and event.exit_code == 7


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_kill_the_trial_s_whole_group(
    runner: TrialRunner, redis_client: redis.Redis, how: str
) -> None:
    task = _task(redis_client, how, params={"mode": "hang"}, timeout_s=2.0 if how == "timeout" else None)
    pids_file = trial_dir(runner, task) / "pids.json"
    if how == "cancel":

        def stop_soon() -> None:
            until(pids_file.exists)
            redis_client.set(stop_key(task.exec_id), "experiment stopped")

        threading.Thread(target=stop_soon, daemon=True).start()
    started = time.monotonic()
    event = runner.run(task)
    assert time.monotonic() - started < 15
    if how == "cancel":
        assert event.status == "stopped" and event.reason == "stopped: experiment stopped"
    else:
        assert event.status == "failed" and event.reason.startswith("trial timed out after 2 s")
    pids = json.loads(pids_file.read_text())
    until(lambda: not process_alive(pids["trial"]) and not process_alive(pids["child"]), 5)
    assert list(runner.registry.folder.iterdir()) == []
    assert runner.run(_task(redis_client, f"after-{how}")).status == "ok"  # the server lives on


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_worker_process_takes_its_forked_trials_along(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, counter: Path, signum: int
) -> None:
    task = _task(redis_client, f"orphan{signum}", params={"mode": "hang"})
    home = tmp_path / "doomed"
    worker = subprocess.Popen(
        [sys.executable, "-c", RUNNER_SCRIPT, str(home), redis_url, task.model_dump_json()], cwd=ROOT
    )
    pids_file = home / "worker" / "results" / "hpo" / "batchworkdir" / task.exec_id / "pids.json"
    try:
        until(pids_file.exists, 60)
        pids = json.loads(pids_file.read_text())
        server = int(Path(f"/proc/{pids['trial']}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert server != worker.pid and process_alive(server)
        os.kill(worker.pid, signum)  # the pool process alone (the OOM killer, or a warm shutdown)
        assert worker.wait(timeout=10) == (-9 if signum == signal.SIGKILL else 128 + signal.SIGTERM)
        # parent-death signals
        until(lambda: not process_alive(server) and not process_alive(pids["trial"]), 5)
        if signum == signal.SIGKILL:  # what a restarted worker does about the trial's other processes
            assert GroupRegistry(home / "worker" / "pgids").kill_all(grace_s=1.0) == [pids["trial"]]
        until(lambda: not process_alive(pids["child"]), 5)  # SIGTERM: the runner stopped the whole group
    finally:
        worker.kill()
        worker.wait()


def test_a_dead_server_is_restarted(runner: TrialRunner, redis_client: redis.Redis, counter: Path) -> None:
    first = _task(redis_client, "first")
    assert runner.run(first).status == "ok"
    os.kill(read_probe(runner, first)["ppid"], signal.SIGKILL)
    second = _task(redis_client, "second")
    assert runner.run(second).status == "ok"
    assert read_probe(runner, second)["ppid"] != read_probe(runner, first)["ppid"]
    assert len(counter.read_text().splitlines()) == 2


def test_falls_back_to_a_subprocess_with_a_line_in_the_log(
    runner: TrialRunner, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, counter: Path
) -> None:
    bad = ["hpo_preload_probe", "no_such_module_hpo"]
    task = _task(redis_client, "badpreload", preload=bad)
    event = runner.run(task)
    assert event.status == "ok" and read_probe(runner, task)["ppid"] == os.getpid()
    stderr = (trial_dir(runner, task) / "log" / "stderr").read_text()
    assert (
        "forkserver mode unavailable (preload of 'no_such_module_hpo' failed: ModuleNotFoundError" in stderr
    )
    assert event.notes and "ran the trial as a subprocess" in event.notes[0]
    again = runner.run(_task(redis_client, "badpreload2", preload=bad))
    assert again.status == "ok" and again.notes == event.notes
    assert len(counter.read_text().splitlines()) == 1  # a failed preload is not tried again
    monkeypatch.setattr(runner_module, "unsupported", lambda: "needs Linux; this is plan9")
    task = _task(redis_client, "nolinux")
    event = runner.run(task)
    assert event.status == "ok" and read_probe(runner, task)["ppid"] == os.getpid()
    assert "forkserver mode unavailable (needs Linux; this is plan9)" in event.notes[0]


@pytest.mark.usefixtures("cpu_worker")
def test_an_experiment_in_forkserver_mode_through_celery_and_the_coordinator(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "probes.jsonl"
    spec = quad_spec(
        model={"main": "train.py", "dir": "prewarm", "mode": "forkserver", "preload": ["xml.dom.minidom"]},
        env={"PROBE_LOG": str(log), "PROBE_MODULES": "xml.dom.minidom"},
        max_trials=4,
        max_parallel=2,
    )
    exp = submit_quad(store, spec, FIXTURES / "prewarm")
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    assert [t.state for t in trials] == [TrialState.FINISHED] * 4
    assert [t.notes for t in trials] == [None] * 4  # no fallback to a subprocess
    probes = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(p["exec"] for p in probes) == sorted(t.exec_id for t in trials)
    assert all(p["preloaded"] == ["xml.dom.minidom"] for p in probes)  # imported by the server
    assert store.experiment(exp.id).state == ExperimentState.FINISHED


def test_the_registry_knows_a_live_forked_trial_by_its_start_time(tmp_path: Path) -> None:
    """A forked trial's /proc environ is the server's (no DLI_EXECID): the registry records the
    leader's start time so that `hpo run` and a restarted worker can still kill it."""
    servers = ForkServers({**os.environ, "PYTHONPATH": ""})
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    env = {**os.environ, "DLI_EXECID": "exp-7"}
    try:
        out, err = tmp_path / "out", tmp_path / "err"
        trials = [
            servers.spawn(
                sys.executable, [], main="sleep.py", args=[], cwd=tmp_path, env=env, stdout=out, stderr=err
            )
            for _ in range(2)
        ]
        until(lambda: all(os.getpgid(t.pid) == t.pid for t in trials))  # their setsid, just after the fork
        marked, unmarked = (GroupRegistry(tmp_path / name) for name in ("marked", "unmarked"))
        marked.add(trials[0].pid, "exp-7", forked=True)
        unmarked.add(trials[1].pid, "exp-7")
        assert unmarked.kill_all(grace_s=1.0) == [] and trials[1].poll() is None
        assert marked.kill_all(grace_s=1.0) == [trials[0].pid]
        assert trials[0].wait(timeout=5) == -signal.SIGTERM
    finally:
        servers.close()
