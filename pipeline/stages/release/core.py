"""Stage `release`: materialise `release/` from `build/release/` once the gate has passed.

`split` and `card` write the candidate release to `build/release/` (data, card, Croissant);
`validate`, `review` and `gate` judge it there. This stage runs only after the gate passed (it
depends on the gate's verdict) and swaps the candidate in as a whole: a new tree is built beside
`release/` (data files hard-linked, so 3 GB are not copied), then exchanged with `release/` in
one rename (`io.writers.swap_directory`) and the old tree removed. A failed check therefore
never touches `release/`, and a crash inside this stage leaves either the old tree or the new
one in place, never a mix; the temporary trees a killed run leaves beside it are removed by
the next run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.io.writers import remove_stale_temporaries, shared_mode, swap_directory, temp_name

# What the release stage owns inside release/; anything else there (its .gitignore) is kept.
RELEASE_ENTRIES = ("data", "README.md", "croissant.json")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(source, target)


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_dir():
        target.mkdir()
        for child in sorted(source.iterdir()):
            _copy_tree(child, target / child.name)
    else:
        _link_or_copy(source, target)


def run_release(candidate: Path, gate: Path, release: Path) -> list[str]:
    """Swap `candidate` (build/release) into `release`; returns the entries released.

    Raises:
        BadInputError: the gate verdict is missing or not a pass, or the candidate is incomplete.
    """
    try:
        verdict = json.loads(gate.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        verdict = {}
    if verdict.get("passed") is not True:
        raise BadInputError(f"{gate}: no passing gate verdict; run `dvc repro` (the gate stage) first")
    missing = [name for name in RELEASE_ENTRIES if not (candidate / name).exists()]
    if missing:
        raise BadInputError(f"{candidate}: missing {', '.join(missing)}; run the split and card stages first")
    parent = release.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(parent, release.name)
    staging = parent / temp_name(release.name, "new")
    staging.mkdir(mode=0o700)
    try:
        if release.is_dir():
            for child in sorted(release.iterdir()):
                if child.name not in RELEASE_ENTRIES:
                    _copy_tree(child, staging / child.name)
        for name in RELEASE_ENTRIES:
            _copy_tree(candidate / name, staging / name)
        staging.chmod(shared_mode(directory=True))
        swap_directory(staging, release)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return list(RELEASE_ENTRIES)
