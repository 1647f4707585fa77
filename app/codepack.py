"""Model code archives: pack a local folder, recognise an uploaded file, unpack safely.

An archive is either a tar (gzip or plain) holding one top-level folder (WMLA `.modelDir.tar`)
or a single script. Packing is deterministic, so the same folder always has the same hash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from zlib import error as zlib_error

JUNK_NAMES = {".DS_Store", "__MACOSX", "__pycache__", ".git", ".hpo", ".venv", ".ipynb_checkpoints"}


class ArchiveError(ValueError):
    pass


def is_junk(name: str) -> bool:
    parts = Path(name).parts
    return any(p in JUNK_NAMES or p.startswith("._") or p.endswith(".pyc") for p in parts)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack_directory(folder: Path, top: str) -> bytes:
    """A gzip tar of `folder` whose single top-level folder is named `top`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArchiveError(f"{folder}: not a directory")
    buf = io.BytesIO()
    # mtime=0 in the gzip header and tar entries: identical folders give identical bytes.
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_dir_info(top))
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not is_junk(d))
            rel_root = Path(root).relative_to(folder)
            for d in dirs:
                tar.addfile(_dir_info(str(Path(top) / rel_root / d)))
            for name in sorted(files):
                if is_junk(name):
                    continue
                path = Path(root) / name
                if path.is_symlink() or not path.is_file():
                    continue
                info = tarfile.TarInfo(str(Path(top) / rel_root / name))
                info.size = path.stat().st_size
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                info.mtime = 0
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return buf.getvalue()


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    return info


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps for an uploaded archive (settings: HPO_UPLOAD_MAX_*)."""

    max_bytes: int = 64 * 1024 * 1024
    max_members: int = 10_000
    max_unpacked_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class ArchiveInfo:
    kind: str  # "tar" | "file"
    top: str | None  # the archive's single top-level folder, when it has one
    members: tuple[str, ...]


def _open_tar(data: bytes) -> tarfile.TarFile | None:
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError):
        return None


def _escapes(path: str) -> bool:
    """True for an absolute path or one that climbs out of the archive root."""
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path) or path.startswith("\\"):
        return True
    norm = posixpath.normpath(path.replace("\\", "/"))
    return norm == ".." or norm.startswith("../")


def _check_member(member: tarfile.TarInfo, filename: str) -> None:
    name = member.name
    if _escapes(name) or ".." in Path(name.replace("\\", "/")).parts:
        raise ArchiveError(f"{filename}: member {name!r} has an absolute path or '..'")
    if member.issym():
        target = posixpath.join(posixpath.dirname(name), member.linkname)
        if member.linkname.startswith("/") or _escapes(target):
            raise ArchiveError(
                f"{filename}: symlink {name!r} points outside the archive ({member.linkname!r})"
            )
    elif member.islnk():
        if _escapes(member.linkname):
            raise ArchiveError(
                f"{filename}: hard link {name!r} points outside the archive ({member.linkname!r})"
            )
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{filename}: member {name!r} is a device, fifo or other special file")


def inspect_archive(data: bytes, filename: str, limits: ArchiveLimits | None = None) -> ArchiveInfo:
    """Recognise an upload (a tar with one top folder, or a single script) and refuse hostile ones:
    absolute paths, '..', links leading outside, special files, too many members, too many bytes."""
    limits = limits or ArchiveLimits()
    if len(data) > limits.max_bytes:
        raise ArchiveError(f"{filename}: {len(data)} bytes, over the {limits.max_bytes} byte limit")
    tar = _open_tar(data)
    if tar is None:
        if filename.endswith((".tar", ".tgz", ".tar.gz")):
            raise ArchiveError(f"{filename}: not a readable tar archive")
        if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
            raise ArchiveError(f"{filename!r}: a single uploaded file needs a plain file name")
        return ArchiveInfo(kind="file", top=None, members=(filename,))
    names: list[str] = []
    total = 0
    try:
        with tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_members:
                    raise ArchiveError(f"{filename}: more than {limits.max_members} members")
                _check_member(member, filename)
                total += max(member.size, 0)
                if total > limits.max_unpacked_bytes:
                    raise ArchiveError(f"{filename}: unpacks to more than {limits.max_unpacked_bytes} bytes")
                if member.name.strip("./") and not is_junk(member.name):
                    names.append(member.name.lstrip("./"))
    except (tarfile.TarError, EOFError, OSError, zlib_error) as exc:
        raise ArchiveError(f"{filename}: corrupt archive: {exc}") from None
    if not names:
        raise ArchiveError(f"{filename}: the archive is empty")
    tops = {Path(n).parts[0] for n in names}
    top = tops.pop() if len(tops) == 1 and any(len(Path(n).parts) > 1 for n in names) else None
    return ArchiveInfo(kind="tar", top=top, members=tuple(names))


def unpack(data: bytes, filename: str, dest: Path) -> None:
    """Unpack into `dest` (the trial's _submitted_code): a tar's contents, or the single file."""
    info = inspect_archive(data, filename, ArchiveLimits(max_bytes=len(data) + 1))  # refuses hostile ones
    dest.mkdir(parents=True, exist_ok=True)
    tar = _open_tar(data)
    if tar is None or info.kind == "file":
        (dest / filename).write_bytes(data)
        return
    with tar:
        members = [m for m in tar.getmembers() if not is_junk(m.name)]
        try:
            tar.extractall(dest, members=members, filter="data")
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise ArchiveError(f"{filename}: cannot unpack: {exc}") from exc
