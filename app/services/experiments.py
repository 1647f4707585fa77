"""Experiments as users see them: submit, find (own only; admins all), stop, restart, delete.

Used by `hpo run`, `hpo serve` and the API. Writes that change trial or run state are requests
(`stop_requested`) that the coordinator carries out; only never-started experiments are changed
here directly, with a compare-and-set so a coordinator adopting them at the same moment wins.
"""

from __future__ import annotations

import getpass
import secrets
from collections.abc import Iterable
from pathlib import PurePosixPath

from app.codepack import ArchiveError, ArchiveLimits, inspect_archive, sha256
from app.keys import normalize_gpu_type
from app.optimizers.settings import parse_settings
from app.services.auth import Principal
from app.services.errors import BadRequest, Conflict, NotFound
from app.spec import ExperimentSpec, Problem, SpecError, parse_spec
from app.spec.model import ResourceRequest
from app.store.artifacts import ArtifactStore
from app.store.models import Experiment, ExperimentState, Trial, TrialState
from app.store.repository import Store


class DuplicateName(Conflict):
    pass


def default_owner() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "hpo"


def generate_name(owner: str) -> str:
    """WMLA style: `<user>-hpo-<16 digits>`."""
    return f"{owner}-hpo-{secrets.randbelow(10**16):016d}"


def check_code(spec: ExperimentSpec, data: bytes, filename: str, limits: ArchiveLimits) -> ExperimentSpec:
    """The upload must be safe and hold --model-main; returns the spec with its model dir settled."""
    try:
        info = inspect_archive(data, filename, limits)
    except ArchiveError as exc:
        raise SpecError([Problem("file", str(exc))]) from None
    main = str(PurePosixPath(spec.model.main))
    if info.kind == "file":
        if info.members[0] != main:
            raise SpecError([Problem("file", f"uploaded file {filename!r} is not --model-main {main!r}")])
        return spec.with_model_dir(None) if spec.model.model_dir else spec
    if spec.model.model_dir and f"{spec.model.model_dir}/{main}" in info.members:
        return spec
    if info.top and f"{info.top}/{main}" in info.members:
        return spec.with_model_dir(info.top)
    if main in info.members:
        return spec.with_model_dir(None)
    raise SpecError(
        [Problem("modelSpec.args", f"--model-main {main!r} is not in the code archive {filename!r}")]
    )


def seed_of(spec: ExperimentSpec) -> int:
    settings, _, _ = parse_settings(spec.algorithm.name, spec.algorithm.params, spec.limits.max_trials)
    seed = getattr(settings, "seed", None)
    return int(seed) if seed is not None else secrets.randbelow(2**31)


def apply_gpu_policy(spec: ExperimentSpec, *, cpu_only: bool, has_gpus: bool | None) -> ExperimentSpec:
    """Single-machine servers: run GPU requests on CPU slots (--cpu) or refuse them without GPUs."""
    if spec.resources.is_cpu:
        return spec
    if cpu_only:
        return spec.with_resources(ResourceRequest())
    if has_gpus is False:
        raise SpecError(
            [
                Problem(
                    "resources",
                    "this server has no GPU; restart it with --cpu to run GPU requests on CPU slots",
                )
            ]
        )
    return spec


def submit(
    store: Store,
    spec: ExperimentSpec,
    code: bytes,
    filename: str,
    *,
    owner: str | None = None,
    limits: ArchiveLimits | None = None,
) -> Experiment:
    owner = owner or default_owner()
    spec = check_code(spec, code, filename, limits or ArchiveLimits())
    name = spec.name or generate_name(owner)
    if store.experiment(name) is not None:
        raise DuplicateName(f"an experiment named {name!r} already exists", field="hpoName")
    digest = sha256(code)
    store.save_code(digest, filename, code)
    return store.add_experiment(
        Experiment(
            name=name,
            owner=owner,
            algorithm=spec.algorithm.name,
            spec=spec.model_dump(mode="json"),
            queue=spec.resources.queue,
            objective_metric=spec.objective.metric,
            direction=spec.objective.direction,
            max_trials=spec.limits.max_trials,
            max_parallel=spec.limits.max_parallel,
            seed=seed_of(spec),
            code_hash=digest,
        )
    )


# --- finding -------------------------------------------------------------------------------
def _owner_filter(user: Principal) -> str | None:
    return None if user.is_admin else user.name


def visible(
    store: Store, user: Principal, *, after: int = 0, limit: int | None = None, newest_first: bool = False
) -> list[Experiment]:
    return store.experiments_page(
        owner=_owner_filter(user), after_id=after, limit=limit, newest_first=newest_first
    )


def get_for(store: Store, user: Principal, name: str) -> Experiment:
    """The experiment, if the caller may see it; another user's is simply not found."""
    exp = store.experiment(name)
    if exp is None or (not user.is_admin and exp.owner != user.name):
        raise NotFound(f"no experiment named {name!r}")
    return exp


def find_trial(store: Store, user: Principal, exec_id: str) -> tuple[Experiment, Trial]:
    trial = store.trial_by_exec_id(exec_id)
    exp = store.experiment(trial.experiment_id) if trial is not None else None
    if trial is None or exp is None or (not user.is_admin and exp.owner != user.name):
        raise NotFound(f"no execution {exec_id!r}")
    return exp, trial


# --- changing --------------------------------------------------------------------------------
def request_stop(store: Store, user: Principal, name: str, *, force: bool = False) -> Experiment:
    exp = get_for(store, user, name)
    assert exp.id is not None
    if exp.state not in ExperimentState.ACTIVE:
        raise BadRequest(f"Model tuning {name} is already stopped.")
    mode = "force" if force else "stop"
    store.update_experiment(exp.id, stop_requested=mode)
    # Never picked up by a coordinator: nothing runs, so it can end right here.
    store.finish_experiment_if_submitted(exp.id, ExperimentState.STOPPED, "stopped on request")
    return store.experiment(exp.id)  # type: ignore[return-value]


def restart(store: Store, user: Principal, name: str) -> Experiment:
    """Resume a STOPPED (or FAILED) experiment where it was: trials so far count, limits hold."""
    exp = get_for(store, user, name)
    assert exp.id is not None
    if not store.set_experiment_state(
        exp.id,
        [ExperimentState.STOPPED, ExperimentState.FAILED],
        ExperimentState.SUBMITTED,
        stop_requested=None,
        finished_at=None,
        started_at=None,
        message=None,
    ):
        raise BadRequest(f"Model tuning {name} is {exp.state}: only a STOPPED or FAILED one can restart.")
    return store.experiment(exp.id)  # type: ignore[return-value]


def delete(store: Store, artifacts: ArtifactStore, user: Principal, name: str) -> None:
    exp = get_for(store, user, name)
    if exp.state in ExperimentState.ACTIVE:
        raise Conflict(f"Model tuning {name} is {exp.state}: stop it before deleting it.")
    _delete(store, artifacts, exp)


def delete_all(store: Store, artifacts: ArtifactStore, user: Principal) -> int:
    mine = store.experiments_page(owner=_owner_filter(user))
    active = [e.name for e in mine if e.state in ExperimentState.ACTIVE]
    if active:
        raise Conflict(f"stop these first, nothing was deleted: {', '.join(active)}")
    for exp in mine:
        _delete(store, artifacts, exp)
    return len(mine)


def _delete(store: Store, artifacts: ArtifactStore, exp: Experiment) -> None:
    assert exp.id is not None
    store.delete_experiment(exp.id)
    artifacts.delete_experiment(exp.name)


def stop_trial(store: Store, user: Principal, exec_id: str, *, force: bool = False) -> Trial:
    _, trial = find_trial(store, user, exec_id)
    if trial.state not in TrialState.IN_FLIGHT:
        raise BadRequest(f"execution {exec_id} has already ended ({trial.state})")
    assert trial.id is not None
    store.request_trial_stop(trial.id, "force" if force else "stop")
    return trial


def route_to_pool(spec: ExperimentSpec, pools: Iterable[str]) -> ExperimentSpec:
    """WMLA `sigName` naming a GPU type or pool that connected workers serve selects it."""
    sig = normalize_gpu_type(spec.model.sig_name or "")
    res = spec.resources
    if res.is_cpu or res.gpu_type != "any" or not sig or sig not in set(pools):
        return spec
    return spec.with_resources(res.model_copy(update={"gpu_type": sig}))


def submit_payload(
    store: Store,
    payload: object,
    code: bytes,
    filename: str,
    *,
    owner: str,
    limits: ArchiveLimits,
    cpu_only: bool = False,
    has_gpus: bool | None = None,
    pools: Iterable[str] = (),
) -> Experiment:
    """An API submission: a decoded spec (either form) and its code; SpecError names bad fields.

    `pools`: the GPU types connected workers serve (for WMLA sigName routing).
    """
    spec = apply_gpu_policy(route_to_pool(parse_spec(payload), pools), cpu_only=cpu_only, has_gpus=has_gpus)
    return submit(store, spec, code, filename, owner=owner, limits=limits)


def retry(store: Store, user: Principal, name: str, *, numbers: list[int] | None = None) -> list[Trial]:
    """Run FAILED trials again (all of them, or the numbered ones); an ended experiment resumes."""
    exp = get_for(store, user, name)
    assert exp.id is not None
    failed = store.trials(exp.id, states=[TrialState.FAILED])
    if numbers:
        by_number = {t.number: t for t in failed}
        wrong = [n for n in numbers if n not in by_number]
        if wrong:
            raise BadRequest(f"not FAILED trials of {name}: {', '.join(map(str, wrong))}", field="trial")
        failed = [by_number[n] for n in numbers]
    if not failed:
        raise BadRequest(f"{name} has no FAILED trial to retry")
    store.request_retry([t.id for t in failed])  # type: ignore[misc]
    store.set_experiment_state(
        exp.id,
        ExperimentState.DONE,
        ExperimentState.SUBMITTED,
        stop_requested=None,
        finished_at=None,
        started_at=None,
        message=None,
    )
    return failed
