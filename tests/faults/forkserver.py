"""Run `abstracts` commands in fresh processes without paying their imports each time.

A server process imports the pipeline (every stage, Great Expectations, numba, polars: tens of
CPU-seconds) once and forks one child per command; the child chdirs into the project and runs
`pipeline.cli.main` with the argv `dvc.yaml` gives, exactly as the console script does. The
server never runs stage code itself and holds one thread when it forks, so each child starts
clean. A child can be told to SIGKILL itself at a chosen moment (`kill_at`, an audit hook):
`commit` is the rename (or directory exchange) that puts its first output in place;
`after-swap` is the removal of the tree a directory exchange replaced.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SERVER = r"""
import importlib, json, os, re, signal, sys, threading

for name in sys.argv[1:]:
    importlib.import_module(name)
from pipeline.cli import main

TEMP = re.compile(r"\.(.+)\.(\d+)\.[^.]+\.(?:tmp|new|old)\w*")


def hook_for(point):
    def kill(event, args):
        if event == "os.rename" and point == "commit":
            hit = TEMP.fullmatch(os.path.basename(os.fsdecode(args[0])))
        elif event == "ctypes.dlsym" and point == "commit":
            hit = args[1] == "renameat2"
        elif event == "shutil.rmtree" and point == "after-swap":
            hit = TEMP.fullmatch(os.path.basename(os.fsdecode(args[0])))
        else:
            return
        if hit:
            os.kill(os.getpid(), signal.SIGKILL)
    return kill


for line in sys.stdin:
    job = json.loads(line)
    assert threading.active_count() == 1
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
        os.chdir(job["cwd"])
        if job["kill_at"]:
            sys.addaudithook(hook_for(job["kill_at"]))
        sys.argv = ["abstracts", *job["argv"]]
        try:
            code = main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps({"pid": pid, "returncode": code}), flush=True)
"""

# Imported once by the server: every stage's code and what its command imports when it runs.
PRELOAD = [
    "pipeline.cli",
    *(
        f"pipeline.stages.{stage}.core"
        for stage in (
            "ingest",
            "clean",
            "filter",
            "dedup",
            "split",
            "validate",
            "card",
            "release_diff",
            "review",
            "metrics",
            "gate",
            "release",
        )
    ),
    "pipeline.stages.filter.run",
    "pipeline.stages.validate.project",
    "pipeline.stages.validate.report",
    "pipeline.stages.validate.docs",
    "great_expectations",
]


@dataclass(frozen=True)
class Result:
    pid: int
    returncode: int
    stdout: str
    stderr: str


class StageServer:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, *PRELOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.jobs = 0

    def run(self, cmd: str | list[str], cwd: Path, kill_at: str | None = None) -> Result:
        """`cmd` (`abstracts ...`, as in dvc.yaml) in a fresh child process in `cwd`."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        assert argv[0] == "abstracts", argv
        self.jobs += 1
        out, err = self.scratch / f"{self.jobs}.out", self.scratch / f"{self.jobs}.err"
        job = {"cwd": str(cwd), "argv": argv[1:], "kill_at": kill_at, "stdout": str(out), "stderr": str(err)}
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the stage server died"
        status = json.loads(answer)
        return Result(status["pid"], status["returncode"], out.read_text(), err.read_text())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)
