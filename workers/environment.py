"""The training process's environment: WMLA variables in, our settings and secrets out."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from app.config import OWN_ENV_PREFIXES


def secrets_of(urls: Iterable[str | None]) -> list[str]:
    """Strings that must not appear in a trial's environment: our URLs and their passwords."""
    out: list[str] = []
    for url in urls:
        if not url:
            continue
        out.append(url)
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            out.append(password)
    return out


def scrub(base: Mapping[str, str], secrets: Iterable[str]) -> dict[str, str]:
    secrets = [s for s in secrets if s]
    return {
        k: v
        for k, v in base.items()
        if not k.startswith(OWN_ENV_PREFIXES) and not any(s in v for s in secrets)
    }


def trial_env(
    base: Mapping[str, str],
    *,
    secrets: Iterable[str],
    wmla: Mapping[str, str],
    cuda_visible_devices: str,
    extra: Mapping[str, str],
    threads: int,
) -> dict[str, str]:
    env = scrub(base, secrets)
    env.update(extra)
    env.update(wmla)
    env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    # CUDA numbers GPUs fastest-first unless told otherwise; nvidia-smi (our ids) numbers by bus.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["PYTHONUNBUFFERED"] = "1"
    # Trials sharing a machine should not each start one thread per core (Ray does the same).
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name not in env:
            env[name] = str(max(threads, 1))
    return env


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
