"""`hpo report` writes one self-contained HTML file whose plots render offline in Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.client import HpoClient
from tests.conftest import LiveServer
from tests.helpers import QUAD, quad_spec_file

ROOT = Path(__file__).resolve().parents[2]


def test_report_is_self_contained_and_draws(browser: Any, live_server: LiveServer, tmp_path: Path) -> None:
    path = quad_spec_file(
        tmp_path / "spec.yaml",
        name="report-quad",
        model={"main": "train.py"},
        algorithm={"name": "tpe", "seed": 5},
        space={name: {"type": "float", "low": 0.0, "high": 1.0} for name in ("x", "y")},
    )
    with HpoClient(live_server.url, user="bob", password=live_server.users["bob"]) as client:
        client.submit(path, QUAD)
        assert client.wait("report-quad", poll_s=0.3, timeout_s=90)["state"] == "FINISHED"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env.update(HPO_URL=live_server.url, HPO_USER="bob", HPO_PASSWORD=live_server.users["bob"],
               PYTHONPATH=str(ROOT), HOME=str(tmp_path))  # fmt: skip
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "app.cli", "report", "report-quad", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)  # nothing loaded from elsewhere
    assert page.count('id="best-trials"') == 1 and page.count("<tr><td>") == 6

    browser.get(out.as_uri())
    script = "const d = document.getElementById('history').data; return d ? d[0].x.length : 0"
    assert browser.execute_script(script) == 6
    parallel = "return document.getElementById('parallel').data[0].dimensions.length"
    assert browser.execute_script(parallel) == 3  # x, y and the metric
