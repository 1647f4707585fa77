"""The validated experiment model that both spec forms (WMLA payload, native YAML/JSON) produce.

Everything downstream (store, coordinator, optimizers, workers) reads only this model, never the
raw payload; the raw payload is kept for echoing in WMLA responses.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.space import Config, SearchSpace

Direction = Literal["minimize", "maximize"]
Strategy = Literal["minimize", "maximize", "latest"]
# How a worker starts a trial: a fresh interpreter (the WMLA contract), a fork of a per-worker
# process that imported `preload` once, or a call of a function in a per-slot process that stays
# (docs/trial-modes.md).
TrialMode = Literal["subprocess", "forkserver", "function"]
TRIAL_MODES = ("subprocess", "forkserver", "function")

# Built-in algorithms, canonical (lower-case) names.
ALGORITHMS = ("random", "tpe", "bayesian", "grid", "hyperband")
ALGORITHM_DISPLAY = {
    "random": "Random",
    "tpe": "TPE",
    "bayesian": "Bayesian",
    "grid": "ExperimentGridSearch",
    "hyperband": "Hyperband",
}


class ResourceRequest(BaseModel):
    """What one trial needs: `gpus` GPUs of `gpu_type` ("any" = any type); no GPUs = a CPU slot."""

    model_config = ConfigDict(frozen=True)

    gpu_type: str | None = None
    gpus: int = 0
    # A multi-GPU trial starts as `torchrun --nproc-per-node <gpus>`; "python" runs the script once
    # with every GPU visible (for scripts that start their own processes).
    launcher: Literal["torchrun", "python"] = "torchrun"

    @property
    def is_cpu(self) -> bool:
        return self.gpus <= 0

    @property
    def queue(self) -> str:
        from app.keys import trial_queue

        return trial_queue(self.gpu_type, self.gpus)


class Launcher(BaseModel):
    """How to start one trial: WMLA `modelSpec` after our launcher flags were taken out."""

    model_config = ConfigDict(frozen=True)

    main: str  # --model-main, relative to the model directory
    model_dir: str | None = None  # --model-dir: the top folder of the code archive
    args: tuple[str, ...] = ()  # everything else, passed to the script in order
    framework: str | None = None  # --exec-start
    python_version: str | None = None
    data_path: str | None = None  # --cs-datastore-meta type=fs,data_path=P
    sig_name: str | None = None  # modelSpec.sigName
    options: dict[str, str] = Field(default_factory=dict)  # remaining launcher flags, verbatim
    mode: TrialMode = "subprocess"  # native model.mode
    preload: tuple[str, ...] = ()  # forkserver/function: modules imported once per worker process
    function: str | None = None  # mode function: the callable in `main` called with the config


class Objective(BaseModel):
    model_config = ConfigDict(frozen=True)

    metric: str
    direction: Direction = "minimize"
    additional: dict[str, Strategy] = Field(default_factory=dict)

    @property
    def sign(self) -> float:
        """Multiply a metric by this to get a value to minimise."""
        return 1.0 if self.direction == "minimize" else -1.0


class Algorithm(BaseModel):
    """The searcher: canonical name plus its settings as given (WMLA algoParams, string values)."""

    model_config = ConfigDict(frozen=True)

    name: str  # one of ALGORITHMS or an installed plugin's name
    params: dict[str, str] = Field(default_factory=dict)
    eta: float | None = None  # WMLA hyperbandEta

    @property
    def display_name(self) -> str:
        return ALGORITHM_DISPLAY.get(self.name, self.name)


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_trials: int | None = None  # maxJobNum; None = unlimited
    max_parallel: int = 1  # maxParalleJobNum
    max_run_time_s: float | None = None  # maxRunTime (minutes in WMLA); None = unlimited
    trial_timeout_s: float | None = None  # per-trial wall-clock limit
    kill_on_timeout: bool = False  # at maxRunTime: stop running trials instead of letting them finish
    sync_batches: bool = False  # WMLA behaviour: next batch only after the whole batch ended
    retries: int = 2  # extra attempts of a trial whose worker was lost (they do not count as trials)


class SchedulerSpec(BaseModel):
    """Early stopping of running trials on their streamed metrics (native `scheduler:`)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["asha", "median"]
    resource: str | None = None  # config.json key set to `max` for every trial (e.g. "epochs")
    max: float = 81  # the largest resource a trial trains to (ASHA's R)
    eta: float = 3.0  # ASHA reduction factor
    grace: float = 1.0  # ASHA's first rung / median rule: no decision below this resource
    brackets: int = 1  # ASHA brackets (>1: asynchronous Hyperband)
    min_samples: int = 3  # median rule: other trials needed at a resource before deciding


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str | None = None  # hpoName; generated when absent
    source: Literal["wmla", "native"] = "native"
    model: Launcher
    algorithm: Algorithm
    objective: Objective
    limits: Limits = Limits()
    space: SearchSpace = SearchSpace()
    experiments: tuple[Config, ...] = ()  # ExperimentGridSearch's fixed configurations, in order
    resources: ResourceRequest = ResourceRequest()
    scheduler: SchedulerSpec | None = None
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for the training process
    warnings: tuple[str, ...] = ()  # unknown keys and other tolerated oddities
    raw: dict[str, Any] = Field(default_factory=dict)  # the payload as submitted (for WMLA echoes)

    def with_resources(self, resources: ResourceRequest) -> ExperimentSpec:
        return self.model_copy(update={"resources": resources})

    def with_model_dir(self, name: str | None) -> ExperimentSpec:
        return self.model_copy(update={"model": self.model.model_copy(update={"model_dir": name})})
