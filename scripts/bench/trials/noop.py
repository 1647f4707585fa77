"""A WMLA-contract trial for the dispatch benchmarks: sleep, then report (with 0 s: a no-op).

Reads config.json from the working directory (the pause is config["sleep"], else $BENCH_SLEEP,
else 0), writes $RESULT_DIR/val_dict_list.json with one
point of `loss` (= config["x"], so any optimizer sees a real metric). With $BENCH_LOG set it
appends one JSON line {"id", "pid", "ppid", "start", "end"}: the wall-clock interval of this
script's own code, from its first statement to just after the result file was written.
"""

import time

START = time.time()

import json  # noqa: E402
import os  # noqa: E402

with open("config.json") as fh:
    cfg = json.load(fh)
pause = float(cfg.get("sleep", os.environ.get("BENCH_SLEEP", 0.0)))
if pause > 0:
    time.sleep(pause)
with open(os.path.join(os.environ.get("RESULT_DIR", "."), "val_dict_list.json"), "w") as fh:
    json.dump([{"steps": 1, "loss": float(cfg.get("x", 0.0))}], fh)
END = time.time()
log = os.environ.get("BENCH_LOG")
if log:
    line = {
        "id": os.environ.get("DLI_EXECID", ""),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "start": START,
        "end": END,
    }
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)
