"""The trial environment keeps the user's environment, drops ours and our secrets."""

from __future__ import annotations

from workers.environment import secrets_of, trial_env


def test_scrubs_settings_urls_and_passwords() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "HPO_BROKER_URL": "redis://:s3cret@host:6379/0",
        "HPO_DATABASE_URL": "postgresql://u:pw@db/x",
        "CELERY_LOADER": "x",
        "COPY_OF_URL": "redis://:s3cret@host:6379/0",
        "MENTIONS_PASSWORD": "prefix-s3cret",
        "OMP_NUM_THREADS": "3",
    }
    secrets = secrets_of([base["HPO_BROKER_URL"], base["HPO_DATABASE_URL"], None])
    assert "s3cret" in secrets and "pw" in secrets
    env = trial_env(
        base,
        secrets=secrets,
        wmla={"RESULT_DIR": "/r", "DLI_EXECID": "e-0"},
        cuda_visible_devices="1",
        extra={"MY_FLAG": "on"},
        threads=1,
    )
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert env["RESULT_DIR"] == "/r" and env["DLI_EXECID"] == "e-0" and env["MY_FLAG"] == "on"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["OMP_NUM_THREADS"] == "3"  # the user's own choice stays
    assert env["MKL_NUM_THREADS"] == "1"
    for gone in ("HPO_BROKER_URL", "HPO_DATABASE_URL", "CELERY_LOADER", "COPY_OF_URL", "MENTIONS_PASSWORD"):
        assert gone not in env
