"""A synchronous Python client for the native API (/api/v1) of an `hpo serve` or `hpo api` server.

```python
from app.client import HpoClient

with HpoClient.from_environment() as hpo:            # HPO_URL/HPO_TOKEN/... or `hpo login`'s file
    exp = hpo.submit("experiment.yaml", "model/")    # the spec is validated here before any upload
    hpo.wait(exp["name"])
    print(hpo.best(exp["name"])["params"])
```

Credentials are found (`from_environment`) in this order: explicit arguments; the environment
(`HPO_URL`, `HPO_TOKEN`, or `HPO_USER` + `HPO_PASSWORD`); the credentials file that `hpo login`
writes (`~/.config/hpo/credentials`, or the path in `HPO_CREDENTIALS`):

```json
{"default": "https://hpo.example:8080",
 "servers": {"https://hpo.example:8080": {"user": "alice", "token": "..."}}}
```

The file is created with mode 0600 in a 0700 folder and only ever holds tokens, never passwords.

Errors: the server's JSON error body `{"error": {code, message, field, problems}}` becomes
`HpoApiError` (`AuthError` for 401); an unreachable server `HpoConnectionError`; a bad spec is a
`SpecError` raised locally before anything is uploaded; other local problems are `HpoError`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from app.codepack import ArchiveError, pack_directory
from app.spec import ExperimentSpec, is_wmla, load_spec, parse_spec

__all__ = [
    "DONE_STATES",
    "AuthError",
    "HpoApiError",
    "HpoClient",
    "HpoConnectionError",
    "HpoError",
    "credentials_path",
    "forget_credentials",
    "load_credentials",
    "save_credentials",
]

DONE_STATES = ("FINISHED", "FAILED", "STOPPED")
DEFAULT_TIMEOUT_S = 30.0
LOGIN_HINT = "run `hpo login URL` to get a new token"


# --- errors ----------------------------------------------------------------------------------
def parse_time(value: str | None) -> datetime | None:
    """An API timestamp (ISO 8601; naive ones are UTC), None when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class HpoError(Exception):
    """A problem found on this side: no server configured, a model folder missing, ..."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HpoConnectionError(HpoError):
    """The server could not be reached (refused, DNS, TLS, timeout)."""


class HpoApiError(HpoError):
    """The server refused a request: HTTP status, error code, message and per-field problems."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: list[dict[str, str]] | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.problems = list(problems or [])
        self.field = field

    def __str__(self) -> str:
        lines = [f"{self.message} (HTTP {self.status} {self.code})"]
        lines += [f"  - {p.get('path', '')}: {p.get('message', '')}" for p in self.problems]
        return "\n".join(lines)


class AuthError(HpoApiError):
    """401: no, wrong, expired or revoked credentials."""


def _error_of(response: httpx.Response, *, hint: bool = True) -> HpoApiError:
    status = response.status_code
    code, message, field, problems = f"http_{status}", "", None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        code = str(detail.get("code") or code)
        message = str(detail.get("message") or "")
        field = detail.get("field") if isinstance(detail.get("field"), str) else None
        raw = detail.get("problems")
        if isinstance(raw, list):
            problems = [
                {"path": str(p.get("path", "")), "message": str(p.get("message", ""))}
                for p in raw
                if isinstance(p, dict)
            ]
    if not message:
        message = response.text.strip()[:500] or response.reason_phrase or f"HTTP {status}"
    if status == 401:
        if hint:
            message = f"{message}; {LOGIN_HINT}"
        return AuthError(status, code, message, problems, field)
    return HpoApiError(status, code, message, problems, field)


# --- the credentials file --------------------------------------------------------------------
def credentials_path() -> Path:
    """`HPO_CREDENTIALS`, else ~/.config/hpo/credentials."""
    override = os.environ.get("HPO_CREDENTIALS")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".config" / "hpo" / "credentials"


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise HpoError(f"server URL must start with http:// or https://, got {url!r}")
    return url


def load_credentials(path: Path | None = None) -> dict[str, Any]:
    """The file's content, `{"default": None, "servers": {}}` when it is missing or unreadable."""
    path = path or credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        data = {}
    servers = data.get("servers")
    return {
        "default": data.get("default") if isinstance(data.get("default"), str) else None,
        "servers": {k: v for k, v in servers.items() if isinstance(v, dict)}
        if isinstance(servers, dict)
        else {},
    }


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by its owner only (0600 in a 0700 folder), atomically replacing it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask, and ignored for an existing file
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.chmod(path, 0o600)


def save_credentials(
    url: str, user: str | None, token: str, *, path: Path | None = None, make_default: bool = True
) -> Path:
    """Remember a token for `url` (never a password); returns the file written."""
    path = path or credentials_path()
    url = normalize_url(url)
    data = load_credentials(path)
    data["servers"][url] = {"user": user, "token": token}
    if make_default or not data["default"]:
        data["default"] = url
    _write_private(path, data)
    return path


def forget_credentials(url: str, *, path: Path | None = None) -> bool:
    """Drop the token saved for `url`; True when there was one."""
    path = path or credentials_path()
    url = normalize_url(url)
    data = load_credentials(path)
    if url not in data["servers"]:
        return False
    del data["servers"][url]
    if data["default"] == url:
        data["default"] = next(iter(data["servers"]), None)
    _write_private(path, data)
    return True


# --- the client ------------------------------------------------------------------------------
def _spec_text(path: Path, name: str | None) -> tuple[ExperimentSpec, str]:
    """Validate the spec file; with `name`, set hpoName (WMLA) or name (native) and revalidate."""
    spec = load_spec(path)  # SpecError naming the field, before anything is packed or sent
    text = path.read_text(encoding="utf-8")
    if name is None:
        return spec, text
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    data["hpoName" if is_wmla(data) else "name"] = name
    return parse_spec(data, source=str(path)), json.dumps(data, default=str)


class HpoClient:
    """The native API over one httpx connection pool; use as a context manager or call close()."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        verify: bool | str = True,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = normalize_url(url)
        self.token = token
        self.user = user
        self.password = password
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout)

    @classmethod
    def from_environment(
        cls, url: str | None = None, *, verify: bool | str = True, timeout: float = DEFAULT_TIMEOUT_S
    ) -> HpoClient:
        """A client for `url` (else HPO_URL, else the credentials file's default) with a token
        (HPO_TOKEN), a user and password (HPO_USER + HPO_PASSWORD) or the token saved by login."""
        env = os.environ
        saved = load_credentials()
        url = url or env.get("HPO_URL") or saved["default"]
        if not url:
            raise HpoError("no server: run `hpo login URL`, set HPO_URL or pass --url")
        url = normalize_url(url)
        if env.get("HPO_TOKEN"):
            return cls(url, token=env["HPO_TOKEN"], verify=verify, timeout=timeout)
        if env.get("HPO_USER") and env.get("HPO_PASSWORD"):
            return cls(
                url, user=env["HPO_USER"], password=env["HPO_PASSWORD"], verify=verify, timeout=timeout
            )
        entry = saved["servers"].get(url) or {}
        token = entry.get("token") if isinstance(entry.get("token"), str) else None
        return cls(url, token=token, user=entry.get("user"), verify=verify, timeout=timeout)

    # --- plumbing ----------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HpoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth_headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def _basic(self) -> httpx.BasicAuth | None:
        if not self.token and self.user and self.password is not None:
            return httpx.BasicAuth(self.user, self.password)
        return None

    def _request(self, method: str, path: str, *, hint: bool = True, **kwargs: Any) -> httpx.Response:
        headers = {**self._auth_headers(), **kwargs.pop("headers", {})}
        auth = kwargs.pop("auth", None) or self._basic()
        try:
            response = self._http.request(method, path, headers=headers, auth=auth, **kwargs)
        except httpx.TransportError as exc:
            raise HpoConnectionError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            raise _error_of(response, hint=hint)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    @staticmethod
    def _path(name: str) -> str:
        return f"/api/v1/experiments/{quote(name, safe='')}"

    # --- auth --------------------------------------------------------------------------------
    def login(self) -> str:
        """Trade the user name and password for a token (kept on this client and returned)."""
        if not self.user or self.password is None:
            raise HpoError("login needs a user name and a password")
        self.token = None  # Basic only: a token header would win over the credentials
        response = self._request(
            "POST", "/api/v1/tokens", auth=httpx.BasicAuth(self.user, self.password), hint=False
        )
        body = response.json()
        self.token = str(body["token"])
        self.user = str(body.get("user") or self.user)
        self.password = None  # the token is enough from now on
        return self.token

    def logout(self) -> None:
        """Revoke the token this client uses."""
        self._request("DELETE", "/api/v1/tokens/current")
        self.token = None

    def me(self) -> dict[str, Any]:
        return self._json("GET", "/api/v1/me")

    # --- experiments -------------------------------------------------------------------------
    def submit(self, spec_path: str | Path, model_dir: str | Path, name: str | None = None) -> dict[str, Any]:
        """Validate the spec here, pack `model_dir` and create the experiment; returns it."""
        spec_path, model_dir = Path(spec_path), Path(model_dir)
        spec, text = _spec_text(spec_path, name)
        if not model_dir.is_dir():
            raise HpoError(f"--model-dir {model_dir}: not a directory")
        if not (model_dir / spec.model.main).is_file():
            raise HpoError(f"--model-dir {model_dir}: has no {spec.model.main} (the spec's main script)")
        top = spec.model.model_dir or model_dir.resolve().name
        try:
            code = pack_directory(model_dir, top)
        except ArchiveError as exc:
            raise HpoError(str(exc)) from None
        files = {"code": (f"{top}.modelDir.tar", code, "application/gzip")}
        return self._json("POST", "/api/v1/experiments", data={"spec": text}, files=files)

    def experiments(self, page_size: int = 100) -> list[dict[str, Any]]:
        """Every experiment the caller may see (all pages), oldest first."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self._json("GET", "/api/v1/experiments", params={"after": after, "limit": page_size})
            out.extend(page["items"])
            if page.get("next_after") is None:
                return out
            after = page["next_after"]

    def experiment(self, name: str) -> dict[str, Any]:
        return self._json("GET", self._path(name))

    def trials(self, name: str, state: str | None = None, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """The experiment's trials in number order, fetching page after page as they are consumed."""
        after = -1
        while True:
            params: dict[str, Any] = {"after": after, "limit": page_size}
            if state:
                params["state"] = state
            page = self._json("GET", f"{self._path(name)}/trials", params=params)
            yield from page["items"]
            if page.get("next_after") is None:
                return
            after = page["next_after"]

    def trial(self, name: str, number: int) -> dict[str, Any]:
        return self._json("GET", f"{self._path(name)}/trials/{int(number)}")

    def best(self, name: str) -> dict[str, Any]:
        """{trial, exec_id, value, params}; HpoApiError 404 while there is no successful trial."""
        return self._json("GET", f"{self._path(name)}/best")

    def log(self, name: str, number: int, stream: str = "stdout") -> str:
        """A finished trial's whole log, or the live tail of a running one."""
        return self._request(
            "GET", f"{self._path(name)}/trials/{int(number)}/log", params={"stream": stream}
        ).text

    def stop(self, name: str, force: bool = False) -> dict[str, Any]:
        return self._json("POST", f"{self._path(name)}/stop", params={"force": str(force).lower()})

    def restart(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"{self._path(name)}/restart")

    def retry(self, name: str, trials: list[int] | None = None) -> list[dict[str, Any]]:
        """Run FAILED trials again (the numbered ones, else all of them)."""
        params = [("trial", str(int(n))) for n in trials or []]
        return self._json("POST", f"{self._path(name)}/retry", params=params)

    def delete(self, name: str) -> None:
        self._request("DELETE", self._path(name))

    # --- plugins (WMLA routes) ---------------------------------------------------------------
    PLUGINS = "/platform/rest/deeplearning/v1/hypersearch/algorithm"

    def plugins(self, kind: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", self.PLUGINS, params={"type": kind} if kind else None)

    def plugin(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"{self.PLUGINS}/{quote(name, safe='')}")

    def install_plugin(self, name: str, folder: str | Path, log_level: str = "INFO") -> dict[str, Any]:
        """Upload a plugin folder (optimizer.py at its top) as IBM's helper does: files at the root."""
        from app.plugins.registry import pack_flat

        data = {"name": name, "logLevel": log_level, "remoteExec": False}
        files = {"file": (f"{name}.tar", pack_flat(Path(folder)))}
        return self._json("POST", f"{self.PLUGINS}/install", data={"data": json.dumps(data)}, files=files)

    def delete_plugin(self, name: str) -> None:
        self._request("DELETE", f"{self.PLUGINS}/{quote(name, safe='')}")

    def dashboard(self, name: str) -> dict[str, Any]:
        """The experiment with its aggregated plot data (what the dashboard draws)."""
        return self._json("GET", f"/api/v1/dashboard/experiments/{quote(name, safe='')}")

    def best_trials(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The `limit` best trials by their objective, best first."""
        exp = self.experiment(name)
        params = {"sort": "objective", "desc": str(exp["direction"] == "maximize").lower(), "limit": limit,
                  "state": "FINISHED"}  # fmt: skip
        path = f"/api/v1/dashboard/experiments/{quote(name, safe='')}/trials"
        return self._json("GET", path, params=params)["items"]

    def stop_trial(self, name: str, number: int, force: bool = False) -> dict[str, Any]:
        return self._json(
            "POST", f"{self._path(name)}/trials/{int(number)}/stop", params={"force": str(force).lower()}
        )

    def wait(
        self,
        name: str,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the experiment is FINISHED, FAILED or STOPPED; returns it. TimeoutError when
        `timeout_s` passes first. `on_update` gets every polled state."""
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        while True:
            exp = self.experiment(name)
            if on_update is not None:
                on_update(exp)
            if exp["state"] in DONE_STATES:
                return exp
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"experiment {name} is still {exp['state']} after {timeout_s} s")
            pause = poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic()))
            time.sleep(pause)
