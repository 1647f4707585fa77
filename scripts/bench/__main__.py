"""`python -m scripts.bench WORKLOAD ...`: the dispatch benchmarks (see scripts/bench/run.py)."""

from __future__ import annotations

import sys

from scripts.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
