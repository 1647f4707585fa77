"""The plugin host: one experiment's WMLA plugin, in a process of its own, answering JSON lines.

    python -m app.plugins.host <plugin folder>

Requests on stdin, one JSON object per line: {"op": "init", "name", "hyper_parameters", "kwargs"},
{"op": "set_state", "state": <base64 pickle>}, {"op": "search", "n", "last"}. Each gets one line
back: {"ok": true, ...} or {"ok": false, "error": "..."}. The plugin's own prints go to stderr
(the host's log), never into the protocol. Plugin state travels pickled: it is only ever unpickled
here, in the plugin's own sandbox.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import pickle
import sys
import traceback
from typing import Any


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in a plugin's answer become plain JSON values."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _state(plugin: Any) -> str | None:
    state = plugin.get_state() if hasattr(plugin, "get_state") else None
    return None if state is None else base64.b64encode(pickle.dumps(state)).decode()


def serve(folder: str) -> None:
    out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # prints from plugin code go to the log
    sys.path.insert(0, folder)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plugin: Any = None
    for line in sys.stdin:
        try:
            req = json.loads(line)
            op = req["op"]
            reply: dict[str, Any] = {"ok": True}
            if op == "init":
                module = importlib.import_module("optimizer")
                plugin = module.PluginOptimizer(req["name"], req["hyper_parameters"], **req["kwargs"])
            elif op == "set_state":
                if hasattr(plugin, "set_state"):
                    plugin.set_state(pickle.loads(base64.b64decode(req["state"])))
            elif op == "search":
                result = plugin.search(req["n"], req["last"])
                reply["result"] = json.loads(json.dumps(result, default=_plain))
                reply["state"] = _state(plugin)
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except BaseException as exc:  # MemoryError, SystemExit from plugin code: report, keep serving
            tail = "".join(traceback.format_exception(exc)[-3:]).strip()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": tail}
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    serve(sys.argv[1])
