"""SIGKILL during each stage, then a rerun, on a copy of the built seed project.

Each stage command runs as `dvc.yaml` calls it, in a fresh process (forkserver.py: forked from
a server that paid the imports once), and is killed with SIGKILL at the worst moment for its
outputs: its first output is complete in a temporary file and about to be put in place (a
rename, or the exchange of a directory). An audit hook in the child picks that moment, so the
kill lands there on every run instead of whenever a poll happens to see a file. Then:
- every output of the stage is byte for byte what it was: the previous output is untouched
  until the new one is complete, and `release/` is never half-written or mixed;
- the killed run left its temporary file (the kill did hit the window);
- `dvc status` tells the truth: the stage is out of date before the kill (a comment added to
  its code in the copy, which DVC tracks; the code that runs is the installed package, so the
  bytes do not change) and still reported changed after it, never clean;
- the rerun, `dvc repro --single-item <stage>` as a user would type it, completes, writes the
  same bytes, leaves `dvc status` clean and no temporary file or tree anywhere in the project,
  nor batch scratch in shared memory; `release/` is the same tree throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, run_in
from dvc.repo import Repo
from forkserver import StageServer

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
# What io.writers names its temporary files and trees: `.<target>.<pid>.<random>.<kind>`.
TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.[^.]+\.(?:tmp|new|old)\w*")


def outs(stage: str) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else o for o in STAGES[stage]["outs"]]


def snapshot(root: Path, paths: list[str]) -> dict[str, str]:
    """path -> sha256 of every file under `paths` (files or directories)."""
    digests = {}
    for name in paths:
        path = root / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        # A killed run's temporary files inside an output directory are leftovers, not outputs.
        files = [f for f in files if not TEMP_NAME.fullmatch(f.name)]
        for file in files:
            digests[file.relative_to(root).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def leftovers(root: Path) -> list[str]:
    """Temporary files and trees anywhere in the project (its git and DVC internals aside)."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in (".git", ".dvc")]
        for name in subdirs + files:
            if TEMP_NAME.fullmatch(name) or name.endswith((".tmp", ".partial")):
                found.append(os.path.relpath(os.path.join(directory, name), root))
    return sorted(found)


def changed_stages(root: Path) -> set[str]:
    """The stages `dvc status` reports changed (DVC's own status, in this process: the same code
    as the command without paying its start-up per call)."""
    with Repo(str(root)) as repo:
        return {name.rpartition(":")[2] for name in repo.status()}


def make_out_of_date(root: Path, stage: str) -> None:
    code = root / "pipeline" / "stages" / stage / "cli.py"
    text = code.read_text(encoding="utf-8")
    code.write_text(text + "# changed: dvc status must say so\n", encoding="utf-8")


def fresh_copy(built_seed_project: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(built_seed_project, root, symlinks=True)
    return root


@pytest.mark.parametrize("stage", list(STAGES))
def test_sigkill_during_a_stage_leaves_its_outputs_and_the_rerun_completes(
    built_seed_project: Path, tmp_path: Path, stage_server: StageServer, stage: str
) -> None:
    root = fresh_copy(built_seed_project, tmp_path)
    make_out_of_date(root, stage)
    before = snapshot(root, outs(stage))
    released = snapshot(root, ["release"])
    killed = stage_server.run(STAGES[stage]["cmd"], root, kill_at="commit")
    assert killed.returncode == -signal.SIGKILL, f"{stage} was not killed: {killed.stderr[-2000:]}"
    assert snapshot(root, outs(stage)) == before, "a killed run changed an output"
    assert snapshot(root, ["release"]) == released, "a killed run changed release/"
    left = leftovers(root)
    assert left, "the kill missed the window: no temporary file was left to clean up"
    assert all(int(TEMP_NAME.fullmatch(Path(p).name)["pid"]) == killed.pid for p in left), left  # type: ignore[index]
    assert stage in changed_stages(root), "dvc status calls a killed stage up to date"

    rerun = run_in(["dvc", "repro", "--single-item", stage], root)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert f"Running stage '{stage}'" in rerun.stdout, rerun.stdout
    assert snapshot(root, outs(stage)) == before, "the rerun wrote different bytes"
    assert snapshot(root, ["release"]) == released, "the rerun of an earlier stage changed release/"
    assert changed_stages(root) == set(), "dvc status is not clean after the rerun"
    assert leftovers(root) == [], "the rerun left a killed run's temporary files behind"


def replace_file(path: Path, text: str) -> None:
    """A new file at `path` (a new inode: release/ hard-links the candidate's files)."""
    tmp = path.with_name(path.name + ".edit")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@pytest.mark.parametrize("point", ["commit", "after-swap"])
def test_a_killed_release_swap_leaves_release_whole_old_or_new(
    built_seed_project: Path, tmp_path: Path, stage_server: StageServer, point: str
) -> None:
    """The candidate differs from release/ (its card and Croissant file); killed before the
    exchange, release/ is the old tree; killed after it (while the old tree is removed), the new
    one; never a mix. The rerun releases the new tree and removes what the killed run left."""
    root = fresh_copy(built_seed_project, tmp_path)
    candidate = root / "build" / "release"
    for name in ("README.md", "croissant.json"):
        text = (candidate / name).read_text(encoding="utf-8")
        if name == "README.md":
            text += "\nA new paragraph in the candidate's card.\n"
        else:
            text = json.dumps({**json.loads(text), "description": "the candidate's"}, indent=2)
        replace_file(candidate / name, text)
    entries = ["release/data", "release/README.md", "release/croissant.json"]
    old = snapshot(root, entries)
    new = {
        k.replace("build/release/", "release/", 1): v
        for k, v in snapshot(root, [e.replace("release/", "build/release/", 1) for e in entries]).items()
    }
    assert old != new

    killed = stage_server.run(STAGES["release"]["cmd"], root, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert snapshot(root, entries) == (old if point == "commit" else new)
    assert leftovers(root), "the kill missed the window"

    rerun = stage_server.run(STAGES["release"]["cmd"], root)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert snapshot(root, entries) == new
    assert (root / "release" / ".gitignore").read_bytes() == (
        built_seed_project / "release" / ".gitignore"
    ).read_bytes()
    assert leftovers(root) == []
