"""Model code archives: pack a local folder, recognise an uploaded file, unpack safely.

An archive is either a tar (gzip or plain) holding one top-level folder (WMLA `.modelDir.tar`)
or a single script. Packing is deterministic, so the same folder always has the same hash.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
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


_META_TYPES = {b"L", b"K", b"x", b"g"}  # GNU long name/link, PAX headers: tarfile reads them whole
META_MAX = 64 * 1024
_ZERO_BLOCK = bytes(512)


def _decompressed(data: bytes) -> io.BufferedIOBase:
    if data[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=io.BytesIO(data))  # type: ignore[return-value]
    if data[:3] == b"BZh":
        return bz2.BZ2File(io.BytesIO(data))  # type: ignore[return-value]
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(io.BytesIO(data))  # type: ignore[return-value]
    return io.BytesIO(data)


def _header_size(block: bytes) -> int:
    field = block[124:136]
    if field[0] & 0x80:  # base-256 encoding of large sizes
        return int.from_bytes(field[1:], "big")
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == unsigned


def _scan_headers(data: bytes, filename: str, limits: ArchiveLimits) -> None:
    """Walk the raw 512-byte headers before tarfile does: tarfile buffers a long-name or PAX header
    whole, whatever size it claims, so an oversized one is refused here, streaming."""
    total = 0
    try:
        with _decompressed(data) as stream:
            while True:
                block = stream.read(512)
                if len(block) < 512 or block == _ZERO_BLOCK:
                    return
                if not _checksum_ok(block):
                    return  # not a tar header: tarfile decides what this is
                size = _header_size(block)
                if block[156:157] in _META_TYPES and size > META_MAX:
                    raise ArchiveError(
                        f"{filename}: a {size}-byte long-name or PAX header (limit {META_MAX})"
                    )
                total += size
                if total > limits.max_unpacked_bytes:
                    raise ArchiveError(f"{filename}: unpacks to more than {limits.max_unpacked_bytes} bytes")
                remaining = -(-size // 512) * 512
                while remaining > 0:
                    chunk = stream.read(min(remaining, 1 << 20))
                    if not chunk:
                        return
                    remaining -= len(chunk)
    except ArchiveError:
        raise
    except (OSError, EOFError, ValueError, zlib_error, lzma.LZMAError):
        return  # not a tar we can walk: tarfile (or the single-file path) decides


def _walk(path: str, links: set[str]) -> bool:
    """True when `path`, followed component by component, passes through one of `links`."""
    comps = [c for c in path.replace("\\", "/").split("/") if c not in ("", ".")]
    parts: list[str] = []
    for i, comp in enumerate(comps):
        if comp == "..":
            if parts:
                parts.pop()
            continue
        parts.append(comp)
        if i < len(comps) - 1 and "/".join(parts) in links:
            return True
    return False


def _check_links(members: list[tarfile.TarInfo], filename: str) -> None:
    """No member or link target may lie under a symlink of the archive: lexical checks of link
    targets are only sound when no path goes through another link."""
    links = {posixpath.normpath(m.name) for m in members if m.issym()}
    if not links:
        return
    for m in members:
        if _walk(m.name, links):
            raise ArchiveError(f"{filename}: member {m.name!r} lies under a symlink of the archive")
        if m.issym() and _walk(posixpath.join(posixpath.dirname(m.name), m.linkname), links):
            raise ArchiveError(f"{filename}: symlink {m.name!r} points through another symlink")
        if m.islnk() and _walk(m.linkname, links):
            raise ArchiveError(f"{filename}: hard link {m.name!r} points through a symlink")


def inspect_archive(data: bytes, filename: str, limits: ArchiveLimits | None = None) -> ArchiveInfo:
    """Recognise an upload (a tar with one top folder, or a single script) and refuse hostile ones:
    absolute paths, '..', links leading outside, special files, too many members, too many bytes."""
    limits = limits or ArchiveLimits()
    if len(data) > limits.max_bytes:
        raise ArchiveError(f"{filename}: {len(data)} bytes, over the {limits.max_bytes} byte limit")
    _scan_headers(data, filename, limits)
    tar = _open_tar(data)
    if tar is None:
        if filename.endswith((".tar", ".tgz", ".tar.gz")):
            raise ArchiveError(f"{filename}: not a readable tar archive")
        if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
            raise ArchiveError(f"{filename!r}: a single uploaded file needs a plain file name")
        return ArchiveInfo(kind="file", top=None, members=(filename,))
    names: list[str] = []
    members: list[tarfile.TarInfo] = []
    total = 0
    try:
        with tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_members:
                    raise ArchiveError(f"{filename}: more than {limits.max_members} members")
                _check_member(member, filename)
                members.append(member)
                total += max(member.size, 0)
                if total > limits.max_unpacked_bytes:
                    raise ArchiveError(f"{filename}: unpacks to more than {limits.max_unpacked_bytes} bytes")
                if member.name.strip("./") and not is_junk(member.name):
                    names.append(member.name.lstrip("./"))
    except (tarfile.TarError, EOFError, OSError, zlib_error) as exc:
        raise ArchiveError(f"{filename}: corrupt archive: {exc}") from None
    _check_links(members, filename)
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
