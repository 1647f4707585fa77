"""Hostile code uploads, through the real HTTP API and at the archive level.

The API runs in-process (uvicorn in a background thread, SQLite under a temporary HPO_HOME) with
low limits so that the big cases stay fast: 50 members, 1 MiB unpacked, 512 KiB per upload.
Each hostile archive goes to both submission routes (WMLA and native) and must be refused with a
4xx whose message names the problem; no experiment row may appear; and nothing may be written
outside the upload area: the tree around HPO_HOME and TMPDIR (a sentinel folder holding what the
'../' paths would reach), /tmp/evil.py and /etc/passwd are compared before and after, and no
file under TMPDIR may stay open in this process (a spooled upload is unlinked but still open).

The same archives go to `app.codepack.inspect_archive` and `unpack` (what a worker runs, with
tarfile's 'data' filter): both must refuse them, and `unpack` must write nothing outside dest.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import os
import random
import socket
import tarfile
import tempfile
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.api.app import create_app
from app.api.server_thread import ServerThread
from app.codepack import ArchiveError, ArchiveLimits, inspect_archive, unpack
from app.config import Settings
from app.services.auth import Auth
from app.store.db import ensure_schema, make_engine
from app.store.repository import Store

ADMIN = ("admin", "admin-secret-1")
WMLA_ROUTE = "/platform/rest/deeplearning/v1/hypersearch"
NATIVE_ROUTE = "/api/v1/experiments"
MAX_MEMBERS = 50
MAX_UNPACKED = 1024 * 1024
MAX_BYTES = 512 * 1024
MiB = 1024 * 1024
WMLA_SPEC = {
    "modelSpec": {"sigName": "s", "args": "--exec-start PyTorch --model-main train.py"},
    "algoDef": {
        "algorithm": "Random",
        "maxJobNum": 2,
        "maxParalleJobNum": 1,
        "objectiveMetric": "loss",
        "objective": "minimize",
    },
    "hyperParams": [{"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 1.0}],
}
NATIVE_SPEC = {
    "model": {"main": "train.py"},
    "algorithm": {"name": "random"},
    "objective": {"metric": "loss", "direction": "minimize"},
    "max_trials": 2,
    "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
}
TRAIN = b"print('train')\n"


# --- archives ----------------------------------------------------------------------------------
@dataclass
class Entry:
    name: str
    kind: str = "file"  # file | dir | sym | lnk | chr | blk | fifo
    data: bytes = b""
    link: str = ""
    size: int | None = None  # a claimed size different from len(data); no data is written then


TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "sym": tarfile.SYMTYPE,
    "lnk": tarfile.LNKTYPE,
    "chr": tarfile.CHRTYPE,
    "blk": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_members(entries: list[Entry]) -> bytes:
    """The members' headers and data, without the end-of-archive blocks (so more can follow)."""
    raw = io.BytesIO()
    tar = tarfile.TarFile(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT)  # never closed: no end blocks
    for e in entries:
        info = tarfile.TarInfo(e.name)
        info.type = TYPES[e.kind]
        info.mode = 0o755 if e.kind == "dir" else 0o644
        info.linkname = e.link
        if e.size is not None:  # a header claiming `size` bytes, and none follow
            info.size = e.size
            raw.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            continue
        info.size = len(e.data) if e.kind == "file" else 0
        tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return raw.getvalue()


END = b"\0" * 2 * tarfile.BLOCKSIZE


def make_tar(entries: list[Entry], compress: bool = True) -> bytes:
    data = tar_members(entries) + END
    return gzip.compress(data, mtime=0) if compress else data


def model(*extra: Entry) -> list[Entry]:
    """The model folder `m` with train.py, then the hostile members."""
    return [Entry("m", "dir"), Entry("m/train.py", data=TRAIN), *extra]


def zeros_bomb(unpacked: int) -> bytes:
    """A gzip tar whose last member is `unpacked` zero bytes. Concatenated gzip members (one
    compressed MiB repeated) make a GiB cost ~1 MB and no time to build."""
    head = tar_members(model(Entry("m/zeros.bin", size=unpacked)))
    mib = gzip.compress(b"\0" * MiB, mtime=0, compresslevel=9)
    tail = b"\0" * (unpacked % MiB + (-unpacked) % tarfile.BLOCKSIZE) + END
    return gzip.compress(head, mtime=0) + mib * (unpacked // MiB) + gzip.compress(tail, mtime=0)


def many_members(n: int) -> bytes:
    return make_tar(model(*(Entry(f"m/f{i}.py", data=b"") for i in range(n))))


@dataclass(frozen=True)
class Hostile:
    id: str
    build: Callable[[Path], bytes]  # given the sentinel folder the attack aims at
    message: str  # a piece of the refusal that names the problem
    filename: str = "m.modelDir.tar"


# Cases for the API (limits: 50 members, 1 MiB unpacked). `sentinel` is the folder around HPO_HOME.
API_CASES = [
    Hostile("tar-slip", lambda s: make_tar(model(Entry("../../evil.py", data=b"x"))), "'../../evil.py'"),
    Hostile(
        "tar-slip-deep",
        lambda s: make_tar(model(Entry("m/../../../sentinel-evil.py", data=b"x"))),
        "absolute path or '..'",
    ),
    Hostile("absolute-tmp", lambda s: make_tar(model(Entry("/tmp/evil.py", data=b"x"))), "'/tmp/evil.py'"),
    Hostile(
        "absolute-sentinel",
        lambda s: make_tar(model(Entry(f"{s}/abs-evil.py", data=b"x"))),
        "absolute path",
    ),
    Hostile(
        "backslash-slip",
        lambda s: make_tar(model(Entry("m\\..\\..\\evil.py", data=b"x"))),
        "absolute path or '..'",
    ),
    Hostile(
        "symlink-etc-passwd",
        lambda s: make_tar(model(Entry("m/passwd", "sym", link="/etc/passwd"))),
        "symlink 'm/passwd' points outside the archive ('/etc/passwd')",
    ),
    Hostile(
        "symlink-dotdot",
        lambda s: make_tar(model(Entry("m/x", "sym", link="../../x"))),
        "symlink 'm/x' points outside the archive ('../../x')",
    ),
    Hostile(
        "hardlink-outside",
        lambda s: make_tar(model(Entry("m/out", "lnk", link="../outside"))),
        "hard link 'm/out' points outside the archive ('../outside')",
    ),
    Hostile(
        "hardlink-absolute",
        lambda s: make_tar(model(Entry("m/pw", "lnk", link="/etc/passwd"))),
        "hard link 'm/pw' points outside",
    ),
    Hostile(
        "char-device", lambda s: make_tar(model(Entry("m/null", "chr"))), "device, fifo or other special"
    ),
    Hostile(
        "block-device", lambda s: make_tar(model(Entry("m/sda", "blk"))), "device, fifo or other special"
    ),
    Hostile("fifo", lambda s: make_tar(model(Entry("m/pipe", "fifo"))), "device, fifo or other special"),
    Hostile("junk-named-device", lambda s: make_tar(model(Entry("m/._x", "chr"))), "device, fifo"),
    Hostile(
        "too-many-members",
        lambda s: many_members(MAX_MEMBERS + 1),
        f"more than {MAX_MEMBERS} members",
    ),
    Hostile("gzip-bomb", lambda s: zeros_bomb(2 * MiB), f"unpacks to more than {MAX_UNPACKED} bytes"),
    Hostile(
        "claimed-huge-size",
        lambda s: make_tar(model(Entry("m/huge.bin", size=2**40))),
        "unpacks to more than",
    ),
    Hostile("not-a-tar", lambda s: os.urandom(4096), "not a readable tar archive"),
    Hostile(
        "truncated-tar",  # cut inside big.py's (incompressible) data: an interrupted upload
        lambda s: make_tar(model(Entry("m/big.py", data=random.Random(0).randbytes(10_000))))[:5000],
        "corrupt archive",
    ),
    Hostile(
        "no-model-main",
        lambda s: make_tar([Entry("m", "dir"), Entry("m/other.py", data=TRAIN)]),
        "modelSpec.args: --model-main 'train.py' is not in the code archive",
    ),
    Hostile("empty-archive", lambda s: make_tar([]), "the archive is empty"),
]


# --- the API, its files, and what must not change ---------------------------------------------
@dataclass
class Api:
    url: str
    port: int
    store: Store
    sentinel: Path  # holds home/ (HPO_HOME), tmp/ (TMPDIR) and a/b/ (where '../' would land)
    home: Path
    tmpdir: Path


DB_FILES = {"hpo.db", "hpo.db-wal", "hpo.db-shm", "hpo.db-journal"}
WATCHED = [Path("/tmp/evil.py"), Path("/etc/passwd"), Path("/tmp/abs-evil.py")]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with size and mtime (files, links; folders by name only: making and
    removing dest touches its parent's mtime); the database excluded."""
    out = {}
    for path in root.rglob("*"):
        if path.name in DB_FILES:
            continue
        st = path.lstat()
        out[str(path.relative_to(root))] = (
            (0, 0)
            if path.is_dir() and not path.is_symlink()
            else (
                st.st_size,
                st.st_mtime_ns,
            )
        )
    return out


def watched() -> dict[str, tuple[int, int] | None]:
    out: dict[str, tuple[int, int] | None] = {}
    for path in WATCHED:
        try:
            st = path.lstat()
            out[str(path)] = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            out[str(path)] = None
    return out


def open_files_under(folder: Path) -> list[str]:
    """Files under `folder` this process still holds open (unlinked ones included)."""
    gc.collect()
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    sentinel = tmp_path_factory.mktemp("sentinel")
    home, tmpdir = sentinel / "home", sentinel / "tmp"
    for folder in (home, tmpdir, sentinel / "a" / "b"):
        folder.mkdir(parents=True)
    (sentinel / "a" / "b" / "keep.txt").write_text("untouched\n")
    engine = make_engine(f"sqlite:///{home / 'hpo.db'}")
    ensure_schema(engine, auto_upgrade=True)
    store = Store(engine)
    Auth(store).add_user(*ADMIN, admin=True)
    settings = Settings(
        home=home,
        code_max_bytes=MAX_BYTES,
        upload_max_members=MAX_MEMBERS,
        upload_max_unpacked_bytes=MAX_UNPACKED,
    )
    app = create_app(settings, store, cpu_only=True, has_gpus=False)
    with pytest.MonkeyPatch.context() as mp:
        # Spooled uploads (starlette rolls a part over 1 MiB to disk) land in our TMPDIR.
        mp.setenv("TMPDIR", str(tmpdir))
        mp.setattr(tempfile, "tempdir", str(tmpdir))
        with ServerThread(app) as server:
            yield Api(server.url, server.port, store, sentinel, home, tmpdir)
    engine.dispose()


def _post(api: Api, route: str, data: bytes, filename: str, spec: dict | None = None) -> httpx.Response:
    if route == WMLA_ROUTE:
        files = {"data": (None, json.dumps(spec or WMLA_SPEC)), "file": (filename, data)}
    else:
        files = {"spec": (None, json.dumps(spec or NATIVE_SPEC)), "code": (filename, data)}
    return httpx.post(api.url + route, auth=ADMIN, files=files, timeout=60)


def _message(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json()["error"]["message"])
    return response.text  # WMLA: "Error <code>: <message>"


@dataclass
class Snapshot:
    tree: dict[str, tuple[int, int]]
    watched: dict[str, tuple[int, int] | None]
    names: set[str]


def snapshot(api: Api) -> Snapshot:
    return Snapshot(tree(api.sentinel), watched(), {e.name for e in api.store.experiments()})


def assert_untouched(api: Api, before: Snapshot) -> None:
    after = snapshot(api)
    assert after.names == before.names, "an experiment row was created"
    new = set(after.tree) - set(before.tree)
    changed = {k for k in before.tree if after.tree.get(k) != before.tree[k]}
    assert not new and not changed, (
        f"written outside the upload area: new {sorted(new)}, changed {sorted(changed)}"
    )
    assert after.watched == before.watched
    assert list(api.tmpdir.iterdir()) == []
    assert open_files_under(api.tmpdir) == []


ROUTES = pytest.mark.parametrize("route", [WMLA_ROUTE, NATIVE_ROUTE], ids=["wmla", "native"])


@ROUTES
@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_hostile_archive_is_refused_naming_the_problem(api: Api, route: str, case: Hostile) -> None:
    data = case.build(api.sentinel)
    before = snapshot(api)
    response = _post(api, route, data, case.filename)
    assert response.status_code == 400, response.text
    assert case.message in _message(response), _message(response)
    assert_untouched(api, before)


@ROUTES
def test_upload_over_code_max_bytes_is_413(api: Api, route: str) -> None:
    before = snapshot(api)
    response = _post(api, route, os.urandom(MAX_BYTES + 1), "m.modelDir.tar")
    assert response.status_code == 413, response.text
    assert f"over the {MAX_BYTES} byte limit" in _message(response)
    assert_untouched(api, before)


@ROUTES
def test_upload_spooled_to_disk_is_refused_and_leaves_no_file(api: Api, route: str) -> None:
    """3 MiB: starlette spools it to a file in TMPDIR (over 1 MiB); 413, and the file is gone."""
    before = snapshot(api)
    response = _post(api, route, b"\0" * (3 * MiB), "m.modelDir.tar")
    assert response.status_code == 413, response.text
    assert_untouched(api, before)


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def test_declared_huge_body_is_413_before_reading_it(api: Api) -> None:
    """A Content-Length far over the limit is refused from the headers; the body is never sent."""
    before = snapshot(api)
    request = (
        f"POST {WMLA_ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Authorization: Basic YWRtaW46YWRtaW4tc2VjcmV0LTE=\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(request.encode())
        answer = b""
        while not _complete(answer):  # the answer comes without the server reading the 100 GB
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"over the upload limit" in answer
    assert_untouched(api, before)


@ROUTES
def test_mac_junk_is_ignored_and_the_archive_accepted(api: Api, route: str) -> None:
    data = make_tar(
        [
            Entry("m", "dir"),
            Entry("m/train.py", data=TRAIN),
            Entry("m/._train.py", data=b"\0\5\26\7appledouble"),
            Entry("m/.DS_Store", data=b"Bud1junk"),
            Entry("__MACOSX", "dir"),
            Entry("__MACOSX/m", "dir"),
            Entry("__MACOSX/m/._train.py", data=b"\0\5\26\7appledouble"),
            Entry("._m", data=b"junk"),
        ]
    )
    before = snapshot(api)
    response = _post(api, route, data, "m.modelDir.tar")
    assert response.status_code in (200, 201), response.text
    name = response.json()["uid"] if route == WMLA_ROUTE else response.json()["name"]
    exp = api.store.experiment(name)
    assert exp is not None and exp.spec["model"]["model_dir"] == "m"
    api.store.delete_experiment(exp.id)  # type: ignore[arg-type]
    assert_untouched(api, before)


CHAIN = make_tar(
    model(
        Entry("m/up", "sym", link=".."),  # -> the archive root: inside, on its own
        Entry("m/up/up2", "sym", link=".."),  # lexically m/up/.. = m; on disk: root/.. = outside
        Entry("m/up/up2/chain-evil.py", data=b"evil"),
    )
)


@ROUTES
def test_symlink_chain_leaving_the_archive_is_refused(api: Api, route: str) -> None:
    before = snapshot(api)
    response = _post(api, route, CHAIN, "m.modelDir.tar")
    try:
        assert response.status_code == 400, response.text
        assert "symlink" in _message(response)
    finally:
        for exp in api.store.experiments():
            if exp.name not in before.names:
                api.store.delete_experiment(exp.id)  # type: ignore[arg-type]
    assert_untouched(api, before)


# --- archive level: inspect_archive and unpack -------------------------------------------------
DEFAULTS = ArchiveLimits()
LOW = ArchiveLimits(max_bytes=MAX_BYTES * 4, max_members=MAX_MEMBERS, max_unpacked_bytes=MAX_UNPACKED)
UNIT_CASES = [c for c in API_CASES if c.id not in ("too-many-members", "gzip-bomb", "no-model-main")] + [
    # `unpack` checks with the default limits (10,000 members, 1 GiB): cases that exceed those.
    Hostile("20001-members", lambda s: many_members(20_001), "more than 10000 members"),
    Hostile("gzip-bomb-1.1GiB", lambda s: zeros_bomb(1100 * MiB), "unpacks to more than 1073741824 bytes"),
]


def _escape_layout(tmp_path: Path) -> tuple[Path, Path]:
    """root/a/b/dest: '../../x' from dest's members lands in root/a; root is watched."""
    root = tmp_path / "root"
    dest = root / "a" / "b" / "dest"
    dest.parent.mkdir(parents=True)
    (root / "a" / "keep.txt").write_text("untouched\n")
    return root, dest


@pytest.mark.parametrize("case", UNIT_CASES, ids=[c.id for c in UNIT_CASES])
def test_inspect_and_unpack_refuse(tmp_path: Path, case: Hostile) -> None:
    root, dest = _escape_layout(tmp_path)
    data = case.build(root)
    with pytest.raises(ArchiveError) as refused:
        inspect_archive(data, case.filename, DEFAULTS)
    assert case.message in str(refused.value)
    before, outside = tree(root), watched()
    with pytest.raises(ArchiveError):
        unpack(data, case.filename, dest)
    assert tree(root) == before  # dest itself never created: refused before anything is written
    assert watched() == outside


@pytest.mark.parametrize(
    "case",
    [c for c in API_CASES if c.id in ("too-many-members", "gzip-bomb")],
    ids=lambda c: c.id,
)
def test_inspect_refuses_with_low_limits(case: Hostile) -> None:
    with pytest.raises(ArchiveError, match=case.message):
        inspect_archive(case.build(Path("/nonexistent")), case.filename, LOW)


def test_the_bombs_are_real_archives() -> None:
    """Refused for their size, not for being malformed: under a higher limit they read fine."""
    info = inspect_archive(zeros_bomb(2 * MiB), "m.tar", ArchiveLimits(max_unpacked_bytes=4 * MiB))
    assert info.members == ("m", "m/train.py", "m/zeros.bin")
    with tarfile.open(fileobj=io.BytesIO(zeros_bomb(3 * MiB + 5)), mode="r:gz") as tar:
        member = tar.extractfile("m/zeros.bin")
        assert member is not None and member.read() == b"\0" * (3 * MiB + 5)


def test_upload_over_max_bytes_is_refused() -> None:
    with pytest.raises(ArchiveError, match=f"over the {MAX_BYTES} byte limit"):
        inspect_archive(b"\0" * (MAX_BYTES + 1), "m.modelDir.tar", ArchiveLimits(max_bytes=MAX_BYTES))


def test_unpack_stops_a_symlink_chain_and_writes_nothing_outside(tmp_path: Path) -> None:
    """unpack refuses the chain too (inspect_archive first, tarfile's 'data' filter behind it),
    and nothing lands outside."""
    root, dest = _escape_layout(tmp_path)
    before, outside = tree(root), watched()
    with pytest.raises(ArchiveError, match="symlink"):
        unpack(CHAIN, "m.modelDir.tar", dest)
    assert tree(root) == before
    assert watched() == outside


def test_unpack_of_the_mac_junk_archive_skips_the_junk(tmp_path: Path) -> None:
    data = make_tar(
        [
            Entry("m", "dir"),
            Entry("m/train.py", data=TRAIN),
            Entry("m/._train.py", data=b"x"),
            Entry("m/.DS_Store", data=b"x"),
            Entry("__MACOSX/m/._train.py", data=b"x"),
        ]
    )
    root, dest = _escape_layout(tmp_path)
    unpack(data, "m.modelDir.tar", dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["m", "m/train.py"]
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if dest not in (p, *p.parents)) == [
        "a",
        "a/b",
        "a/keep.txt",
    ]


def _header_bomb(kind: bytes, claimed: int) -> bytes:
    """A GNU long-name ('L') or PAX ('x') header whose payload is `claimed` bytes of 'a', gzipped."""
    header = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "././@PaxHeader")
    header.type = kind
    header.size = claimed
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    out = [compressor.compress(header.tobuf(tarfile.GNU_FORMAT))]
    chunk = b"a" * MiB
    for _ in range(claimed // MiB):
        out.append(compressor.compress(chunk))
    tail = make_tar(model(), compress=False)
    out += [compressor.compress(b"\0" * ((-claimed) % tarfile.BLOCKSIZE) + tail), compressor.flush()]
    return b"".join(out)


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE], ids=["gnu-longname", "pax"])
def test_oversized_tar_headers_are_refused_without_buffering(kind: bytes) -> None:
    data = _header_bomb(kind, 16 * MiB)
    assert len(data) < 64 * 1024
    tracemalloc.start()
    try:
        try:
            inspect_archive(data, "m.tar.gz", LOW)
            refused = False
        except ArchiveError:
            refused = True
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused, "accepted"
    assert peak < 8 * MAX_UNPACKED, f"peak {peak / MiB:.0f} MiB while inspecting a {len(data)} byte upload"
