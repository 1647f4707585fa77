"""API behaviour that needs no trials, on an in-process app (FastAPI's TestClient, real SQLite)."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.app import create_app
from app.config import Settings
from app.services.auth import Auth, ensure_admin
from app.store.repository import Store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _client(store: Store, tmp_path: Path, **overrides) -> TestClient:
    settings = Settings(home=tmp_path, **overrides)
    Auth(store).add_user("carol", "carol-password", admin=False)
    return TestClient(create_app(settings, store), raise_server_exceptions=False)


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(FIXTURES / "quad", arcname="quad")
    return buf.getvalue()


def _payload() -> dict:
    payload = json.loads(
        (FIXTURES / "wmla/hpo_submit_random_pytorch_mnist_learning_journey.json").read_text()
    )
    payload["modelSpec"]["args"] = "--model-main train.py --model-dir quad"
    return payload


def test_wmla_12_clients_can_get_the_bare_name(store: Store, tmp_path: Path) -> None:
    client = _client(store, tmp_path, wmla_create_response="name")
    r = client.post(
        "/platform/rest/deeplearning/v1/hypersearch",
        files={"file": ("quad.modelDir.tar", _tar())},
        data={"data": json.dumps(_payload())},
        auth=("carol", "carol-password"),
    )
    assert r.status_code == 200 and r.json().startswith("carol-hpo-")
    assert store.experiment(r.json()).state == "SUBMITTED"


def test_stop_before_any_coordinator_ends_the_experiment(store: Store, tmp_path: Path) -> None:
    client = _client(store, tmp_path)
    auth = ("carol", "carol-password")
    r = client.post(
        "/platform/rest/deeplearning/v1/hypersearch",
        files={"file": ("quad.modelDir.tar", _tar())},
        data={"data": json.dumps(_payload())},
        auth=auth,
    )
    name = r.json()["uid"]
    assert client.put(f"/platform/rest/deeplearning/v1/hypersearch/{name}", auth=auth).status_code == 204
    view = client.get(f"/platform/rest/deeplearning/v1/hypersearch/{name}", auth=auth).json()
    assert view["state"] == "STOPPED" and view["progress"] == "0/10" and view["best"] is None


def test_native_pages_have_no_hidden_cap(store: Store, tmp_path: Path) -> None:
    client = _client(store, tmp_path)
    r = client.get("/api/v1/experiments/x/trials?limit=100000", auth=("carol", "carol-password"))
    assert r.status_code == 400 and "limit" in r.json()["error"]["message"]
    r = client.get("/api/v1/experiments/none", auth=("carol", "carol-password"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_first_start_creates_an_admin_with_a_private_password_file(store: Store, tmp_path: Path) -> None:
    auth = Auth(store)
    note = ensure_admin(auth, tmp_path, None)
    path = tmp_path / "admin-password"
    assert note is not None and str(path) in note
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.login("admin", path.read_text().strip()).is_admin
    assert ensure_admin(auth, tmp_path, None) is None  # only once
