from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT

from pipeline.errors import BadInputError, ValidationFailed
from pipeline.params import ValidateParams
from pipeline.validate import run_validate


def test_seed_release_passes(seed_build: Path) -> None:
    report = json.loads((seed_build / "reports" / "validation.json").read_text())
    assert report["success"] is True
    assert report["critical_failures"] == 0
    assert {r["suite"] for r in report["results"]} == {"schema", "uniqueness", "text_quality"}


def corrupt(seed_build: Path, tmp_path: Path, change: Callable[[pa.Table], pa.Table]) -> Path:
    data = tmp_path / "data"
    shutil.copytree(seed_build / "release" / "data", data)
    train = next(data.glob("train-*.parquet"))
    pq.write_table(change(pq.read_table(train)), train)
    return data


def set_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    return table.set_column(
        index, table.schema.field(index), pa.array(values, table.schema.field(index).type)
    )


@pytest.mark.parametrize(
    ("change", "expectation", "bad_id"),
    [
        (lambda t: set_value(t, "id", 1, t["id"][0].as_py()), "expect_column_values_to_be_unique", "row0"),
        (
            lambda t: set_value(t, "abstract", 2, "Abstract: " + t["abstract"][2].as_py()),
            "expect_column_values_to_not_match_regex_list",
            "row2",
        ),
        (lambda t: set_value(t, "abstract", 3, ""), "expect_column_value_lengths_to_be_between", "row3"),
        (
            lambda t: set_value(t, "arxiv_id", 4, "2201.12288v2"),
            "expect_column_values_to_match_regex",
            "row4",
        ),
    ],
)
def test_corrupted_release_fails_naming_expectation_and_row(
    seed_build: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[pa.Table], pa.Table],
    expectation: str,
    bad_id: str,
) -> None:
    data = corrupt(seed_build, tmp_path, change)
    train = pq.read_table(next(data.glob("train-*.parquet")))
    expected_id = train["id"][int(bad_id[3:])].as_py()
    report_path = tmp_path / "validation.json"
    with pytest.raises(ValidationFailed, match=r"critical expectation\(s\) failed"):
        run_validate(data, REPO_ROOT / "expectations", report_path, ValidateParams())
    report = json.loads(report_path.read_text())
    failed = [r for r in report["results"] if not r["success"]]
    assert expectation in {r["expectation"] for r in failed}
    failing_ids = {row["id"] for r in failed for row in r["failing_rows"]}
    assert expected_id in failing_ids
    assert all(row["source"] for r in failed for row in r["failing_rows"])
    printed = capsys.readouterr().err
    assert expectation in printed and expected_id in printed


def test_wrong_column_type_fails(seed_build: Path, tmp_path: Path) -> None:
    def to_string(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("duplicate_count")
        return table.set_column(index, "duplicate_count", table["duplicate_count"].cast(pa.string()))

    data = corrupt(seed_build, tmp_path, to_string)
    with pytest.raises(ValidationFailed):
        run_validate(data, REPO_ROOT / "expectations", tmp_path / "v.json", ValidateParams())
    failed = {
        r["expectation"] for r in json.loads((tmp_path / "v.json").read_text())["results"] if not r["success"]
    }
    assert "expect_column_values_to_be_in_type_list" in failed


def test_row_count_bounds_come_from_params(seed_build: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed):
        run_validate(
            seed_build / "release" / "data",
            REPO_ROOT / "expectations",
            tmp_path / "v.json",
            ValidateParams(min_rows=10_000),
        )
    failed = [r for r in json.loads((tmp_path / "v.json").read_text())["results"] if not r["success"]]
    assert [r["expectation"] for r in failed] == ["expect_table_row_count_to_be_between"]


def test_suite_without_severity_is_rejected(seed_build: Path, tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "bad.json").write_text(
        json.dumps(
            {
                "name": "bad",
                "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}],
            }
        )
    )
    with pytest.raises(BadInputError, match=r"bad.json: expectation 0 .* needs meta.severity"):
        run_validate(seed_build / "release" / "data", suites, tmp_path / "v.json", ValidateParams())
