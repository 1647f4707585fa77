#!/usr/bin/env bash
# A short check on a machine with NVIDIA GPUs (what a GPU `hpo worker` relies on): inventory and
# types, a CUDA build of torch, pinning by CUDA_VISIBLE_DEVICES, GPU memory freed after trials,
# DDP over two GPUs (examples/digits_ddp). Prints "no GPU" and succeeds where there is none.
#   scripts/gpu_check.sh        (sets up .venv like scripts/test.sh; PyPI's torch is a CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "no GPU"
  exit 0
fi

source scripts/lib.sh
ensure_venv "dev,worker"
exec .venv/bin/python scripts/gpu_check.py "$@"
