"""The file artifact store: one append-only pack per experiment, old references still read."""

from __future__ import annotations

from pathlib import Path

from app.store.artifacts import FileArtifactStore


def test_results_go_to_one_pack_per_experiment_and_come_back(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path / "artifacts")
    refs = [
        store.put_result("exp", f"exp-{i}", attempt, b"zip %d" % i) for i in range(3) for attempt in (1, 2)
    ]
    assert len(set(refs)) == 6
    assert [p.name for p in (tmp_path / "artifacts").iterdir()] == ["exp"]  # no folder per trial
    assert [p.name for p in (tmp_path / "artifacts" / "exp").iterdir()] == ["results.pack"]  # no file either
    assert refs[3].endswith("/exp-1.attempt-2.zip")  # a reference names the attempt it holds
    assert [store.get_result(r) for r in refs] == [b"zip %d" % i for i in range(3) for _ in (1, 2)]
    again = store.put_result("exp", "exp-1", 2, b"new")  # a rewrite: a new reference, the old reads
    assert again != refs[3] and store.get_result(again) == b"new" and store.get_result(refs[3]) == b"zip 1"
    assert store.put_result("exp", "exp-9", 1, b"") and store.get_result(refs[0]) == b"zip 0"


def test_a_torn_write_at_the_end_of_a_pack_does_not_touch_stored_results(tmp_path: Path) -> None:
    """A coordinator killed mid-append leaves bytes no reference names; later results go after them."""
    store = FileArtifactStore(tmp_path)
    first = store.put_result("exp", "exp-0", 1, b"first")
    with (tmp_path / "exp" / "results.pack").open("ab") as fh:
        fh.write(b"half a zi")
    second = store.put_result("exp", "exp-1", 1, b"second")
    assert store.get_result(first) == b"first" and store.get_result(second) == b"second"
    truncated = second.replace("+6/", "+60/")  # a range past the end of the pack
    assert store.get_result(truncated) is None
    assert store.get_result("../exp/results.pack@0+5/x.zip") is None


def test_older_layout_references_are_read_and_nothing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    old = root / "exp" / "exp-0" / "attempt-1" / "result.zip"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    (root / "exp" / "exp-1.attempt-1.zip").write_bytes(b"file per trial")
    (tmp_path / "secret").write_bytes(b"no")
    store = FileArtifactStore(root)
    assert store.get_result("exp/exp-0/attempt-1/result.zip") == b"old"
    assert store.get_result("exp/exp-1.attempt-1.zip") == b"file per trial"
    assert store.get_result("../secret") is None and store.get_result("exp/missing.zip") is None
    store.delete_experiment("exp")
    assert not (root / "exp").exists()
