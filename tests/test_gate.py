"""The `gate`, `release` and `metrics` stages on real report files and directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import BadInputError, ValidationFailed
from pipeline.stages.gate.core import run_gate
from pipeline.stages.metrics.core import run_metrics
from pipeline.stages.release.core import run_release


def result(name: str, severity: str, success: bool, count: int | None = 0) -> dict[str, object]:
    return {
        "suite": "schema",
        "name": name,
        "expectation": "expect_column_values_to_be_unique",
        "severity": severity,
        "success": success,
        "unexpected_count": count,
    }


def write_validation(path: Path, results: list[dict[str, object]]) -> Path:
    critical = sum(1 for r in results if not r["success"] and r["severity"] == "critical")
    path.write_text(
        json.dumps({"rows": 3, "success": critical == 0, "critical_failures": critical, "results": results})
    )
    return path


def test_gate_passes_on_warnings_and_writes_its_verdict(tmp_path: Path) -> None:
    validation = write_validation(
        tmp_path / "v.json", [result("a", "critical", True), result("b", "warning", False, 4)]
    )
    verdict = run_gate(validation, tmp_path / "gate.json")
    assert verdict["passed"] is True
    assert json.loads((tmp_path / "gate.json").read_text())["passed"] is True


def test_gate_fails_with_one_message_naming_every_critical_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    validation = write_validation(
        tmp_path / "v.json",
        [
            result("id_unique", "critical", False, 2),
            result("b", "warning", False, 1),
            result("c", "critical", False, None),
        ],
    )
    with pytest.raises(
        ValidationFailed, match=r"2 critical expectation\(s\) failed: schema/id_unique"
    ) as error:
        run_gate(validation, tmp_path / "gate.json")
    assert (
        "2 rows" in str(error.value) and "schema/c" in str(error.value) and "schema/b" not in str(error.value)
    )
    assert not (tmp_path / "gate.json").exists()
    code = main(["gate", "--validation", str(validation), "--out", str(tmp_path / "gate.json")])
    err = capsys.readouterr().err
    assert code == ValidationFailed.exit_code
    assert err.count("abstracts gate: error:") == 1 and "Traceback" not in err


def test_gate_without_a_report_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="run the validate stage first"):
        run_gate(tmp_path / "missing.json", tmp_path / "gate.json")


def candidate(root: Path, text: str) -> Path:
    build = root / "build" / "release"
    (build / "data").mkdir(parents=True)
    (build / "data" / "train-00000-of-00001.parquet").write_text(f"rows {text}")
    (build / "README.md").write_text(f"card {text}")
    (build / "croissant.json").write_text(f'{{"v": "{text}"}}')
    return build


def test_release_swaps_the_candidate_in_whole_and_keeps_other_files(tmp_path: Path) -> None:
    release = tmp_path / "release"
    (release / "data").mkdir(parents=True)
    (release / "data" / "old-00000-of-00001.parquet").write_text("old rows")
    (release / "README.md").write_text("old card")
    (release / ".gitignore").write_text("/data\n")
    build = candidate(tmp_path, "new")
    (tmp_path / "gate.json").write_text('{"passed": true}')
    run_release(build, tmp_path / "gate.json", release)
    files = sorted(str(p.relative_to(release)) for p in release.rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "croissant.json", "data/train-00000-of-00001.parquet"]
    assert (release / "README.md").read_text() == "card new"
    # Data files are hard links of the candidate's, not copies.
    assert os.path.samefile(
        release / "data" / "train-00000-of-00001.parquet", build / "data" / "train-00000-of-00001.parquet"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "gate.json", "release"]


@pytest.mark.parametrize("verdict", [None, '{"passed": false}', "not json"])
def test_release_refuses_without_a_passing_gate(tmp_path: Path, verdict: str | None) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "README.md").write_text("old card")
    build = candidate(tmp_path, "new")
    if verdict is not None:
        (tmp_path / "gate.json").write_text(verdict)
    with pytest.raises(BadInputError, match="no passing gate verdict"):
        run_release(build, tmp_path / "gate.json", release)
    assert (release / "README.md").read_text() == "old card"


def test_release_refuses_an_incomplete_candidate(tmp_path: Path) -> None:
    build = candidate(tmp_path, "new")
    (build / "croissant.json").unlink()
    (tmp_path / "gate.json").write_text('{"passed": true}')
    with pytest.raises(BadInputError, match=r"missing croissant\.json"):
        run_release(build, tmp_path / "gate.json", tmp_path / "release")
    assert not (tmp_path / "release").exists()


def test_metrics_are_the_headline_of_the_seed_reports(seed_build: Path, tmp_path: Path) -> None:
    reports = seed_build / "reports"
    (tmp_path / "reports").mkdir()
    for name in ("ingest", "clean", "dedup", "split", "validation"):
        (tmp_path / "reports" / f"{name}.json").write_bytes((reports / f"{name}.json").read_bytes())
    (tmp_path / "reports" / "filter.json").write_text(
        json.dumps({"rules": {"placeholder": {"filtered": 2}, "too_short": {"filtered": 1}}})
    )
    metrics = run_metrics(tmp_path / "reports", tmp_path / "metrics.json", tmp_path / "plots")
    ingest = json.loads((reports / "ingest.json").read_text())
    split = json.loads((reports / "split.json").read_text())
    assert metrics["raw_records"] == ingest["totals"]["records"]
    assert metrics["released"] == sum(split["rows"].values())
    assert metrics["filtered"] == 3
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    funnel = (tmp_path / "plots" / "funnel.csv").read_text().splitlines()
    assert funnel[0] == "step,rows" and funnel[1] == f"raw records,{metrics['raw_records']}"
    assert (tmp_path / "plots" / "filtered_by_reason.csv").read_text().splitlines() == [
        "reason,rows",
        "placeholder,2",
        "too_short,1",
    ]
    with pytest.raises(BadInputError, match=r"split.json: not found"):
        (tmp_path / "reports" / "split.json").unlink()
        run_metrics(tmp_path / "reports", tmp_path / "metrics.json", tmp_path / "plots")
