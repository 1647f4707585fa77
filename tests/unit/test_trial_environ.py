"""workers.forkserver_server.set_environ: a kept trial process moves to the next trial's environment
by changing only what differs, and the C environment (what child processes inherit) follows."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

from workers.forkserver_server import set_environ


def test_set_environ_makes_the_environment_exactly_the_trial_s() -> None:
    saved = dict(os.environ)
    try:
        os.environ["HPO_T_GONE"] = "1"
        os.environ["HPO_T_CHANGED"] = "old"
        os.environ["HPO_T_SAME"] = "same"
        wanted = {k: v for k, v in os.environ.items() if k != "HPO_T_GONE"}
        wanted.update(HPO_T_CHANGED="new", HPO_T_ADDED="added")
        libc = ctypes.CDLL(None)  # a library that changed a variable behind os.environ's back
        libc.setenv(b"HPO_T_SAME", b"changed in C", 1)
        set_environ(wanted)
        assert dict(os.environ) == wanted
        # a child inherits the C environment: putenv/unsetenv happened, not only the dict
        script = (
            "import os; print(sorted(k for k in os.environ if k.startswith('HPO_T_')), "
            "os.environ['HPO_T_CHANGED'], os.environ['HPO_T_SAME'])"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
        seen = out.split("] ")
        assert seen[0] + "]" == str(["HPO_T_ADDED", "HPO_T_CHANGED", "HPO_T_SAME"])
        assert seen[1].strip() == "new same"
    finally:
        os.environ.clear()
        os.environ.update(saved)
