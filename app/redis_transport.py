"""kombu's Redis transport, with one redis client per channel for its short commands.

kombu's Redis channel builds a new `redis.Redis` object for every publish batch, fanout publish
and piece of ack bookkeeping (`Channel.conn_or_acquire`): three or more per trial between the
coordinator and the worker. With redis-py 8 each one builds its table of response callbacks
anew; it holds no connection of its own (every command takes one from the channel's pool and
gives it back), so one client per pool serves every call, from any thread.
After a fork or a reconnect kombu replaces the pool, and the next call makes a client for the new
one. Everything else is kombu's (the messages, the unacked bookkeeping, BRPOP, the events).

`install()` (called by workers.celery_app) makes `redis://` and `rediss://` brokers use it in this
process, through kombu's table of transport aliases rather than Celery's `broker_transport`, so
`Connection.as_uri()` still reads `redis://...` (Flower picks its broker reader by that scheme).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.transport as kombu_transport
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

SCHEMES = ("redis", "rediss")
TRANSPORT = "app.redis_transport:Transport"


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None  # (the pool, a client on it)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        shared = self._shared
        if shared is None or shared[0] is not pool:
            shared = self._shared = (pool, self._create_client())
        yield shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """`redis://` and `rediss://` connections made in this process from now on use this transport
    (kombu caches the class it resolved for a name: that entry goes too)."""
    for scheme in SCHEMES:
        TRANSPORT_ALIASES[scheme] = TRANSPORT
        kombu_transport._transport_cache.pop(scheme, None)
