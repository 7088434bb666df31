"""`reports/ingest.json`: counts per file, per source (with format and licence, for the card)
and per reject reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FileStats:
    format: str
    source: str = ""
    license: str | None = None
    # Lines of a text dump or snapshot; for the other formats the records read (records + rejects).
    lines: int = 0
    blank_lines: int = 0
    records: int = 0
    rejects: int = 0
    lines_in_records: int = 0
    # Whether `lines` counts the file's lines (text dumps, the snapshot read by blocks).
    counts_lines: bool = False
    rejects_by_reason: Counter[str] = field(default_factory=Counter)


def source_summary(per_file: dict[str, FileStats]) -> dict[str, dict[str, Any]]:
    """{source: {format, license, files, records_read, records, rejects}}, sorted by name.

    `records_read` is every record (or non-blank line of a text dump) read: records + rejects.
    """
    sources: dict[str, dict[str, Any]] = {}
    for stats in per_file.values():
        entry = sources.setdefault(
            stats.source,
            {
                "format": [],
                "license": stats.license,
                "files": 0,
                "records_read": 0,
                "records": 0,
                "rejects": 0,
            },
        )
        if stats.format not in entry["format"]:
            entry["format"].append(stats.format)
        entry["files"] += 1
        entry["records_read"] += stats.records + stats.rejects
        entry["records"] += stats.records
        entry["rejects"] += stats.rejects
    for entry in sources.values():
        entry["format"] = ", ".join(sorted(entry["format"]))
    return dict(sorted(sources.items()))


def build_report(per_file: dict[str, FileStats]) -> dict[str, Any]:
    by_reason: Counter[str] = Counter()
    by_format: Counter[str] = Counter()
    for stats in per_file.values():
        by_reason.update(stats.rejects_by_reason)
        by_format[stats.format] += stats.records
    return {
        "files": {
            name: {
                "source": s.source,
                "format": s.format,
                "lines": s.lines,
                "blank_lines": s.blank_lines,
                "records": s.records,
                "rejects": s.rejects,
                "rejects_by_reason": dict(sorted(s.rejects_by_reason.items())),
            }
            for name, s in per_file.items()
        },
        "sources": source_summary(per_file),
        "totals": {
            "files": len(per_file),
            "sources": len({s.source for s in per_file.values()}),
            "lines": sum(s.lines for s in per_file.values()),
            "blank_lines": sum(s.blank_lines for s in per_file.values()),
            "records_read": sum(s.records + s.rejects for s in per_file.values()),
            "records": sum(s.records for s in per_file.values()),
            "rejects": sum(s.rejects for s in per_file.values()),
        },
        "rejects_by_reason": dict(sorted(by_reason.items())),
        "records_by_format": dict(sorted(by_format.items())),
    }
