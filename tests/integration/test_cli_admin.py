"""Server-side administration commands: `hpo user ...`, `hpo token revoke`, `hpo db upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from app.services.auth import Auth, token_hash
from app.store.db import current_revision, head_revision, make_engine
from app.store.models import ApiToken, utcnow
from app.store.repository import Store

ROOT = Path(__file__).resolve().parents[2]


def _hpo(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_lifecycle_and_token_revocation(tmp_path: Path) -> None:
    assert _hpo(tmp_path, "db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'hpo.db'}")
    assert current_revision(engine) == head_revision()
    assert _hpo(tmp_path, "user", "add", "dana", "--password", "dana-password-1", "--admin").returncode == 0
    # without --password the password is prompted for (twice), never taken from the command line
    added = _hpo(tmp_path, "user", "add", "eve", stdin="eve-password-1\neve-password-1\n")
    assert added.returncode == 0, added.stderr
    dup = _hpo(tmp_path, "user", "add", "eve", "--password", "whatever-123")
    assert dup.returncode == 2 and "already exists" in dup.stderr
    short = _hpo(tmp_path, "user", "add", "frank", "--password", "short")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    listed = _hpo(tmp_path, "user", "list").stdout.splitlines()
    assert listed == ["dana  (admin)", "eve"]

    auth = Auth(Store(engine))
    assert auth.login("eve", "eve-password-1").name == "eve"
    token, _ = auth.issue_token(auth.login("eve", "eve-password-1"))
    assert _hpo(tmp_path, "token", "revoke", token).stdout.strip() == "revoked 1 token"
    assert _hpo(tmp_path, "token", "revoke").returncode == 2  # say which
    assert _hpo(tmp_path, "user", "delete", "eve").returncode == 0
    assert _hpo(tmp_path, "user", "list").stdout.splitlines() == ["dana  (admin)"]
    missing = _hpo(tmp_path, "user", "delete", "eve")
    assert missing.returncode == 2 and "no user 'eve'" in missing.stderr
    engine.dispose()


def test_a_token_beginning_with_a_dash_is_revoked_not_read_as_an_option(tmp_path: Path) -> None:
    """Tokens issued before `new_secret` began with '-' once in 64 draws; the CLI still takes them."""
    assert _hpo(tmp_path, "db", "upgrade").returncode == 0
    assert _hpo(tmp_path, "user", "add", "gus", "--password", "gus-password-1").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'hpo.db'}")
    store = Store(engine)
    user = next(u for u in Auth(store).users() if u.name == "gus")
    old = "-U3xq" + "a" * 38  # the shape of a token_urlsafe(32) draw that begins with '-'
    with store.session() as s:
        s.add(ApiToken(token_hash=token_hash(old), user_id=user.id, expires_at=utcnow() + timedelta(hours=1)))
        s.commit()
    typo = _hpo(tmp_path, "token", "revoke", "--usr")  # a mistyped option matches no token: said so
    assert typo.returncode == 2 and "no such option or live token: --usr" in typo.stderr
    revoked = _hpo(tmp_path, "token", "revoke", old)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == "revoked 1 token"
    with store.session() as s:
        assert s.exec(select(ApiToken)).one().revoked_at is not None
    engine.dispose()
