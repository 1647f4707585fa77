"""Trial queues as kombu's Redis transport keeps them: how many tasks wait, which queues exist.

A queue is a Redis list named after it; messages sent with a priority go to lists named
`<queue>\\x06\\x16<step>` (steps 3, 6, 9; priority 0 is the plain list). Declaring a queue, which
publishing to it does, records its binding in the set `_kombu.binding.<queue>` (our queues are
bound to an exchange of their own name). The transport's `global_keyprefix`, `sep` and
`priority_steps` options (HPO_BROKER_TRANSPORT_OPTIONS) are honoured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kombu.transport.redis import PRIORITY_STEPS, Channel

BINDING_PREFIX = Channel.keyprefix_queue.split("%s")[0]  # "_kombu.binding."


class QueueLayout:
    def __init__(self, transport_options: Mapping[str, Any] | None = None) -> None:
        options = dict(transport_options or {})
        self.prefix: str = options.get("global_keyprefix", "") or ""
        self.sep: str = options.get("sep", Channel.sep)
        self.steps: list[int] = list(options.get("priority_steps", PRIORITY_STEPS))

    def keys(self, queue: str) -> list[str]:
        """Every list that holds the queue's waiting messages."""
        return [self.prefix + (f"{queue}{self.sep}{step}" if step else queue) for step in self.steps]

    def depths(self, client: Any, queues: Iterable[str]) -> dict[str, int]:
        """Waiting messages per queue (not those a worker has taken and not yet acknowledged)."""
        names = sorted(set(queues))
        if not names:
            return {}
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                for key in self.keys(name):
                    pipe.llen(key)
            sizes = pipe.execute()
        per = len(self.steps)
        return {name: int(sum(sizes[i * per : (i + 1) * per])) for i, name in enumerate(names)}

    def declared(self, client: Any, pattern: str = "trials.*") -> set[str]:
        """Queues matching `pattern` that were ever declared on this broker (by a publisher or a
        worker), whether or not anything waits in them now."""
        match = f"{self.prefix}{BINDING_PREFIX}{pattern}"
        cut = len(self.prefix) + len(BINDING_PREFIX)
        found = set()
        for key in client.scan_iter(match=match, count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            found.add(text[cut:])
        return found
