"""The REST API against a real `hpo serve` (private Redis, Celery worker, subprocess trials).

The first test is written the way IBM's notebooks talk to WMLA: requests, multipart files/data,
Basic auth, polling GET /hypersearch/{name} while SUBMITTED or RUNNING.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlmodel import select

from app.services.auth import Auth
from app.store.db import make_engine
from app.store.models import ApiToken
from app.store.repository import Store
from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WMLA = "/platform/rest/deeplearning/v1"
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def _model_tar(folder: Path, name: str) -> bytes:
    """As IBM's helper builds `.modelDir.tar`: a gzip tar with the folder as its top entry."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=name)
    return buf.getvalue()


def _payload(name: str | None = None, **algo: object) -> dict:
    payload = json.loads(
        (FIXTURES / "wmla/hpo_submit_random_pytorch_mnist_learning_journey.json").read_text()
    )
    payload["modelSpec"]["args"] = payload["modelSpec"]["args"].replace("pytorch_mnist_HPO.py", "train.py")
    payload["modelSpec"]["args"] = payload["modelSpec"]["args"].replace("pytorch_hpo", "quad")
    payload["hyperParams"] = [
        {"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 1.0},
        {"name": "mode", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["ok"]},
    ]
    payload["algoDef"].update(algo)
    if name:
        payload["hpoName"] = name
    return payload


def _submit(
    server: LiveServer, auth: tuple[str, str], payload: dict, folder: Path = FIXTURES / "quad"
) -> str:
    files = {"file": ("quad.modelDir.tar", _model_tar(folder, "quad"))}
    r = requests.post(
        f"{server.url}{WMLA}/hypersearch", files=files, data={"data": json.dumps(payload)}, auth=auth
    )
    assert r.status_code == 200, r.text
    return r.json()["uid"]


def _wait(server: LiveServer, auth: tuple[str, str], name: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = requests.get(f"{server.url}{WMLA}/hypersearch/{name}", auth=auth).json()
        if state["state"] not in ("SUBMITTED", "RUNNING"):
            return state
        time.sleep(0.5)
    raise TimeoutError(name)


def _user(server: LiveServer, name: str) -> tuple[str, str]:
    return name, server.users[name]


def test_ibm_notebook_client_runs_the_digits_example(live_server: LiveServer) -> None:
    base, auth = f"{live_server.url}{WMLA}", live_server.admin
    data = json.loads((FIXTURES / "wmla/hpo_submit_random_pytorch_mnist_learning_journey.json").read_text())
    # Only the model changes: IBM's MNIST script becomes our digits example. --gpuPerWorker 1 stays in
    # (the server runs with --cpu); maxRunTime, maxJobNum 10, maxParalleJobNum 2, the space: as shipped.
    data["modelSpec"]["args"] = data["modelSpec"]["args"].replace("pytorch_mnist_HPO.py", "train.py")
    data["modelSpec"]["args"] = data["modelSpec"]["args"].replace("pytorch_hpo", "digits") + " --epochs 2"
    files = {"file": open_tar(ROOT / "examples" / "digits")}
    r = requests.post(f"{base}/hypersearch", files=files, data={"data": json.dumps(data)}, auth=auth)
    assert r.status_code == 200, r.text
    name = r.json()["uid"]
    assert r.json()["href"] == f"{WMLA}/hypersearch/{name}"
    assert re.match(r"^admin-hpo-\d{16}$", name)

    seen = set()
    deadline = time.monotonic() + 240
    while True:
        res = requests.get(f"{base}/hypersearch/{name}", auth=auth).json()
        seen.add(res["state"])
        if res["state"] not in ("SUBMITTED", "RUNNING") or time.monotonic() > deadline:
            break
        for exp in res["experiments"]:
            assert requests.get(f"{base}/execs/{exp['appId']}", auth=auth).json()["state"] in (
                "WAITING", "RUNNING", "FINISHED"
            )  # fmt: skip
        time.sleep(2)
    assert res["state"] == "FINISHED" and "RUNNING" in seen
    assert res["progress"] == "10/10" and res["complete"] == 10 and res["failed"] == 0
    assert [e["id"] for e in res["experiments"]] == list(range(10))
    best = res["best"]
    assert best["state"] == "FINISHED"
    assert best["metricVal"] == min(e["metricVal"] for e in res["experiments"])
    (hp,) = best["hyperParams"]
    assert hp["name"] == "learning_rate" and hp["dataType"] == "double" and isinstance(hp["fixedVal"], str)
    assert 0.001 <= float(hp["fixedVal"]) <= 0.1
    assert (
        TIME_RE.match(res["createtime"])
        and TIME_RE.match(best["startTime"])
        and TIME_RE.match(best["endTime"])
    )
    assert res["algoDef"]["algorithm"] == "Random" and res["hyperParams"][0]["type"] == "range"
    outlog = requests.get(f"{base}/execs/{best['appId']}/log", params={"logType": "outlog"}, auth=auth).json()
    assert "epoch 2: loss=" in outlog and f"lr={float(hp['fixedVal'])}" in outlog
    zipped = requests.get(f"{base}/execs/{best['appId']}/result", auth=auth)
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    assert f"size={len(zipped.content)}" in zipped.headers["content-disposition"]


def open_tar(folder: Path) -> tuple[str, bytes]:
    return (f"{folder.name}.modelDir.tar", _model_tar(folder, folder.name))


# --- authentication -----------------------------------------------------------------------------


def test_token_logon_paths(live_server: LiveServer) -> None:
    url = live_server.url
    r = requests.get(f"{url}/auth/v1/logon", auth=live_server.admin)
    assert r.status_code == 200
    token = r.json()["accessToken"]
    assert requests.get(f"{url}{WMLA}/hypersearch", headers={"X-Auth-Token": token}).status_code == 200
    assert (
        requests.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["name"]
        == "admin"
    )
    # The CPD notebook sends a JSON body with the credentials.
    r = requests.get(
        f"{url}/auth/v1/logon", json={"username": "alice", "password": live_server.users["alice"]}
    )
    assert r.status_code == 200 and r.json()["user"] == "alice"
    # Conductor logon: the session cookie authenticates later calls that carry no credentials.
    session = requests.Session()
    r = session.get(f"{url}/platform/rest/conductor/v1/auth/logon", auth=_user(live_server, "bob"))
    assert r.status_code == 200 and "hpo_session" in session.cookies
    assert session.get(f"{url}/api/v1/me").json()["name"] == "bob"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + "YWRtaW46d3Jvbmc="},  # admin:wrong
        {"Authorization": "Basic !!!"},
        {"X-Auth-Token": "not-a-token"},
        {"Authorization": "Bearer not-a-token"},
    ],
    ids=["none", "wrong-password", "malformed", "bad-x-auth-token", "bad-bearer"],
)
def test_bad_credentials_get_401(live_server: LiveServer, headers: dict) -> None:
    for path in (f"{WMLA}/hypersearch", "/api/v1/experiments", "/api/v1/me"):
        r = requests.get(f"{live_server.url}{path}", headers=headers)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Basic")


def test_revoked_and_expired_tokens_get_401(live_server: LiveServer) -> None:
    url = live_server.url
    alice = _user(live_server, "alice")
    token = requests.post(f"{url}/api/v1/tokens", auth=alice).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{url}/api/v1/me", headers=bearer).status_code == 200
    assert requests.delete(f"{url}/api/v1/tokens/current", headers=bearer).status_code == 204
    assert requests.get(f"{url}/api/v1/me", headers=bearer).status_code == 401

    token = requests.post(f"{url}/api/v1/tokens", auth=alice).json()["token"]
    out = live_server.hpo("token", "revoke", "--user", "alice")
    assert "revoked" in out.stdout
    assert requests.get(f"{url}/api/v1/me", headers={"X-Auth-Token": token}).status_code == 401

    token = requests.post(f"{url}/api/v1/tokens", auth=alice).json()["token"]
    engine = make_engine(f"sqlite:///{live_server.home / 'hpo.db'}")
    auth = Auth(Store(engine))
    with auth.store.session() as s:
        row = s.exec(select(ApiToken).where(ApiToken.revoked_at.is_(None))).all()[-1]  # type: ignore[union-attr]
        row.expires_at = row.expires_at - timedelta(hours=9)  # past the 8 h lifetime
        s.add(row)
        s.commit()
    engine.dispose()
    assert requests.get(f"{url}/api/v1/me", headers={"X-Auth-Token": token}).status_code == 401


# --- ownership ----------------------------------------------------------------------------------


def test_users_see_and_control_only_their_own(live_server: LiveServer) -> None:
    url, alice, bob = live_server.url, _user(live_server, "alice"), _user(live_server, "bob")
    name = _submit(live_server, alice, _payload(maxJobNum=2))
    state = _wait(live_server, alice, name)
    app_id = state["experiments"][0]["appId"]
    assert name not in [t["hpoName"] for t in requests.get(f"{url}{WMLA}/hypersearch", auth=bob).json()]
    assert name not in [
        e["name"] for e in requests.get(f"{url}/api/v1/experiments", auth=bob).json()["items"]
    ]
    for method, path in [
        ("GET", f"{WMLA}/hypersearch/{name}"),
        ("PUT", f"{WMLA}/hypersearch/{name}"),
        ("PUT", f"{WMLA}/hypersearch/{name}/force"),
        ("PUT", f"{WMLA}/hypersearch/{name}/restart"),
        ("DELETE", f"{WMLA}/hypersearch/{name}"),
        ("GET", f"{WMLA}/execs/{app_id}"),
        ("GET", f"{WMLA}/execs/{app_id}/log"),
        ("GET", f"{WMLA}/execs/{app_id}/result"),
        ("POST", f"{WMLA}/execs/{app_id}/stop"),
        ("GET", f"/api/v1/experiments/{name}"),
        ("GET", f"/api/v1/experiments/{name}/trials"),
        ("GET", f"/api/v1/experiments/{name}/trials/0/log"),
        ("POST", f"/api/v1/experiments/{name}/stop"),
        ("DELETE", f"/api/v1/experiments/{name}"),
    ]:
        assert requests.request(method, f"{url}{path}", auth=bob).status_code == 404, (method, path)
    requests.delete(f"{url}{WMLA}/hypersearch", auth=bob)  # bob's "delete all" leaves alice's alone
    assert requests.get(f"{url}{WMLA}/hypersearch/{name}", auth=alice).status_code == 200
    assert (
        requests.get(f"{url}{WMLA}/hypersearch/{name}", auth=live_server.admin).status_code == 200
    )  # admins see all


# --- WMLA semantics -----------------------------------------------------------------------------


def test_duplicate_name_stop_restart_and_delete(live_server: LiveServer) -> None:
    url, alice = live_server.url, _user(live_server, "alice")
    name = f"alice-hang-{time.time_ns()}"
    payload = _payload(name, maxJobNum=-1, maxParalleJobNum=2)
    payload["hyperParams"][1]["discreateStrVal"] = ["hang"]
    assert _submit(live_server, alice, payload) == name
    files = {"file": ("quad.modelDir.tar", _model_tar(FIXTURES / "quad", "quad"))}
    dup = requests.post(
        f"{url}{WMLA}/hypersearch", files=files, data={"data": json.dumps(payload)}, auth=alice
    )
    assert dup.status_code == 409 and name in dup.text
    _until(lambda: requests.get(f"{url}{WMLA}/hypersearch/{name}", auth=alice).json()["running"] == 2)
    state = requests.get(f"{url}{WMLA}/hypersearch/{name}", auth=alice).json()
    assert state["progress"] == "0/-"
    assert requests.delete(f"{url}{WMLA}/hypersearch/{name}", auth=alice).status_code == 409  # in use
    assert requests.put(f"{url}{WMLA}/hypersearch/{name}", auth=alice).status_code == 204
    state = _wait(live_server, alice, name, timeout_s=30)
    assert state["state"] == "STOPPED"
    assert all(
        e["state"] in ("FAILED", "CANCELLED") and e["metricVal"] == 9999.99 for e in state["experiments"]
    )
    again = requests.put(f"{url}{WMLA}/hypersearch/{name}", auth=alice)
    assert again.status_code == 400 and again.text == f"Error 400: Model tuning {name} is already stopped."
    restarted = requests.put(f"{url}{WMLA}/hypersearch/{name}/restart", auth=alice)
    assert restarted.status_code == 200 and restarted.json()["state"] in ("SUBMITTED", "RUNNING")
    _until(lambda: requests.get(f"{url}{WMLA}/hypersearch/{name}", auth=alice).json()["running"] == 2)
    assert requests.put(f"{url}{WMLA}/hypersearch/{name}/force", auth=alice).status_code == 204
    assert _wait(live_server, alice, name, timeout_s=30)["state"] == "STOPPED"
    assert requests.delete(f"{url}{WMLA}/hypersearch/{name}", auth=alice).status_code == 204
    assert requests.get(f"{url}{WMLA}/hypersearch/{name}", auth=alice).status_code == 404


def test_one_execution_can_be_stopped(live_server: LiveServer) -> None:
    url, alice = live_server.url, _user(live_server, "alice")
    payload = _payload(maxJobNum=2, maxParalleJobNum=1)
    payload["algorithm"] = "ExperimentGridSearch"
    payload["algoDef"]["algorithm"] = "ExperimentGridSearch"
    payload.pop("hyperParams")
    payload["experiments"] = [
        {"id": 1, "hyperParams": [{"name": "mode", "dataType": "STR", "fixedVal": "hang"}]},
        {"id": 2, "hyperParams": [{"name": "x", "dataType": "DOUBLE", "fixedVal": "0.3"}]},
    ]
    name = _submit(live_server, alice, payload)
    app_id = f"{name}-0"
    _until(lambda: _get(f"{url}{WMLA}/execs/{app_id}", alice).get("state") == "RUNNING")
    assert requests.post(f"{url}{WMLA}/execs/{app_id}/stop", auth=alice).status_code == 200
    state = _wait(live_server, alice, name, timeout_s=60)
    first, second = state["experiments"]
    assert state["state"] == "FINISHED" and first["state"] == "FAILED" and second["state"] == "FINISHED"
    expected = {"name": "mode", "dataType": "str", "fixedVal": "hang", "userDefined": False, "type": "fix"}
    assert first["hyperParams"][0] == expected
    assert "stopped" in requests.get(f"{url}{WMLA}/execs/{app_id}", auth=alice).json()["reason"]
    again = requests.post(f"{url}{WMLA}/execs/{app_id}/stop", auth=alice)
    assert again.status_code == 400 and "already ended" in again.text


def test_bad_submissions_get_400_naming_the_field(live_server: LiveServer) -> None:
    url, alice = live_server.url, _user(live_server, "alice")
    tar = ("quad.modelDir.tar", _model_tar(FIXTURES / "quad", "quad"))
    bad = _payload()
    bad["hyperParams"][0]["maxDbVal"] = -1
    cases = [
        ({"file": tar}, {"data": json.dumps(bad)}, "hyperParams[0].maxDbVal"),
        ({"file": tar}, {"data": "{not json"}, "data: not valid JSON"),
        ({"file": tar}, {}, "data: required"),
        ({}, {"data": json.dumps(_payload())}, "file: a model file part is required"),
        (
            {"file": ("quad.modelDir.tar", b"not a tar")},
            {"data": json.dumps(_payload())},
            "not a readable tar",
        ),
    ]
    before = len(requests.get(f"{url}{WMLA}/hypersearch", auth=alice).json())
    for files, data, fragment in cases:
        r = requests.post(f"{url}{WMLA}/hypersearch", files=files or None, data=data, auth=alice)
        assert r.status_code == 400 and r.text.startswith("Error 400: ") and fragment in r.text, r.text
    assert len(requests.get(f"{url}{WMLA}/hypersearch", auth=alice).json()) == before  # nothing half-created
    r = requests.post(
        f"{url}/api/v1/experiments", files={"code": tar}, data={"spec": json.dumps(bad)}, auth=alice
    )
    assert r.status_code == 400
    problems = r.json()["error"]["problems"]
    assert {"path": "hyperParams[0].maxDbVal", "message": problems[0]["message"]} in problems


def test_file_part_under_any_field_name_and_single_script(live_server: LiveServer) -> None:
    """The CPD notebook posts the script itself, under the script's own name as the field name."""
    url, bob = live_server.url, _user(live_server, "bob")
    payload = _payload(maxJobNum=1)
    payload["modelSpec"]["args"] = "--exec-start PyTorch --model-main train.py"
    script = (FIXTURES / "quad" / "train.py").read_bytes()
    r = requests.post(
        f"{url}{WMLA}/hypersearch",
        files={"train.py": ("train.py", script)},
        data={"data": json.dumps(payload)},
        auth=bob,
    )
    assert r.status_code == 200, r.text
    state = _wait(live_server, bob, r.json()["uid"])
    assert state["state"] == "FINISHED" and state["experiments"][0]["state"] == "FINISHED"


def test_openapi_document_lists_both_apis(live_server: LiveServer) -> None:
    doc = requests.get(f"{live_server.url}/api/v1/openapi.json").json()
    assert f"{WMLA}/hypersearch/{{hpoName}}" in doc["paths"]
    assert "/api/v1/experiments/{name}/trials" in doc["paths"]


def _get(url: str, auth: tuple[str, str]) -> dict:
    r = requests.get(url, auth=auth)
    return r.json() if r.status_code == 200 else {}


def _until(condition, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise TimeoutError("condition not met")
