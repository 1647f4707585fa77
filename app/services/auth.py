"""Users, salted slow password hashes (scrypt), and revocable expiring tokens.

Only a token's SHA-256 is stored. Basic auth on every call is what IBM's notebooks do, so a
verified (user, password) pair is remembered for a minute instead of paying scrypt per request;
the memory is keyed by the stored hash, so a password change takes effect at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import select

from app.services.errors import BadRequest, Conflict, NotFound, Unauthorized
from app.store.models import ApiToken, User, utcnow
from app.store.repository import Store

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    id: int
    name: str
    is_admin: bool
    token_id: int | None = None  # the token used, when one was


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def new_secret(nbytes: int) -> str:
    """A URL-safe random string that never begins with '-', so no command line reads it as an option.

    One in 64 `secrets.token_urlsafe` draws begins with '-'; drawing again costs a fraction of a bit.
    """
    while (secret := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return secret


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


class Auth:
    def __init__(self, store: Store, token_ttl_s: float = 8 * 3600, memo_s: float = 60.0) -> None:
        self.store = store
        self.token_ttl_s = token_ttl_s
        self.memo_s = memo_s
        self._memo: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # --- users -------------------------------------------------------------------------
    def add_user(self, name: str, password: str, *, admin: bool = False) -> User:
        if not USER_RE.match(name):
            raise BadRequest("user name: letters, digits and _ . @ - only (max 64)", field="name")
        if len(password) < 8 or not _is_text(password):
            raise BadRequest("password: at least 8 characters of text", field="password")
        with self.store.session() as s:
            if s.exec(select(User).where(User.name == name)).first() is not None:
                raise Conflict(f"user {name!r} already exists", field="name")
            user = User(name=name, password_hash=hash_password(password), is_admin=admin)
            s.add(user)
            s.commit()
            s.refresh(user)
            return user

    def users(self) -> list[User]:
        with self.store.session() as s:
            return list(s.exec(select(User).order_by(User.name)))

    def user(self, name: str) -> User | None:
        with self.store.session() as s:
            return s.exec(select(User).where(User.name == name)).first()

    def delete_user(self, name: str) -> None:
        with self.store.session() as s:
            user = s.exec(select(User).where(User.name == name)).first()
            if user is None:
                raise NotFound(f"no user {name!r}")
            for token in s.exec(select(ApiToken).where(ApiToken.user_id == user.id)):
                s.delete(token)
            s.delete(user)
            s.commit()

    # --- credentials -------------------------------------------------------------------
    def login(self, name: str, password: str) -> Principal:
        if not (_is_text(name) and _is_text(password)):
            raise Unauthorized("wrong user name or password")
        user = self.user(name)
        if user is None:
            check_password(password, hash_password("x"))  # same cost whether or not the user exists
            raise Unauthorized("wrong user name or password")
        key = (user.password_hash, hashlib.sha256(password.encode()).hexdigest())
        now = time.monotonic()
        with self._lock:
            remembered = self._memo.get(key, 0.0) > now
        if not remembered:
            if not check_password(password, user.password_hash):
                raise Unauthorized("wrong user name or password")
            with self._lock:
                self._memo[key] = now + self.memo_s
                if len(self._memo) > 10_000:
                    self._memo = {k: v for k, v in self._memo.items() if v > now}
        assert user.id is not None
        return Principal(id=user.id, name=user.name, is_admin=user.is_admin)

    def issue_token(
        self, principal: Principal, kind: str = "token", ttl_s: float | None = None
    ) -> tuple[str, ApiToken]:
        token = new_secret(32)
        row = ApiToken(
            token_hash=token_hash(token),
            user_id=principal.id,
            kind=kind,
            expires_at=utcnow() + timedelta(seconds=ttl_s if ttl_s is not None else self.token_ttl_s),
        )
        with self.store.session() as s:
            s.add(row)
            s.commit()
            s.refresh(row)
        return token, row

    def from_token(self, token: str) -> Principal:
        with self.store.session() as s:
            row = s.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).first()
            if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
                raise Unauthorized("invalid, expired or revoked token")
            user = s.get(User, row.user_id)
            if user is None:
                raise Unauthorized("invalid, expired or revoked token")
            assert user.id is not None
            return Principal(id=user.id, name=user.name, is_admin=user.is_admin, token_id=row.id)

    def revoke(
        self, *, token: str | None = None, token_id: int | None = None, user: str | None = None
    ) -> int:
        """Revoke one token (by value or id) or every token of a user; returns how many."""
        q = update(ApiToken).where(ApiToken.revoked_at.is_(None))  # type: ignore[union-attr]
        if token is not None:
            q = q.where(ApiToken.token_hash == token_hash(token))
        elif token_id is not None:
            q = q.where(ApiToken.id == token_id)
        elif user is not None:
            row = self.user(user)
            if row is None:
                raise NotFound(f"no user {user!r}")
            q = q.where(ApiToken.user_id == row.id)
        else:
            raise BadRequest("say which token to revoke")
        with self.store.session() as s:
            n = s.execute(q.values(revoked_at=utcnow())).rowcount
            s.commit()
            return int(n)


def ensure_admin(auth: Auth, home: Path, password: str | None) -> str | None:
    """First start: create user `admin` (password given, or generated and saved 0600 under home)."""
    if auth.users():
        return None
    generated = password is None
    password = password or new_secret(12)
    auth.add_user("admin", password, admin=True)
    if not generated:
        return "created user admin with the password from HPO_ADMIN_PASSWORD"
    path = home / "admin-password"
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return f"created user admin; its password is in {path}"
