"""The file artifact store: one folder per experiment, atomic writes, old references still read."""

from __future__ import annotations

from pathlib import Path

from app.store.artifacts import FileArtifactStore


def test_results_go_to_one_folder_per_experiment_and_come_back(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    refs = [
        store.put_result("exp", f"exp-{i}", attempt, b"zip %d" % i) for i in range(3) for attempt in (1, 2)
    ]
    assert len(set(refs)) == 6
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["exp"]  # no folder per trial
    assert all((tmp_path / "artifacts" / "exp").joinpath(Path(r).name).is_file() for r in refs)
    assert store.get_result(refs[3]) == b"zip 1"
    assert not list((tmp_path / "artifacts" / "exp").glob("*.tmp"))  # written through a rename
    again = store.put_result("exp", "exp-1", 2, b"new")  # a rewrite replaces the file
    assert again == refs[3] and store.get_result(again) == b"new"


def test_older_layout_references_are_read_and_nothing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    old = root / "exp" / "exp-0" / "attempt-1" / "result.zip"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    (tmp_path / "secret").write_bytes(b"no")
    store = FileArtifactStore(root)
    assert store.get_result("exp/exp-0/attempt-1/result.zip") == b"old"
    assert store.get_result("../secret") is None and store.get_result("exp/missing.zip") is None
    store.delete_experiment("exp")
    assert not (root / "exp").exists()
