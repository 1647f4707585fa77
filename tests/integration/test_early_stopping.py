"""Schedulers on running trials, end to end: real worker, streamed metrics, real process kills."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from app.config import Settings
from app.schedulers import Decision
from app.schedulers.asha import ASHA
from app.spec.model import SchedulerSpec
from app.store.artifacts import FileArtifactStore
from app.store.models import TrialState
from app.store.repository import Store
from tests.helpers import FIXTURES, drive, quad_spec, submit_quad

pytestmark = pytest.mark.usefixtures("cpu_worker")
CURVE = FIXTURES / "curve"
QS = [0.5, 0.1, 0.9, 0.3, 0.8, 0.2, 0.95, 0.4, 0.85, 0.05, 0.7, 0.6]
ASHA_SPEC = SchedulerSpec(type="asha", resource="epochs", max=9, eta=3, grace=1)


def _spec(scheduler: SchedulerSpec, parallel: int, report: str = "jsonl", pause: float = 0.4, qs=QS):  # type: ignore[no-untyped-def]
    experiments = [{"q": q, "pause": pause, "report": report} for q in qs]
    spec = quad_spec(algorithm="grid", experiments=experiments, max_trials=None, max_parallel=parallel)
    return spec.model_copy(update={"scheduler": scheduler})


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_asha_stops_exactly_the_trials_it_should(store: Store, settings: Settings) -> None:
    """One slot: the arrival order is the trial order, so an offline ASHA fed the stored points
    must make the same decisions the coordinator made while the trials ran."""
    exp = submit_quad(store, _spec(ASHA_SPEC, parallel=1, pause=0.3, qs=QS[:9]), CURVE)
    drive(store, settings, [exp.id], timeout_s=120)
    trials = store.trials(exp.id)
    offline = ASHA(ASHA_SPEC)
    expected_stopped = set()
    for t in trials:
        for p in store.metric_points(t.id):
            if offline.on_result(t.id, p.step, p.values["loss"]) is Decision.STOP:
                expected_stopped.add(t.id)
    stopped = {t.id for t in trials if t.state == TrialState.EARLY_STOPPED}
    assert stopped == expected_stopped and len(stopped) >= 3
    assert {t.state for t in trials} == {TrialState.FINISHED, TrialState.EARLY_STOPPED}
    for t in trials:
        n = len(store.metric_points(t.id))
        if t.state == TrialState.EARLY_STOPPED:
            assert n < 9 and t.reason.startswith("early stopped by asha at epochs=")
            assert t.objective == pytest.approx(min(p.values["loss"] for p in store.metric_points(t.id)))
        else:
            assert n == 9
    best = min(trials, key=lambda t: t.params["q"])
    assert best.state == TrialState.FINISHED and store.experiment(exp.id).best_trial_id == best.id


def test_asha_in_parallel_keeps_slots_busy_and_leaves_no_process(store: Store, settings: Settings) -> None:
    """Trials here rewrite val_dict_list.json after every epoch instead of appending lines."""
    exp = submit_quad(store, _spec(ASHA_SPEC, parallel=3, report="rewrite"), CURVE)
    drive(store, settings, [exp.id], timeout_s=120)
    trials = store.trials(exp.id)
    assert len(trials) == len(QS)
    stopped = [t for t in trials if t.state == TrialState.EARLY_STOPPED]
    assert len(stopped) >= 3 and all(len(store.metric_points(t.id)) < 9 for t in stopped)
    # every freed slot is refilled at once while configurations remain
    ends = sorted(t.ended_at.timestamp() for t in trials)
    created = sorted(t.created_at.timestamp() for t in trials)
    gaps = [created[i + 3] - ends[i] for i in range(len(trials) - 3)]
    assert max(gaps) < 2.0, gaps
    # the stopped trials' processes are gone
    for t in stopped:
        data = FileArtifactStore(settings.artifacts_dir).get_result(t.result_path)
        zipped = zipfile.ZipFile(io.BytesIO(data))
        assert not _alive(json.loads(zipped.read("probe.json"))["pid"])
    # the scheduler's resource reached the scripts through config.json
    assert all(len(store.metric_points(t.id)) == 9 for t in trials if t.state == TrialState.FINISHED)


def test_median_rule_stops_the_worse_trials(store: Store, settings: Settings) -> None:
    median = SchedulerSpec(type="median", resource="epochs", max=9, grace=2, min_samples=2)
    exp = submit_quad(store, _spec(median, parallel=2, pause=0.3), CURVE)
    drive(store, settings, [exp.id], timeout_s=120)
    trials = store.trials(exp.id)
    stopped = [t for t in trials if t.state == TrialState.EARLY_STOPPED]
    assert stopped and all(t.reason.startswith("early stopped by median") for t in stopped)
    assert min(trials, key=lambda t: t.params["q"]).state == TrialState.FINISHED
    assert max(t.params["q"] for t in stopped) >= 0.8
