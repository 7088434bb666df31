"""Stage `validate`: Great Expectations suites gate the release.

Reads: the release data directory and the suites in `expectations/*.json`. Writes:
`validation.json` (every expectation: suite, severity, success, observed value, unexpected
count and up to 20 failing rows with their `source`). Params: `validate` (row-count bounds,
passed to the suites as `$PARAMETER`s).

A failed `critical` expectation prints a table of every failure and exits non-zero, so
`dvc repro` stops before the card is written; a failed `warning` is only reported.
GX is imported here only: it costs seconds, and the other stages must not pay for it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import BadInputError, ValidationFailed
from pipeline.outputs import write_json
from pipeline.params import ValidateParams

SEVERITIES = ("critical", "warning")
# Nullable pandas dtypes: integer columns with nulls stay integers, strings have one dtype
# whatever the pandas version's default string storage is.
_PANDAS_TYPES = {pa.string(): pd.StringDtype(), pa.int64(): pd.Int64Dtype()}
MAX_FAILING_ROWS = 20


def load_suites(directory: Path) -> list[dict[str, Any]]:
    """Read every suite JSON file; each expectation must carry `meta.severity`."""
    suites = []
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise BadInputError(f"{directory}: no expectation suites (*.json) found")
    for path in paths:
        try:
            suite = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        for index, expectation in enumerate(suite.get("expectations", [])):
            severity = expectation.get("meta", {}).get("severity")
            if severity not in SEVERITIES:
                raise BadInputError(
                    f"{path}: expectation {index} ({expectation.get('type')}) needs meta.severity "
                    f"set to one of {', '.join(SEVERITIES)}, got {severity!r}"
                )
        suite.setdefault("name", path.stem)
        suites.append(suite)
    return suites


def read_release(release_data: Path) -> pd.DataFrame:
    """All release splits as one frame with a `split` column."""
    frames = []
    for path in sorted(release_data.glob("*.parquet")):
        frame = pq.read_table(path).to_pandas(types_mapper=_PANDAS_TYPES.get)
        frame["split"] = path.name.split("-", 1)[0]
        frames.append(frame)
    if not frames:
        raise BadInputError(f"{release_data}: no release parquet files to validate")
    return pd.concat(frames, ignore_index=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def run_suites(
    frame: pd.DataFrame, suites: list[dict[str, Any]], params: ValidateParams
) -> list[dict[str, Any]]:
    """Validate `frame` against every suite; return one plain result per expectation."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch = (
        context.data_sources.add_pandas("release")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all_splits")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    parameters = {"min_rows": params.min_rows, "max_rows": params.max_rows}
    results: list[dict[str, Any]] = []
    for suite_spec in suites:
        for spec in suite_spec["expectations"]:
            try:
                expectation = ExpectationConfiguration(
                    type=spec["type"], kwargs=spec["kwargs"], meta=spec.get("meta", {})
                ).to_domain_obj()
            except Exception as exc:  # GX raises pydantic and its own errors for bad specs
                raise BadInputError(
                    f"expectations/{suite_spec['name']}.json: {spec.get('type')} is not a valid "
                    f"expectation: {str(exc).splitlines()[-1] if str(exc) else type(exc).__name__}"
                ) from None
            # Validated one by one: a suite silently drops an expectation that looks like a
            # duplicate of another on the same column.
            outcome = batch.validate(
                expectation,
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": ["id", "source"],
                },
                expectation_parameters=parameters,
            )
            result = outcome.result or {}
            failing = result.get("unexpected_index_list") or []
            results.append(
                {
                    "suite": suite_spec["name"],
                    "expectation": spec["type"],
                    "kwargs": _json_safe(spec["kwargs"]),
                    "severity": spec["meta"]["severity"],
                    "success": bool(outcome.success),
                    "observed_value": _json_safe(result.get("observed_value")),
                    "unexpected_count": _json_safe(result.get("unexpected_count")),
                    "failing_rows": _json_safe(failing[:MAX_FAILING_ROWS]),
                }
            )
    return results


def failure_table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'suite':<14} {'severity':<9} {'expectation':<48} {'count':>7}  example ids"]
    for r in results:
        if r["success"]:
            continue
        ids = ", ".join(str(row.get("id")) for row in r["failing_rows"][:3])
        column = r["kwargs"].get("column")
        name = r["expectation"] + (f"({column})" if column else "")
        count = r["unexpected_count"] if r["unexpected_count"] is not None else "-"
        lines.append(f"{r['suite']:<14} {r['severity']:<9} {name:<48} {count!s:>7}  {ids}")
    return "\n".join(lines)


def run_validate(
    release_data: Path, suites_dir: Path, report_out: Path, params: ValidateParams
) -> dict[str, Any]:
    """Validate the release; write the report; raise `ValidationFailed` on a critical failure."""
    suites = load_suites(suites_dir)
    frame = read_release(release_data)
    results = run_suites(frame, suites, params)
    critical = [r for r in results if not r["success"] and r["severity"] == "critical"]
    warnings = [r for r in results if not r["success"] and r["severity"] == "warning"]
    report = {
        "rows": len(frame),
        "success": not critical,
        "critical_failures": len(critical),
        "warnings": len(warnings),
        "results": results,
    }
    write_json(report, report_out)
    if critical or warnings:
        print(failure_table(results), file=sys.stderr)
    if critical:
        raise ValidationFailed(
            f"{len(critical)} critical expectation(s) failed (table above, details in {report_out}); "
            "fix the data or the rule, then rerun `dvc repro`"
        )
    print(
        f"validate: {len(results)} expectations, {len(warnings)} warnings, all critical passed",
        file=sys.stderr,
    )
    return report
