"""Shared test helpers: build specs, submit and drive experiments with a real coordinator."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
import yaml

from app.codepack import pack_directory, sha256
from app.config import Settings
from app.coordinator.dispatch import Publisher
from app.coordinator.loop import Coordinator
from app.keys import code_key
from app.messages import CodeRef, TrialTask
from app.optimizers.base import Optimizer
from app.services.experiments import submit
from app.space import Config
from app.spec import ExperimentSpec, parse_spec
from app.store.artifacts import FileArtifactStore
from app.store.models import Experiment, Trial
from app.store.repository import Store
from workers.celery_app import make_celery
from workers.runner import TrialRunner

FIXTURES = Path(__file__).parent / "fixtures"
QUAD = FIXTURES / "quad"


def quad_spec(**overrides: Any) -> ExperimentSpec:
    """A native spec over the quad fixture; keyword arguments override top-level keys."""
    return parse_spec(quad_spec_data(**overrides))


def quad_spec_file(path: Path, **overrides: Any) -> Path:
    """The same spec as a YAML file, for the client and the CLI."""
    path.write_text(yaml.safe_dump(quad_spec_data(**overrides)))
    return path


def quad_spec_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": {"main": "train.py", "args": ["--flag", "value with space"]},
        "algorithm": {"name": "random", "seed": 1},
        "objective": {"metric": "loss", "direction": "minimize"},
        "max_trials": 6,
        "max_parallel": 2,
        "space": {
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "y": {"type": "float", "low": 0.0, "high": 1.0},
            "c": {"type": "categorical", "choices": ["a", "b"]},
        },
    }
    data.update(overrides)
    return data


def submit_quad(store: Store, spec: ExperimentSpec, code_dir: Path = QUAD) -> Experiment:
    top = spec.model.model_dir or "quad"
    spec = spec.with_model_dir(top)
    return submit(store, spec, pack_directory(code_dir, top), f"{top}.modelDir.tar")


def make_coordinator(store: Store, settings: Settings, only: Sequence[int] | None = None) -> Coordinator:
    assert settings.broker_url
    client = redis.Redis.from_url(settings.broker_url)
    publisher = Publisher(make_celery(settings.broker_url, include_tasks=False), client, store)
    return Coordinator(
        store, client, publisher, FileArtifactStore(settings.artifacts_dir), settings, only=only
    )


def drive(
    store: Store, settings: Settings, experiment_ids: Sequence[int], timeout_s: float = 90
) -> Coordinator:
    """Run a coordinator until every listed experiment ended; fail loudly on a timeout."""
    coord = make_coordinator(store, settings, experiment_ids)
    deadline = time.monotonic() + timeout_s
    try:
        coord.run(
            should_stop=lambda: set(experiment_ids) <= set(coord.finished) or time.monotonic() > deadline
        )
    finally:
        coord.close()
    missing = set(experiment_ids) - set(coord.finished)
    if missing:
        states = {i: (store.experiment(i).state, store.trial_counts(i)) for i in missing}  # type: ignore[union-attr]
        raise TimeoutError(f"experiments did not finish in {timeout_s}s: {states}")
    return coord


def max_concurrency(trials: Sequence[Trial], since: str = "started_at") -> int:
    """Largest number of trials whose [started_at, ended_at] intervals overlap (`since="created_at"`:
    trials in flight, queued or running)."""
    edges = []
    for t in trials:
        first = getattr(t, since)
        if first and t.ended_at:
            edges += [(first.timestamp(), 1), (t.ended_at.timestamp(), -1)]
    level = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):
        level += delta
        peak = max(peak, level)
    return peak


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line, environment or cwd mention `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except (OSError, ValueError):
            continue
        if state == "Z":
            continue
        if text in cmdline or text in environ or text in cwd:
            found.append((int(entry.name), cmdline))
    return found


def kill_all(pids: Sequence[tuple[int, str]]) -> None:
    for pid, _ in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class SlowOptimizer(Optimizer):
    """Random proposals after a long think: stands in for a GP fit in isolation tests."""

    name = "slow"
    blocking = True
    think_s = 4.0

    def ask(self, n: int, running: Sequence[Config] = ()) -> list[Config]:
        time.sleep(self.think_s)
        return [self.space.sample(self.rng_for(len(self.proposed) + i)) for i in range(n)]


def trial_task(redis_client: redis.Redis, folder: Path, exec_id: str, **fields: Any) -> TrialTask:
    """A task for the code in `folder` (uploaded to Redis as a coordinator would) running its train.py."""
    data = pack_directory(folder, folder.name)
    digest = sha256(data)
    redis_client.hset(code_key(digest), mapping={"filename": f"{folder.name}.modelDir.tar", "data": data})
    base: dict[str, Any] = dict(
        experiment=exec_id,
        trial_id=1,
        exec_id=exec_id,
        number=0,
        attempt=1,
        params={},
        code=CodeRef(sha256=digest, filename=f"{folder.name}.modelDir.tar"),
        main="train.py",
        model_dir=folder.name,
        objective_metric="loss",
    )
    base.update(fields)
    return TrialTask(**base)


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# --- trial runners on their own (tests of the trial modes) -------------------------------------
# Environment variables that differ between two trials of one runner; everything else must not.
PER_TRIAL_ENV = ("RESULT_DIR", "LOG_DIR", "CHECKPOINT_DIR", "DLI_EXECID", "APP_ID", "DLI_WORK_DIR",
                 "MODEL_FILE_LOCATION")  # fmt: skip
# `python -c RUNNER_SCRIPT HOME BROKER_URL TASK_JSON...`: a worker pool process stand-in that runs
# the tasks in order with a TrialRunner (for killing it while a trial runs).
RUNNER_SCRIPT = """
import sys
import redis
from app.config import Settings
from app.messages import TrialTask
from workers.runner import TrialRunner
settings = Settings(home=sys.argv[1], broker_url=sys.argv[2], keep_trial_dirs=True)
runner = TrialRunner(settings, redis.Redis.from_url(sys.argv[2]), worker="doomed/0")
for raw in sys.argv[3:]:
    runner.run(TrialTask.model_validate_json(raw))
"""


def until(condition: Any, timeout_s: float = 20.0) -> None:
    """Wait for `condition()` to be true; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def trial_dir(runner: TrialRunner, task: TrialTask) -> Path:
    """RESULT_DIR of a trial `runner` ran."""
    return runner.results_fs / (task.owner or "hpo") / "batchworkdir" / task.exec_id


def read_probe(runner: TrialRunner, task: TrialTask) -> dict[str, Any]:
    """What tests/fixtures/prewarm/train.py recorded about how it was started."""
    return json.loads((trial_dir(runner, task) / "probe.json").read_text())
