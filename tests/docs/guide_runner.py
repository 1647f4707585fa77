"""Run the blocks of docs/guide.md, in order, in one bash process; check or refresh pasted output.

Blocks run when their language is bash, sh, console or python and no `<!-- needs: ... -->` or
`<!-- no-test -->` comment stands right before them. Shell blocks run as they are; python blocks
through `python -`; in a console block each `$ command` runs and its output (stdout and stderr) is
kept, to compare with the output pasted under it. Everything runs in one bash script (`set -euo
pipefail`), so a block's variables and background jobs are there for the next one.

Refresh the pasted output after a change (it starts the guide's own `hpo serve`, in /tmp/hpo-guide):

    .venv/bin/python -m tests.docs.guide_runner --update
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide.md"
RUNNABLE = ("bash", "sh", "console", "python")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*) *\n(?P<body>.*?)^(?P=indent)``` *$", re.M | re.S)
MARK = re.compile(r"<!--\s*(needs:\s*[\w-]+|no-test)\s*-->")
WIDTH = "200"  # rich tables as wide as their content, the same wherever the output is made


@dataclass
class Block:
    lang: str
    body: str
    marks: tuple[str, ...]
    line: int
    section: str
    span: tuple[int, int]  # the body's offsets in the markdown text
    indent: str

    @property
    def runnable(self) -> bool:
        return self.lang in RUNNABLE and not self.marks

    def commands(self) -> list[tuple[str, str]]:
        """A console block's (`$ command`, pasted output) pairs."""
        pairs: list[tuple[str, list[str]]] = []
        for line in self.body.splitlines():
            if line.startswith("$ "):
                pairs.append((line[2:], []))
            elif pairs:
                pairs[-1][1].append(line)
        return [(cmd, "\n".join(out).strip("\n")) for cmd, out in pairs]


def blocks(text: str) -> list[Block]:
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n ").rsplit("\n", 1)[-1]
        marks = tuple(m.group(1).replace(" ", "") for m in MARK.finditer(before))
        headings = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        indent = match.group("indent")
        body = "\n".join(line.removeprefix(indent) for line in match.group("body").splitlines())
        found.append(
            Block(
                lang=match.group("lang"),
                body=body + "\n",
                marks=marks,
                line=text.count("\n", 0, match.start()) + 1,
                section=headings[-1] if headings else "",
                span=match.span("body"),
                indent=indent,
            )
        )
    return found


def substitute(text: str, replace: Mapping[str, str]) -> str:
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@dataclass
class Run:
    returncode: int
    log: str
    outputs: list[str] = field(default_factory=list)  # one per console command, in order


def script_for(selected: Iterable[Block], replace: Mapping[str, str], out_dir: Path) -> tuple[str, int]:
    lines = ["set -euo pipefail"]
    n = 0
    for block in selected:
        lines.append(f"echo '### docs/guide.md line {block.line} ({block.lang})' >&2")
        if block.lang == "python":
            lines += ["python - <<'GUIDE_PYTHON_BLOCK'", substitute(block.body, replace).rstrip("\n"),
                      "GUIDE_PYTHON_BLOCK"]  # fmt: skip
        elif block.lang == "console":
            for cmd, _ in block.commands():
                out = out_dir / f"{n}.txt"
                lines.append(f"echo '$ '{_quote(cmd)} >&2")
                lines.append(f"( {substitute(cmd, replace)}\n) > {out} 2>&1 || {{ cat {out} >&2; exit 1; }}")
                lines.append(f"cat {out} >&2")
                n += 1
        else:
            lines.append(substitute(block.body, replace).rstrip("\n"))
    return "\n".join(lines) + "\n", n


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def guide_env(workdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without HPO_* settings, this interpreter's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPO_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["HPO_CREDENTIALS"] = str(workdir / ".credentials.json")  # not the user's own file
    env["COLUMNS"] = WIDTH
    env.pop("VIRTUAL_ENV", None)
    env.update(extra or {})
    return env


def prepare(workdir: Path) -> None:
    """What the guide's commands expect under the working directory: examples/ and scripts/."""
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "examples" / "digits", workdir / "examples" / "digits", ignore=ignore)
    (workdir / "scripts").mkdir(exist_ok=True)
    shutil.copy2(ROOT / "scripts" / "enqueue.py", workdir / "scripts" / "enqueue.py")


def run_blocks(
    selected: list[Block],
    workdir: Path,
    env: Mapping[str, str],
    replace: Mapping[str, str] | None = None,
    timeout_s: float = 900,
) -> Run:
    out_dir = workdir / ".guide-output"
    out_dir.mkdir(exist_ok=True)
    script, count = script_for(selected, replace or {}, out_dir)
    (workdir / ".guide-script.sh").write_text(script)
    log_path = workdir / ".guide-run.log"
    try:
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                ["bash", str(workdir / ".guide-script.sh")],
                cwd=workdir, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the bash we started, and what it runs in front
                proc.wait()
                code = -9
    finally:
        stop_guide_server(workdir)
    files = [out_dir / f"{i}.txt" for i in range(count)]
    outputs = [f.read_text(errors="replace") if f.exists() else "" for f in files]
    return Run(code, log_path.read_text(errors="replace"), outputs)


def stop_guide_server(workdir: Path) -> None:
    """Stop the `hpo serve` the guide started if it still runs (its pid from serve.log), and any
    process left with its working directory under `workdir` (a private Redis outliving it)."""
    log = workdir / "serve.log"
    match = (
        re.search(r"Started server process \[(\d+)\]", log.read_text(errors="replace"))
        if log.exists()
        else None
    )
    if match and b"serve" in _read(Path(f"/proc/{match.group(1)}/cmdline")):
        pid = int(match.group(1))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _zombie(pid):
            time.sleep(0.2)
    for pid in _processes_under(workdir.resolve()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _zombie(pid: int) -> bool:
    return _read(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[-1].split()[:1] == [b"Z"]


def _processes_under(folder: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or _zombie(int(entry.name)):
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(int(entry.name))
    return found


# --- comparing pasted output ---------------------------------------------------------------
VOLATILE = [
    (re.compile(r'"[^"]*/_submitted_code/'), '".../_submitted_code/'),  # the trial's folder
    (re.compile(r"\S+@\S+/\d+"), "WORKER"),  # hpo-local-<pid>@<host>/<slot>
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?"), "TIME"),
    (re.compile(r"\d+(\.\d+)?(e-?\d+)?"), "N"),
    (re.compile(r"[─━┏┓┗┛┡┩└┘┳┻╇┴┬┼│┃╿╽ \t]+"), " "),  # table borders and padding
]


def normalize(line: str) -> str:
    for pattern, replacement in VOLATILE:
        line = pattern.sub(replacement, line)
    return line.strip()


def missing_lines(expected: str, actual: str) -> list[str]:
    """The pasted lines with no counterpart in the actual output (volatile parts masked)."""
    have = {normalize(line) for line in actual.splitlines()}
    return [line for line in expected.splitlines() if normalize(line) and normalize(line) not in have]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --- refreshing the guide --------------------------------------------------------------------
def update(workdir: Path) -> int:
    text = GUIDE.read_text()
    all_blocks = blocks(text)
    selected = [b for b in all_blocks if b.runnable]
    if workdir.exists():
        shutil.rmtree(workdir)
    prepare(workdir)
    port = "8080" if port_is_free(8080) else str(free_port())
    run = run_blocks(selected, workdir, guide_env(workdir), {"8080": port})
    if run.returncode != 0:
        sys.stderr.write(run.log[-5000:])
        sys.stderr.write(f"\nthe guide's blocks failed (exit {run.returncode}); docs/guide.md unchanged\n")
        return 1
    outputs = iter(run.outputs)
    pieces, last = [], 0
    for block in selected:
        if block.lang != "console":
            continue
        body = []
        for cmd, _ in block.commands():
            out = next(outputs).replace(port, "8080").rstrip("\n")
            body.append(f"$ {cmd}" + (f"\n{out}" if out else ""))
        start, end = block.span
        new = "\n".join(block.indent + line for line in "\n".join(body).splitlines()) + "\n"
        pieces += [text[last:start], new]
        last = end
    pieces.append(text[last:])
    GUIDE.write_text("".join(pieces))
    print(f"updated the console output in {GUIDE.relative_to(ROOT)} (run in {workdir})")
    return 0


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--update", action="store_true", help="run the guide and paste the real output")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hpo-guide"))
    args = parser.parse_args()
    if not args.update:
        parser.print_help()
        sys.exit(2)
    sys.exit(update(args.workdir))
