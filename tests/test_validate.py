from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, copy_gx_project

from pipeline.cli import main
from pipeline.errors import BadInputError
from pipeline.params import FilterParams, SplitParams, ValidateParams
from pipeline.stages.validate.core import (
    find_artifacts,
    release_batches,
    release_schema,
    run_validate,
)
from pipeline.stages.validate.project import load_checkpoint, read_suite_file

DATA = Path(__file__).resolve().parent / "data" / "validate"
# The offline Data Docs pages: `<suite>.<asset>`.
ASSET_PAGES = [
    "schema.release",
    "release_values.rows",
    "uniqueness.rows",
    "text_quality.rows",
    "leakage.rows",
    "policy.rows",
    "intermediate.dedup",
    "clean_records.clean",
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root holding a copy of gx/, as the working directory (GX resolves its data
    source's `build/validate` against it)."""
    root = tmp_path / "project"
    root.mkdir()
    copy_gx_project(root)
    monkeypatch.chdir(root)
    return root


def validate(
    seed_build: Path,
    release_data: Path,
    report: Path,
    *,
    split_report: Path | None = None,
    dedup: Path | None = None,
    clean: Path | None = None,
    params: ValidateParams | None = None,
    gx_dir: Path | None = None,
    policy: FilterParams | None = None,
    releases: Path | None = None,
) -> dict[str, Any]:
    return run_validate(
        release_data,
        gx_dir or Path("gx"),
        report,
        params or ValidateParams(),
        SplitParams(),
        dedup=dedup or seed_build / "build" / "dedup.parquet",
        split_report=split_report or seed_build / "reports" / "split.json",
        clean=clean or seed_build / "build" / "clean.parquet",
        policy=policy,
        releases=releases,
    )


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


def failed(report_path: Path) -> list[dict[str, Any]]:
    return [r for r in json.loads(report_path.read_text())["results"] if not r["success"]]


# A withdrawal notice long enough to pass the length floors (arXiv's wording, with its reason).
WITHDRAWN = (
    "This paper has been withdrawn by the author due to a crucial error in the proof of the main "
    "theorem in section three, which invalidates the convergence rate claimed for the proposed "
    "stochastic gradient method."
)
# The abstract of a German paper (written for this test), long enough for the length floors.
GERMAN = (
    "Wir untersuchen, wie neuronale Netze mit wenigen Beispielen neue Aufgaben lernen koennen, "
    "und zeigen, dass ein einfaches Verfahren zur Anpassung der Gewichte bessere Ergebnisse "
    "liefert als die bisher bekannten Methoden, besonders wenn nur sehr wenige Daten vorhanden sind."
)

SUITES = [
    "schema",
    "release_values",
    "uniqueness",
    "text_quality",
    "leakage",
    "policy",
    "intermediate",
    "clean_records",
]


def test_seed_release_passes_every_suite(seed_build: Path) -> None:
    report = json.loads((seed_build / "reports" / "validation.json").read_text())
    assert report["success"] is True
    assert report["critical_failures"] == 0
    assert list(dict.fromkeys(r["suite"] for r in report["results"])) == SUITES
    # Every expectation of every suite file is reported, in file order: none dropped as a
    # "duplicate" (text_quality has eight artifact expectations on the same column).
    declared = [
        (path.stem, e["type"])
        for name in SUITES
        for path in [REPO_ROOT / "gx" / "expectations" / f"{name}.json"]
        for e in json.loads(path.read_text())["expectations"]
    ]
    assert [(r["suite"], r["expectation"]) for r in report["results"]] == declared
    artifact_checks = [
        r for r in report["results"] if r["expectation"] == "expect_abstract_to_have_no_artifact"
    ]
    assert len({r["kwargs"]["artifact"] for r in artifact_checks}) == len(artifact_checks) >= 8
    bound = next(r for r in report["results"] if r["name"] == "split_sizes_within_bound")
    assert bound["success"] and bound["observed_value"] == {"test": 19, "train": 81, "validation": 18}


# One corruption per case, each on its own row of the seeds' train shard, so that one
# validation run over the release holding all of them shows each check naming its row.
CORRUPTIONS: list[tuple[Callable[[pa.Table], pa.Table], str, str, int]] = [
    (
        lambda t: set_value(t, "id", 1, t["id"][0].as_py()),
        "id_unique",
        "expect_column_values_to_be_unique",
        0,
    ),
    (
        lambda t: set_value(t, "abstract", 2, "Abstract: " + t["abstract"][2].as_py()),
        "no_abstract_prefix",
        "expect_abstract_to_have_no_artifact",
        2,
    ),
    (
        lambda t: set_value(t, "abstract", 3, ""),
        "abstract_chars",
        "expect_column_values_to_be_between",
        3,
    ),
    (
        lambda t: set_value(t, "arxiv_id", 4, "2201.12288v2"),
        "arxiv_id_format",
        "expect_column_values_to_match_regex",
        4,
    ),
    (
        lambda t: set_value(t, "abstract", 5, t["abstract"][5].as_py() + " |"),
        "no_table_residue",
        "expect_abstract_to_have_no_artifact",
        5,
    ),
    (
        lambda t: set_value(t, "abstract", 6, t["abstract"][6].as_py().replace(" ", " <b>", 1)),
        "no_html_tags",
        "expect_abstract_to_have_no_artifact",
        6,
    ),
    (
        lambda t: set_value(t, "abstract", 7, t["abstract"][7].as_py().replace(" ", "\x07 ", 1)),
        "no_control_characters",
        "expect_abstract_to_have_no_artifact",
        7,
    ),
    (
        lambda t: set_value(t, "abstract", 9, WITHDRAWN),
        "no_placeholder_notice",
        "expect_column_values_to_be_null",
        9,
    ),
    (
        # Row 8 of the seeds' one train row group: on validate.language_sample_every (4).
        lambda t: set_value(t, "abstract", 8, GERMAN),
        "no_row_the_identifier_calls_non_english",
        "expect_column_values_to_be_null",
        8,
    ),
    (
        lambda t: set_value(t, "categories", 10, ["physics.optics", "hep-th"]),
        "categories_on_allow_list",
        "expect_categories_on_allow_list",
        10,
    ),
]


@pytest.fixture(scope="module")
def corrupted_run(seed_build: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, Path, str]:
    """The release with every corruption of CORRUPTIONS, validated once: (the corrupted train
    shard, the report, what validate printed)."""
    root = tmp_path_factory.mktemp("corrupted")
    copy_gx_project(root)

    def every_change(table: pa.Table) -> pa.Table:
        for change, *_ in CORRUPTIONS:
            table = change(table)
        return table

    data = corrupt(seed_build, root, every_change)
    printed = io.StringIO()
    with contextlib.chdir(root), contextlib.redirect_stderr(printed):
        validate(seed_build, data, root / "validation.json")
    return pq.read_table(next(data.glob("train-*.parquet"))), root / "validation.json", printed.getvalue()


@pytest.mark.parametrize(("name", "expectation", "row"), [case[1:] for case in CORRUPTIONS])
def test_corrupted_release_fails_naming_expectation_and_row(
    corrupted_run: tuple[pa.Table, Path, str], name: str, expectation: str, row: int
) -> None:
    train, report_path, printed = corrupted_run
    bad_id = train["id"][row].as_py()
    report = json.loads(report_path.read_text())
    # validate never fails: the report says what failed and the gate stage stops the run.
    assert report["success"] is False and report["critical_failures"] >= 1
    by_name = {r["name"]: r for r in failed(report_path)}
    assert by_name[name]["expectation"] == expectation
    assert by_name[name]["severity"] == "critical"
    assert bad_id in {row["id"] for row in by_name[name]["failing_rows"]}
    assert all(row["source"] for row in by_name[name]["failing_rows"])
    line = next(line for line in printed.splitlines() if line.split()[2:3] == [f"{name}:"])
    assert expectation in line and bad_id in line


def test_every_corruption_is_on_its_own_row() -> None:
    rows = [row for *_, row in CORRUPTIONS]
    assert len(set(rows)) == len(rows)


def test_wrong_column_type_fails_naming_the_column(seed_build: Path, tmp_path: Path, project: Path) -> None:
    def to_string(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index("duplicate_count")
        return table.set_column(index, "duplicate_count", table["duplicate_count"].cast(pa.string()))

    data = corrupt(seed_build, tmp_path, to_string)
    assert validate(seed_build, data, tmp_path / "v.json")["success"] is False
    by_name = {r["name"]: r for r in failed(tmp_path / "v.json")}
    assert by_name["duplicate_count_is_integer"]["expectation"] == "expect_column_values_to_be_in_type_list"
    assert by_name["duplicate_count_is_integer"]["kwargs"]["column"] == "duplicate_count"


def test_leaked_pair_across_splits_fails_naming_both_rows(
    seed_build: Path, tmp_path: Path, project: Path
) -> None:
    release = seed_build / "release" / "data"
    train_id = pq.read_table(next(release.glob("train-*.parquet")))["id"][0].as_py()
    test_id = pq.read_table(next(release.glob("test-*.parquet")))["id"][0].as_py()
    split_report = json.loads((seed_build / "reports" / "split.json").read_text())
    split_report["leaked_pairs"] = [{"id": train_id, "other_id": test_id, "similarity": 0.93}]
    (tmp_path / "split.json").write_text(json.dumps(split_report))
    report = validate(seed_build, release, tmp_path / "v.json", split_report=tmp_path / "split.json")
    assert report["critical_failures"] == 1
    [leak] = [r for r in failed(tmp_path / "v.json") if r["severity"] == "critical"]
    assert (leak["suite"], leak["name"]) == ("leakage", "no_near_duplicate_across_splits")
    assert leak["expectation"] == "expect_no_near_duplicate_across_splits"
    assert {row["id"] for row in leak["failing_rows"]} == {train_id, test_id}
    assert leak["unexpected_count"] == 2


def test_malformed_leaked_pairs_are_rejected(seed_build: Path, tmp_path: Path, project: Path) -> None:
    (tmp_path / "split.json").write_text(json.dumps({"leaked_pairs": [{"id": "a"}]}))
    with pytest.raises(BadInputError, match=r"split.json: leaked_pairs\[0\] must be an object"):
        validate(
            seed_build,
            seed_build / "release" / "data",
            tmp_path / "v.json",
            split_report=tmp_path / "split.json",
        )


def test_flag_tolerances_use_mostly(seed_build: Path, tmp_path: Path, project: Path) -> None:
    dedup = pq.read_table(seed_build / "build" / "dedup.parquet")
    flags = dedup["flags"].to_pylist()
    # 2 of ~118 rows (> 1%) unbalanced, and one non-English row (0% allowed).
    flags[0] = [*flags[0], "unbalanced_brackets"]
    flags[1] = [*flags[1], "unbalanced_brackets"]
    flags[2] = [*flags[2], "non_english"]
    index = dedup.schema.get_field_index("flags")
    pq.write_table(
        dedup.set_column(index, dedup.schema.field(index), pa.array(flags, pa.list_(pa.string()))),
        tmp_path / "dedup.parquet",
    )
    report = validate(
        seed_build, seed_build / "release" / "data", tmp_path / "v.json", dedup=tmp_path / "dedup.parquet"
    )
    assert report["critical_failures"] == 2
    by_name = {r["name"]: r for r in failed(tmp_path / "v.json")}
    assert by_name["unbalanced_brackets_at_most_1_percent"]["unexpected_count"] == 2
    assert by_name["no_non_english"]["failing_rows"][0]["id"] == dedup["id"][2].as_py()
    # truncated is over its 2% tolerance in the seeds too, but its severity is warning.
    assert by_name["truncated_at_most_2_percent"]["severity"] == "warning"


def test_release_row_missing_from_dedup_and_text_hash_duplicates_fail(
    seed_build: Path, tmp_path: Path, project: Path
) -> None:
    dedup = pq.read_table(seed_build / "build" / "dedup.parquet")
    hashes = dedup["text_hash"].to_pylist()
    hashes[1] = hashes[0]
    index = dedup.schema.get_field_index("text_hash")
    changed = dedup.set_column(index, dedup.schema.field(index), pa.array(hashes, pa.string())).slice(
        0, dedup.num_rows - 1
    )
    pq.write_table(changed, tmp_path / "dedup.parquet")
    validate(
        seed_build, seed_build / "release" / "data", tmp_path / "v.json", dedup=tmp_path / "dedup.parquet"
    )
    by_name = {r["name"]: r for r in failed(tmp_path / "v.json")}
    assert {dedup["id"][0].as_py(), dedup["id"][1].as_py()} <= {
        r["id"] for r in by_name["text_hash_unique"]["failing_rows"]
    }
    assert by_name["dedup_text_hash_unique"]["suite"] == "intermediate"
    assert [r["id"] for r in by_name["release_row_in_dedup"]["failing_rows"]] == [dedup["id"][-1].as_py()]


def test_row_count_and_split_bounds_come_from_params(seed_build: Path, tmp_path: Path, project: Path) -> None:
    validate(
        seed_build,
        seed_build / "release" / "data",
        tmp_path / "v.json",
        params=ValidateParams(min_rows=10_000, split_sigmas=0.1),
    )
    assert {r["name"] for r in failed(tmp_path / "v.json") if r["severity"] == "critical"} == {
        "row_count",
        "dedup_row_count",
        "clean_row_count",
        "split_sizes_within_bound",
    }


def test_report_and_data_docs_are_deterministic_and_offline(
    seed_build: Path, tmp_path: Path, project: Path
) -> None:
    release = seed_build / "release" / "data"
    run = {"dedup": seed_build / "build" / "dedup.parquet", "clean": seed_build / "build" / "clean.parquet"}
    for name in ("a", "b"):
        run_validate(
            release,
            Path("gx"),
            tmp_path / f"{name}.json",
            ValidateParams(),
            SplitParams(),
            split_report=seed_build / "reports" / "split.json",
            **run,
        )
        # The checkpoint's action writes the pages to reports/data_docs of the project.
        shutil.copytree(project / "reports" / "data_docs", tmp_path / f"docs_{name}")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    pages = sorted(p.name for p in (tmp_path / "docs_a").iterdir())
    assert pages == sorted(["index.html", *(f"{s}.html" for s in ASSET_PAGES)])
    for page in pages:
        html = (tmp_path / "docs_a" / page).read_text()
        assert html == (tmp_path / "docs_b" / page).read_text(), page
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), page
    index = (tmp_path / "docs_a" / "index.html").read_text()
    # The seeds fail one warning (truncated) and no critical expectation.
    assert 'text_quality.rows</a> (<span class="warning">warning</span>)' in index
    assert "FAILED" not in index
    text_quality = (tmp_path / "docs_a" / "text_quality.rows.html").read_text()
    assert "<style>" in text_quality and "expect_abstract_to_have_no_artifact" in text_quality
    # GX's own site (CDN-styled, every run kept) is not built by the stage.
    assert not (project / "gx" / "uncommitted" / "data_docs").exists()


def test_cli_prints_the_table_and_exits_zero(
    seed_build: Path, tmp_path: Path, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = corrupt(seed_build, tmp_path, lambda t: set_value(t, "id", 1, t["id"][0].as_py()))
    code = main(
        [
            "--params",
            str(REPO_ROOT / "params.yaml"),
            "validate",
            "--release-data",
            str(data),
            "--gx",
            "gx",
            "--report",
            str(tmp_path / "v.json"),
            "--dedup",
            str(seed_build / "build" / "dedup.parquet"),
            "--split-report",
            str(seed_build / "reports" / "split.json"),
            "--clean",
            str(seed_build / "build" / "clean.parquet"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "Traceback" not in err
    assert re.search(r"uniqueness\s+critical\s+id_unique: expect_column_values_to_be_unique\(id\)\s+2 ", err)
    assert "critical failed (the gate stage will stop the release)" in err


def test_suite_without_severity_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "name": "bad",
                "expectations": [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}],
            }
        )
    )
    with pytest.raises(BadInputError, match=r"bad.json: expectation 0 .* needs `severity`"):
        read_suite_file(path)


def test_invalid_suite_files_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "broken", "expectations": [')
    with pytest.raises(BadInputError, match=r"broken.json:1: invalid JSON"):
        read_suite_file(path)
    path.write_text(
        json.dumps(
            {
                "name": "broken",
                "expectations": [{"type": "expect_no_such_thing", "kwargs": {}, "severity": "critical"}],
            }
        )
    )
    with pytest.raises(BadInputError, match=r"broken.json: not a valid expectation suite"):
        read_suite_file(path)


def test_a_value_expectation_on_the_release_asset_is_rejected(project: Path) -> None:
    """The staged `release` table holds no text; a value check there would pass vacuously."""
    path = project / "gx" / "expectations" / "schema.json"
    suite = json.loads(path.read_text())
    suite["expectations"].append(
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "abstract"},
            "severity": "critical",
        }
    )
    path.write_text(json.dumps(suite))
    with pytest.raises(BadInputError, match=r"schema.json: expect_column_values_to_not_be_null reads values"):
        load_checkpoint(project / "gx")


def test_find_artifacts_names_every_match() -> None:
    import polars as pl

    patterns = {"prefix": "^Abstract:", "space_comma": " ,"}
    texts = pl.Series(["Abstract: we , show.", "Clean text.", None, "Ends , here."])
    assert find_artifacts(texts, patterns).to_list() == ["|prefix|space_comma|", "", "", "|space_comma|"]


def test_find_artifacts_ignores_inline_math_and_nothing_else() -> None:
    """From the 2.7M bench: clean keeps `$\\dots , n$` verbatim, so it is no artifact; a real
    space before a comma beside the math, or after a stray dollar sign, still is."""
    import polars as pl

    patterns = {"space_before_punctuation": " [,.;:](?: |$)"}
    texts = pl.Series(
        [
            r"signal vectors $\mathbf{y}^i \in \mathbb{R}^d, i =1, 2, \dots , n$, we aim to learn",
            r"inline \(a , b\) and display \[x , y\] math",
            r"the math $x$ is fine , but this is not",
            "costs $5 , and more",
            "(i.e. , tasks) on edge devices",
        ]
    )
    assert find_artifacts(texts, patterns).to_list() == [
        "",
        "",
        "|space_before_punctuation|",
        "|space_before_punctuation|",
        "|space_before_punctuation|",
    ]


def test_great_expectations_is_not_imported_by_the_cli_or_other_stages() -> None:
    code = (
        "import sys, pipeline.cli, pipeline.stages.ingest.core, pipeline.stages.clean.core\n"
        "import pipeline.stages.dedup.core, pipeline.stages.split.core\n"
        "import pipeline.stages.validate.core, pipeline.stages.gate.core, pipeline.stages.release.core\n"
        "pipeline.cli.build_parser().format_help()\n"
        "assert 'great_expectations' not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr


def test_clean_table_is_validated(seed_build: Path, tmp_path: Path, project: Path) -> None:
    """The intermediate clean table: an unknown rule code or a duplicated source fails."""
    table = pq.read_table(seed_build / "build" / "clean.parquet")
    rules = table["clean_rules"].to_pylist()
    rules[3] = [*rules[3], "made_up_rule"]
    sources = table["source"].to_pylist()
    sources[5] = sources[4]
    index = table.schema.get_field_index("clean_rules")
    table = table.set_column(
        index, table.schema.field(index), pa.array(rules, table.schema.field(index).type)
    )
    index = table.schema.get_field_index("source")
    table = table.set_column(index, table.schema.field(index), pa.array(sources, pa.string()))
    broken = tmp_path / "clean.parquet"
    pq.write_table(table, broken)
    validate(seed_build, seed_build / "release" / "data", tmp_path / "v.json", clean=broken)
    names = {r["name"] for r in failed(tmp_path / "v.json") if r["severity"] == "critical"}
    assert names == {"clean_rules_known", "clean_source_unique"}


def test_streamed_release_is_the_concatenated_release(seed_build: Path, tmp_path: Path) -> None:
    """Split files with a missing column, a narrower and a conflicting type: streamed batch by
    batch, the release is the table `pa.concat_tables` makes of the whole files."""
    data = tmp_path / "data"
    shutil.copytree(seed_build / "release" / "data", data)
    train = next(data.glob("train-*.parquet"))
    table = pq.read_table(train)
    table = table.drop_columns(["arxiv_version"])
    index = table.schema.get_field_index("duplicate_count")
    table = table.set_column(index, "duplicate_count", table["duplicate_count"].cast(pa.int32()))
    pq.write_table(table, train)
    test = next(data.glob("test-*.parquet"))
    table = pq.read_table(test)
    index = table.schema.get_field_index("source")
    pq.write_table(table.set_column(index, "source", table["source"].cast(pa.large_string())), test)

    def whole(conflicting: list[str]) -> pa.Table:
        tables = []
        for path in sorted(data.glob("*.parquet")):
            table = pq.read_table(path)
            split = pa.repeat(pa.scalar(path.name.split("-")[0], pa.string()), table.num_rows)
            tables.append(table.append_column("split", split))
        for name in conflicting:
            tables = [
                t.set_column(t.schema.get_field_index(name), name, t[name].cast(pa.string())) for t in tables
            ]
        return pa.concat_tables(tables, promote_options="permissive")

    schema, conflicting = release_schema(data)
    streamed = pa.Table.from_batches(
        [b for t in release_batches(data, schema, conflicting, batch_rows=7) for b in t.to_batches()], schema
    )
    expected = whole(conflicting)
    assert streamed.schema.equals(expected.schema, check_metadata=True)
    assert streamed.equals(expected)
    assert streamed["arxiv_version"].null_count > 0

    # Text in one file and integers in another: read as text everywhere.
    table = pq.read_table(train)
    index = table.schema.get_field_index("duplicate_count")
    pq.write_table(
        table.set_column(index, "duplicate_count", table["duplicate_count"].cast(pa.string())), train
    )
    schema, conflicting = release_schema(data)
    assert "duplicate_count" in conflicting
    streamed = pa.Table.from_batches(
        [b for t in release_batches(data, schema, conflicting, batch_rows=7) for b in t.to_batches()], schema
    )
    assert streamed.equals(whole(conflicting))


def test_policy_suite_checks_the_filter_params_and_names_rows_and_values(
    seed_build: Path, tmp_path: Path, project: Path
) -> None:
    def change(table: pa.Table) -> pa.Table:
        table = set_value(table, "abstract", 9, WITHDRAWN)
        table = set_value(table, "abstract", 8, GERMAN)
        table = set_value(table, "categories", 10, ["physics.optics", "hep-th"])
        # Any one category on filter.topics passes, in any case.
        return set_value(table, "categories", 11, ["math.ST", "STAT.ML"])

    data = corrupt(seed_build, tmp_path, change)
    train = pq.read_table(next(data.glob("train-*.parquet")))
    ids = train["id"].to_pylist()
    words = [len(text.split(" ")) for text in train["abstract"].to_pylist()]
    # A word floor above the shortest train abstracts: those rows fail the policy's bound,
    # while validate's own bound (text_quality, validate.min_words) still passes.
    floor = sorted(words)[2] + 1
    short = {row_id for row_id, n in zip(ids, words, strict=True) if n < floor}
    report = validate(seed_build, data, tmp_path / "v.json", policy=FilterParams(min_words=floor))
    assert report["success"] is False
    by_name = {r["name"]: r for r in failed(tmp_path / "v.json")}
    assert {name for name, r in by_name.items() if r["severity"] == "critical"} == {
        "policy_words_within_filter_bounds",
        "no_placeholder_notice",
        "no_row_the_identifier_calls_non_english",
        "categories_on_allow_list",
    }
    assert all(
        by_name[name]["suite"] == "policy" for name in by_name if name != "truncated_at_most_2_percent"
    )
    assert {r["id"] for r in by_name["policy_words_within_filter_bounds"]["failing_rows"]} == short
    assert by_name["policy_words_within_filter_bounds"]["kwargs"]["min_value"] == {
        "$PARAMETER": "filter_min_words"
    }
    [notice] = by_name["no_placeholder_notice"]["failing_rows"]
    assert notice["id"] == ids[9] and notice["value"] == "This paper has been withdrawn"
    [german] = by_name["no_row_the_identifier_calls_non_english"]["failing_rows"]
    assert german["id"] == ids[8] and german["value"].startswith("py3langid: de ")
    [off_topic] = by_name["categories_on_allow_list"]["failing_rows"]
    assert off_topic["id"] == ids[10] and off_topic["value"] == "|physics.optics|hep-th|"


def test_policy_facts_count_as_the_filter_counts() -> None:
    """chars and words as polars counts them (null for null), a notice only in a short text."""
    import polars as pl

    from pipeline.stages.validate.core import _text_facts

    long_notice = WITHDRAWN + " " + " ".join(["More words of a real abstract follow here."] * 12)
    texts = ["", "a b  c", None, "naïve café — ok ", WITHDRAWN, long_notice, GERMAN]
    facts = _text_facts(pl.Series(texts, dtype=pl.String), {}, FilterParams(), 1)
    series = pl.Series(texts, dtype=pl.String)
    assert facts["abstract_chars"].to_list() == series.str.len_chars().cast(pl.Float64).to_list()
    words = (series.str.count_matches(" ", literal=True) + 1).cast(pl.Float64).to_list()
    assert facts["abstract_words"].to_list() == [0.0, *words[1:]]
    # filter.placeholder_max_words: a long text that mentions a withdrawal is an abstract.
    assert facts["placeholder"].to_list() == [
        None,
        None,
        None,
        None,
        "This paper has been withdrawn",
        None,
        None,
    ]
    language = facts["language"].to_list()
    assert language[:6] == [None] * 6 and language[6].startswith("py3langid: de ")
    # validate.language_sample_every: only every n-th row is put to the language rule.
    sampled = pl.Series([GERMAN, GERMAN, WITHDRAWN, GERMAN, GERMAN], dtype=pl.String)
    language = _text_facts(sampled, {}, FilterParams(), 3)["language"].to_list()
    assert [value is not None for value in language] == [True, False, False, True, False]


def _publish_index(releases: Path, rows: list[dict[str, Any]], version: str = "1.0.0") -> None:
    """A published release whose row index holds `rows` (id, split, band_keys)."""
    from pipeline.contracts import ROW_INDEX_SCHEMA
    from pipeline.io.writers import write_parquet

    releases.mkdir(exist_ok=True)
    columns = {field.name: [row.get(field.name) for row in rows] for field in ROW_INDEX_SCHEMA}
    write_parquet(pa.table(columns, schema=ROW_INDEX_SCHEMA), releases / f"{version}.rows.parquet")
    (releases / f"{version}.json").write_text(json.dumps({"version": version, "diff": {}}))


def _release_split(seed_build: Path, split: str) -> pa.Table:
    return pq.read_table(next((seed_build / "release" / "data").glob(f"{split}-*.parquet")))


def test_a_new_train_row_near_a_published_test_row_fails_naming_both(
    seed_build: Path, tmp_path: Path, project: Path
) -> None:
    """From the stored memberships alone: the published test row is not in this build, so the
    band key it shares with a new train row is the evidence; a train row published before is
    not new and is not checked."""
    dedup = pq.read_table(seed_build / "build" / "dedup.parquet")
    keys = dict(zip(dedup["id"].to_pylist(), dedup["band_keys"].to_pylist(), strict=True))
    train = _release_split(seed_build, "train")["id"].to_pylist()
    new_id, old_id = train[0], train[1]
    # Only one band equal: a single shared band key is enough to be a candidate.
    gone_keys = [keys[new_id][0]] + [k ^ 1 for k in keys[new_id][1:]]
    _publish_index(
        tmp_path / "releases",
        [
            {"id": "txt-gone", "split": "test", "band_keys": gone_keys},
            {"id": old_id, "split": "train", "band_keys": None},
            {"id": "txt-also-gone", "split": "validation", "band_keys": keys[old_id]},
        ],
    )
    report = validate(
        seed_build, seed_build / "release" / "data", tmp_path / "v.json", releases=tmp_path / "releases"
    )
    assert report["critical_failures"] == 1
    [leak] = [r for r in failed(tmp_path / "v.json") if r["severity"] == "critical"]
    assert (leak["suite"], leak["name"], leak["expectation"]) == (
        "leakage",
        "no_leak_across_releases",
        "expect_no_leak_across_releases",
    )
    assert leak["unexpected_count"] == 1
    [row] = leak["failing_rows"]
    assert row["id"] == new_id and row["source"]
    assert row["value"] == "txt-gone (test in v1.0.0, not in this release; a band key is shared)"


def test_a_published_test_row_in_this_build_is_compared_by_its_text(
    seed_build: Path, tmp_path: Path, project: Path
) -> None:
    """A shared band key with a published test row that is in this release is verified with
    dedup's Jaccard similarity: an unrelated text passes, a near copy fails."""
    test_row = _release_split(seed_build, "test").slice(0, 1).to_pylist()[0]
    train = _release_split(seed_build, "train")
    new_id = train["id"][3].as_py()
    dedup = pq.read_table(seed_build / "build" / "dedup.parquet")
    keys = dict(zip(dedup["id"].to_pylist(), dedup["band_keys"].to_pylist(), strict=True))
    # The new train row's band keys collide with the test row's (as if the texts were close).
    band_keys = dedup["band_keys"].to_pylist()
    band_keys[dedup["id"].to_pylist().index(new_id)] = keys[test_row["id"]]
    index = dedup.schema.get_field_index("band_keys")
    pq.write_table(
        dedup.set_column(
            index, dedup.schema.field(index), pa.array(band_keys, dedup.schema.field(index).type)
        ),
        tmp_path / "dedup.parquet",
    )
    _publish_index(
        tmp_path / "releases", [{"id": test_row["id"], "split": "test", "band_keys": keys[test_row["id"]]}]
    )
    run = {"dedup": tmp_path / "dedup.parquet", "releases": tmp_path / "releases"}
    # The texts differ: not a near duplicate, whatever the keys say.
    report = validate(seed_build, seed_build / "release" / "data", tmp_path / "v.json", **run)
    assert report["critical_failures"] == 0

    # The train row becomes a near copy of the published test row (one word changed).
    near = test_row["abstract"].replace(" the ", " a ", 1)
    data = corrupt(seed_build, tmp_path, lambda t: set_value(t, "abstract", 3, near))
    validate(seed_build, data, tmp_path / "v2.json", **run)
    by_name = {r["name"]: r for r in failed(tmp_path / "v2.json") if r["severity"] == "critical"}
    [row] = by_name["no_leak_across_releases"]["failing_rows"]
    assert row["id"] == new_id
    assert re.fullmatch(
        rf"{re.escape(test_row['id'])} \(test in v1\.0\.0, similarity 0\.9\d*\)", row["value"]
    )


def test_band_matches_are_every_pair_sharing_a_key_in_the_same_band() -> None:
    import numpy as np

    from pipeline.stages.validate.core import band_matches

    rng = np.random.default_rng(7)
    # Few distinct keys: many collisions, repeated keys on both sides, and equal keys in
    # different bands (which do not match).
    new = rng.integers(0, 5, size=(300, 4), dtype=np.uint64)
    published = rng.integers(0, 5, size=(50, 4), dtype=np.uint64)
    expected = sorted(
        {
            (i, j)
            for i in range(300)
            for j in range(50)
            for band in range(4)
            if new[i, band] == published[j, band]
        }
    )
    assert [tuple(pair) for pair in band_matches(new, published).tolist()] == expected
    # The same key in another band is no match.
    crossed = np.array([[1, 2]], dtype=np.uint64), np.array([[2, 1], [1, 7]], dtype=np.uint64)
    assert band_matches(*crossed).tolist() == [[0, 1]]
    assert band_matches(new, published[:0]).shape == (0, 2)
