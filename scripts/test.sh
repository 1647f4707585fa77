#!/usr/bin/env bash
# Set up and pass the tests: .venv with dev dependencies, Debian's chromium for the browser tests,
# a Redis if none answers at HPO_TEST_REDIS_URL (default redis://127.0.0.1:6379/15), lint, pytest.
#   scripts/test.sh            the default suite (no tests marked slow)
#   scripts/test.sh --all      everything, slow tests included
#   scripts/test.sh -k store   extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

marker=(-m "not slow")
args=()
for arg in "$@"; do
  if [ "$arg" = "--all" ]; then marker=(); else args+=("$arg"); fi
done

ensure_venv "dev,worker"
ensure_chromium
export HPO_TEST_REDIS_URL=${HPO_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
ensure_redis "$HPO_TEST_REDIS_URL"

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest --durations=25 "${marker[@]}" "${args[@]}"
