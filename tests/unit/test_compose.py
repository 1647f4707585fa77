"""docker-compose.yml checked without Docker: services, images, commands and settings match the code."""

from __future__ import annotations

import inspect
import shlex
from pathlib import Path

import typer
import yaml

from app.cli import cli
from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _command_options(app: typer.Typer, argv: list[str]) -> set[str] | None:
    """The option names of the `hpo` command that argv names, None when it names none."""
    word, rest = argv[0], argv[1:]
    for group in app.registered_groups:
        if group.name == word and rest:
            return _command_options(group.typer_instance, rest)
    for command in app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        if name == word:
            options = set()
            for param in inspect.signature(command.callback).parameters.values():
                options |= {d for d in getattr(param.default, "param_decls", ()) if d.startswith("--")}
            return options
    return None


def test_services_and_dependencies() -> None:
    services = _compose()["services"]
    assert {"redis", "postgres", "api", "coordinator", "worker", "flower", "migrate"} <= set(services)
    api_volumes, coordinator_volumes = services["api"]["volumes"], services["coordinator"]["volumes"]
    assert set(api_volumes) & set(coordinator_volumes)  # the API serves the results the coordinator stores
    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    for name in ("api", "coordinator", "worker", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["image"] == "hpo-queue:cpu"
    assert services["migrate"]["build"]["target"] == "cpu"
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]


def test_commands_are_real_cli_commands_with_real_options() -> None:
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if not command or command[0] != "hpo":
            continue
        argv = command[1:] if isinstance(command, list) else shlex.split(command)[1:]
        known = _command_options(cli, argv)
        assert known is not None, f"{name}: {argv} is not a command"
        for word in argv:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{name}: unknown option {word}"


def test_environment_names_are_settings_we_read() -> None:
    fields = {f"HPO_{name.upper()}" for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for key in service.get("environment") or {}:
            if key.startswith("HPO_"):
                assert key in fields, f"{name}: {key} is not a setting"
    worker_env = _compose()["services"]["worker"]["environment"]
    assert set(worker_env) == {"HPO_BROKER_URL"}  # a worker needs only the broker


def test_dockerfile_installs_pinned_torch_before_the_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.index('"torch==2.13.0"') < text.index('pip install ".[worker]"')
    assert "AS cpu" in text


def test_gpu_worker_runs_the_cuda_image_on_nvidia_gpus_under_a_profile() -> None:
    gpu = _compose()["services"]["gpu-worker"]
    assert gpu["image"] == "hpo-queue:cuda" and gpu["build"]["target"] == "cuda"
    assert gpu["profiles"] == ["gpu"]  # plain `docker compose up` works without GPUs
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert set(gpu["environment"]) == {"HPO_BROKER_URL"}
    assert gpu["depends_on"] == _compose()["services"]["worker"]["depends_on"]
    command = gpu["command"]
    assert command[:2] == ["hpo", "worker"] and "--gpus" not in command  # it detects the GPUs
    known = _command_options(cli, command[1:])
    assert known is not None and {"--slots", "--gpus", "--gpu-type", "--queues"} <= known
    assert all(word.split("=")[0] in known for word in command[2:] if word.startswith("--"))


def _worker_callback():
    return next(c.callback for c in cli.registered_commands if (c.name or c.callback.__name__) == "worker")


def test_worker_healthchecks_ping_the_default_node_name() -> None:
    worker_name = inspect.signature(_worker_callback()).parameters["name"].default.default  # "hpo@%h"
    for name in ("worker", "gpu-worker"):
        test = _compose()["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL" and "inspect ping" in test[1]
        assert f"-d {worker_name.replace('%h', '$$HOSTNAME')}" in test[1]


def test_dockerfile_has_a_cuda_stage_for_gpu_workers() -> None:
    text = (ROOT / "Dockerfile").read_text()
    cuda = text[text.index("AS cuda") :]
    assert "FROM base AS cuda" in text
    assert cuda.index('"torch==2.13.0"') < cuda.index('pip install ".[worker]"')
    assert "download.pytorch.org/whl/cpu" not in cuda  # not the CPU wheel
    assert 'CMD ["hpo", "worker"]' in cuda
