"""Stage `clean`: raw abstract text -> publishable text, with every repair named and counted.

Reads: the ingested records parquet. Writes: the cleaned parquet (ingest columns plus
`abstract`, `clean_rules`, `flags`, `text_hash`) and `clean.json` (per-rule and per-flag counts
with examples). Params: `clean` (workers, batch size, length thresholds).

Every rule is a vectorised polars expression over the text column, applied in a fixed order to
Arrow batches by the local executor (`pipeline.executor`). A rule that changed a row's text
adds its name to that row's `clean_rules`; problems no rule can fix become `flags`.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline.executor import map_batches
from pipeline.ingest import RECORD_SCHEMA
from pipeline.outputs import write_json
from pipeline.params import CleanParams

CLEAN_SCHEMA = pa.schema(
    [
        *list(RECORD_SCHEMA),
        pa.field("abstract", pa.string(), nullable=False),
        pa.field("clean_rules", pa.list_(pa.string()), nullable=False),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
    ]
)
EXAMPLES_PER_RULE = 5


@dataclass(frozen=True)
class Rule:
    """A named repair: a pure function from the text expression to the repaired expression."""

    name: str
    apply: Callable[[pl.Expr], pl.Expr]


def _unicode(text: pl.Expr) -> pl.Expr:
    # NBSP and the other fixed-width spaces become plain spaces; zero-width characters, soft
    # hyphens, stray BOMs and control characters (seen in the SciTLDR corpus) carry no text.
    return (
        text.str.normalize("NFC")
        .str.replace_all(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]", " ")
        .str.replace_all(r"[\u00ad\u200b-\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "")
    )


def _strip_prefix(text: pl.Expr) -> pl.Expr:
    # Only a label followed by punctuation, or all caps: "Abstract reasoning is ..." is text.
    return text.str.replace(r"^\s*(?:[Aa]bstract\s*[:.\-\u2013\u2014]|ABSTRACT\b)\s*", "")


def _table_residue(text: pl.Expr) -> pl.Expr:
    return text.str.replace(r"(?:\s*\|)+\s*$", "")


def _whitespace(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(r"\s+", " ").str.strip_chars(" ")


def _empty_citation(text: pl.Expr) -> pl.Expr:
    # A removed citation or formula leaves a space before punctuation (" ,", " .") or an
    # empty pair of brackets; the punctuation must be followed by a space or the end so that
    # ".NET" or " .5" are left alone.
    return (
        text.str.replace_all(r"\s*\(\s*[,;]?\s*\)", "")
        .str.replace_all(r" +([,.;:])( |$)", "$1$2")
        .str.replace_all(r"  +", " ")
    )


RULES: tuple[Rule, ...] = (
    Rule("unicode", _unicode),
    Rule("strip_prefix", _strip_prefix),
    Rule("table_residue", _table_residue),
    Rule("whitespace", _whitespace),
    Rule("empty_citation", _empty_citation),
)


def _flags(text: pl.Expr, params: CleanParams) -> pl.Expr:
    checks = {
        "too_short": text.str.len_chars() < params.min_chars,
        "too_long": text.str.len_chars() > params.max_chars,
        "truncated": ~text.str.contains(r"[.!?)\]\"'\u201d\u2019]$"),
        "url": text.str.contains(r"(?i)\bhttps?://|\bwww\.[a-z0-9-]+\."),
        "html_residue": text.str.contains(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>"),
        "latex_residue": text.str.contains(r"\\[a-zA-Z]+|\$[^$\s][^$]*\$"),
    }
    return pl.concat_list(
        [pl.when(check).then(pl.lit(name)).otherwise(pl.lit(None)) for name, check in checks.items()]
    ).list.drop_nulls()


def normalised_text(text: pl.Expr) -> pl.Expr:
    """Text folded for exact-duplicate detection: Unicode compatibility, case, punctuation, spaces."""
    return (
        text.str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[^\p{L}\p{N}]+", " ")
        .str.strip_chars(" ")
    )


def text_hashes(normalised: list[str]) -> list[str]:
    # blake2b is stable across Python and library versions, unlike polars' own hash.
    return [hashlib.blake2b(t.encode("utf-8"), digest_size=8).hexdigest() for t in normalised]


def clean_frame(frame: pl.DataFrame, params: CleanParams) -> pl.DataFrame:
    """Apply every rule in order to `raw_text`; add `abstract`, `clean_rules`, `flags`, `text_hash`."""
    out = frame.with_columns(pl.col("raw_text").alias("_text"))
    for rule in RULES:
        out = out.with_columns(rule.apply(pl.col("_text")).alias("_next")).with_columns(
            (pl.col("_next") != pl.col("_text")).alias(f"_changed_{rule.name}"),
            pl.col("_next").alias("_text"),
        )
    applied = [
        pl.when(pl.col(f"_changed_{rule.name}")).then(pl.lit(rule.name)).otherwise(pl.lit(None))
        for rule in RULES
    ]
    out = out.with_columns(
        pl.col("_text").alias("abstract"),
        pl.concat_list(applied).list.drop_nulls().alias("clean_rules"),
        _flags(pl.col("_text"), params).alias("flags"),
        normalised_text(pl.col("_text")).alias("_normalised"),
    )
    hashes = pl.Series("text_hash", text_hashes(out["_normalised"].to_list()), dtype=pl.String)
    return out.with_columns(hashes).select(CLEAN_SCHEMA.names)


def clean_batch(batch: pa.RecordBatch, params: CleanParams) -> pa.RecordBatch:
    """The row-local unit of work: one Arrow batch of ingested records in, cleaned out."""
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    table = clean_frame(frame, params).to_arrow().cast(CLEAN_SCHEMA).combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=CLEAN_SCHEMA)


def summarise(cleaned: Path) -> dict[str, Any]:
    """Per-rule and per-flag counts, with a few before/after examples, from the cleaned file."""
    frame = pl.read_parquet(cleaned, columns=["source", "raw_text", "abstract", "clean_rules", "flags"])
    rules: dict[str, Any] = {}
    for rule in RULES:
        hits = frame.filter(pl.col("clean_rules").list.contains(rule.name))
        rules[rule.name] = {
            "rows_changed": hits.height,
            "examples": hits.head(EXAMPLES_PER_RULE).select("source", "raw_text", "abstract").to_dicts(),
        }
    flag_counts = frame.select(pl.col("flags").explode()).drop_nulls().group_by("flags").len().sort("flags")
    return {
        "rows": frame.height,
        "rows_changed": frame.filter(pl.col("clean_rules").list.len() > 0).height,
        "rules": rules,
        "flags": {row["flags"]: row["len"] for row in flag_counts.to_dicts()},
    }


def run_clean(ingested: Path, out: Path, report_out: Path, params: CleanParams) -> dict[str, Any]:
    """Clean every record of `ingested` into `out`; write the rule report to `report_out`."""
    rows = map_batches(
        ingested,
        out,
        functools.partial(clean_batch, params=params),
        CLEAN_SCHEMA,
        workers=params.workers,
        batch_rows=params.batch_rows,
        label="clean",
    )
    report = summarise(out)
    write_json(report, report_out)
    print(f"clean: {rows:,} rows, {report['rows_changed']:,} changed", file=sys.stderr)
    return report
