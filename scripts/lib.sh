# Shared by scripts/demo.sh and scripts/test.sh: a virtual environment and a Redis.
# shellcheck shell=bash

PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0

ensure_venv() {  # ensure_venv EXTRAS  (e.g. "worker" or "dev,worker")
  local extras=$1
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python >= 3.11 is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 2
  fi
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  local stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/-}"
  if [ ! -f "$stamp" ]; then
    echo "installing into .venv (torch $TORCH_VERSION first: an unpinned torch pulls GBs of CUDA wheels)" >&2
    mkdir -p .hpo
    local log=.hpo/pip-install.log
    if ! { .venv/bin/python -m pip install -q "torch==$TORCH_VERSION" &&
           .venv/bin/python -m pip install -q -e ".[$extras]"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "error: installing the project failed (log above, also in $log)" >&2
      exit 2
    fi
    touch "$stamp"
  fi
}

redis_answers() {  # redis_answers URL
  .venv/bin/python -c 'import sys; from app.broker import ping; sys.exit(0 if ping(sys.argv[1], 2.0) else 1)' "$1"
}

ensure_redis() {  # ensure_redis URL: start a local Redis (>= 6.2) when none answers there
  local url=$1
  redis_answers "$url" && return 0
  local port
  port=$(.venv/bin/python -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).port or 6379)' "$url")
  local server
  server=$(.venv/bin/python -c 'from app.broker import redis_server_binary; print(redis_server_binary() or "")')
  if [ -z "$server" ]; then
    echo "error: no Redis at $url and no redis-server to start" >&2
    exit 2
  fi
  echo "starting $server on port $port" >&2
  mkdir -p .hpo/test-redis
  "$server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$PWD/.hpo/test-redis" --logfile "$PWD/.hpo/test-redis/redis.log"
  for _ in $(seq 1 50); do
    redis_answers "$url" && return 0
    sleep 0.2
  done
  echo "error: started $server but nothing answers at $url" >&2
  exit 2
}

ensure_chromium() {  # Debian's chromium + chromium-driver for the dashboard's browser tests
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return 0; fi
  if [ "${HPO_SKIP_BROWSER:-}" = "1" ]; then
    echo "HPO_SKIP_BROWSER=1: not installing chromium; the browser tests will be skipped" >&2
    return 0
  fi
  local sudo=""
  [ "$(id -u)" = "0" ] || sudo="sudo"
  echo "installing Debian's chromium and chromium-driver for the browser tests" >&2
  mkdir -p .hpo
  export DEBIAN_FRONTEND=noninteractive
  if ! { $sudo apt-get install -y -q chromium chromium-driver ||
         { $sudo apt-get update -q && $sudo apt-get install -y -q chromium chromium-driver; }; } \
       >.hpo/apt-chromium.log 2>&1; then
    tail -20 .hpo/apt-chromium.log >&2
    echo "error: could not install chromium (log in .hpo/apt-chromium.log); HPO_SKIP_BROWSER=1 skips the browser tests" >&2
    exit 2
  fi
}
