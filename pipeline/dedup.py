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
3. `near`: MinHash LSH over word shingles (`pipeline.minhash`) proposes candidate pairs, each
   verified with the exact Jaccard similarity (`dedup.near_threshold`); connected components of
   verified pairs fold into one row, chosen as in step 2.
The MinHash pass is row-local (Arrow batches through the local executor) and writes the band
keys to the minhash parquet. Clustering works on small key tables (row number, ids, version,
length, hash, band keys), never on all texts: only the texts of candidate rows are re-read to
verify pairs, and the kept rows are streamed through once at the end.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.executor import map_batches
from pipeline.minhash import (
    U64,
    band_keys,
    candidate_pairs,
    jaccard,
    keys_to_arrow,
    read_band_keys,
    shingle_sets,
)
from pipeline.outputs import parquet_writer, write_json, write_parquet
from pipeline.params import DedupParams

METHODS = ("same_id", "exact", "near")

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
        # LSH band keys of the kept row: the split stage checks them for cross-split leaks.
        pa.field("band_keys", pa.list_(pa.uint64()), nullable=False),
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


MINHASH_SCHEMA = pa.schema(
    [
        pa.field("band_keys", pa.list_(pa.uint64()), nullable=False),
        # Characters of the abstract: the keep order needs it, and the global step must not
        # read the texts again to get it.
        pa.field("length", pa.int64(), nullable=False),
    ]
)


def text_id(text_hash: pl.Expr) -> pl.Expr:
    """Stable id of a row without an arXiv id: derived from its normalised text."""
    return pl.lit("txt-") + text_hash


def minhash_batch(batch: pa.RecordBatch, params: DedupParams) -> pa.RecordBatch:
    """Row-local unit of work: the LSH band keys of every abstract in the batch."""
    texts = pl.Series("abstract", batch.column("abstract"))
    keys = band_keys(texts, params.shingle_words, params.bands, params.rows_per_band, params.seed)
    lengths = pa.array(texts.str.len_chars().cast(pl.Int64).to_numpy(), pa.int64())
    return pa.RecordBatch.from_arrays([keys_to_arrow(keys), lengths], schema=MINHASH_SCHEMA)


def read_keys(cleaned: Path, lengths: pa.Array, params: DedupParams) -> pl.DataFrame:
    """The key table: one small row per record, text replaced by its length, with sort ranks."""
    rank = {fmt: i for i, fmt in enumerate(params.format_priority)}
    return (
        pl.scan_parquet(cleaned)
        .select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
            "source",
            "arxiv_id",
            "arxiv_version",
            pl.lit(pl.Series("length", lengths)).alias("length"),
            "text_hash",
            pl.col("format")
            .replace_strict(rank, default=len(rank), return_dtype=pl.Int64)
            .alias("format_rank"),
        )
        .with_columns(pl.col("arxiv_id").is_null().alias("no_arxiv_id"))
        .collect()
    )


# Which row of a group is kept: highest arXiv version, richest source, longest text, first seen.
_ORDER = ["arxiv_version", "format_rank", "length", "row"]
_DESCENDING = [True, False, True, False]


def _winner_of(groups: pl.DataFrame, key: str, prefer_arxiv_id: bool) -> pl.DataFrame:
    """Map each row to the first row of its `key` group under the keep order."""
    order = (["no_arxiv_id"] if prefer_arxiv_id else []) + _ORDER
    descending = ([False] if prefer_arxiv_id else []) + _DESCENDING
    # Sort only the columns the order needs: at 2.7M rows the string columns would triple memory.
    ranked = groups.select(key, *order).sort(order, descending=descending, nulls_last=True)
    return ranked.select("row", pl.col("row").first().over(key).alias("winner"))


def fold_exact(keys: pl.DataFrame) -> pl.DataFrame:
    """Steps 1 and 2: each row's `same_id_winner` and `exact_winner` (the row it ends in)."""
    # Rows without an arXiv id are their own group in step 1.
    by_id = keys.with_columns(pl.coalesce("arxiv_id", pl.col("row").cast(pl.String)).alias("group"))
    step1 = _winner_of(by_id, "group", prefer_arxiv_id=False).rename({"winner": "same_id_winner"})
    keys = keys.join(step1, on="row")
    survivors = keys.filter(pl.col("row") == pl.col("same_id_winner"))
    step2 = _winner_of(survivors, "text_hash", prefer_arxiv_id=True)
    step2 = step2.rename({"row": "same_id_winner", "winner": "exact_winner"})
    return keys.join(step2, on="same_id_winner").sort("row")


def connected_components(pairs: npt.NDArray[np.int64]) -> dict[int, int]:
    """Union-find over verified pairs: each row in a pair -> smallest row of its component."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs.tolist():
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)
    return {x: find(x) for x in parent}


def fold_near(folded: pl.DataFrame, verified: npt.NDArray[np.int64]) -> pl.DataFrame:
    """Step 3: fold components of verified near-duplicate pairs of step-2 survivors."""
    component = connected_components(verified)
    survivors = folded.filter(pl.col("row") == pl.col("exact_winner"))
    members = survivors.filter(pl.col("row").is_in(list(component)))
    members = members.with_columns(
        pl.col("row").replace_strict(component, return_dtype=pl.Int64).alias("component")
    )
    step3 = _winner_of(members, "component", prefer_arxiv_id=True).rename(
        {"row": "exact_winner", "winner": "near_winner"}
    )
    folded = folded.join(step3, on="exact_winner", how="left").with_columns(
        pl.coalesce("near_winner", "exact_winner").alias("winner")
    )
    return folded.with_columns(
        pl.when(pl.col("row") != pl.col("same_id_winner"))
        .then(pl.lit("same_id"))
        .when(pl.col("row") != pl.col("exact_winner"))
        .then(pl.lit("exact"))
        .when(pl.col("row") != pl.col("winner"))
        .then(pl.lit("near"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias("method")
    ).sort("row")


def read_texts(cleaned: Path, rows: npt.NDArray[np.int64]) -> dict[int, str]:
    """The abstracts of `rows` only, streamed from the cleaned file."""
    wanted = np.unique(rows)
    texts: dict[int, str] = {}
    offset = 0
    for batch in pq.ParquetFile(cleaned).iter_batches(batch_size=100_000, columns=["abstract"]):
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            column = batch.column(0)
            for row in wanted[lo:hi].tolist():
                texts[row] = column[row - offset].as_py()
        offset += batch.num_rows
    return texts


def pair_similarity(pairs: npt.NDArray[np.int64], sets: dict[int, U64]) -> npt.NDArray[np.float64]:
    """Exact word-shingle Jaccard similarity of every pair."""
    return np.array([jaccard(sets[a], sets[b]) for a, b in pairs.tolist()], dtype=np.float64)


def near_duplicate_pairs(
    cleaned: Path, all_keys: npt.NDArray[np.uint64], survivors: npt.NDArray[np.int64], params: DedupParams
) -> tuple[npt.NDArray[np.int64], dict[int, U64]]:
    """Verified near-duplicate pairs among `survivors`, and the shingle sets of their rows."""
    candidates = candidate_pairs(survivors, all_keys)
    texts = read_texts(cleaned, candidates.reshape(-1))
    rows = sorted(texts)
    sets = dict(zip(rows, shingle_sets((texts[r] for r in rows), params.shingle_words), strict=True))
    similarity = pair_similarity(candidates, sets)
    print(
        f"dedup: {len(candidates):,} candidate pairs, "
        f"{int((similarity >= params.near_threshold).sum()):,} verified",
        file=sys.stderr,
    )
    return candidates[similarity >= params.near_threshold], sets


def run_dedup(
    cleaned: Path,
    out: Path,
    minhash_out: Path,
    duplicates_out: Path,
    report_out: Path,
    params: DedupParams,
) -> dict[str, Any]:
    """Fold duplicates of `cleaned` into `out`; write band keys, folded records and the report."""
    map_batches(
        cleaned,
        minhash_out,
        functools.partial(minhash_batch, params=params),
        MINHASH_SCHEMA,
        workers=params.workers,
        batch_rows=params.batch_rows,
        label="dedup: minhash",
        columns=["abstract"],
    )
    all_keys = read_band_keys(minhash_out, params.bands)
    lengths = pq.read_table(minhash_out, columns=["length"])["length"].combine_chunks()
    keys = read_keys(cleaned, lengths, params)
    folded = fold_exact(keys)
    survivors = folded.filter(pl.col("row") == pl.col("exact_winner"))["row"].to_numpy().astype(np.int64)
    verified, sets = near_duplicate_pairs(cleaned, all_keys, survivors, params)
    folded = fold_near(folded, verified)

    kept_ids = keys.select(
        pl.col("row").alias("winner"),
        pl.coalesce("arxiv_id", text_id(pl.col("text_hash"))).alias("id"),
        pl.col("source").alias("kept_source"),
    )
    folded = folded.join(kept_ids, on="winner").sort("row")
    near = folded.filter(pl.col("method") == "near").select("row", "winner").to_numpy()
    near_similarity = pair_similarity(near, sets) if len(near) else np.zeros(0)
    similarity = {int(r): float(s) for (r, _), s in zip(near.tolist(), near_similarity, strict=True)}
    duplicates = folded.filter(pl.col("method").is_not_null()).select(
        "source",
        "id",
        "kept_source",
        "method",
        pl.when(pl.col("method") == "exact")
        .then(1.0)
        .when(pl.col("method") == "near")
        .then(pl.col("row").replace_strict(similarity, default=None, return_dtype=pl.Float64))
        .otherwise(None)
        .alias("similarity"),
    )

    n_rows = keys.height
    counts = folded.group_by("winner").len()
    keep = np.zeros(n_rows, dtype=bool)
    duplicate_count = np.zeros(n_rows, dtype=np.int64)
    winners = counts["winner"].to_numpy()
    keep[winners] = True
    duplicate_count[winners] = counts["len"].to_numpy() - 1
    row_ids = folded["id"].to_numpy()
    write_kept_rows(cleaned, all_keys, out, keep, row_ids, duplicate_count)
    write_parquet(duplicates.to_arrow().cast(DUPLICATES_SCHEMA), duplicates_out)
    by_method = {m: duplicates.filter(pl.col("method") == m).height for m in METHODS}
    report = {"rows_in": n_rows, "rows_out": int(keep.sum()), "folded_by_method": by_method}
    write_json(report, report_out)
    print(f"dedup: {n_rows:,} rows in, {report['rows_out']:,} out, folded {by_method}", file=sys.stderr)
    return report


def write_kept_rows(
    cleaned: Path,
    all_keys: npt.NDArray[np.uint64],
    out: Path,
    keep: npt.NDArray[np.bool_],
    row_ids: npt.NDArray[np.object_],
    duplicate_count: npt.NDArray[np.int64],
) -> None:
    """Stream the cleaned rows once, writing the kept ones with their id, count and band keys."""
    columns = ["arxiv_id", "arxiv_version", "abstract", "source", "flags", "text_hash"]
    with parquet_writer(out, DEDUP_SCHEMA) as writer:
        offset = 0
        for batch in pq.ParquetFile(cleaned).iter_batches(batch_size=100_000, columns=columns):
            size = batch.num_rows
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(
                pl.Series("id", row_ids[offset : offset + size], dtype=pl.String),
                pl.Series("duplicate_count", duplicate_count[offset : offset + size]),
                pl.Series("band_keys", keys_to_arrow(all_keys[offset : offset + size])),
            ).filter(pl.Series(keep[offset : offset + size]))
            writer.write_table(frame.select(DEDUP_SCHEMA.names).to_arrow().cast(DEDUP_SCHEMA))
            offset += size
