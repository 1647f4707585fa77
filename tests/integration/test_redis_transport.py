"""app.redis_transport: kombu's Redis transport with one client object per channel pool, on the
real Redis (the test db): messages still go through, one client serves every short command,
a replaced pool gets a client of its own, and the connection still names itself redis://."""

from __future__ import annotations

import kombu.transport
import kombu.transport.redis
import pytest
import redis
from kombu import Connection

from app.redis_transport import Channel, Transport, install

QUEUE = "hpo-test-transport"


def test_one_client_per_pool_and_messages_go_through(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as in a process that made a Redis connection before install(): kombu cached its own class
    monkeypatch.setitem(kombu.transport.TRANSPORT_ALIASES, "redis", "kombu.transport.redis:Transport")
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    with Connection(redis_url) as before:
        assert type(before.transport) is kombu.transport.redis.Transport
    install()
    with Connection(redis_url) as conn:
        assert isinstance(conn.transport, Transport) and conn.as_uri().startswith("redis://")
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
        mine = redis.Redis.from_url(redis_url)
        with channel.conn_or_acquire(mine) as given:
            assert given is mine  # a client the caller passes is used as it is
        queue = conn.SimpleQueue(QUEUE)
        try:
            for i in range(3):
                queue.put({"n": i})
            got = []
            for _ in range(3):
                message = queue.get(timeout=5)
                got.append(message.payload["n"])
                message.ack()
            assert got == [0, 1, 2]
            tags = redis_client.hkeys("unacked")  # the ack bookkeeping went through it too
            assert not [t for t in tags if QUEUE.encode() in (redis_client.hget("unacked", t) or b"")]
            channel._disconnect_pools()  # as after a fork or a lost connection
            with channel.conn_or_acquire() as after:
                assert after is not first and after.connection_pool is channel.pool
            queue.put({"n": 3})
            message = queue.get(timeout=5)
            assert message.payload == {"n": 3}
            message.ack()
        finally:
            queue.close()
            redis_client.delete(QUEUE, f"_kombu.binding.{QUEUE}")
