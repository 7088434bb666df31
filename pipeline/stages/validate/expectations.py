"""The project's custom Great Expectations: text quality, leakage and split bounds.

Each is an `Expectation` subclass; GX registers an Expectation class (and a metric provider)
when its class is defined, so importing this module is what makes the suites in
`gx/expectations/` loadable (`import pipeline.stages.validate.expectations` before
`context.suites.get(...)` or `gx.ExpectationSuite(**json)`). The metrics are implemented for
the pandas engine, the only one the project's data source uses.

- `ExpectAbstractToHaveNoArtifact` (text quality): no abstract shows a named scraping
  artifact. The validate stage scans the release text once with every suite's `regex` and
  writes the names that matched to the `artifacts` column (`|a|b|`); the expectation checks
  the name it declares, so its `regex` and its verdict live in one place in the suite.
- `ExpectNoNearDuplicateAcrossSplits` (leakage): a customised `ExpectColumnValuesToBeNull` on
  `leaked_with`, the other side of a near-duplicate pair found in another split.
- `ExpectNoLeakAcrossReleases` (leakage): a customised `ExpectColumnValuesToBeNull` on
  `published_twin`, the published validation or test row a new train row near-duplicates.
- `ExpectSplitSizesWithinBinomialBound` (split bounds): each split's size is within
  sigmas * sqrt(n p (1 - p)) + 1 rows of n p (`pipeline.policy.split_size_allowed_deviation`,
  the bound split.json's `size_bounds` reports), the bound a hash split meets.
- `ExpectCategoriesOnAllowList` (policy): a row with categories has one on the allow-list
  (the filter's `off_topic` rule, checked again on the release).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.core.suite_parameters import SuiteParameterDict
from great_expectations.execution_engine.execution_engine import ExecutionEngine
from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine
from great_expectations.expectations.core.expect_column_values_to_be_null import (
    ExpectColumnValuesToBeNull,
)
from great_expectations.expectations.expectation import (
    ColumnAggregateExpectation,
    ColumnMapExpectation,
)
from great_expectations.expectations.metrics.column_aggregate_metric_provider import (
    ColumnAggregateMetricProvider,
    column_aggregate_value,
)
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_map_metric_provider import (
    ColumnMapMetricProvider,
)

from pipeline.policy import split_size_allowed_deviation

ARTIFACTS_COLUMN = "artifacts"


def artifact_marker(name: str) -> str:
    """How an artifact's name appears in the `artifacts` column (`|a|b|`)."""
    return f"|{name}|"


class ColumnValuesHaveNoArtifact(ColumnMapMetricProvider):
    """Per row: the `|a|b|` artifact list does not name `artifact` (null: no text, no artifact)."""

    condition_metric_name = "column_values.have_no_artifact"
    condition_value_keys = ("artifact",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, artifact: str, **kwargs: Any) -> pd.Series:
        # A literal substring test, vectorised over Arrow-backed strings.
        return ~column.str.contains(artifact_marker(artifact), regex=False).fillna(False).astype(bool)


class ExpectAbstractToHaveNoArtifact(ColumnMapExpectation):
    """No published abstract shows the scraping artifact `artifact`.

    `regex` (Rust regex syntax, as polars runs it) is what the validate stage looks for in
    every abstract; `column` holds, per row, the names of the artifacts whose regex matched.
    """

    artifact: str
    regex: str
    column: str = ARTIFACTS_COLUMN

    map_metric = "column_values.have_no_artifact"
    success_keys = ("artifact", "mostly")
    args_keys = ("column", "artifact")
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["text quality"], "contributors": ["ml-abstracts"]}


class ExpectNoNearDuplicateAcrossSplits(ExpectColumnValuesToBeNull):
    """No release row has a near-duplicate in another split (`leaked_with` is its partner's id)."""

    column: str = "leaked_with"
    description: str | None = (
        "No near-duplicate pair across splits: a test row's twin in train inflates test scores."
    )


class ExpectNoLeakAcrossReleases(ExpectColumnValuesToBeNull):
    """No new train row is a near duplicate of a validation or test row of a published release.

    `published_twin` names, per new train row, the published row it near-duplicates (its id,
    split, release and the evidence); the validate stage finds them from the stored memberships
    (`releases/<version>.rows.parquet`), not from the split stage's report.
    """

    column: str = "published_twin"
    description: str | None = (
        "No new train row near-duplicates a published validation or test row: a paper published "
        "for evaluation must never come back in train."
    )


def _literal_pattern(text: str) -> str:
    # Escaped for both RE2 (pyarrow) and Python's `re`: every character but letters, digits,
    # `_` and spaces (RE2 rejects some of the escapes `re.escape` writes).
    return re.sub(r"([^\w ])", r"\\\1", text)


def on_allow_list(column: pd.Series, allowed: list[str]) -> pd.Series:
    """Per `|a|b|` row of categories: it names none (`||`), or one of `allowed` (any case)."""
    values = pa.array(column.astype("string[pyarrow]"))
    passes = pc.equal(values, "||")
    if allowed:
        pattern = r"\|(?:" + "|".join(_literal_pattern(a) for a in allowed) + r")\|"
        passes = pc.or_(passes, pc.match_substring_regex(values, pattern, ignore_case=True))
    return pd.Series(passes.fill_null(True).to_numpy(zero_copy_only=False), index=column.index)


class ColumnValuesOnAllowList(ColumnMapMetricProvider):
    """Per row: its `|a|b|` categories are none, or hold one of `allowed` (compared case-insensitively)."""

    condition_metric_name = "column_values.categories_on_allow_list"
    condition_value_keys = ("allowed",)

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, allowed: list[str], **kwargs: Any) -> pd.Series:
        return on_allow_list(column, [str(a) for a in allowed])


class ExpectCategoriesOnAllowList(ColumnMapExpectation):
    """Every row with categories (arXiv categories or fields of study) has one on `allowed`.

    `column` holds each row's categories as `|a|b|` text (null: none known, which passes, as
    it passes the filter's `off_topic` rule); `allowed` is params.yaml `filter.topics`.
    """

    allowed: list[str] | SuiteParameterDict[str, Any]
    column: str = "categories"

    map_metric = "column_values.categories_on_allow_list"
    success_keys = ("allowed", "mostly")
    args_keys = ("column", "allowed")
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["policy"], "contributors": ["ml-abstracts"]}


class ColumnSplitCounts(ColumnAggregateMetricProvider):
    """Rows per value of the column (null values not counted)."""

    metric_name = "column.split_counts"

    @column_aggregate_value(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> dict[str, int]:
        return {str(k): int(v) for k, v in column.value_counts(dropna=True).sort_index().items()}


def split_bound_failures(
    counts: dict[str, int], fractions: dict[str, float], sigmas: float
) -> dict[str, dict[str, float]]:
    """Per split outside its bound: rows, expected rows and the allowed deviation.

    A hash split puts each row in split s with probability p_s, so its row count is binomial:
    mean n p_s, standard deviation sqrt(n p_s (1 - p_s)); the split may stray
    `split_size_allowed_deviation` (sigmas deviations and one row) from n p_s. A split
    missing from `fractions` is out of bounds whatever its size.
    """
    total = sum(counts.values())
    failures: dict[str, dict[str, float]] = {}
    for split in sorted(set(counts) | set(fractions)):
        rows = counts.get(split, 0)
        fraction = fractions.get(split, 0.0)
        expected = total * fraction
        allowed = split_size_allowed_deviation(total, fraction, sigmas)
        if split not in fractions or abs(rows - expected) > allowed:
            failures[split] = {"rows": rows, "expected": round(expected, 3), "allowed": round(allowed, 3)}
    return failures


class ExpectSplitSizesWithinBinomialBound(ColumnAggregateExpectation):
    """Each split holds its target share of the rows, within `sigmas` binomial standard deviations.

    `fractions` maps split name -> target fraction (params.yaml `split.fractions`); rows of a
    published release keep their split, so sizes drift, and this is the bound they are held to.
    """

    fractions: dict[str, float] | SuiteParameterDict[str, Any]
    sigmas: float | SuiteParameterDict[str, Any] = 4.0
    column: str = "split"

    metric_dependencies = ("column.split_counts",)
    success_keys = ("fractions", "sigmas")
    args_keys = ("column", "fractions", "sigmas")
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["split bounds"], "contributors": ["ml-abstracts"]}

    def _validate(
        self,
        metrics: dict[str, Any],
        runtime_configuration: dict[str, Any] | None = None,
        execution_engine: ExecutionEngine[Any] | None = None,
    ) -> dict[str, Any]:
        counts = metrics["column.split_counts"]
        # The success kwargs with the class defaults filled in and `$PARAMETER`s substituted.
        kwargs = self._get_success_kwargs()
        fractions = {str(k): float(v) for k, v in kwargs["fractions"].items()}
        failures = split_bound_failures(counts, fractions, float(kwargs["sigmas"]))
        return {
            "success": not failures,
            "result": {"observed_value": counts, "details": {"out_of_bounds": failures}},
        }


# The checkpoint's Data Docs action: registered here too, so that this one import (what a `gx`
# user adds) makes both the suites and the checkpoint loadable.
from pipeline.stages.validate import actions as _actions  # noqa: E402,F401
