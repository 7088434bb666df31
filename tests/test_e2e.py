"""End to end: `dvc repro` with the real DVC CLI in a copy of the repository, then `load_dataset`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import copy_project

from pipeline.contracts import RELEASE_SCHEMA


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # The stages call the `abstracts` script installed beside this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh checkout of the committed tree plus this working tree's changes, outputs removed."""
    target = copy_project(tmp_path_factory.mktemp("repo") / "ml-abstracts")
    result = run(["dvc", "repro"], target)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def test_dvc_repro_builds_a_loadable_release(repo_copy: Path) -> None:
    from datasets import load_dataset

    dataset = load_dataset(str(repo_copy / "release"))
    assert sorted(dataset) == ["test", "train", "validation"]
    for split in dataset.values():
        assert list(split.features) == RELEASE_SCHEMA.names
        assert {name: getattr(f, "dtype", type(f).__name__) for name, f in split.features.items()} == {
            "id": "string",
            "arxiv_id": "string",
            "arxiv_version": "int64",
            "abstract": "string",
            "source": "string",
            "duplicate_count": "int64",
            "title": "string",
            "authors": "List",
            "year": "int64",
            "published": "date32",
            "venue": "string",
            "categories": "List",
            "doi": "string",
            "url": "string",
            "license": "string",
            "source_ids": "dict",
            "sources": "List",
        }
    split_report = json.loads((repo_copy / "reports" / "split.json").read_text())
    assert {name: len(split) for name, split in dataset.items()} == split_report["rows"]


def test_every_raw_line_is_accounted_for(repo_copy: Path) -> None:
    from datasets import load_dataset

    reports = repo_copy / "reports"
    ingest = json.loads((reports / "ingest.json").read_text())
    rejects = [json.loads(line) for line in (reports / "rejects.jsonl").read_text().splitlines()]
    duplicates = pl.read_parquet(reports / "duplicates.parquet")
    dataset = load_dataset(str(repo_copy / "release"))
    rows = [row for split in dataset.values() for row in split]
    # Every record is a release row or a folded duplicate, each exactly once.
    kept_sources = {row["source"] for row in rows}
    folded_sources = set(duplicates["source"].to_list())
    records = pl.read_parquet(repo_copy / "build" / "ingested.parquet")
    assert kept_sources | folded_sources == set(records["source"].to_list())
    assert not kept_sources & folded_sources
    assert sum(row["duplicate_count"] for row in rows) == duplicates.height
    # Every non-blank raw line is inside a record or rejected.
    raw_lines = 0
    for path in sorted((repo_copy / "raw").iterdir()):
        raw_lines += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    lines_in_records = sum(text.count("\n") + 1 for text in records["raw_text"].to_list())
    assert lines_in_records + len(rejects) == raw_lines
    assert ingest["totals"]["records"] == records.height == len(rows) + duplicates.height


def test_rerun_is_a_no_op(repo_copy: Path) -> None:
    lock = (repo_copy / "dvc.lock").read_text()
    status = run(["dvc", "status"], repo_copy)
    assert status.returncode == 0
    assert "up to date" in status.stdout, status.stdout
    rerun = run(["dvc", "repro", "--force"], repo_copy)
    assert rerun.returncode == 0, rerun.stderr
    assert (repo_copy / "dvc.lock").read_text() == lock


def test_failed_validation_stops_dvc_before_the_card(repo_copy: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(repo_copy, broken, ignore=shutil.ignore_patterns("release"))
    params = (broken / "params.yaml").read_text().replace("min_rows: 50", "min_rows: 100000")
    (broken / "params.yaml").write_text(params)
    result = run(["dvc", "repro"], broken)
    assert result.returncode != 0
    assert "expect_table_row_count_to_be_between" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not (broken / "release" / "README.md").exists()
