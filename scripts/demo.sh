#!/usr/bin/env bash
# Set up and run the main job on the embedded default: tune the PyTorch digits model
# (examples/digits) with 12 TPE trials on 2 local workers, a private Redis and SQLite in .hpo/.
# Prints the best configuration and writes best_config.json. Extra arguments go to `hpo run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_venv "worker"
unset HPO_BROKER_URL HPO_DATABASE_URL  # the embedded default: nothing to set up
export HPO_HOME=${HPO_HOME:-.hpo}
exec .venv/bin/hpo run examples/digits/experiment.json --model-dir examples/digits --workers 2 "$@"
