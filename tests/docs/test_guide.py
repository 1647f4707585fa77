"""docs/guide.md stays true: its diff, its specs, its links, every shell and Python block it does
not mark, and the output it shows for the failing trial."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.guide_runner import (
    GUIDE,
    ROOT,
    blocks,
    free_port,
    guide_env,
    missing_lines,
    prepare,
    run_blocks,
)

TEXT = GUIDE.read_text()
BLOCKS = blocks(TEXT)
DIGITS = ROOT / "examples" / "digits"
DEBUG_SECTION = "7. Debug a failing trial"


def _section(title: str) -> list:
    return [b for b in BLOCKS if b.section == title and b.runnable]


def _check_console_output(selected: list, outputs: list[str]) -> list[str]:
    """Problems: pasted lines the commands no longer print (volatile parts masked)."""
    problems = []
    pairs = [pair for block in selected if block.lang == "console" for pair in block.commands()]
    assert len(pairs) == len(outputs)
    for (cmd, expected), actual in zip(pairs, outputs, strict=True):
        for line in missing_lines(expected, actual):
            problems.append(f"$ {cmd}\n  pasted: {line!r}\n  actual output:\n{actual}")
    return problems


def test_blocks_are_marked_with_known_marks_only() -> None:
    marks = [m for b in BLOCKS for m in b.marks]
    assert set(marks) <= {"needs:docker", "needs:gpu", "no-test"}, marks
    assert marks.count("no-test") <= 3  # illustrative blocks stay few
    assert sum(b.runnable for b in BLOCKS) >= 15
    assert {b.lang for b in BLOCKS if b.runnable} == {"bash", "console", "python"}


def test_the_diff_is_the_real_diff_of_the_two_scripts() -> None:
    if shutil.which("diff") is None:
        pytest.skip("no diff command")
    real = subprocess.run(
        ["diff", "-u", "plain_train.py", "train.py"], cwd=DIGITS, capture_output=True, text=True
    ).stdout
    shown = [b for b in BLOCKS if b.lang == "diff"]
    assert len(shown) == 1
    hunks = re.split(r"(?m)^(?=@@ )", shown[0].body)
    hunks = [h for h in hunks if h.startswith("@@ ")]
    assert len(hunks) >= 4
    for hunk in hunks:
        assert hunk in real, (
            f"this hunk of docs/guide.md is not in `diff -u plain_train.py train.py`:\n{hunk}"
        )


def test_the_specs_shown_are_the_example_files() -> None:
    yaml_blocks = [b.body for b in BLOCKS if b.lang == "yaml"]
    json_blocks = [b.body for b in BLOCKS if b.lang == "json"]
    assert yaml_blocks == [(DIGITS / "experiment.yaml").read_text()]
    assert json_blocks == [(DIGITS / "experiment.json").read_text()]


def test_the_tunable_script_trains_as_the_plain_one_did(tmp_path: Path) -> None:
    """With no config.json and no WMLA variables, train.py is plain_train.py plus its results."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RESULT_DIR", "LOG_DIR", "DATA_DIR", "CHECKPOINT_DIR")
    }
    for script in ("plain_train.py", "train.py"):
        folder = tmp_path / script
        folder.mkdir()
        proc = subprocess.run([sys.executable, str(DIGITS / script), "--epochs", "2"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    plain, tunable = tmp_path / "plain_train.py", tmp_path / "train.py"
    assert {p.name for p in plain.iterdir()} == {"history.jsonl", "model.pt"}
    assert {p.name for p in tunable.iterdir()} == {"history.jsonl", "model.pt", "val_dict_list.json"}

    def history(folder: Path) -> list[dict]:
        lines = (folder / "history.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]

    points = history(plain)
    assert points == history(tunable)  # the same training
    assert json.loads((tunable / "val_dict_list.json").read_text()) == points


def test_links_point_at_files_that_exist() -> None:
    targets = re.findall(r"\]\((\.\./[^)#]+)\)", TEXT)
    assert targets
    for target in targets:
        assert (GUIDE.parent / target).resolve().exists(), target


def test_python_blocks_compile() -> None:
    for block in BLOCKS:
        if block.lang == "python":
            compile(block.body, f"docs/guide.md:{block.line}", "exec")


def test_the_failing_trial_output_is_what_the_commands_print(live_server, tmp_path: Path) -> None:
    """Section 7 against a real server: the broken experiment, then the pasted commands."""
    selected = _section(DEBUG_SECTION)
    assert [b.lang for b in selected].count("console") >= 3
    prepare(tmp_path)
    password = live_server.users["alice"]
    env = guide_env(tmp_path, {"HPO_URL": live_server.url, "HPO_USER": "alice", "HPO_PASSWORD": password})
    run = run_blocks(selected, tmp_path, env, {"alice-pw-1": password}, timeout_s=240)
    assert run.returncode == 0, run.log[-4000:]
    problems = _check_console_output(selected, run.outputs)
    assert not problems, "docs/guide.md shows output the commands no longer print " + (
        "(refresh it: .venv/bin/python -m tests.docs.guide_runner --update):\n" + "\n".join(problems)
    )
    everything = "\n".join(run.outputs)
    # the trial's state and the first line of its reason in `hpo trials`
    assert re.search(r"│\s*1\s*│\s*FAILED\s*│.*│ training script exited with code 1\s*│", everything)
    assert "trial 1: training script exited with code 1" in everything  # its reason
    assert "KeyError: 'lbfgs'" in everything  # the traceback's last line, in the reason and the log
    assert "log/stderr" in everything  # the result archive
    pasted = "\n".join(expected for b in selected if b.lang == "console" for _, expected in b.commands())
    for line in ("FAILED", "KeyError: 'lbfgs'", "exited with code 1", "log/stderr"):
        assert line in pasted, f"the guide no longer shows {line!r}"


@pytest.mark.slow
def test_every_block_runs_against_the_guides_own_server(tmp_path: Path) -> None:
    """Every unmarked block in order, with the guide's own `hpo serve` on a free port."""
    selected = [b for b in BLOCKS if b.runnable]
    prepare(tmp_path)
    run = run_blocks(selected, tmp_path, guide_env(tmp_path), {"8080": str(free_port())}, timeout_s=900)
    assert run.returncode == 0, run.log[-6000:]
    assert not _check_console_output(selected, run.outputs)
    assert (tmp_path / "best_config.json").exists()  # hpo run
    assert (tmp_path / "best.json").exists() and (tmp_path / "final" / "model.pt").exists()  # hpo best, final
    assert (tmp_path / "digits-cli.html").exists()  # hpo report
    log = run.log
    assert "best trial #" in log  # the Python client block
    assert "best: " in log  # the requests block
    assert "best results" in log  # scripts/enqueue.py's table
    assert re.search(r"^hpo_trials\{", log, re.M)  # /metrics
