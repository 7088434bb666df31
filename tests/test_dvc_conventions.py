"""dvc.yaml follows the project's DVC conventions (the e2e tests run them with the real CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from conftest import REPO_ROOT

# Keys that change how fast a stage runs, never what it writes: listed by no stage, so changing
# them reruns nothing (tests/test_e2e.py::test_speed_knobs_rerun_nothing).
SPEED_KNOBS = {
    "ingest.batch_rows",
    *(f"{stage}.{knob}" for stage in ("clean", "filter", "dedup") for knob in ("workers", "batch_rows")),
}


def stages() -> dict[str, Any]:
    stages: dict[str, Any] = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return stages


def listed(stage: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            keys.append(entry)
        else:  # {params file: [keys]}
            keys.extend(key for file_keys in entry.values() for key in file_keys)
    return keys


def test_each_stage_lists_every_output_changing_key_of_its_section_and_no_speed_knob() -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for name, stage in stages().items():
        keys = listed(stage)
        assert not SPEED_KNOBS & set(keys), name
        assert not [k for k in keys if k in params and SPEED_KNOBS & {f"{k}.{sub}" for sub in params[k]}], (
            name
        )
        if name in params and name not in keys:
            wanted = {f"{name}.{key}" for key in params[name]} - SPEED_KNOBS
            assert wanted <= set(keys), (name, sorted(wanted - set(keys)))


def test_the_gate_comes_after_review_and_the_release_after_the_gate() -> None:
    names = list(stages())
    assert names[-2:] == ["gate", "release"]
    release = stages()["release"]
    assert "reports/gate.json" in release["deps"]
    # Nothing but the release stage writes release/.
    for name, stage in stages().items():
        for out in stage.get("outs", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert not path.startswith("release/") or name == "release", (name, path)


def out_entries() -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for stage in stages().values():
        for key in ("outs", "metrics", "plots"):
            for out in stage.get(key, []):
                path, options = (out, {}) if isinstance(out, str) else next(iter(out.items()))
                entries[path] = options or {}
    return entries


def test_small_reviewed_text_is_in_git_and_data_in_dvc() -> None:
    for path, options in out_entries().items():
        text = Path(path).suffix in {".html", ".json", ".md", ".csv", ".jsonl"} or path == "reports/data_docs"
        if path == "reports/rejects.jsonl":
            continue  # one line per rejected raw line: as large as the raw data is messy
        assert (options.get("cache") is False) == (text and not path.startswith("build/")), path
