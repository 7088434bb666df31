"""Stage `metrics`: the headline numbers and the plot data, from the other stages' reports.

Writes `metrics.json`, the dozen numbers a maintainer compares between runs
(`dvc metrics diff`; the detailed reports stay beside it), and the CSV files behind
`dvc plots show`: the funnel (`funnel.csv`), duplicates by method (`duplicates_by_method.csv`)
and flags by rule (`flags_by_rule.csv`); `validate` writes the text length per split.
A report that a stage did not write (an optional stage) counts as zero.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pipeline.errors import BadInputError
from pipeline.io.writers import atomic_path, write_json

REQUIRED = ("ingest", "dedup", "split", "validation")


def _read(reports: Path, name: str) -> dict[str, Any]:
    path = reports / f"{name}.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if name in REQUIRED:
            raise BadInputError(f"{path}: not found; run `dvc repro` to build the reports") from None
        return {}
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{path}: expected a JSON object")
    return value


def _number(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _filtered(report: dict[str, Any]) -> dict[str, int]:
    """Dropped rows per filter rule (`filter.json` `rules.<rule>.filtered`, if the stage ran)."""
    rules = report.get("rules") or {}
    if not isinstance(rules, dict):
        return {}
    return {str(k): _number(v.get("filtered")) for k, v in rules.items() if isinstance(v, dict)}


def headline(reports: Path) -> tuple[dict[str, Any], dict[str, list[tuple[str, int]]]]:
    """`metrics.json` and the plot tables (name -> rows of (label, count))."""
    ingest, clean, dedup = _read(reports, "ingest"), _read(reports, "clean"), _read(reports, "dedup")
    split, validation = _read(reports, "split"), _read(reports, "validation")
    diff, filtered_report = _read(reports, "release_diff"), _read(reports, "filter")
    totals = ingest.get("totals", {})
    folded = {str(k): _number(v) for k, v in (dedup.get("folded_by_method") or {}).items()}
    split_rows = {str(k): _number(v) for k, v in (split.get("rows") or {}).items()}
    filtered = _filtered(filtered_report)
    released = sum(split_rows.values())
    counts = diff.get("counts") or {}
    metrics = {
        "raw_records": _number(totals.get("records")),
        "rejected_lines": _number(totals.get("rejects")),
        "filtered": sum(filtered.values()),
        "folded_duplicates": sum(folded.values()),
        "released": released,
        "train": split_rows.get("train", 0),
        "validation": split_rows.get("validation", 0),
        "test": split_rows.get("test", 0),
        "leaked_pairs": len(split.get("leaked_pairs") or []),
        "flagged_rows": sum(_number(v) for v in (clean.get("flags") or {}).values()),
        "critical_failures": _number(validation.get("critical_failures")),
        "warnings": _number(validation.get("warnings")),
        "added_since_published": _number(counts.get("added")),
        "removed_since_published": _number(counts.get("removed")),
    }
    funnel = [
        ("raw records", metrics["raw_records"]),
        ("after filter", metrics["raw_records"] - metrics["filtered"]),
        ("after dedup", metrics["raw_records"] - metrics["filtered"] - metrics["folded_duplicates"]),
        ("released", released),
    ]
    plots = {
        "funnel": funnel,
        "duplicates_by_method": sorted(folded.items()),
        "flags_by_rule": sorted((str(k), _number(v)) for k, v in (clean.get("flags") or {}).items()),
    }
    if filtered:
        plots["filtered_by_reason"] = sorted(filtered.items())
    return metrics, plots


PLOT_HEADERS = {
    "funnel": ("step", "rows"),
    "duplicates_by_method": ("method", "rows"),
    "flags_by_rule": ("flag", "rows"),
    "filtered_by_reason": ("reason", "rows"),
}


def run_metrics(reports: Path, out: Path, plots_dir: Path) -> dict[str, Any]:
    """Write `out` (metrics.json) and one CSV per plot into `plots_dir`.

    Raises:
        BadInputError: a required report is missing or unreadable.
    """
    metrics, plots = headline(reports)
    write_json(metrics, out)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, header in PLOT_HEADERS.items():
        with (
            atomic_path(plots_dir / f"{name}.csv") as tmp,
            tmp.open("w", newline="", encoding="utf-8") as handle,
        ):
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(plots.get(name, []))
    return metrics
