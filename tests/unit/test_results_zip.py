"""workers.results.zip_results: what a trial's result zip holds, and what is kept over the cap."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from workers.results import zip_results


def _layout(root: Path, big: int = 0) -> None:
    for rel, text in {
        "_submitted_code/train.py": "print(1)",
        "checkpoint/model.pt": "weights",
        "val_dict_list.json": '[{"loss": 1}]',
        "log/stdout": "o" * big + "END-OF-STDOUT",
        "log/stderr": "",
        "plots/curve.csv": "1,2\n" * (big // 4 + 1),
        "plots/deep/more.txt": "m",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "link-to-results").symlink_to(root / "val_dict_list.json")


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_zip_holds_the_results_and_logs_but_not_the_code_or_checkpoints(tmp_path: Path) -> None:
    _layout(tmp_path)
    data, truncated = zip_results(tmp_path, 1 << 20)
    got = _members(data)
    assert not truncated
    assert sorted(got) == [
        "link-to-results", "log/stderr", "log/stdout", "plots/curve.csv", "plots/deep/more.txt",
        "val_dict_list.json",
    ]  # fmt: skip
    assert got["val_dict_list.json"] == got["link-to-results"] == b'[{"loss": 1}]'
    assert got["plots/deep/more.txt"] == b"m"


def test_over_the_cap_only_the_results_and_the_ends_of_the_logs_go(tmp_path: Path) -> None:
    _layout(tmp_path, big=40_000)
    data, truncated = zip_results(tmp_path, 10_000)
    got = _members(data)
    assert truncated
    assert sorted(got) == ["_truncated.txt", "log/stderr", "log/stdout", "val_dict_list.json"]
    assert got["log/stdout"].endswith(b"END-OF-STDOUT") and len(got["log/stdout"]) == 10_000 // 4
    assert b"over the 10000 cap" in got["_truncated.txt"]
