"""val_dict_list.json: reading, reducing to the objective, summaries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from workers.metrics import MetricsError, load_points, point_rows, reduce_objective, summarize

POINTS = [{"steps": 1, "loss": 0.9, "accuracy": 0.5}, {"steps": 2, "loss": 0.4, "accuracy": 0.8},
          {"steps": 3, "loss": 0.6, "accuracy": 0.7}]  # fmt: skip


def test_reduction_is_min_or_max_over_points() -> None:
    assert reduce_objective(POINTS, "loss", "minimize") == 0.4
    assert reduce_objective(POINTS, "accuracy", "maximize") == 0.8
    assert reduce_objective([{"mse_val": "12.5"}], "mse_val", "minimize") == 12.5  # XGBoost sample, no step


def test_missing_metric_names_the_keys_found() -> None:
    with pytest.raises(MetricsError, match=r"metric 'auc' missing .*keys found: accuracy, loss, steps"):
        reduce_objective(POINTS, "auc", "maximize")


@pytest.mark.parametrize("bad", [math.nan, math.inf, "nan", None, [1], True])
def test_non_finite_or_non_numeric_metric_fails(bad) -> None:
    with pytest.raises(MetricsError, match="metric 'loss'"):
        reduce_objective([*POINTS, {"steps": 4, "loss": bad}], "loss", "minimize")


def test_loading_checks_the_file(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="was not written"):
        load_points(tmp_path)
    (tmp_path / "val_dict_list.json").write_text("{broken")
    with pytest.raises(MetricsError, match="not valid JSON"):
        load_points(tmp_path)
    (tmp_path / "val_dict_list.json").write_text("[]")
    with pytest.raises(MetricsError, match="non-empty JSON list"):
        load_points(tmp_path)
    (tmp_path / "val_dict_list.json").write_text(json.dumps({"loss": 1.0}))
    assert load_points(tmp_path) == [{"loss": 1.0}]
    (tmp_path / "val_dict_list.json").write_text('[{"loss": NaN}]')  # Python's json writes NaN
    assert math.isnan(load_points(tmp_path)[0]["loss"])


def test_summary_and_rows() -> None:
    assert summarize(POINTS)["loss"] == {"min": 0.4, "max": 0.9, "latest": 0.6}
    assert "steps" not in summarize(POINTS)
    rows = point_rows([{"epoch": 2, "loss": math.nan}])
    assert rows == [{"seq": 0, "step": 2.0, "values": {"epoch": 2, "loss": "nan"}}]
