"""Stage `dedup`: fold every paper to one row and record what was folded and why.

Reads: the cleaned parquet. Writes: the deduplicated parquet (one row per paper, with `id`
and `duplicate_count`), `duplicates.parquet` (every folded record: its `source`, the `id` it
folded into, `method` and `similarity`) and `dedup.json` (rows in and out by method).
Params: `dedup` (source format priority).

Steps, in order:
1. `same_id`: records with the same arXiv id (version stripped) fold into the one with the
   highest version; ties go to the richer source format, then the longer text.
2. `exact`: identical normalised text (`text_hash` from `clean`) folds, preferring a row with
   an arXiv id, then the rule of step 1.
Clustering works on a small key table (row number, ids, version, length, hash), never on text;
the text is streamed through once to write the kept rows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.outputs import parquet_writer, write_json, write_parquet
from pipeline.params import DedupParams

DEDUP_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("abstract", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("duplicate_count", pa.int64(), nullable=False),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
    ]
)
DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("kept_source", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("similarity", pa.float64()),
    ]
)


def text_id(text_hash: pl.Expr) -> pl.Expr:
    """Stable id of a row without an arXiv id: derived from its normalised text."""
    return pl.lit("txt-") + text_hash


def read_keys(cleaned: Path) -> pl.DataFrame:
    """The key table: one small row per record, text replaced by its length."""
    frame = pl.scan_parquet(cleaned).select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
        "source",
        "format",
        "arxiv_id",
        "arxiv_version",
        pl.col("abstract").str.len_chars().alias("length"),
        "text_hash",
    )
    return frame.collect()


def _winner_of(groups: pl.DataFrame, key: str, order: list[str], descending: list[bool]) -> pl.DataFrame:
    """Map each row to the first row of its `key` group under the given order."""
    ranked = groups.sort([*order, "row"], descending=[*descending, False], nulls_last=True)
    return ranked.with_columns(pl.col("row").first().over(key).alias("winner")).select("row", "winner")


def fold(keys: pl.DataFrame, params: DedupParams) -> pl.DataFrame:
    """Assign every row its kept row (`winner`) and the method that folded it (null if kept)."""
    rank = {fmt: i for i, fmt in enumerate(params.format_priority)}
    keys = keys.with_columns(
        pl.col("format").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("format_rank"),
        pl.col("arxiv_id").is_null().alias("no_arxiv_id"),
    )
    order = ["arxiv_version", "format_rank", "length"]
    descending = [True, False, True]
    # Rows without an arXiv id are their own group in step 1.
    by_id = keys.with_columns(pl.coalesce("arxiv_id", pl.col("row").cast(pl.String)).alias("group"))
    step1 = _winner_of(by_id, "group", order, descending).rename({"winner": "same_id_winner"})
    keys = keys.join(step1, on="row")
    survivors = keys.filter(pl.col("row") == pl.col("same_id_winner"))
    step2 = _winner_of(survivors, "text_hash", ["no_arxiv_id", *order], [False, *descending])
    keys = keys.join(step2.rename({"row": "same_id_winner", "winner": "exact_winner"}), on="same_id_winner")
    return keys.select(
        "row",
        "source",
        pl.col("exact_winner").alias("winner"),
        pl.when(pl.col("row") != pl.col("same_id_winner"))
        .then(pl.lit("same_id"))
        .when(pl.col("row") != pl.col("exact_winner"))
        .then(pl.lit("exact"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("method"),
    ).sort("row")


def run_dedup(
    cleaned: Path, out: Path, duplicates_out: Path, report_out: Path, params: DedupParams
) -> dict[str, Any]:
    """Fold duplicates of `cleaned` into `out`; write the folded records and the report."""
    keys = read_keys(cleaned)
    folded = fold(keys, params)
    kept_ids = keys.select(
        "row",
        pl.coalesce("arxiv_id", text_id(pl.col("text_hash"))).alias("id"),
        pl.col("source").alias("kept_source"),
    )
    folded = folded.join(kept_ids.rename({"row": "winner"}), on="winner").sort("row")
    counts = folded.group_by("winner").len().rename({"len": "cluster_size"})
    n_rows = keys.height
    keep = np.zeros(n_rows, dtype=bool)
    duplicate_count = np.zeros(n_rows, dtype=np.int64)
    winners = counts["winner"].to_numpy()
    keep[winners] = True
    duplicate_count[winners] = counts["cluster_size"].to_numpy() - 1

    duplicates = folded.filter(pl.col("method").is_not_null()).select(
        "source",
        "id",
        "kept_source",
        "method",
        pl.when(pl.col("method") == "exact").then(1.0).otherwise(None).alias("similarity"),
    )
    row_ids = folded.sort("row")["id"].to_numpy()

    with parquet_writer(out, DEDUP_SCHEMA) as writer:
        offset = 0
        for batch in pq.ParquetFile(cleaned).iter_batches(
            batch_size=100_000,
            columns=["arxiv_id", "arxiv_version", "abstract", "source", "flags", "text_hash"],
        ):
            size = batch.num_rows
            mask = keep[offset : offset + size]
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(
                pl.Series("id", row_ids[offset : offset + size], dtype=pl.String),
                pl.Series("duplicate_count", duplicate_count[offset : offset + size]),
            ).filter(pl.Series(mask))
            writer.write_table(frame.select(DEDUP_SCHEMA.names).to_arrow().cast(DEDUP_SCHEMA))
            offset += size
    write_parquet(duplicates.to_arrow().cast(DUPLICATES_SCHEMA), duplicates_out)
    by_method = {m: duplicates.filter(pl.col("method") == m).height for m in ("same_id", "exact")}
    report = {"rows_in": n_rows, "rows_out": int(keep.sum()), "folded_by_method": by_method}
    write_json(report, report_out)
    print(f"dedup: {n_rows:,} rows in, {report['rows_out']:,} out, folded {by_method}", file=sys.stderr)
    return report
