"""Reading worker events from the per-experiment Redis streams (consumer group, ack after commit).

A stream keeps every event until the coordinator acks it, so nothing is lost while no
coordinator runs; entries left pending by a coordinator that died are claimed on adoption.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from app.keys import EVENTS_GROUP, events_stream
from app.messages import TrialEvent

log = logging.getLogger("hpo.coordinator")
DEAD_LETTERS = "hpo:events:dead"


@dataclass
class Delivery:
    stream: str
    entry_id: str
    event: TrialEvent


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class EventStreams:
    def __init__(self, redis: Any, consumer: str) -> None:
        self.redis = redis
        self.consumer = consumer
        self._backlog: list[Delivery] = []
        self._unacked: list[Delivery] = []  # recorded in SQL, ack not yet confirmed by Redis

    def attach(self, experiment: str) -> None:
        stream = events_stream(experiment)
        try:
            self.redis.xgroup_create(stream, EVENTS_GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.redis.persist(stream)
        # Entries delivered to a consumer that died before acking: take them over.
        start = "0-0"
        while True:
            next_start, entries, *_ = self.redis.xautoclaim(
                stream, EVENTS_GROUP, self.consumer, 0, start, count=500
            )
            self._backlog += self._decode(stream, entries)
            start = _text(next_start)
            if start == "0-0" or not entries:
                break

    def detach(self, experiment: str, keep_s: int = 86400) -> None:
        """Finished experiment: let late events age out instead of piling up."""
        self.redis.expire(events_stream(experiment), keep_s)

    def read(self, experiments: list[str], block_ms: int, count: int = 200) -> list[Delivery]:
        if self._unacked:  # an ack that failed (broker hiccup): its entries must not stay pending
            self.ack_many(self._unacked)
        if self._backlog:
            out, self._backlog = self._backlog, []
            return out
        if not experiments:
            return []
        streams = {events_stream(name): ">" for name in experiments}
        reply = self.redis.xreadgroup(
            EVENTS_GROUP, self.consumer, streams, count=count, block=block_ms or None
        )
        out: list[Delivery] = []
        for stream, entries in reply or []:
            out += self._decode(_text(stream), entries)
        return out

    def ack(self, delivery: Delivery) -> None:
        self.ack_many([delivery])

    def ack_many(self, deliveries: list[Delivery], delete_keys: list[str] | None = None) -> None:
        """Ack and delete these entries (and drop `delete_keys`) in one MULTI: an entry is never
        left acked but present. If Redis fails, they are acked again before the next read."""
        if not deliveries and not delete_keys:
            return
        by_stream: dict[str, list[str]] = {}
        for d in deliveries:
            by_stream.setdefault(d.stream, []).append(d.entry_id)
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, EVENTS_GROUP, *ids)
                    pipe.xdel(stream, *ids)
                if delete_keys:
                    pipe.delete(*delete_keys)
                pipe.execute()
        except Exception:
            pending = {(d.stream, d.entry_id) for d in self._unacked}
            self._unacked += [d for d in deliveries if (d.stream, d.entry_id) not in pending]
            raise
        done = {(d.stream, d.entry_id) for d in deliveries}
        self._unacked = [d for d in self._unacked if (d.stream, d.entry_id) not in done]

    def requeue(self, deliveries: list[Delivery]) -> None:
        """Deliveries that could not be recorded (the database failed): handed out again next read."""
        self._backlog = list(deliveries) + self._backlog

    def _decode(self, stream: str, entries: list[Any]) -> list[Delivery]:
        out = []
        for entry_id, fields in entries:
            if fields is None:  # deleted meanwhile
                continue
            try:
                out.append(Delivery(_text(stream), _text(entry_id), TrialEvent.decode(fields)))
            except Exception:
                log.exception("undecodable event %s in %s moved to %s", _text(entry_id), stream, DEAD_LETTERS)
                self.redis.rpush(DEAD_LETTERS, repr(fields))
                self.redis.xack(stream, EVENTS_GROUP, entry_id)
                self.redis.xdel(stream, entry_id)
        return out
