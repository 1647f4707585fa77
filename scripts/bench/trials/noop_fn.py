"""The function-mode twin of noop.py (`model: {main: noop_fn.py, function: trial}`): sleep, return
the loss; with $BENCH_LOG set, append the same JSON line as noop.py (the interval of the call's
own code)."""

import json
import os
import time


def trial(config):
    start = time.time()
    pause = float(config.get("sleep", os.environ.get("BENCH_SLEEP", 0.0)))
    if pause > 0:
        time.sleep(pause)
    end = time.time()
    log = os.environ.get("BENCH_LOG")
    if log:
        line = {"id": os.environ.get("DLI_EXECID", ""), "pid": os.getpid(), "ppid": os.getppid(),
                "start": start, "end": end}  # fmt: skip
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)
    return {"steps": 1, "loss": float(config.get("x", 0.0))}
