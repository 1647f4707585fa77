"""Code archives: deterministic packing, recognising uploads, safe unpacking."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from app.codepack import ArchiveError, inspect_archive, pack_directory, sha256, unpack


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "._train.py").write_bytes(b"junk")
    return root


def test_packing_is_deterministic_and_skips_junk(tmp_path: Path) -> None:
    folder = _tree(tmp_path / "src")
    a, b = pack_directory(folder, "model"), pack_directory(folder, "model")
    assert a == b and sha256(a) == sha256(b)
    info = inspect_archive(a, "model.modelDir.tar")
    assert info.kind == "tar" and info.top == "model"
    assert set(info.members) == {"model", "model/pkg", "model/pkg/util.py", "model/train.py"}
    (folder / "train.py").write_text("print('changed')\n")
    assert sha256(pack_directory(folder, "model")) != sha256(a)


def test_plain_and_gzip_tars_both_unpack(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # plain POSIX tar, as one IBM sample
        data = b"print(1)\n"
        info = tarfile.TarInfo("tf-model/train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        junk = tarfile.TarInfo("tf-model/._train.py")
        junk.size = 1
        tar.addfile(junk, io.BytesIO(b"x"))
    unpack(buf.getvalue(), "tf-model.modelDir.tar", tmp_path / "out")
    assert (tmp_path / "out" / "tf-model" / "train.py").read_bytes() == b"print(1)\n"
    assert not (tmp_path / "out" / "tf-model" / "._train.py").exists()


def test_single_file_upload(tmp_path: Path) -> None:
    info = inspect_archive(b"print(1)\n", "WMLA_HPO_pytorch.py")
    assert info.kind == "file" and info.members == ("WMLA_HPO_pytorch.py",)
    unpack(b"print(1)\n", "WMLA_HPO_pytorch.py", tmp_path)
    assert (tmp_path / "WMLA_HPO_pytorch.py").exists()


def test_archive_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.py")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError):
        unpack(buf.getvalue(), "m.modelDir.tar", tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()


def test_broken_tar_is_a_clear_error() -> None:
    with pytest.raises(ArchiveError, match="not a readable tar"):
        inspect_archive(b"not a tar at all", "model.modelDir.tar")
