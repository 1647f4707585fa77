"""`hpo report NAME --out report.html`: the dashboard's plots in one self-contained HTML file.

The page inlines plotly.js (from the plotly wheel), the dashboard's own plots.js and the data of
GET /api/v1/dashboard/experiments/{name} plus the best trials, so it opens anywhere, offline, and
draws exactly what the live dashboard draws.
"""

from __future__ import annotations

import html
import json
from typing import Any

from app.dashboard import STATIC, plotly_js


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can end the element early."""
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return html.escape("" if value is None else str(value))


def _plot_panels() -> str:
    """The dashboard page's own plot panels, so the report lays them out the same way."""
    page = (STATIC / "index.html").read_text()
    return page.split("<!-- plots:begin -->", 1)[1].split("<!-- plots:end -->", 1)[0].strip()


def render(dashboard: dict[str, Any], best_trials: list[dict[str, Any]]) -> str:
    exp = dashboard["experiment"]
    counts = exp.get("counts", {})
    summary = [
        ("state", exp.get("state")),
        ("algorithm", exp.get("algorithm")),
        ("objective", f"{exp.get('direction')} {exp.get('metric')}"),
        ("trials", ", ".join(f"{k} {v}" for k, v in counts.items() if v)),
        ("best", f"{_cell(exp.get('best_value'))} (trial {exp.get('best_trial')})"),
        ("created", exp.get("created_at")),
        ("finished", exp.get("finished_at")),
        ("message", exp.get("message")),
    ]
    rows = "\n".join(f"<tr><th>{k}</th><td>{_cell(v)}</td></tr>" for k, v in summary if v)
    names = dashboard["plots"].get("params", [])
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["#", exp.get("metric", "metric"), *names])
    cells = ([t["number"], t["objective"], *(t["params"].get(n) for n in names)] for t in best_trials)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in cells)
    css = (STATIC / "dashboard.css").read_text()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(exp["name"])}: hpo-queue report</title>
<style>{css}</style>
<script>{plotly_js().read_text()}</script>
<script>{(STATIC / "plots.js").read_text()}</script>
</head><body><main>
<h1>{html.escape(exp["name"])}</h1>
<table class="grid" id="summary">{rows}</table>
{_plot_panels()}
<h2>Best trials</h2>
<table class="grid" id="best-trials"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
</main>
<script id="report-data" type="application/json">{_script_json(dashboard)}</script>
<script>
const data = JSON.parse(document.getElementById("report-data").textContent);
HPOPlots.render({{history: "history", curves: "curves", parallel: "parallel", importance: "importance"}},
                data.plots, data.experiment);
</script>
</body></html>
"""
