"""`filter.json`: what the filter dropped, by rule and by source file, and the flags it re-judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.params import FilterParams
from pipeline.policy import LANGUAGE_IDENTIFIER
from pipeline.stages.filter.core import RULE_NAMES, RULES

# Sources (file:line) of dropped rows listed per rule, for a reader to look them up.
EXAMPLES_PER_RULE = 5


@dataclass
class Tally:
    """Counts gathered batch by batch (the dropped rows themselves are kept apart)."""

    rows: int = 0
    kept: int = 0
    # file -> rows read, and -> rows kept
    rows_by_file: dict[str, int] = field(default_factory=dict)
    kept_by_file: dict[str, int] = field(default_factory=dict)
    language_scored: int = 0
    language_unsure: int = 0
    flags_cleared: dict[str, int] = field(default_factory=dict)
    flags_added: dict[str, int] = field(default_factory=dict)
    # flag -> kept rows carrying it (after re-judging)
    kept_flags: dict[str, int] = field(default_factory=dict)

    def add(self, files: pl.Series, kept_files: pl.Series, kept_flags: pl.Series) -> None:
        self.rows += len(files)
        self.kept += len(kept_files)
        for target, column in ((self.rows_by_file, files), (self.kept_by_file, kept_files)):
            for name, count in column.value_counts().iter_rows():
                target[name] = target.get(name, 0) + count
        for name, count in kept_flags.explode().drop_nulls().value_counts().iter_rows():
            self.kept_flags[name] = self.kept_flags.get(name, 0) + count

    def add_flags(self, cleared: dict[str, int], added: dict[str, int]) -> None:
        for target, counts in ((self.flags_cleared, cleared), (self.flags_added, added)):
            for name, count in counts.items():
                target[name] = target.get(name, 0) + count


def _file_of(source: pl.Expr) -> pl.Expr:
    """The raw file of a `source` ("<file>:<line>")."""
    return source.str.replace(r":\d+$", "")


def summarise(tally: Tally, filtered: pl.DataFrame, params: FilterParams) -> dict[str, Any]:
    """The report: per rule (its reason, params, rows it was the first reason for, rows it
    matched at all, example sources), per source file, the language check and the flags."""
    by_reason = filtered.group_by("reason").len()
    first = dict(by_reason.iter_rows())
    matched = dict(filtered.select(pl.col("reasons").explode()).to_series().value_counts().iter_rows())
    rules: dict[str, Any] = {}
    for rule in RULES:
        examples = filtered.filter(pl.col("reason") == rule.name)["source"].head(EXAMPLES_PER_RULE)
        rules[rule.name] = {
            "reason": rule.reason,
            "params": {name: _plain(getattr(params, name)) for name in rule.params},
            "filtered": int(first.get(rule.name, 0)),
            "matched": int(matched.get(rule.name, 0)),
            "examples": examples.to_list(),
        }
    per_file = (
        filtered.with_columns(_file_of(pl.col("source")).alias("file")).group_by("file", "reason").len()
    )
    sources: dict[str, Any] = {}
    for name in sorted(tally.rows_by_file):
        counts = per_file.filter(pl.col("file") == name)
        by_rule = {reason: int(n) for reason, n in counts.select("reason", "len").iter_rows()}
        sources[name] = {
            "rows": tally.rows_by_file[name],
            "kept": tally.kept_by_file.get(name, 0),
            "filtered": tally.rows_by_file[name] - tally.kept_by_file.get(name, 0),
            "by_rule": {reason: by_rule[reason] for reason in RULE_NAMES if reason in by_rule},
        }
    return {
        "rows": tally.rows,
        "kept": tally.kept,
        "filtered": tally.rows - tally.kept,
        "rules": rules,
        "sources": sources,
        "language": {
            "identifier": LANGUAGE_IDENTIFIER,
            # Rows not plainly English by their function words, which the identifier scored.
            "scored": tally.language_scored,
            # Of those, rows it called non-English below `language_min_confidence`: kept.
            "unsure_kept": tally.language_unsure,
        },
        "flags": {
            # Flags of the kept rows, as dedup and the release see them.
            "kept_rows": dict(sorted(tally.kept_flags.items())),
            # Rows whose clean flag the filter found wrong and removed, or added.
            "cleared": dict(sorted(tally.flags_cleared.items())),
            "added": dict(sorted(tally.flags_added.items())),
        },
    }


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
