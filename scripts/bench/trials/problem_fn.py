"""A benchmark problem as a function trial (scripts/bench/quality_service.py): the loss of
$BENCH_PROBLEM (scripts/bench/problems.py, found under $BENCH_ROOT) at the trial's config."""

import os
import sys

if os.environ["BENCH_ROOT"] not in sys.path:
    sys.path.insert(0, os.environ["BENCH_ROOT"])

from scripts.bench.problems import problem


def trial(config):
    return {"loss": problem(os.environ["BENCH_PROBLEM"]).fn(config)}
