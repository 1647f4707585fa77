"""The function trial mode against the real runner, Redis and processes: each kind of return value
is the trial's result, a call gets the trial's cwd, argv, environment and logs, successful trials
share one process and its module state, and a failed, stopped, timed-out or GPU trial ends that
process so the next trial gets a fresh one; a killed worker takes the process along; the `--call`
shim runs the same call where the function process cannot be used."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

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
from workers.forkserver import FUNCTION_SCRIPT, ForkServers, FunctionCall
from workers.process import GroupRegistry
from workers.runner import TrialRunner

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "tests" / "fixtures" / "functions"
CALLABLES = "not_callable_helper, train"  # what the fixture module offers besides its data
GRACE_S = 10.0
BAD = ("hpo: train() returned str: return a number (the objective), a dict of metrics, a list of such "
       "dicts (one per epoch), or None")  # fmt: skip


@pytest.fixture()
def runner(tmp_path: Path, redis_url: str, redis_client: redis.Redis):  # type: ignore[no-untyped-def]
    settings = Settings(  # the grace is long: a stopped call must not wait for it (the call died at once)
        home=tmp_path, broker_url=redis_url, keep_trial_dirs=True, stop_poll_s=0.1, kill_grace_s=GRACE_S
    )
    trial_runner = TrialRunner(settings, redis_client, worker="fn/0")
    yield trial_runner
    trial_runner.forkservers.close()


def _task(redis_client: redis.Redis, name: str, behave: str = "ok", **fields: Any) -> TrialTask:
    params = {"x": 0.5, "behave": behave, **fields.pop("params", {})}
    base = dict(params=params, args=["--flag", "value"], mode="function", function="train")
    return trial_task(redis_client, FUNCTIONS, f"fn-{name}-{time.time_ns()}", **{**base, **fields})


def _warm_server(runner: TrialRunner, redis_client: redis.Redis) -> int:
    """Run one good trial; the pid of the function process that ran it (and stays)."""
    warm = _task(redis_client, "warm")
    assert runner.run(warm).status == "ok"
    return int(read_probe(runner, warm)["pid"])


def _next_trial(runner: TrialRunner, redis_client: redis.Redis, name: str) -> tuple[TrialTask, Any]:
    """Run a good trial after `name`'s; the task and what its call recorded."""
    after = _task(redis_client, f"after-{name}")
    assert runner.run(after).status == "ok"
    return after, read_probe(runner, after)


def _log(runner: TrialRunner, task: TrialTask, stream: str) -> str:
    return (trial_dir(runner, task) / "log" / stream).read_text()


def _results(runner: TrialRunner, task: TrialTask) -> Any:
    return json.loads((trial_dir(runner, task) / "val_dict_list.json").read_text())


def _streamed(runner: TrialRunner, task: TrialTask) -> list[Any]:
    lines = (trial_dir(runner, task) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


LIST = [{"steps": 1, "loss": 1.0}, {"steps": 2, "loss": 0.5}, {"steps": 3, "loss": 0.75}]


@pytest.mark.parametrize(
    ("behave", "direction", "objective", "written"),
    [
        ("ok", "minimize", 0.25, [{"loss": 0.25, "accuracy": 0.5}]),  # a dict: one point
        ("number", "minimize", 0.25, [{"loss": 0.25}]),  # a number: the objective metric
        ("numpy", "minimize", 0.25, [{"loss": 0.25}]),  # a numpy scalar: a plain number
        ("list", "minimize", 0.5, LIST),  # one point per epoch: the best one, not the last
        ("list", "maximize", 1.0, LIST),
        ("none", "minimize", 0.125, [{"loss": 0.125}]),  # None: the function wrote the file
        ("report", "minimize", 0.5, None),  # None: it reported points with hpo_report
    ],
)
def test_each_kind_of_return_value_is_the_trial_s_result(
    runner: TrialRunner,
    redis_client: redis.Redis,
    behave: str,
    direction: str,
    objective: float,
    written: Any,
) -> None:
    task = _task(redis_client, behave, behave, direction=direction)
    event = runner.run(task)
    assert event is not None and event.status == "ok", event.reason
    assert event.objective == pytest.approx(objective) and event.exit_code == 0 and event.notes == []
    if written is None:
        assert not (trial_dir(runner, task) / "val_dict_list.json").exists()
        written = [{"steps": 1, "loss": 1.0}, {"steps": 2, "loss": 0.5}]
        assert _streamed(runner, task) == written
    else:
        assert _results(runner, task) == written
    assert len(event.points) == len(written)
    assert read_probe(runner, task)["pid"] != os.getpid()  # called in the function process


def test_a_call_gets_the_trial_s_cwd_argv_environment_and_logs(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    tasks = [
        _task(redis_client, "env-a", env={"EXTRA": "a"}),
        _task(redis_client, "env-none", args=[]),
        _task(redis_client, "env-c", env={"EXTRA": "c"}, args=["--epochs", "two words"]),
    ]
    for task in tasks:
        assert runner.run(task).status == "ok"
    probes = [read_probe(runner, task) for task in tasks]
    assert len({p["pid"] for p in probes}) == 1  # one process served the three
    assert [p["extra"] for p in probes] == ["a", None, "c"]  # each call sees its own env only
    assert [p["argv"] for p in probes] == [["train.py", "--flag", "value"], ["train.py"],
                                           ["train.py", "--epochs", "two words"]]  # fmt: skip
    for probe, task in zip(probes, tasks, strict=True):
        assert probe["exec_id"] == probe["env"]["DLI_EXECID"] == task.exec_id
        assert probe["cwd"] == str(trial_dir(runner, task) / "_submitted_code" / "functions")
        assert probe["env"]["RESULT_DIR"] == str(trial_dir(runner, task))
        assert probe["name"] == "train"  # imported as its file's name: its __main__ block did not run
        assert probe["pgid"] == probe["pid"]  # the process leads its own group, as a trial does
        assert not [k for k in probe["env"] if k.startswith("HPO_")]
        # each trial's output in its own log files, nothing of the others'
        assert _log(runner, task, "stdout") == f"stdout of {task.exec_id}\n"
        assert _log(runner, task, "stderr") == f"stderr of {task.exec_id}\n"
    # the same environment a script of the same experiment gets, but for the per-trial part
    plain = _task(redis_client, "plain", mode="subprocess", function=None)
    assert runner.run(plain).status == "ok"
    script = read_probe(runner, plain)
    assert script["name"] == "__main__" and script["pid"] != probes[0]["pid"]
    same = {k: v for k, v in probes[1]["env"].items() if k not in PER_TRIAL_ENV}
    assert same == {k: v for k, v in script["env"].items() if k not in PER_TRIAL_ENV}


def _registered(runner: TrialRunner) -> list[int]:
    return sorted(int(p.name) for p in runner.registry.folder.iterdir())


def test_a_kept_process_leaves_the_registry_however_it_ends(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    """Registered while kept; gone from the registry when a GPU trial replaces it, when it died
    between trials, and when the pool process closes its servers: no stale entry is left."""
    first = _warm_server(runner, redis_client)
    assert _registered(runner) == [first]
    gpu = _task(redis_client, "gpu")
    assert runner.run(gpu, devices=["0"]).status == "ok"  # in a fresh process, which then ends
    assert read_probe(runner, gpu)["pid"] != first and not process_alive(first)
    assert _registered(runner) == []
    second = _warm_server(runner, redis_client)
    assert _registered(runner) == [second]
    os.kill(second, signal.SIGKILL)
    until(lambda: not process_alive(second), 5)
    _, probe = _next_trial(runner, redis_client, "death")
    assert _registered(runner) == [probe["pid"]] != [second]
    runner.forkservers.close()
    assert _registered(runner) == []


def test_successful_trials_share_one_process_and_its_module_state(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    kinds = ["ok", "number", "report", "list", "report", "none"]
    tasks = [_task(redis_client, f"reuse{i}", behave) for i, behave in enumerate(kinds)]
    for task in tasks:
        assert runner.run(task).status == "ok"
        # the kept process stays registered (for a restarted worker's kill_all) under its first trial
        (entry,) = runner.registry.folder.iterdir()
        assert entry.read_text().startswith(f"{tasks[0].exec_id}\nstart=")
    probes = [read_probe(runner, task) for task in tasks]
    pid = probes[0]["pid"]
    assert entry.name == str(pid)
    assert [p["pid"] for p in probes] == [pid] * 6 and pid != os.getpid()
    assert [p["calls"] for p in probes] == [1, 2, 3, 4, 5, 6]  # the module's globals lived on
    assert len(_streamed(runner, tasks[2])) == len(_streamed(runner, tasks[4])) == 2  # each its own
    assert {p["imported_with"] for p in probes} == {tasks[0].exec_id}  # imported once, by the first
    assert process_alive(pid)  # waiting for the next trial


def test_preload_is_imported_once_per_function_process(
    runner: TrialRunner, redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "preloads.txt"
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests" / "fixtures" / "prewarm_lib"))
    monkeypatch.setenv("PRELOAD_COUNTER", str(counter))
    tasks = [_task(redis_client, f"pre{i}", behave, preload=["hpo_preload_probe"])
             for i, behave in enumerate(["ok", "ok", "raise", "ok"])]  # fmt: skip
    assert [runner.run(task).status for task in tasks] == ["ok", "ok", "failed", "ok"]
    pids = [read_probe(runner, task)["pid"] for task in tasks]
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert [int(line.split()[0]) for line in counter.read_text().splitlines()] == [pids[0], pids[3]]
    bad = _task(redis_client, "badpreload", "number", preload=["no_such_module_hpo"])
    event = runner.run(bad)  # a preload that fails: the call runs in a subprocess of its own
    assert event.status == "ok" and event.objective == pytest.approx(0.25)
    assert (
        "function mode unavailable (preload of 'no_such_module_hpo' failed: ModuleNotFoundError"
        in event.notes[0]
    )
    assert read_probe(runner, bad)["calls"] == 1


@pytest.mark.parametrize(
    ("behave", "function", "code", "says"),
    [
        ("raise", "train", 1, "ValueError: bad config"),
        ("exit", "train", 3, None),
        ("bad", "train", 1, BAD),
        (
            "ok",
            "nope",
            1,
            f"hpo: train.py has no function 'nope' (model.function); callables there: {CALLABLES}",
        ),
    ],
)
def test_a_failed_trial_ends_its_process_and_the_next_trial_gets_a_fresh_one(
    runner: TrialRunner, redis_client: redis.Redis, behave: str, function: str, code: int, says: str | None
) -> None:
    server = _warm_server(runner, redis_client)
    task = _task(redis_client, behave, behave, function=function)
    event = runner.run(task)
    assert event.status == "failed" and event.exit_code == code
    assert event.reason.startswith(f"training script exited with code {code}")
    stderr = _log(runner, task, "stderr")
    if says is not None:
        assert stderr.rstrip().endswith(says) and says in event.reason
    if behave == "raise":  # the function's frames only, not the server's
        assert "Traceback (most recent call last):" in stderr
        assert 'train.py", line' in stderr and ", in train\n" in stderr
        assert "function_server" not in stderr and "importlib" not in stderr
    if function == "train":  # the failed call ran in the warm process
        assert read_probe(runner, task)["pid"] == server and read_probe(runner, task)["calls"] == 2
    assert not process_alive(server)  # ended (and reaped) with the trial
    assert list(runner.registry.folder.iterdir()) == []
    after, probe = _next_trial(runner, redis_client, behave)
    assert probe["pid"] != server and probe["calls"] == 1 and probe["imported_with"] == after.exec_id


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_cancel_and_timeout_end_the_process_and_its_group(
    runner: TrialRunner, redis_client: redis.Redis, how: str
) -> None:
    server = _warm_server(runner, redis_client)
    task = _task(redis_client, how, "sleep", timeout_s=1.0 if how == "timeout" else None)
    probe_file = trial_dir(runner, task) / "probe.json"
    asked = [time.monotonic() + 1.0]  # when the stop was asked for: the timeout, or the flag
    if how == "cancel":

        def stop_soon() -> None:
            until(probe_file.exists)
            asked[0] = time.monotonic()
            redis_client.set(stop_key(task.exec_id), "experiment stopped")

        threading.Thread(target=stop_soon, daemon=True).start()
    event = runner.run(task)
    # SIGTERM ends the call's process at once: its end is seen and reaped, not waited out
    assert time.monotonic() - asked[0] < GRACE_S / 2
    if how == "cancel":
        assert event.status == "stopped" and event.reason == "stopped: experiment stopped"
    else:
        assert event.status == "failed" and event.reason.startswith("trial timed out after 1 s")
    probe = json.loads(probe_file.read_text())
    assert probe["pid"] == server and probe["calls"] == 2
    assert not process_alive(server)
    until(lambda: not process_alive(probe["child"]), 5)  # what the call started went with it
    assert list(runner.registry.folder.iterdir()) == []
    _, probe = _next_trial(runner, redis_client, how)
    assert probe["pid"] != server and probe["calls"] == 1


def test_a_gpu_trial_gets_a_fresh_process_and_does_not_keep_it(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    server = _warm_server(runner, redis_client)
    gpu = _task(redis_client, "gpu")
    event = runner.run(gpu, devices=["0"])
    assert event.status == "ok" and event.objective == pytest.approx(0.25)
    probe = read_probe(runner, gpu)
    # not the CPU trial's process: its module was imported without GPUs
    assert probe["pid"] != server and probe["cuda"] == "0" and probe["calls"] == 1
    assert probe["imported_with"] == gpu.exec_id and not process_alive(server)
    gpu_server = probe["pid"]
    assert not process_alive(gpu_server)  # a CUDA context is not handed on
    _, probe = _next_trial(runner, redis_client, "gpu")
    assert probe["pid"] not in (server, gpu_server) and probe["calls"] == 1 and probe["cuda"] != "0"


@pytest.mark.parametrize(
    ("behave", "status", "code", "reason"),
    [
        ("die", "failed", 7, "training script exited with code 7"),  # its own exit status, not -9
        ("nometric", "failed", 0, "loss"),  # exit 0, but no objective: not kept either
    ],
)
def test_a_call_that_did_not_give_a_result_ends_its_process(
    runner: TrialRunner, redis_client: redis.Redis, behave: str, status: str, code: int, reason: str
) -> None:
    server = _warm_server(runner, redis_client)
    event = runner.run(_task(redis_client, behave, behave))
    assert event.status == status and event.exit_code == code and reason in event.reason
    assert not process_alive(server)
    _, probe = _next_trial(runner, redis_client, behave)
    assert probe["pid"] != server and probe["calls"] == 1


def test_closing_a_kept_process_takes_what_its_calls_left_running(
    runner: TrialRunner, redis_client: redis.Redis
) -> None:
    task = _task(redis_client, "spawn", "spawn")
    assert runner.run(task).status == "ok"
    probe = read_probe(runner, task)
    assert process_alive(probe["pid"]) and process_alive(probe["child"])  # kept, with its child
    runner.forkservers.close()  # as when the pool process ends or the server is evicted
    until(lambda: not process_alive(probe["child"]), 5)
    assert not process_alive(probe["pid"])


def test_the_experiment_s_pythonpath_reaches_the_call(
    runner: TrialRunner, redis_client: redis.Redis, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "fn_extra_module.py").write_text("VALUE = 0.375\n")
    task = _task(redis_client, "import", "import", env={"PYTHONPATH": str(extra)})
    event = runner.run(task)
    assert event.status == "ok" and event.objective == pytest.approx(0.375), event.reason


def test_falls_back_to_the_call_shim_in_a_subprocess_with_a_note(
    runner: TrialRunner, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "unsupported", lambda: "needs Linux; this is plan9")
    note = "function mode unavailable (needs Linux; this is plan9); ran the trial as a subprocess"
    tasks = [_task(redis_client, f"shim{i}", "number", env={"EXTRA": str(i)}) for i in range(2)]
    for task in tasks:
        event = runner.run(task)
        assert event.status == "ok" and event.objective == pytest.approx(0.25), event.reason
        assert event.notes == [note]
        assert _log(runner, task, "stderr") == f"hpo: {note}\nstderr of {task.exec_id}\n"
        assert _results(runner, task) == [{"loss": 0.25}]
    probes = [read_probe(runner, task) for task in tasks]
    assert probes[0]["pid"] != probes[1]["pid"] and [p["calls"] for p in probes] == [1, 1]
    assert [p["extra"] for p in probes] == ["0", "1"]
    for probe, task in zip(probes, tasks, strict=True):
        assert probe["argv"] == ["train.py", "--flag", "value"] and probe["name"] == "train"
        assert probe["cwd"] == str(trial_dir(runner, task) / "_submitted_code" / "functions")
    failing = _task(redis_client, "shim-raise", "raise")
    event = runner.run(failing)
    assert event.status == "failed" and event.exit_code == 1 and event.notes == [note]
    assert _log(runner, failing, "stderr").rstrip().endswith("ValueError: bad config")


@pytest.mark.parametrize(
    ("behave", "rank", "code", "written", "says"),
    [
        ("number", None, 0, [{"acc": 0.25}], None),
        ("list", "0", 0, LIST, None),
        ("number", "1", 0, None, None),  # under torchrun only rank 0 writes the results
        ("none", "1", 0, [{"loss": 0.125}], None),  # what the function wrote itself stays
        ("raise", None, 1, None, "ValueError: bad config"),
        ("exit", None, 3, None, None),
        ("bad", None, 1, None, BAD),
    ],
)
def test_the_call_shim_runs_one_trial_in_its_own_process(
    tmp_path: Path, behave: str, rank: str | None, code: int, written: Any, says: str | None
) -> None:
    code_dir, result_dir = tmp_path / "code", tmp_path / "result"
    code_dir.mkdir()
    result_dir.mkdir()
    shutil.copy(FUNCTIONS / "train.py", code_dir)
    (code_dir / "config.json").write_text(json.dumps({"x": 0.5, "behave": behave}))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "PYTHONPATH")}
    env.update(RESULT_DIR=str(result_dir), DLI_EXECID="shim-1", **({"RANK": rank} if rank else {}))
    done = subprocess.run(
        [sys.executable, str(FUNCTION_SCRIPT), "--call", "train.py", "train", "acc", "--a", "b"],
        cwd=code_dir, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    results = result_dir / "val_dict_list.json"
    assert (json.loads(results.read_text()) if results.exists() else None) == written
    probe = json.loads((result_dir / "probe.json").read_text())
    assert probe["argv"] == ["train.py", "--a", "b"] and probe["name"] == "train"
    assert probe["cwd"] == str(code_dir) and probe["calls"] == 1
    assert done.stdout == "stdout of shim-1\n"
    if says is not None:
        assert done.stderr.rstrip().endswith(says)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_worker_process_takes_its_function_process_along(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, signum: int
) -> None:
    # with SIGTERM, no child: its orphaned zombie would wait for init here, which can take a while
    warm = _task(redis_client, "warm")
    task = _task(redis_client, f"orphan{signum}", "sleep", params={"child": signum == signal.SIGKILL})
    home = tmp_path / "doomed"
    tasks = [warm.model_dump_json(), task.model_dump_json()]
    worker = subprocess.Popen([sys.executable, "-c", RUNNER_SCRIPT, str(home), redis_url, *tasks], cwd=ROOT)
    probe_file = home / "worker" / "results" / "hpo" / "batchworkdir" / task.exec_id / "probe.json"
    try:
        until(probe_file.exists, 60)
        probe = json.loads(probe_file.read_text())
        server = probe["pid"]
        assert probe["calls"] == 2 and server != worker.pid and process_alive(server)
        os.kill(worker.pid, signum)  # the pool process alone (the OOM killer, or a warm shutdown)
        killed = time.monotonic()
        assert worker.wait(timeout=10) == (-9 if signum == signal.SIGKILL else 128 + signal.SIGTERM)
        assert time.monotonic() - killed < 2.5  # not the runner's 5 s grace: the process ended at once
        until(lambda: not process_alive(server), 5)  # its parent-death signal, or the runner's stop
        if signum == signal.SIGKILL:  # what a restarted worker does about the call's children
            assert GroupRegistry(home / "worker" / "pgids").kill_all(grace_s=1.0) == [server]
            until(lambda: not process_alive(probe["child"]), 5)
        else:  # the runner stopped the trial and forgot its group
            assert list((home / "worker" / "pgids").iterdir()) == []
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.usefixtures("cpu_worker")
def test_an_experiment_in_function_mode_through_celery_and_the_coordinator(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "probes.jsonl"
    spec = quad_spec(
        model={"main": "train.py", "dir": "functions", "function": "train"},
        env={"PROBE_LOG": str(log)},
        max_trials=4,
        max_parallel=2,
    )
    assert spec.model.mode == "function"
    exp = submit_quad(store, spec, FUNCTIONS)
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    assert [t.state for t in trials] == [TrialState.FINISHED] * 4, [t.reason for t in trials]
    assert [t.notes for t in trials] == [None] * 4  # no fallback to a subprocess
    assert all(t.objective == pytest.approx(t.params["x"] ** 2) for t in trials)
    probes = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(p["exec_id"] for p in probes) == sorted(t.exec_id for t in trials)
    assert {p["name"] for p in probes} == {"train"}  # called, not run as a script
    assert len({p["pid"] for p in probes}) < 4  # 4 trials on 3 slots: a process served two
    assert store.experiment(exp.id).state == ExperimentState.FINISHED


@pytest.mark.parametrize(("behave", "written"), [("list", LIST), ("none", [{"loss": 0.125}])])
def test_what_a_function_returns_goes_to_the_archive_without_a_file_on_disk(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, behave: str, written: Any
) -> None:
    """Trial directories not kept: the returned value comes back over the pipe and is the archive's
    val_dict_list.json (a new file costs more than the rest of a short call); a function that wrote
    the file itself (returned None) is read from disk as before."""
    runner = TrialRunner(Settings(home=tmp_path, broker_url=redis_url), redis_client, worker="fn/9")
    try:
        ran = runner.attempt(_task(redis_client, f"archive-{behave}", behave))
        assert ran is not None and ran.outcome.status == "ok", ran and ran.outcome.reason
        on_disk = ran.result_dir / "val_dict_list.json"
        if behave == "none":
            assert ran.results is None and json.loads(on_disk.read_text()) == written
        else:
            assert not on_disk.exists() and json.loads(ran.results or "") == written
        assert [p["values"] for p in ran.outcome.points or []] == written
        event = runner.conclude(ran)
        archive = zipfile.ZipFile(io.BytesIO(redis_client.get(event.result_key or "") or b""))
        assert json.loads(archive.read("val_dict_list.json")) == written
        assert archive.namelist().count("val_dict_list.json") == 1
    finally:
        runner.forkservers.close()


def test_a_call_s_results_outlast_its_exit_code_being_collected(tmp_path: Path) -> None:
    """The runner collects the exit code with wait() (which forgets it) before it reads the results."""
    (tmp_path / "config.json").write_text(json.dumps({"behave": "number", "x": 3}))
    servers = ForkServers({**os.environ})
    try:
        call = servers.spawn(
            sys.executable, [], main="train.py", args=[], cwd=tmp_path,
            env={**os.environ, "RESULT_DIR": str(tmp_path)}, stdout=tmp_path / "out", stderr=tmp_path / "err",
            function=(FUNCTIONS / "train.py", "train", "loss"), results_file=False,
        )  # fmt: skip
        assert isinstance(call, FunctionCall) and call.wait(60) == 0
        assert json.loads(call.results or "") == [{"loss": 9}]
        assert call.results is None  # read once
        assert not (tmp_path / "val_dict_list.json").exists()
    finally:
        servers.close()
