"""Submitting an experiment: check the code against the spec, store both, all or nothing.

Used by `hpo run` and (later) the API; the coordinator picks up SUBMITTED experiments.
"""

from __future__ import annotations

import getpass
import secrets
from pathlib import PurePosixPath

from app.codepack import ArchiveError, inspect_archive, sha256
from app.optimizers.settings import parse_settings
from app.spec import ExperimentSpec, Problem, SpecError
from app.store.models import Experiment
from app.store.repository import Store


class DuplicateName(ValueError):
    pass


def default_owner() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "hpo"


def generate_name(owner: str) -> str:
    """WMLA style: `<user>-hpo-<16 digits>`."""
    return f"{owner}-hpo-{secrets.randbelow(10**16):016d}"


def check_code(spec: ExperimentSpec, data: bytes, filename: str, max_bytes: int) -> None:
    """The upload must hold the spec's --model-main (under --model-dir when the archive has folders)."""
    if len(data) > max_bytes:
        raise SpecError([Problem("model", f"code archive is {len(data)} bytes, over the {max_bytes} cap")])
    try:
        info = inspect_archive(data, filename)
    except ArchiveError as exc:
        raise SpecError([Problem("model", str(exc))]) from None
    main = str(PurePosixPath(spec.model.main))
    if info.kind == "file":
        if info.members[0] != main:
            raise SpecError([Problem("model", f"uploaded file {filename!r} is not --model-main {main!r}")])
        return
    candidates = {main}
    if spec.model.model_dir:
        candidates.add(f"{spec.model.model_dir}/{main}")
    if info.top:
        candidates.add(f"{info.top}/{main}")
    if not candidates & set(info.members):
        raise SpecError(
            [Problem("modelSpec.args", f"--model-main {main!r} is not in the code archive {filename!r}")]
        )


def seed_of(spec: ExperimentSpec) -> int:
    settings, _, _ = parse_settings(spec.algorithm.name, spec.algorithm.params, spec.limits.max_trials)
    seed = getattr(settings, "seed", None)
    return int(seed) if seed is not None else secrets.randbelow(2**31)


def submit(
    store: Store,
    spec: ExperimentSpec,
    code: bytes,
    filename: str,
    *,
    owner: str | None = None,
    max_code_bytes: int = 64 * 1024 * 1024,
) -> Experiment:
    owner = owner or default_owner()
    check_code(spec, code, filename, max_code_bytes)
    name = spec.name or generate_name(owner)
    if store.experiment(name) is not None:
        raise DuplicateName(f"an experiment named {name!r} already exists")
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
