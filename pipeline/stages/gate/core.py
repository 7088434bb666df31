"""Stage `gate`: stop `dvc repro` when a critical expectation failed.

Reads `validation.json` (written by `validate`, which never fails the pipeline, so that
`review` explains what failed). Writes `gate.json` only when every critical expectation
passed; the `release` stage depends on it, so nothing is released past a failed gate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import BadInputError, ValidationFailed
from pipeline.io.writers import write_json


def critical_failures(validation: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r for r in validation.get("results", []) if not r.get("success") and r.get("severity") == "critical"
    ]


def failure_message(failures: list[dict[str, Any]], validation_path: Path) -> str:
    """One message: how many failed, which (name, rows), where to read more and what to do."""
    named = "; ".join(
        f"{r.get('suite')}/{r.get('name')} ({r.get('expectation')}"
        + (f", {r['unexpected_count']} rows" if r.get("unexpected_count") else "")
        + ")"
        for r in failures
    )
    return (
        f"{len(failures)} critical expectation(s) failed: {named}. The release was not updated "
        f"(release/ is as it was). See reports/review.html (rows, rule, values) or {validation_path}; "
        "fix the data or the rule, then rerun `dvc repro`"
    )


def run_gate(validation_path: Path, out: Path) -> dict[str, Any]:
    """Pass (write `out`) or raise.

    Raises:
        BadInputError: the validation report is missing or unreadable.
        ValidationFailed: a critical expectation failed (`out` is not written).
    """
    try:
        validation = json.loads(validation_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{validation_path}: not found; run the validate stage first") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{validation_path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    failures = critical_failures(validation)
    if failures or validation.get("success") is False:
        raise ValidationFailed(failure_message(failures, validation_path))
    verdict = {
        "passed": True,
        "rows": validation.get("rows"),
        "expectations": len(validation.get("results", [])),
        "warnings": validation.get("warnings", 0),
    }
    write_json(verdict, out)
    return verdict
