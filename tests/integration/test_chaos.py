"""The chaos run, shortened: 40 s of worker SIGKILLs, coordinator SIGKILLs and Redis restarts.

scripts/chaos.py starts its own Redis (AOF), SQLite, workers and coordinator in `--home`, so this
test shares nothing with the session's Redis or worker; it checks the script's verdict.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import processes_mentioning

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    home = tmp_path / "chaos"
    cmd = [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--duration", "40", "--seed", "10",
           "--home", str(home)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the script stops everything it started
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the chaos run did not end in time:\n{out[-6000:]}")
    assert proc.returncode == 0, out[-8000:]
    kills = re.findall(r"^\| (?:worker|coordinator)[^|]*SIGKILLed[^|]*\| (\d+)", out, re.M)
    assert len(kills) == 2 and sum(map(int, kills)) >= 3, out[-8000:]
    verdicts = re.findall(r"^- (PASS|FAIL) ", out, re.M)
    assert len(verdicts) >= 12 and set(verdicts) == {"PASS"}, out[-8000:]
    assert not processes_mentioning(str(home)), "the chaos run left processes behind"
