"""The validate stage's outputs besides Data Docs: `validation.json`, the terminal summary and
the text-length plot data.

`validation.json` keeps the keys the review page and the gate read: `rows`, `success`,
`critical_failures`, `warnings` and `results`, one per expectation in suite order, each with
`suite`, `table` (the GX asset), `expectation`, `name`, `kwargs`, `severity`, `success`,
`observed_value`, `unexpected_count`, `failing_rows` (up to `MAX_FAILING_ROWS`, with `id`,
`source` and, for a check of row values, the failing `value`) and, when GX raised, `error`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pipeline.io.writers import atomic_path
from pipeline.stages.validate.project import SuiteSpec

MAX_FAILING_ROWS = 20
# Row identity in every staged table and in the report; `source` says which dump to look at.
INDEX_COLUMNS = ("id", "source")
SPLITS = ("train", "validation", "test")
# Text-length plot: characters per bin.
LENGTH_BIN_CHARS = 100


def json_safe(value: Any) -> Any:
    """`value` as plain JSON: numpy scalars unwrapped, NaN/NA as null, other objects as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        return json_safe(value.item())
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def exception_message(result: Any) -> str | None:
    """The last line of the error GX caught while evaluating an expectation, if any."""
    info = getattr(result, "exception_info", None) or {}
    if "raised_exception" not in info:
        # Several metrics can raise; GX keys them by metric id.
        info = next((v for v in info.values() if isinstance(v, dict)), {})
    if not info.get("raised_exception"):
        return None
    message = str(info.get("exception_message") or "").strip()
    return message.splitlines()[-1] if message else "exception"


def failing_rows(table: Path, positions: list[Any], values: list[Any] | None = None) -> list[dict[str, Any]]:
    """`id` and `source` of the staged table's rows at `positions` (GX's unexpected index list)
    and, when GX lists them (`values`, its unexpected values in the same order), each row's
    failing `value` (a cross-release leak names the published row there)."""
    wanted = [int(p) for p in positions[:MAX_FAILING_ROWS] if isinstance(p, int | np.integer)]
    if not wanted:
        return []
    names = pq.read_schema(table).names
    columns = [c for c in INDEX_COLUMNS if c in names]
    picked = pq.read_table(table, columns=columns).take(wanted).to_pylist() if columns else [{}] * len(wanted)
    rows = [{column: row.get(column) for column in INDEX_COLUMNS} for row in picked]
    if values is not None and len(values) >= len(positions[:MAX_FAILING_ROWS]) == len(wanted):
        for row, value in zip(rows, values, strict=False):
            row["value"] = json_safe(value)
    return rows


def plain_results(
    specs: list[SuiteSpec], outcomes: dict[str, Any], tables: dict[str, Path]
) -> list[dict[str, Any]]:
    """One plain result per expectation, in checkpoint order, each suite's in file order."""
    results = []
    for spec in specs:
        outcome = outcomes[spec.name]
        by_id = {r.expectation_config.id: r for r in outcome.results}
        for expectation in spec.expectations:
            result = by_id[expectation["id"]]
            detail = result.result or {}
            plain = {
                "suite": spec.name,
                "table": spec.asset,
                "expectation": expectation["type"],
                "name": expectation["name"],
                "kwargs": json_safe({k: v for k, v in expectation["kwargs"].items() if k != "batch_id"}),
                "severity": expectation["severity"],
                "success": bool(result.success),
                "observed_value": json_safe(detail.get("observed_value")),
                "unexpected_count": json_safe(detail.get("unexpected_count")),
                "failing_rows": failing_rows(
                    tables[spec.asset],
                    list(detail.get("partial_unexpected_index_list") or []),
                    detail.get("partial_unexpected_list"),
                ),
            }
            if "details" in detail:
                plain["details"] = json_safe(detail["details"])
            error = exception_message(result)
            if error is not None:
                plain["error"] = error
            results.append(plain)
    return results


def build_report(rows: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    critical = [r for r in results if not r["success"] and r["severity"] == "critical"]
    warnings = [r for r in results if not r["success"] and r["severity"] == "warning"]
    return {
        "rows": rows,
        "success": not critical,
        "critical_failures": len(critical),
        "warnings": len(warnings),
        "results": results,
    }


def failure_table(results: list[dict[str, Any]]) -> str:
    """A short terminal table: every failed expectation with its count and example ids."""
    lines = [f"{'suite':<15} {'severity':<9} {'expectation':<80} {'count':>7}  example ids"]
    for r in results:
        if r["success"]:
            continue
        ids = ", ".join(str(row.get("id")) for row in r["failing_rows"][:3])
        if not ids and r.get("error"):
            ids = f"error: {r['error'][:80]}"
        column = r["kwargs"].get("column")
        name = f"{r['name']}: {r['expectation']}" + (f"({column})" if column else "")
        count = r["unexpected_count"] if r["unexpected_count"] is not None else "-"
        lines.append(f"{r['suite']:<15} {r['severity']:<9} {name:<80} {count!s:>7}  {ids}")
    return "\n".join(lines)


def print_summary(report: dict[str, Any]) -> None:
    results = report["results"]
    if report["critical_failures"] or report["warnings"]:
        print(failure_table(results), file=sys.stderr)
    verdict = (
        f"{report['critical_failures']} critical failed (the gate stage will stop the release)"
        if report["critical_failures"]
        else "all critical passed"
    )
    print(f"validate: {len(results)} expectations, {report['warnings']} warnings, {verdict}", file=sys.stderr)


def text_lengths(rows: pd.DataFrame) -> pd.DataFrame:
    """Release rows per abstract length bin (`LENGTH_BIN_CHARS` characters) and split, one
    column per split: the data of the `text_length_per_split` plot."""
    chars = rows["abstract_chars"].dropna()
    bins = (chars // LENGTH_BIN_CHARS * LENGTH_BIN_CHARS).astype("int64")
    counts = pd.crosstab(bins, rows.loc[chars.index, "split"])
    counts = counts.reindex(columns=list(SPLITS), fill_value=0)
    counts.index.name = "chars"
    counts.columns.name = None
    return counts.reset_index()


def write_text_lengths(rows_table: Path, target: Path) -> None:
    rows = pq.read_table(rows_table, columns=["abstract_chars", "split"]).to_pandas()
    with atomic_path(target) as tmp:
        text_lengths(rows).to_csv(tmp, index=False, lineterminator="\n")
