"""Two `dvc repro` at once in one checkout: the second is refused with DVC's lock message, which
names the running process (exit non-zero, no traceback, no stage run), and the first completes,
leaving the build up to date."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_in


def test_a_second_dvc_repro_is_refused_while_the_first_runs(built_seed_project: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(built_seed_project, root, symlinks=True)
    # Two report stages to rerun (a param of each changed): the first run holds the lock a while.
    params = (root / "params.yaml").read_text()
    params = params.replace("  examples_per_rule: 5\n", "  examples_per_rule: 4\n")
    params = params.replace("  removals_listed: 100\n", "  removals_listed: 99\n")
    (root / "params.yaml").write_text(params)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    log = (tmp_path / "first.log").open("w+")
    first = subprocess.Popen(
        ["dvc", "repro"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while "Running stage" not in (tmp_path / "first.log").read_text():
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first dvc repro never started a stage"
            time.sleep(0.05)
        second = run_in(["dvc", "repro"], root)
        assert first.poll() is None, "the first run ended before the second was refused: no overlap tested"
    finally:
        first.wait(timeout=300)
        log.close()
    assert second.returncode != 0, second.stdout + second.stderr
    output = second.stdout + second.stderr
    # DVC's read-write lock names the running process (its repo lock says "Unable to acquire lock").
    assert "is busy, it is being blocked by" in output or "Unable to acquire lock" in output, output
    assert f"(PID {first.pid})" in output or "another DVC process is running" in output, output
    assert "Traceback" not in output and "Running stage" not in output, output
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    status = run_in(["dvc", "status"], root)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
