"""The Python client (app/client.py) and the `hpo` client commands (app/cli_client.py) against a
real `hpo serve --cpu` (the session's `live_server`): no mocks, real trials of the quad fixture."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.client import AuthError, HpoApiError, HpoClient, load_credentials
from app.spec import SpecError
from tests.conftest import LiveServer
from tests.helpers import QUAD

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
    "c": {"type": "categorical", "choices": ["a", "b"]},
}
WMLA_ARGS = (
    "--exec-start PyTorch --python-version 3.11 --gpuPerWorker 1 --model-main train.py --model-dir quad"
)

Hpo = Callable[..., subprocess.CompletedProcess]


def _native(path: Path, **overrides: Any) -> Path:
    data: dict[str, Any] = {
        "model": {"main": "train.py"},
        "algorithm": {"name": "random", "seed": 3},
        "objective": {"metric": "loss", "direction": "minimize"},
        "max_trials": 4,
        "max_parallel": 2,
        "space": SPACE,
    }
    data.update(overrides)
    path.write_text(yaml.safe_dump(data))
    return path


def _wmla(path: Path, max_jobs: int = 4) -> Path:
    payload = {
        "modelSpec": {"sigName": "spark", "args": WMLA_ARGS},
        "algoDef": {
            "algorithm": "Random",
            "maxJobNum": max_jobs,
            "maxParalleJobNum": 2,
            "objectiveMetric": "loss",
            "objective": "minimize",
        },
        "hyperParams": [
            {"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 1.0},
            {"name": "c", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["a", "b"]},
        ],
    }
    path.write_text(json.dumps(payload))
    return path


def _env(credentials: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_CREDENTIALS=str(credentials), PYTHONPATH=str(ROOT), COLUMNS="240", **extra)
    return env


def _runner(credentials: Path, cwd: Path) -> Hpo:
    def hpo(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=cwd,
            env=_env(credentials, **extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return hpo


def _until(check: Callable[[], Any], timeout_s: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("client")


@pytest.fixture(scope="module")
def credentials(workdir: Path) -> Path:
    return workdir / "config" / "hpo" / "credentials"


@pytest.fixture(scope="module")
def hpo(credentials: Path, workdir: Path) -> Hpo:
    """`python -m app.cli ...` as alice once logged in: HPO_CREDENTIALS set, HPO_URL unset."""
    return _runner(credentials, workdir)


@pytest.fixture(scope="module")
def logged_in(live_server: LiveServer, hpo: Hpo, credentials: Path) -> subprocess.CompletedProcess:
    # a stale file with loose permissions: login must tighten them
    credentials.parent.mkdir(parents=True)
    credentials.write_text("{}")
    credentials.chmod(0o644)
    done = hpo("login", live_server.url, "--user", "alice", HPO_PASSWORD=live_server.users["alice"])
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def alice(live_server: LiveServer, logged_in: subprocess.CompletedProcess) -> Iterator[HpoClient]:
    with HpoClient(live_server.url, user="alice", password=live_server.users["alice"]) as client:
        client.login()
        yield client


@pytest.fixture(scope="module")
def finished(alice: HpoClient, hpo: Hpo, workdir: Path) -> dict[str, str]:
    """Three experiments run to the end: native via the CLI (--wait), WMLA and a 6-trial one via
    the client. Submitted together so they share the server's 2 slots."""
    wmla = alice.submit(_wmla(workdir / "wmla.json"), QUAD, name="alice-wmla")
    six = alice.submit(_native(workdir / "six.yaml", max_trials=6), QUAD, name="alice-six")
    spec = _native(workdir / "native.yaml")
    done = hpo("submit", str(spec), "--model-dir", str(QUAD), "--name", "alice-native", "--wait", timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alice-native"
    assert "submitted alice-native" in done.stderr and "FINISHED 4/4" in done.stderr
    for name in (wmla["name"], six["name"]):
        assert alice.wait(name, poll_s=0.3, timeout_s=60)["state"] == "FINISHED"
    return {"native": "alice-native", "wmla": wmla["name"], "six": six["name"]}


# --- login ---------------------------------------------------------------------------------------
def test_login_saves_a_private_token_and_whoami_works(
    live_server: LiveServer, logged_in: subprocess.CompletedProcess, credentials: Path, monkeypatch
) -> None:
    assert f"logged in to {live_server.url} as alice" in logged_in.stderr
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    text = credentials.read_text()
    assert live_server.users["alice"] not in text  # tokens only, never the password
    data = json.loads(text)
    assert data["default"] == live_server.url
    assert data["servers"][live_server.url]["user"] == "alice"
    token = data["servers"][live_server.url]["token"]

    for key in [k for k in os.environ if k.startswith("HPO_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HPO_CREDENTIALS", str(credentials))
    with HpoClient.from_environment() as client:
        assert client.url == live_server.url and client.token == token
        assert client.me() == {"name": "alice", "is_admin": False}


def test_login_creates_the_folder_0700_and_logout_revokes_the_token(
    live_server: LiveServer, tmp_path: Path
) -> None:
    creds = tmp_path / "new" / "dir" / "credentials"
    hpo = _runner(creds, tmp_path)
    done = hpo("login", live_server.url + "/", "--user", "bob", HPO_PASSWORD=live_server.users["bob"])
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    token = load_credentials(creds)["servers"][live_server.url]["token"]
    with HpoClient(live_server.url, token=token) as client:
        assert client.me()["name"] == "bob"

        done = hpo("logout")
        assert done.returncode == 0, done.stderr
        assert load_credentials(creds)["servers"] == {}
        with pytest.raises(AuthError) as caught:
            client.me()
    assert caught.value.status == 401 and "hpo login" in caught.value.message

    done = hpo("list", "--url", live_server.url)  # nothing saved any more
    assert done.returncode == 2 and "not logged in" in done.stderr
    done = hpo("list", "--url", live_server.url, HPO_TOKEN=token)  # the revoked token
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid, expired or revoked token") and "hpo login" in done.stderr


def test_wrong_password_exits_2_and_writes_nothing(live_server: LiveServer, tmp_path: Path) -> None:
    creds = tmp_path / "hpo" / "credentials"
    done = _runner(creds, tmp_path)("login", live_server.url, "--user", "alice", HPO_PASSWORD="not-it-at-all")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: wrong user name or password"
    assert not creds.exists()
    with (
        HpoClient(live_server.url, user="alice", password="not-it-at-all") as client,
        pytest.raises(AuthError),
    ):
        client.login()


# --- submit and read back --------------------------------------------------------------------------
def test_experiments_run_to_the_end(alice: HpoClient, finished: dict[str, str]) -> None:
    for key, name in finished.items():
        exp = alice.experiment(name)
        assert exp["state"] == "FINISHED" and exp["owner"] == "alice"
        assert exp["counts"]["finished"] == (6 if key == "six" else 4)
        assert exp["best_value"] is not None
    wmla = alice.experiment(finished["wmla"])
    assert wmla["queue"] == "trials.cpu"  # --gpuPerWorker 1 ran on a CPU slot: the server runs --cpu
    assert {t["params"]["c"] for t in alice.trials(finished["wmla"])} <= {"a", "b"}


def test_list_and_status(alice: HpoClient, hpo: Hpo, finished: dict[str, str]) -> None:
    names = [e["name"] for e in alice.experiments()]
    assert set(finished.values()) <= set(names)
    assert [e["name"] for e in alice.experiments(page_size=1)] == names  # all pages

    done = hpo("list")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "alice-native" in line)
    assert "FINISHED" in row and "4/4" in row and "alice" in row
    listed = json.loads(hpo("list", "--json").stdout)
    assert {e["name"] for e in listed} == set(names)

    done = hpo("status", "alice-native")
    assert done.returncode == 0, done.stderr
    assert "FINISHED" in done.stdout and "4/4" in done.stdout and "random" in done.stdout
    status = json.loads(hpo("status", "alice-native", "--json").stdout)
    assert status["state"] == "FINISHED" and status["counts"]["finished"] == 4
    watched = hpo("status", "alice-native", "--watch", timeout=20)  # already ended: returns at once
    assert watched.returncode == 0 and "4/4" in watched.stdout


def test_trials_best_and_logs(alice: HpoClient, hpo: Hpo, finished: dict[str, str], workdir: Path) -> None:
    name = finished["native"]
    trials = list(alice.trials(name))
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["state"] == "FINISHED" for t in trials)
    assert list(alice.trials(name, state="FAILED")) == []

    done = hpo("trials", name)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("FINISHED") == 4 and "x=" in done.stdout
    assert [t["number"] for t in json.loads(hpo("trials", name, "--json").stdout)] == [0, 1, 2, 3]
    assert len(json.loads(hpo("trials", name, "--limit", "2", "--json").stdout)) == 2
    assert json.loads(hpo("trials", name, "--state", "failed", "--json").stdout) == []

    best = alice.best(name)
    lowest = min(trials, key=lambda t: t["objective"])
    assert best["trial"] == lowest["number"] and best["value"] == pytest.approx(lowest["objective"])
    out = workdir / "best_config.json"
    done = hpo("best", name, "--output", str(out))
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text())
    assert written == best["params"]
    assert isinstance(written["x"], float) and isinstance(written["c"], str)  # typed, not strings
    assert f"best trial #{best['trial']}" in done.stderr
    assert json.loads(hpo("best", name, "--json").stdout) == best

    log = alice.log(name, 0)
    assert log.startswith("config {") and "'x':" in log
    assert alice.log(name, 0, stream="stderr") == ""
    assert hpo("logs", name, "0").stdout == log
    followed = hpo("logs", name, "0", "--follow", timeout=20)  # ended: prints it all and stops
    assert followed.returncode == 0 and followed.stdout == log and "FINISHED" in followed.stderr
    assert hpo("logs", name, "0", "--err").stdout == ""

    done = hpo("logs", name, "99")
    assert done.returncode == 1 and "has no trial 99" in done.stderr


def test_trials_pagination_follows_next_after(alice: HpoClient, finished: dict[str, str]) -> None:
    pages: list[httpx.URL] = []

    def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/trials"):
            pages.append(request.url)

    alice._http.event_hooks["request"].append(count)
    try:
        numbers = [t["number"] for t in alice.trials(finished["six"], page_size=4)]
        assert numbers == [0, 1, 2, 3, 4, 5]
        assert [u.params["after"] for u in pages] == ["-1", "3"]
        pages.clear()
        assert len(list(alice.trials(finished["six"], state="FINISHED", page_size=4))) == 6
        assert len(pages) == 2
        pages.clear()
        assert len(list(alice.trials(finished["six"], page_size=6))) == 6
        assert len(pages) == 1  # exactly one page: next_after is null
    finally:
        alice._http.event_hooks["request"].remove(count)


# --- control ----------------------------------------------------------------------------------------
def test_stop_restart_stop_and_delete(
    alice: HpoClient, hpo: Hpo, workdir: Path, credentials: Path, finished: dict[str, str]
) -> None:
    spec = _native(
        workdir / "hang.yaml",
        max_trials=None,
        max_parallel=1,
        space={**SPACE, "mode": {"type": "categorical", "choices": ["hang"]}},
    )
    done = hpo("submit", str(spec), "--model-dir", str(QUAD), "--name", "alice-hang")
    assert done.returncode == 0, done.stderr

    def running() -> bool:
        exp = alice.experiment("alice-hang")
        return exp["state"] == "RUNNING" and exp["counts"]["running"] > 0

    _until(running, 30, "a running trial")
    follow = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "logs", "alice-hang", "0", "--follow", "--interval", "0.3"],
        env=_env(credentials), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        done = hpo("delete", "alice-hang")  # still running: refused
        assert done.returncode == 2 and "stop it before deleting it" in done.stderr

        done = hpo("stop", "alice-hang")
        assert done.returncode == 0, done.stderr
        exp = alice.wait("alice-hang", poll_s=0.3, timeout_s=30)
        assert exp["state"] == "STOPPED"
        assert all(t["state"] != "RUNNING" for t in alice.trials("alice-hang"))
        out, err = follow.communicate(timeout=15)  # --follow ends with the trial
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert out.count("config {") == 1  # live tail then final log, each line printed once
    assert f"trial 0 {alice.trial('alice-hang', 0)['state']}" in err

    done = hpo("stop", "alice-hang")  # already stopped: a 400
    assert done.returncode == 2 and "already stopped" in done.stderr

    done = hpo("restart", "alice-hang")
    assert done.returncode == 0, done.stderr
    assert alice.experiment("alice-hang")["state"] in ("SUBMITTED", "RUNNING")
    _until(running, 30, "a running trial after the restart")
    assert alice.stop("alice-hang", force=True)["name"] == "alice-hang"
    assert alice.wait("alice-hang", poll_s=0.3, timeout_s=30)["state"] == "STOPPED"

    done = hpo("delete", "alice-hang")
    assert done.returncode == 0, done.stderr
    with pytest.raises(HpoApiError) as caught:
        alice.experiment("alice-hang")
    assert caught.value.status == 404
    done = hpo("status", "alice-hang")
    assert done.returncode == 1 and done.stderr.startswith("error: no experiment named 'alice-hang'")


def test_stop_trial(alice: HpoClient, workdir: Path) -> None:
    spec = _native(
        workdir / "hang2.yaml",
        max_trials=1,
        max_parallel=1,
        space={**SPACE, "mode": {"type": "categorical", "choices": ["hang"]}},
    )
    alice.submit(spec, QUAD, name="alice-hang-trial")
    _until(lambda: alice.experiment("alice-hang-trial")["counts"]["running"], 30, "a running trial")
    assert alice.stop_trial("alice-hang-trial", 0, force=True)["number"] == 0
    exp = alice.wait("alice-hang-trial", poll_s=0.3, timeout_s=30)
    assert exp["state"] == "FINISHED"
    assert alice.trial("alice-hang-trial", 0)["state"] in ("FAILED", "EARLY_STOPPED", "CANCELLED")
    alice.delete("alice-hang-trial")


# --- refusals ---------------------------------------------------------------------------------------
def test_a_bad_spec_fails_locally_before_any_upload(alice: HpoClient, hpo: Hpo, workdir: Path) -> None:
    bad = _native(workdir / "bad.yaml", space={"x": {"type": "float", "low": 1.0, "high": 0.5}})
    with socket.socket() as s:  # a port nobody listens on: an upload attempt would exit 3
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    done = hpo("submit", str(bad), "--model-dir", str(QUAD), "--url", closed, HPO_TOKEN="unused")
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid experiment spec")
    assert "  - space.x.high: must be greater than low (1)" in done.stderr
    assert done.stdout == ""
    with HpoClient(closed, token="unused") as client, pytest.raises(SpecError, match=r"space\.x\.high"):
        client.submit(bad, QUAD)
    assert "bad" not in {e["name"] for e in alice.experiments()}

    # the server's own refusals come back with their problems
    with pytest.raises(HpoApiError) as caught:
        alice.submit(_native(workdir / "dup.yaml"), QUAD, name="alice-native")
    assert caught.value.status == 409 and "already exists" in caught.value.message


def test_bob_cannot_see_alices_experiments(live_server: LiveServer, finished: dict[str, str]) -> None:
    with HpoClient(live_server.url, user="bob", password=live_server.users["bob"]) as bob:
        bob.login()
        assert not set(finished.values()) & {e["name"] for e in bob.experiments()}
        for call in (
            lambda: bob.experiment(finished["native"]),
            lambda: list(bob.trials(finished["native"])),
            lambda: bob.best(finished["native"]),
            lambda: bob.stop(finished["native"]),
            lambda: bob.delete(finished["native"]),
        ):
            with pytest.raises(HpoApiError) as caught:
                call()
            assert caught.value.status == 404 and caught.value.code == "not_found"
    with HpoClient(live_server.url, user=live_server.admin[0], password=live_server.admin[1]) as admin:
        assert admin.experiment(finished["native"])["owner"] == "alice"  # an admin sees everyone's
