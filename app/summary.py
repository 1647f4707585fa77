"""The end-of-run summary: best configuration and trial counts (the `hpo run --json` object)."""

from __future__ import annotations

from typing import Any

from app.store.models import Experiment, TrialState
from app.store.repository import Store


def best_trial_params(store: Store, exp: Experiment) -> dict[str, Any] | None:
    if exp.best_trial_id is None:
        return None
    trial = store.trial(exp.best_trial_id)
    return None if trial is None else dict(trial.params)


def run_summary(store: Store, exp: Experiment) -> dict[str, Any]:
    counts = store.trial_counts(exp.id)  # type: ignore[arg-type]
    params = best_trial_params(store, exp)
    return {
        "name": exp.name,
        "state": exp.state,
        "best": None if params is None else {"hyperParameters": params, "metricVal": exp.best_value},
        "trials": {
            "finished": counts.get(TrialState.FINISHED, 0),
            "failed": counts.get(TrialState.FAILED, 0),
            "early_stopped": counts.get(TrialState.EARLY_STOPPED, 0),
        },
    }
