"""examples/notebooks/quickstart.ipynb runs top to bottom against a real `hpo serve`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the dev extra (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the dev extra (nbclient)")
pytest.importorskip("ipykernel", reason="the notebook test needs the dev extra (ipykernel)")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "quickstart.ipynb"


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "text/plain" in output.get("data", {}):
                parts.append(output["data"]["text/plain"])
    return "\n".join(parts)


def test_the_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(
        not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"
    )


def test_quickstart_notebook_runs_against_a_server(live_server, monkeypatch, tmp_path: Path) -> None:
    for name in ("HPO_TOKEN", "HPO_HOME", "HPO_BROKER_URL", "HPO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HPO_URL", live_server.url)  # the kernel inherits this environment
    monkeypatch.setenv("HPO_USER", "alice")
    monkeypatch.setenv("HPO_PASSWORD", live_server.users["alice"])
    monkeypatch.setenv("HPO_CREDENTIALS", str(tmp_path / "credentials"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    text = _text(nb)
    assert f"logged on to {live_server.url} as alice" in text
    assert re.search(r"^FINISHED\s+4/4 trials, best 0\.\d+", text, re.M), text
    best = re.search(r"best trial #(\d+) \(\S+\): accuracy (0\.\d{4})", text)
    assert best, text
    assert float(best.group(2)) > 0.5
    assert re.search(r"^\s+\d+\s+0\.\d{4}\s+0\.\d{4}\s+learning_rate=", text, re.M)  # the history table
    plots = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    assert len(plots) == 1
    figure = plots[0]["data"]["application/vnd.plotly.v1+json"]
    assert [trace["name"] for trace in figure["data"]] == ["accuracy", "best so far"]
    assert "FINISHED 4/4 best metricVal" in text  # the WMLA route
    assert "epoch 3: loss=" in text and "model.pt" in text  # the final training with the best values
