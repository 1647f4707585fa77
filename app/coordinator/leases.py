"""Noticing lost attempts and a broker that restarted empty.

A running attempt's worker refreshes `hpo:lease:<exec>:<attempt>` every heartbeat; the key expires
when the worker dies. An in-flight trial is lost when its lease is missing on two checks in a row
(a worker claims, then sets its lease: one check could fall in between) while its experiment's
event stream is drained (a pending "finished" event explains a missing lease), and it either
started (RUNNING) or was claimed (QUEUED, taken by a worker that died before reporting).

A broker restart shows as a new Redis run_id. Leases and claims may be gone until the workers'
next heartbeat, so checks pause for a lease lifetime; afterwards QUEUED trials nobody claimed
are published again (a duplicate is harmless: the first to claim it runs it).
"""

from __future__ import annotations

import time
from typing import Any

from app.keys import claim_key, events_stream, lease_key
from app.store.models import Trial, TrialState


class LeaseKeeper:
    def __init__(self, redis: Any, *, lease_timeout_s: float, heartbeat_s: float) -> None:
        self.redis = redis
        self.lease_timeout_s = lease_timeout_s
        self.heartbeat_s = heartbeat_s
        self._suspects: set[tuple[int, int]] = set()  # (trial id, attempt) without lease last time
        self._run_id: str | None = None
        self._grace_until = 0.0
        self._republish_at: float | None = None

    def broker_restarted(self) -> bool:
        """True once after each restart of the broker (a new run_id)."""
        run_id = str(self.redis.info("server").get("run_id"))
        if self._run_id is None or run_id == self._run_id:
            self._run_id = run_id
            return False
        self._run_id = run_id
        now = time.monotonic()
        self._grace_until = now + self.lease_timeout_s
        self._republish_at = now + 1.5 * self.heartbeat_s + 1.0
        self._suspects.clear()
        return True

    def due_republish(self) -> bool:
        if self._republish_at is None or time.monotonic() < self._republish_at:
            return False
        self._republish_at = None
        return True

    def unclaimed(self, queued: list[Trial]) -> list[Trial]:
        if not queued:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for t in queued:
                pipe.exists(claim_key(t.exec_id, t.attempt))
            claimed = pipe.execute()
        return [t for t, c in zip(queued, claimed, strict=True) if not c]

    def lost(self, experiment: str, trials: list[Trial]) -> list[Trial]:
        """The in-flight trials of one experiment whose worker is gone."""
        if not trials or time.monotonic() < self._grace_until:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for t in trials:
                pipe.exists(lease_key(t.exec_id, t.attempt))
                pipe.exists(claim_key(t.exec_id, t.attempt))
            pipe.xlen(events_stream(experiment))
            replies = pipe.execute()
        if replies[-1]:  # events still to read may say the attempt ended or started
            return []
        out = []
        for i, t in enumerate(trials):
            key = (t.id, t.attempt)  # type: ignore[arg-type]
            has_lease, claimed = replies[2 * i], replies[2 * i + 1]
            if has_lease or (t.state == TrialState.QUEUED and not claimed):
                self._suspects.discard(key)
                continue
            if key in self._suspects:
                self._suspects.discard(key)
                out.append(t)
            else:
                self._suspects.add(key)
        return out
