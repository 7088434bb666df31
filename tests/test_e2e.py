"""End to end: `dvc repro` with the real DVC CLI in a copy of the repository, then `load_dataset`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import run_in as run

from pipeline.contracts import RELEASE_SCHEMA


@pytest.fixture(scope="module")
def repo_copy(built_seed_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of conftest's `built_seed_project` (this working tree built once with `dvc
    repro`), this module's own: tests here run `dvc` in it, which the shared build is not for."""
    copy = tmp_path_factory.mktemp("e2e") / "ml-abstracts"
    shutil.copytree(built_seed_project, copy, symlinks=True)
    return copy


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
    filtered = pl.read_parquet(reports / "filtered.parquet")
    dataset = load_dataset(str(repo_copy / "release"))
    rows = [row for split in dataset.values() for row in split]
    # Every record is a release row, a folded duplicate or a filtered row, each exactly once.
    kept_sources = {row["source"] for row in rows}
    folded_sources = set(duplicates["source"].to_list())
    filtered_sources = set(filtered["source"].to_list())
    records = pl.read_parquet(repo_copy / "build" / "ingested.parquet")
    assert kept_sources | folded_sources | filtered_sources == set(records["source"].to_list())
    assert not kept_sources & folded_sources
    assert not (kept_sources | folded_sources) & filtered_sources
    assert sum(row["duplicate_count"] for row in rows) == duplicates.height
    # Every non-blank raw line is inside a record or rejected.
    raw_lines = 0
    for path in sorted((repo_copy / "raw").iterdir()):
        raw_lines += sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    lines_in_records = sum(text.count("\n") + 1 for text in records["raw_text"].to_list())
    assert lines_in_records + len(rejects) == raw_lines
    assert ingest["totals"]["records"] == records.height == len(rows) + duplicates.height + filtered.height


def test_status_is_clean_after_a_build(repo_copy: Path) -> None:
    status = run(["dvc", "status"], repo_copy)
    assert status.returncode == 0
    assert "up to date" in status.stdout, status.stdout


def release_bytes(release: Path) -> dict[str, bytes]:
    return {str(p.relative_to(release)): p.read_bytes() for p in sorted(release.rglob("*")) if p.is_file()}


def test_a_critical_failure_fails_the_gate_and_leaves_release_untouched(
    repo_copy: Path, tmp_path: Path
) -> None:
    """Injected critical failure (a row floor above the seeds' size): `dvc repro` exits
    non-zero with the gate's one message, review explains the failure, release/ stays as it was."""
    broken = tmp_path / "broken"
    shutil.copytree(repo_copy, broken)
    # The good build committed: `dvc metrics diff` compares the broken build with it below.
    for command in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@e.org", "commit", "--allow-empty", "-qm", "built"],
    ):
        assert run(command, broken).returncode == 0
    before = release_bytes(broken / "release")
    assert "data/train-00000-of-00001.parquet" in before and "README.md" in before
    params = (broken / "params.yaml").read_text().replace("min_rows: 50", "min_rows: 100000")
    (broken / "params.yaml").write_text(params)
    result = run(["dvc", "repro"], broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    gate_errors = [line for line in result.stderr.splitlines() if line.startswith("abstracts gate: error:")]
    assert len(gate_errors) == 1, output
    assert "3 critical expectation(s) failed" in gate_errors[0]
    assert "schema/row_count (expect_table_row_count_to_be_between)" in gate_errors[0]
    assert "Running stage 'release'" not in output
    assert not (broken / "reports" / "gate.json").exists()
    assert release_bytes(broken / "release") == before
    # validate wrote its results and review ran on what was built.
    validation = json.loads((broken / "reports" / "validation.json").read_text())
    assert validation["success"] is False and validation["critical_failures"] == 3
    review = (broken / "reports" / "review.html").read_text()
    assert "FAIL" in review and "row_count" in review and "expect_table_row_count_to_be_between" in review
    # The failure is a headline number: `dvc metrics diff` against the committed build shows it.
    diff = run(["dvc", "metrics", "diff", "--json"], broken)
    assert diff.returncode == 0, diff.stderr
    changed = json.loads(diff.stdout)["reports/metrics.json"]
    assert changed["critical_failures"] == {"old": 0, "new": 3, "diff": 3}, changed
    # Fixed, the next run passes the gate and releases again.
    (broken / "params.yaml").write_text(params.replace("min_rows: 100000", "min_rows: 50"))
    fixed = run(["dvc", "repro"], broken)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert release_bytes(broken / "release") == before


def test_speed_knobs_rerun_nothing(repo_copy: Path, tmp_path: Path) -> None:
    copy = tmp_path / "knobs"
    shutil.copytree(repo_copy, copy)
    params = (copy / "params.yaml").read_text()
    for old, new in (("workers: 2", "workers: 1"), ("batch_rows: 50000", "batch_rows: 7")):
        assert old in params
        params = params.replace(old, new)
    (copy / "params.yaml").write_text(params)
    status = run(["dvc", "status"], copy)
    assert status.returncode == 0
    assert "up to date" in status.stdout, status.stdout
    # A key that changes an output does rerun its stage.
    (copy / "params.yaml").write_text(
        params.replace(
            "min_chars: 200\n  max_chars: 5000\n  word", "min_chars: 199\n  max_chars: 5000\n  word"
        )
    )
    assert "clean" in run(["dvc", "status"], copy).stdout


def test_repro_twice_runs_nothing_and_the_lock_is_the_same_on_a_second_clean_build(
    repo_copy: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    again = run(["dvc", "repro"], repo_copy)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout, again.stdout
    # A clone of the first copy's commit: the same inputs, built from scratch, every stage rerun.
    second = tmp_path_factory.mktemp("second") / "ml-abstracts"
    assert run(["git", "clone", "-q", str(repo_copy), str(second)], repo_copy).returncode == 0
    build = run(["dvc", "repro"], second)
    assert build.returncode == 0, build.stdout + build.stderr
    assert (second / "dvc.lock").read_bytes() == (repo_copy / "dvc.lock").read_bytes()
    assert release_bytes(second / "release") == release_bytes(repo_copy / "release")


def test_metrics_and_plots(repo_copy: Path, tmp_path: Path) -> None:
    metrics = json.loads((repo_copy / "reports" / "metrics.json").read_text())
    assert 10 <= len(metrics) <= 16
    assert metrics["released"] == metrics["train"] + metrics["validation"] + metrics["test"]
    assert metrics["raw_records"] - metrics["filtered"] - metrics["folded_duplicates"] == metrics["released"]
    shown = run(["dvc", "metrics", "show", "--json"], repo_copy)
    assert shown.returncode == 0, shown.stderr
    assert next(iter(json.loads(shown.stdout).values()))["data"].keys() == {"reports/metrics.json"}
    # (`dvc metrics diff` is shown on a changed build by the critical-failure test above.)
    # The offline page template (.dvc/config plots.html_template), as `make` writes it.
    copy = tmp_path / "plots-project"
    shutil.copytree(repo_copy, copy, symlinks=True)
    template = run(["abstracts", "plots-template", "--out", ".dvc/plots/offline.html"], copy)
    assert template.returncode == 0, template.stderr
    out = tmp_path / "plots"
    plots = run(["dvc", "plots", "show", "--out", str(out)], copy)
    assert plots.returncode == 0, plots.stderr
    page = (out / "index.html").read_text()
    for name in ("funnel", "duplicates_by_method", "flags_by_rule", "text_length_per_split"):
        assert name in page, name
    # Vega, Vega-Lite and Vega-Embed are inlined: the page loads no script from anywhere.
    assert "vegaEmbed(" in page and "<script src=" not in page


def test_push_and_pull_through_a_local_remote(repo_copy: Path, tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    shutil.copytree(repo_copy, copy)
    remote = tmp_path / "remote"
    assert run(["dvc", "remote", "add", "-d", "local", str(remote)], copy).returncode == 0
    pushed = run(["dvc", "push"], copy)
    assert pushed.returncode == 0, pushed.stderr
    assert any(remote.rglob("*"))
    before = release_bytes(copy / "release")
    shutil.rmtree(copy / ".dvc" / "cache")
    shutil.rmtree(copy / "release" / "data")
    shutil.rmtree(copy / "build")
    pulled = run(["dvc", "pull"], copy)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert release_bytes(copy / "release") == before
    status = run(["dvc", "status"], copy)
    assert "up to date" in status.stdout, status.stdout


def test_the_checkpoint_runs_with_gx_alone_after_a_build(repo_copy: Path, tmp_path: Path) -> None:
    """A GX user's view: open the file context and run the checkpoint, no pipeline code but the
    custom Expectations' module (in a copy: GX writes its results under gx/uncommitted)."""
    project = tmp_path / "gx-user"
    shutil.copytree(repo_copy, project, symlinks=True)
    shutil.rmtree(project / "reports" / "data_docs")
    code = (
        "import os; os.environ['GX_ANALYTICS_ENABLED'] = 'false'\n"
        "import great_expectations as gx\n"
        "import pipeline.stages.validate.expectations\n"
        "context = gx.get_context(mode='file', project_root_dir='.')\n"
        "params = {'min_rows': 50, 'max_rows': 10**7, 'min_chars': 200, 'max_chars': 5000, 'min_words': 20,\n"
        "          'max_words': 1000, 'split_fractions': {'train': 0.8, 'validation': 0.1, 'test': 0.1},\n"
        "          'split_sigmas': 4.0, 'filter_min_chars': 200, 'filter_max_chars': 5000,\n"
        "          'filter_min_words': 20, 'filter_max_words': 1000, 'filter_topics': [\n"
        "              'cs.LG', 'stat.ML', 'cs.AI', 'cs.CL', 'cs.CV', 'cs.NE', 'cs.IR', 'cs.RO', 'cs.MA',\n"
        "              'eess.AS', 'eess.IV', 'eess.SP', 'Computer Science']}\n"
        "result = context.checkpoints.get('release').run(expectation_parameters=params)\n"
        "failed = [(r.expectation_config.meta['name'], r.expectation_config.severity.value)\n"
        "          for suite in result.run_results.values() for r in suite.results if not r.success]\n"
        "print(len(result.run_results), failed)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # GX's own verdict counts every expectation; the seeds fail one, a warning (the gate passes).
    assert result.stdout.strip() == "8 [('truncated_at_most_2_percent', 'warning')]", result.stdout
    # The checkpoint's own action wrote the Data Docs, the same pages the stage wrote.
    docs = {p.name: p.read_bytes() for p in (project / "reports" / "data_docs").iterdir()}
    assert docs == {p.name: p.read_bytes() for p in (repo_copy / "reports" / "data_docs").iterdir()}
