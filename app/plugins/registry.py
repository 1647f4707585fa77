"""Installing, listing and removing plugins (the WMLA `hypersearch/algorithm` routes' logic)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

from app.codepack import ArchiveError, ArchiveLimits, inspect_archive, is_junk
from app.services.auth import Principal
from app.services.errors import BadRequest, Conflict, NotFound, ServiceError
from app.spec.algorithms import ALGORITHM_ALIASES, OPTUNA_RE
from app.store.models import Plugin, utcnow
from app.store.repository import Store

BUILTINS = ("Random", "TPE", "Bayesian", "Hyperband", "ExperimentGridSearch")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
META_KEYS = ("path", "condaHome", "condaEnv", "remoteExec", "logLevel")


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


def _when(plugin: Plugin) -> str:
    return plugin.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def describe(plugin: Plugin) -> dict[str, Any]:
    """HpoAlgorithmDesc of a user plugin."""
    meta = plugin.meta
    return {
        "name": plugin.name,
        "path": meta.get("path") or f"plugins/{plugin.name}",
        "condaHome": meta.get("condaHome", ""),
        "condaEnv": meta.get("condaEnv", ""),
        "creator": plugin.creator,
        "createtime": _when(plugin),
        "type": "USER_PLUGIN",
        "remoteExec": bool(meta.get("remoteExec", False)),
        "logLevel": meta.get("logLevel", "INFO"),
    }


def listing(store: Store, kind: str | None = None) -> list[dict[str, Any]]:
    kind = (kind or "").upper()
    if kind not in ("", "BUILD_IN", "USER_PLUGIN"):
        raise BadRequest("type: BUILD_IN or USER_PLUGIN", field="type")
    builtins = [{"name": n, "type": "BUILD_IN", "remoteExec": False} for n in BUILTINS]
    plugins = [describe(p) for p in store.plugins()]
    return (builtins if kind != "USER_PLUGIN" else []) + (plugins if kind != "BUILD_IN" else [])


def show(store: Store, name: str) -> dict[str, Any]:
    for builtin in BUILTINS:
        if builtin.lower() == name.lower():
            return {"name": builtin, "type": "BUILD_IN", "remoteExec": False}
    plugin = store.plugin(name)
    if plugin is None:
        raise NotFound(f"no algorithm named {name!r}")
    return describe(plugin)


def pack_flat(folder: Path) -> bytes:
    """A plugin folder as IBM's helper packs it: its files at the archive root."""
    if not folder.is_dir():
        raise BadRequest(f"path: {folder} is not a directory on the server", field="path")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and not is_junk(str(rel)):
                tar.add(path, arcname=str(rel))
    return buf.getvalue()


def install(
    store: Store, user: Principal, data: dict[str, Any], archive: bytes | None, limits: ArchiveLimits
) -> dict[str, Any]:
    """Install a plugin from an uploaded tar (optimizer.py at its root) or, for admins, a server path."""
    if not user.is_admin:
        raise Forbidden("installing a plugin runs its code on the server: an admin must do it")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest("name: letters, digits, _ . - (starting with a letter, max 64)", field="name")
    if (
        name.lower() in ALGORITHM_ALIASES
        or name.lower() in (b.lower() for b in BUILTINS)
        or OPTUNA_RE.match(name)
    ):
        raise Conflict(f"{name!r} is a built-in algorithm", field="name")
    if store.plugin(name) is not None:
        raise Conflict(f"a plugin named {name!r} is installed already", field="name")
    if archive is None:
        path = data.get("path")
        if not isinstance(path, str) or not path:
            raise BadRequest("file: upload the plugin's tar, or give `path` on the server", field="file")
        archive = pack_flat(Path(path))
    try:
        info = inspect_archive(archive, f"{name}.tar", limits)
    except ArchiveError as exc:
        raise BadRequest(f"file: {exc}", field="file") from None
    roots = {"optimizer.py"} | ({f"{info.top}/optimizer.py"} if info.top else set())
    if info.kind != "tar" or not roots & set(info.members):
        raise BadRequest("file: the plugin tar must hold optimizer.py at its root", field="file")
    meta = {k: data[k] for k in META_KEYS if k in data and data[k] is not None}
    plugin = store.add_plugin(
        Plugin(name=name, archive=archive, meta=meta, creator=user.name, created_at=utcnow())
    )
    return {"uid": plugin.name, "href": f"/platform/rest/deeplearning/v1/hypersearch/algorithm/{plugin.name}"}


def remove(store: Store, user: Principal, name: str) -> None:
    if not user.is_admin:
        raise Forbidden("only an admin may delete a plugin")
    if any(b.lower() == name.lower() for b in BUILTINS):
        raise BadRequest(f"{name} is built in and cannot be deleted")
    if not store.delete_plugin(name):
        raise NotFound(f"no plugin named {name!r}")
