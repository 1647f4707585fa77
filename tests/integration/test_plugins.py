"""User search algorithms: WMLA plugins installed over REST and run sandboxed, Optuna samplers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from app.config import Settings
from app.plugins import registry
from app.services.auth import Principal
from app.spec.algorithms import installed_plugins
from app.store.models import ExperimentState, TrialState
from app.store.repository import Store
from tests.conftest import LiveServer
from tests.helpers import drive, make_coordinator, quad_spec, submit_quad

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "fixtures" / "plugins"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WMLA = "/platform/rest/deeplearning/v1"
ADMIN = Principal(id=0, name="admin", is_admin=True)


def _plugin_tar(name: str) -> bytes:
    """As IBM's helper packs a plugin: the files at the archive root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in (PLUGINS / name).iterdir():
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def _quad_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(FIXTURES / "quad", arcname="quad")
    return buf.getvalue()


def _install(server: LiveServer, name: str, source: str, auth: tuple[str, str]) -> requests.Response:
    data = {"name": name, "remoteExec": False, "logLevel": "INFO"}
    files = {"file": (f"{source}.tar", _plugin_tar(source))}
    return requests.post(f"{server.url}{WMLA}/hypersearch/algorithm/install", files=files,
                         data={"data": json.dumps(data)}, auth=auth)  # fmt: skip


def _payload(algorithm: str, max_jobs: int, params: list[dict] | None = None) -> dict:
    return {
        "modelSpec": {"sigName": "cpu", "args": "--model-main train.py --model-dir quad"},
        "algoDef": {
            "algorithm": algorithm,
            "maxRunTime": -1,
            "maxJobNum": max_jobs,
            "maxParalleJobNum": 2,
            "objectiveMetric": "loss",
            "objective": "minimize",
            "algoParams": params or [],
        },
        "hyperParams": [
            {"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 1.0},
            {"name": "y", "type": "Discrete", "dataType": "DOUBLE", "discreteDbVal": [0.2, 0.7]},
            {"name": "c", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["a", "b", "z"]},
        ],
    }


def _run(server: LiveServer, auth: tuple[str, str], payload: dict) -> dict:
    files = {"file": ("quad.modelDir.tar", _quad_tar())}
    r = requests.post(
        f"{server.url}{WMLA}/hypersearch", files=files, data={"data": json.dumps(payload)}, auth=auth
    )
    assert r.status_code == 200, r.text
    name = r.json()["uid"]
    deadline = time.monotonic() + 120
    while True:
        state = requests.get(f"{server.url}{WMLA}/hypersearch/{name}", auth=auth).json()
        if state["state"] not in ("SUBMITTED", "RUNNING") or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_ibm_style_plugins_install_over_rest_and_drive_experiments(live_server: LiveServer) -> None:
    admin, alice = live_server.admin, ("alice", live_server.users["alice"])
    assert _install(live_server, "randomPlugin", "random", alice).status_code == 403  # admins only
    assert _install(live_server, "randomPlugin", "random", admin).json()["uid"] == "randomPlugin"
    assert _install(live_server, "gridPlugin", "grid", admin).status_code == 200
    assert _install(live_server, "randomPlugin", "random", admin).status_code == 409
    assert _install(live_server, "tpe", "random", admin).status_code == 409  # a built-in name
    listing = requests.get(f"{live_server.url}{WMLA}/hypersearch/algorithm", params={"type": "USER_PLUGIN"},
                           auth=alice).json()  # fmt: skip
    assert {p["name"] for p in listing} == {"randomPlugin", "gridPlugin"}
    assert all(p["type"] == "USER_PLUGIN" and p["creator"] == "admin" for p in listing)
    builtins = requests.get(f"{live_server.url}{WMLA}/hypersearch/algorithm?type=BUILD_IN", auth=alice).json()
    assert [b["name"] for b in builtins] == ["Random", "TPE", "Bayesian", "Hyperband", "ExperimentGridSearch"]

    state = _run(live_server, alice, _payload("randomPlugin", 6, [{"name": "random_seed", "value": "3"}]))
    assert state["state"] == "FINISHED" and state["progress"] == "6/6" and state["failed"] == 0
    values = [float(e["hyperParams"][0]["fixedVal"]) for e in state["experiments"]]
    assert all(0.0 <= v <= 1.0 for v in values) and len(set(values)) == 6

    grid = _payload("gridPlugin", -1)
    grid["hyperParams"][0] = {
        "name": "x",
        "type": "Discrete",
        "dataType": "DOUBLE",
        "discreteDbVal": [0.1, 0.3],
    }
    state = _run(live_server, alice, grid)  # 2 x 2 x 3 = 12 points, then the plugin says it is done
    assert state["state"] == "FINISHED" and state["progress"] == "12/-"
    combos = {tuple(h["fixedVal"] for h in e["hyperParams"]) for e in state["experiments"]}
    assert len(combos) == 12

    assert (
        requests.delete(f"{live_server.url}{WMLA}/hypersearch/algorithm/gridPlugin", auth=alice).status_code
        == 403
    )
    assert (
        requests.delete(f"{live_server.url}{WMLA}/hypersearch/algorithm/gridPlugin", auth=admin).status_code
        == 204
    )
    assert (
        requests.get(f"{live_server.url}{WMLA}/hypersearch/algorithm/gridPlugin", auth=admin).status_code
        == 404
    )


def test_a_plugin_without_optimizer_py_is_refused(live_server: LiveServer) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("other.py")
        tar.addfile(info, io.BytesIO(b""))
    files, data = {"file": ("p.tar", buf.getvalue())}, {"data": json.dumps({"name": "broken"})}
    r = requests.post(f"{live_server.url}{WMLA}/hypersearch/algorithm/install", auth=live_server.admin,
                      files=files, data=data)  # fmt: skip
    assert r.status_code == 400 and "optimizer.py" in r.text


@pytest.mark.usefixtures("cpu_worker")
def test_bad_plugins_fail_only_their_own_experiment(store: Store, settings: Settings) -> None:
    settings = settings.model_copy(update={"plugin_timeout_s": 3.0, "plugin_memory_mb": 600})
    for name in ("hang", "crash", "memory", "garbage"):
        registry.install(store, ADMIN, {"name": name}, _plugin_tar(name), settings.archive_limits())
    with installed_plugins(store.plugin_names()):
        bad = {
            name: submit_quad(store, quad_spec(algorithm=name, max_trials=4))
            for name in ("hang", "crash", "memory")
        }
        bad["garbage-range"] = submit_quad(store, quad_spec(algorithm="garbage", max_trials=4))
        bad["garbage-type"] = submit_quad(
            store, quad_spec(algorithm={"name": "garbage", "kind": "type"}, max_trials=4)
        )
        bad["garbage-names"] = submit_quad(
            store, quad_spec(algorithm={"name": "garbage", "kind": "names"}, max_trials=4)
        )
    sleepy = {"x": {"type": "float", "low": 0, "high": 1}, "sleep": {"type": "categorical", "choices": [0.3]}}
    good = submit_quad(store, quad_spec(max_trials=10, max_parallel=2, space=sleepy))
    drive(store, settings, [good.id, *(e.id for e in bad.values())], timeout_s=120)
    reasons = {k: store.experiment(e.id).message for k, e in bad.items()}
    assert all(store.experiment(e.id).state == ExperimentState.FAILED for e in bad.values()), reasons
    assert "did not answer within 3 s" in reasons["hang"]
    assert "the plugin process died (exit code 7)" in reasons["crash"]
    assert "MemoryError" in reasons["memory"]
    assert "x=42.0 is outside its range" in reasons["garbage-range"]
    assert "must return a list of dicts" in reasons["garbage-type"]
    assert "unknown ['nope']" in reasons["garbage-names"]
    assert all(store.trials(e.id) == [] for e in bad.values())  # nothing was run for them
    assert store.experiment(good.id).state == ExperimentState.FINISHED
    assert len(store.trials(good.id)) == 10


@pytest.mark.usefixtures("cpu_worker")
def test_plugin_state_survives_a_coordinator_restart(store: Store, settings: Settings) -> None:
    registry.install(store, ADMIN, {"name": "counter"}, _plugin_tar("counter"), settings.archive_limits())
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    with installed_plugins(["counter"]):
        exp = submit_quad(store, quad_spec(algorithm="counter", max_trials=10, max_parallel=2, space=space))
    first = make_coordinator(store, settings, [exp.id])
    first.run(
        should_stop=lambda: len([t for t in store.trials(exp.id) if t.state == TrialState.FINISHED]) >= 4
    )
    first.close()  # gone; a new coordinator rebuilds the plugin from the saved state
    assert store.experiment(exp.id).optimizer_state is not None
    drive(store, settings, [exp.id])
    exp = store.experiment(exp.id)
    xs = [t.params["x"] for t in store.trials(exp.id)]
    assert exp.state == ExperimentState.FINISHED, exp.message  # "given twice" would have failed it
    assert xs == [round(0.01 * i, 2) for i in range(10)]  # the counter went on, no configuration twice


@pytest.mark.usefixtures("cpu_worker")
def test_an_optuna_sampler_as_the_algorithm(store: Store, settings: Settings) -> None:
    unit = {"type": "float", "low": 0, "high": 1}
    algorithm = {"name": "optuna:CmaEsSampler", "n_startup_trials": 2}
    spec = quad_spec(algorithm=algorithm, max_trials=8, max_parallel=2, space={"x": unit, "y": unit})
    exp = submit_quad(store, spec)
    drive(store, settings, [exp.id])
    trials = store.trials(exp.id)
    assert store.experiment(exp.id).state == ExperimentState.FINISHED
    assert len(trials) == 8 and all(t.state == TrialState.FINISHED for t in trials)
    assert all(spec.space.problems(t.params) == [] for t in trials)


def test_plugin_commands(live_server: LiveServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_URL=live_server.url, HPO_USER="admin", HPO_PASSWORD=live_server.admin[1])
    env.update(HPO_CREDENTIALS=str(tmp_path / "credentials"), PYTHONPATH=str(ROOT))

    def hpo(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "app.cli", "plugin", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    assert hpo("install", str(PLUGINS / "counter"), "--name", "cliCounter").returncode == 0
    listed = hpo("list", "--type", "USER_PLUGIN")
    assert listed.returncode == 0 and "cliCounter" in listed.stdout and "USER_PLUGIN" in listed.stdout
    assert json.loads(hpo("show", "cliCounter").stdout)["name"] == "cliCounter"
    assert hpo("delete", "cliCounter").returncode == 0
    assert hpo("show", "cliCounter").returncode == 1  # not found
