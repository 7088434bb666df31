"""The custom Expectations (text quality, leakage, split bounds) and the GX project files, with
real GX: an ephemeral context validating small pandas frames, and the suites in gx/ loaded
unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import REPO_ROOT

os.environ["GX_ANALYTICS_ENABLED"] = "false"
import great_expectations as gx

from pipeline.stages.validate import expectations as custom
from pipeline.stages.validate.project import (
    ASSETS,
    CHECKPOINT,
    artifact_patterns,
    load_checkpoint,
)

GX_DIR = REPO_ROOT / "gx"
SUITE_FILES = sorted((GX_DIR / "expectations").glob("*.json"))


def check(frame: pd.DataFrame, expectation: Any, parameters: dict[str, Any] | None = None) -> Any:
    context = gx.get_context(mode="ephemeral")
    definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    batch = definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(expectation, expectation_parameters=parameters)
    assert not result.exception_info.get("raised_exception"), result.exception_info
    return result


def test_no_artifact_fails_exactly_the_rows_naming_it() -> None:
    frame = pd.DataFrame(
        {"artifacts": pd.array(["|", "|html_tag|", "|url|html_tag|", None, "|html_tag_like|"], dtype="str")}
    )
    expectation = custom.ExpectAbstractToHaveNoArtifact(artifact="html_tag", regex="<b>", severity="critical")
    result = check(frame, expectation)
    assert result.success is False
    assert result.result["unexpected_count"] == 2
    assert result.result["partial_unexpected_index_list"] == [1, 2]
    # Another artifact's name that contains this one is not a match, and a row without text passes.
    clean = check(frame.iloc[[0, 3, 4]], expectation)
    assert clean.success is True


def test_no_artifact_honours_mostly() -> None:
    frame = pd.DataFrame({"artifacts": ["|"] * 99 + ["|html_tag|"]})
    expectation = custom.ExpectAbstractToHaveNoArtifact(artifact="html_tag", regex="<b>", mostly=0.99)
    assert check(frame, expectation).success is True
    strict = custom.ExpectAbstractToHaveNoArtifact(artifact="html_tag", regex="<b>")
    assert check(frame, strict).success is False


def test_no_near_duplicate_across_splits() -> None:
    frame = pd.DataFrame({"leaked_with": pd.array([None, "2401.00002", None], dtype="str")})
    result = check(frame, custom.ExpectNoNearDuplicateAcrossSplits())
    assert result.success is False
    assert result.result["partial_unexpected_index_list"] == [1]
    assert check(frame.iloc[[0, 2]], custom.ExpectNoNearDuplicateAcrossSplits()).success is True


@pytest.mark.parametrize(
    ("counts", "passes"),
    [
        ({"train": 800, "validation": 100, "test": 100}, True),
        # 4 sigma at n=1000, p=0.1 is 37.9 rows.
        ({"train": 763, "validation": 137, "test": 100}, True),
        ({"train": 760, "validation": 140, "test": 100}, False),
        ({"train": 1000}, False),
    ],
)
def test_split_sizes_within_binomial_bound(counts: dict[str, int], passes: bool) -> None:
    frame = pd.DataFrame({"split": [name for name, n in counts.items() for _ in range(n)]})
    expectation = custom.ExpectSplitSizesWithinBinomialBound(
        fractions={"$PARAMETER": "fractions"}, sigmas={"$PARAMETER": "sigmas"}
    )
    parameters = {"fractions": {"train": 0.8, "validation": 0.1, "test": 0.1}, "sigmas": 4.0}
    result = check(frame, expectation, parameters)
    assert result.success is passes
    assert result.result["observed_value"] == dict(sorted(counts.items()))
    if not passes:
        assert result.result["details"]["out_of_bounds"]


def test_split_bound_arithmetic() -> None:
    failures = custom.split_bound_failures({"train": 70, "extra": 30}, {"train": 0.8, "test": 0.2}, 2.0)
    # 2 * sqrt(100 * 0.8 * 0.2) + 1 = 9 rows either way.
    assert failures == {
        "extra": {"rows": 30, "expected": 0.0, "allowed": 1.0},
        "test": {"rows": 0, "expected": 20.0, "allowed": 9.0},
        "train": {"rows": 70, "expected": 80.0, "allowed": 9.0},
    }
    # One row inside the bound on each side of n p, one row past it.
    assert custom.split_bound_failures({"train": 89, "test": 11}, {"train": 0.8, "test": 0.2}, 2.0) == {}
    assert set(custom.split_bound_failures({"train": 90, "test": 10}, {"train": 0.8, "test": 0.2}, 2.0)) == {
        "train",
        "test",
    }


@pytest.mark.parametrize(
    "counts",
    [
        {"train": 800, "validation": 100, "test": 100},
        {"train": 749, "validation": 139, "test": 112},
        {"train": 748, "validation": 140, "test": 112},
        {"train": 851, "validation": 62, "test": 87},
        {"train": 90, "validation": 1, "test": 27},
        {"train": 81, "validation": 18, "test": 19},
    ],
)
def test_split_report_bounds_are_what_the_expectation_checks(counts: dict[str, int]) -> None:
    """split.json's `size_bounds.<split>.within` and the GX expectation (at the default 4 sigmas)
    agree split by split: both are |count - n p| <= 4 sqrt(n p (1 - p)) + 1."""
    from pipeline.params import SplitParams, ValidateParams
    from pipeline.stages.split.core import size_bounds

    params = SplitParams()
    bounds = size_bounds(counts, params)
    failures = custom.split_bound_failures(counts, dict(params.fractions), ValidateParams().split_sigmas)
    assert {name for name, bound in bounds.items() if not bound["within"]} == set(failures)
    for name, failure in failures.items():
        assert failure["allowed"] == bounds[name]["allowed_deviation"]
    frame = pd.DataFrame({"split": [name for name, n in counts.items() for _ in range(n)]})
    expectation = custom.ExpectSplitSizesWithinBinomialBound(
        fractions=dict(params.fractions), sigmas=ValidateParams().split_sigmas
    )
    assert check(frame, expectation).success is all(bound["within"] for bound in bounds.values())


def test_no_leak_across_releases_fails_the_new_row_and_names_the_published_one() -> None:
    frame = pd.DataFrame(
        {
            "id": ["2401.00001", "txt-00000000000000aa", "2401.00003"],
            "published_twin": pd.array(
                [None, "txt-00000000000000ff (test in v1.0.0, similarity 0.912)", None], dtype="str"
            ),
        }
    )
    result = check(frame, custom.ExpectNoLeakAcrossReleases(severity="critical"))
    assert result.success is False
    assert result.result["partial_unexpected_index_list"] == [1]
    assert result.result["partial_unexpected_list"] == [
        "txt-00000000000000ff (test in v1.0.0, similarity 0.912)"
    ]
    assert check(frame.iloc[[0, 2]], custom.ExpectNoLeakAcrossReleases()).success is True


def test_categories_on_allow_list_fails_exactly_the_off_topic_rows() -> None:
    frame = pd.DataFrame(
        {
            "categories": pd.array(
                [
                    "|cs.LG|",
                    "|physics.optics|hep-th|",
                    None,
                    "||",
                    "|math.ST|STAT.ML|",
                    "|Computer Science|",
                    "|cs.LGX|",
                    "|q-bio.NC|",
                ],
                dtype="str",
            )
        }
    )
    expectation = custom.ExpectCategoriesOnAllowList(allowed={"$PARAMETER": "topics"}, severity="critical")
    parameters = {"topics": ["cs.LG", "stat.ML", "Computer Science"]}
    result = check(frame, expectation, parameters)
    assert result.success is False
    # Any one category on the list passes, in any case; no categories pass; a longer name
    # that starts like a listed one does not.
    assert result.result["partial_unexpected_index_list"] == [1, 6, 7]
    assert check(frame.iloc[[0, 2, 3, 4, 5]], expectation, parameters).success is True
    # An empty allow-list lets only rows without categories through.
    assert custom.on_allow_list(frame["categories"], []).tolist() == [
        False,
        False,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_every_suite_loads_unchanged_and_round_trips(path: Path) -> None:
    """`gx.ExpectationSuite(**json)` takes the file as it is, and writing the suite back
    (as GX's file store does: sorted keys, two-space indent) gives the same bytes."""
    text = path.read_text(encoding="utf-8")
    suite = gx.ExpectationSuite(**json.loads(text))
    data = json.loads(text)
    assert len(suite.expectations) == len(data["expectations"])
    assert json.dumps(suite.to_json_dict(), indent=2, sort_keys=True) == text
    for expectation in suite.expectations:
        assert expectation.severity.value in {"critical", "warning"}
        assert expectation.meta.get("name")


def test_the_store_saves_every_suite_byte_for_byte(tmp_path: Path) -> None:
    project = tmp_path / "gx"
    shutil.copytree(GX_DIR, project, ignore=shutil.ignore_patterns("uncommitted"))
    context = gx.get_context(mode="file", context_root_dir=str(project))
    for path in SUITE_FILES:
        suite = context.suites.get(path.stem)
        suite.save()
        assert (project / "expectations" / path.name).read_bytes() == path.read_bytes(), path.name


def test_checkpoint_runs_one_validation_definition_per_suite() -> None:
    checkpoint, specs = load_checkpoint(GX_DIR)
    assert checkpoint.name == CHECKPOINT
    assert sorted(spec.name for spec in specs) == sorted(p.stem for p in SUITE_FILES)
    assert {spec.asset for spec in specs} == set(ASSETS)
    assert [(a.type, a.directory) for a in checkpoint.actions] == [("offline_data_docs", "reports/data_docs")]
    patterns = artifact_patterns(specs)
    assert {"html_tag", "abstract_prefix", "control_character"} <= set(patterns)


def test_the_known_rule_and_flag_lists_are_the_cleaners() -> None:
    """clean_records' `clean_rules_known` and `flags_known` regexes name exactly the rules and
    flags `clean` writes: a new rule must be added to the suite, or every row it touches fails."""
    from pipeline.stages.clean.core import FLAGS, RULES

    suite = json.loads((GX_DIR / "expectations" / "clean_records.json").read_text())
    regexes = {
        e["kwargs"]["column"]: e["kwargs"]["regex"] for e in suite["expectations"] if "regex" in e["kwargs"]
    }

    def names(regex: str) -> set[str]:
        return set(regex.split("(?:(?:")[1].split(")\\|)")[0].split("|"))

    assert names(regexes["clean_rules"]) == {rule.name for rule in RULES}
    assert names(regexes["flags"]) == set(FLAGS)
    # And `format_known` names exactly the formats ingest reads.
    from pipeline.params import KNOWN_FORMATS

    sets = {
        e["kwargs"]["column"]: e["kwargs"]["value_set"]
        for e in suite["expectations"]
        if "value_set" in e["kwargs"]
    }
    assert set(sets["format"]) == set(KNOWN_FORMATS)
