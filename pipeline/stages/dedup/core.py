"""Stage `dedup`: fold every paper to one row and record what was folded and why.

Reads: the cleaned parquet. Writes: the deduplicated parquet (one row per paper: `id`,
`duplicate_count`, metadata, and its `row` in the cleaned parquet, which holds its abstract),
`duplicates.parquet` (every folded record: its `source`, the `id` it folded into, `method` and
`similarity`) and `dedup.json` (rows in and out by method).
Params: `dedup` (source format priority).

Steps, in order:
1. `same_id`: records with the same arXiv id (version stripped) fold into the one with the
   highest version; ties go to the richer source format, then the longer text.
2. `exact`: identical normalised text (`text_hash` from `clean`) folds, preferring a row with
   an arXiv id, then the rule of step 1.
3. `near`: MinHash LSH over word shingles (`pipeline.kernels.minhash`) proposes candidate pairs, each
   verified with the exact Jaccard similarity (`dedup.near_threshold`); connected components of
   verified pairs fold into one row, chosen as in step 2.
The MinHash pass is row-local (Arrow batches through the local executor) and writes the band
keys to the minhash parquet. Clustering holds the band keys, a fixed-width key table (row
number, integer codes of the arXiv id and text hash, version, format rank, length) and the
shingle sets of candidate rows, never texts or other strings: candidate rows are re-read and
shingled a batch at a time to verify pairs, the sources and ids of folded rows and their
winners are read back for the duplicates report, and the kept rows are streamed through once
at the end, without their abstracts.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import DEDUP_METHODS, DEDUP_SCHEMA, DUPLICATES_SCHEMA, MINHASH_SCHEMA
from pipeline.executor import map_batches
from pipeline.io.writers import build_file_options, parquet_writer, write_json, write_parquet
from pipeline.kernels.minhash import (
    ShingleSets,
    band_keys,
    candidate_pairs,
    keys_to_arrow,
    read_band_keys,
)
from pipeline.params import DedupParams

_ARROW_DEFAULT_DECAY_MS = 1000


@contextlib.contextmanager
def returning_arrow_memory() -> Iterator[None]:
    """Within the block, Arrow allocates from a jemalloc pool that hands freed pages back at once.

    Arrow's default pool keeps freed pages for reuse: streaming the 2.7M benchmark abstracts
    (MinHash batches, re-reading candidate texts, writing the kept rows) left about 1 GB of
    them in the process, more than the band keys and key table together.
    """
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:  # an Arrow build without jemalloc: keep the default pool
        pool = previous
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        if pool is not previous:
            # Arrow's build default on Linux, where jemalloc has background threads
            # (`je_arrow_malloc_conf` in arrow/cpp/src/arrow/memory_pool.cc); there is no getter.
            pa.jemalloc_set_decay_ms(_ARROW_DEFAULT_DECAY_MS)


def stream_batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """`columns` of a parquet file in batches of 100,000 rows (the kept rows' row groups).

    Without pre-buffering: its read buffers come from Arrow's default pool whatever pool is
    set, and at 2.7M rows that pool kept about 1 GB of them after one pass over the texts.
    """
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=100_000, columns=columns)


# A row without an arXiv id gets a stable id derived from its normalised text.
TEXT_ID_PREFIX = "txt-"


def text_id(text_hash: pl.Expr) -> pl.Expr:
    """Stable id of a row without an arXiv id: derived from its normalised text."""
    return pl.lit(TEXT_ID_PREFIX) + text_hash


def minhash_batch(batch: pa.RecordBatch, params: DedupParams) -> pa.RecordBatch:
    """Row-local unit of work: the LSH band keys of every abstract in the batch."""
    texts = batch.column("abstract")
    keys = band_keys(texts, params.shingle_words, params.bands, params.rows_per_band, params.seed)
    lengths = pc.utf8_length(texts).cast(pa.int64())
    return pa.RecordBatch.from_arrays([keys_to_arrow(keys), lengths], schema=MINHASH_SCHEMA)


def _codes(cleaned: Path, column: str) -> pa.ChunkedArray:
    """Dense int32 codes of a string column (equal strings, equal codes; nulls stay null).

    Grouping on codes instead of the strings keeps the key table to fixed-width columns: at
    2.7M rows the string columns and their copies in sorts and joins were most of the peak.
    """
    encoded = pc.dictionary_encode(pq.read_table(cleaned, columns=[column])[column])
    return pa.chunked_array([chunk.indices for chunk in encoded.chunks], pa.int32())


def read_keys(cleaned: Path, lengths: pa.Array, params: DedupParams) -> pl.DataFrame:
    """The key table: one small fixed-width row per record, with sort ranks and group codes.

    `id_group` is the step 1 group (the arXiv id's code; a row of its own without one) and
    `text_group` the step 2 group (the code of `text_hash`).
    """
    rank = {fmt: i for i, fmt in enumerate(params.format_priority)}
    columns = pl.read_parquet(cleaned, columns=["arxiv_version", "format"])
    keys = pl.DataFrame(
        {
            "row": pl.int_range(len(lengths), dtype=pl.Int32, eager=True),
            "arxiv_code": pl.Series(_codes(cleaned, "arxiv_id")),
            "arxiv_version": columns["arxiv_version"],
            "format_rank": columns["format"].replace_strict(rank, default=len(rank), return_dtype=pl.Int8),
            "length": pl.Series(lengths).cast(pl.Int32),
            "text_group": pl.Series(_codes(cleaned, "text_hash")),
        }
    )
    return keys.select(
        "row",
        # Rows without an arXiv id are their own group in step 1: negative, so never a code.
        pl.coalesce("arxiv_code", -1 - pl.col("row")).alias("id_group"),
        "arxiv_version",
        "format_rank",
        "length",
        "text_group",
        pl.col("arxiv_code").is_null().alias("no_arxiv_id"),
    )


# Which row of a group is kept: highest arXiv version, richest source, longest text, first seen.
_ORDER = ["arxiv_version", "format_rank", "length", "row"]
_DESCENDING = [True, False, True, False]


def _winner_of(groups: pl.DataFrame, key: str, prefer_arxiv_id: bool) -> pl.DataFrame:
    """Map each row to the first row of its `key` group under the keep order."""
    order = (["no_arxiv_id"] if prefer_arxiv_id else []) + _ORDER
    descending = ([False] if prefer_arxiv_id else []) + _DESCENDING
    ranked = groups.select(key, *order).sort(order, descending=descending, nulls_last=True)
    return ranked.select("row", pl.col("row").first().over(key).alias("winner"))


def fold_exact(keys: pl.DataFrame) -> pl.DataFrame:
    """Steps 1 and 2: each row's `same_id_winner` and `exact_winner` (the row it ends in)."""
    step1 = _winner_of(keys, "id_group", prefer_arxiv_id=False).rename({"winner": "same_id_winner"})
    keys = keys.join(step1, on="row")
    survivors = keys.filter(pl.col("row") == pl.col("same_id_winner"))
    step2 = _winner_of(survivors, "text_group", prefer_arxiv_id=True)
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


def read_rows(
    cleaned: Path, rows: npt.NDArray[np.int64], columns: list[str]
) -> tuple[npt.NDArray[np.int64], pa.Table]:
    """`columns` of `rows` only, streamed from the cleaned file: (the distinct rows, sorted; their values)."""
    wanted = np.unique(rows)
    parts = []
    offset = 0
    for batch in stream_batches(cleaned, columns):
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(wanted[lo:hi] - offset)))
        offset += batch.num_rows
    return wanted, pa.Table.from_batches(
        parts, schema=pa.schema([pq.read_schema(cleaned).field(c) for c in columns])
    )


def read_shingle_sets(cleaned: Path, rows: npt.NDArray[np.int64], shingle_words: int) -> ShingleSets:
    """The shingle sets of `rows`, read and shingled one row group at a time on two threads
    (parquet decoding and the compiled shingling release the GIL): at most two row groups of
    texts are held."""
    wanted = np.unique(rows)
    meta = pq.ParquetFile(cleaned).metadata
    starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    bounds = np.searchsorted(wanted, starts)

    def shingle_group(group: int) -> ShingleSets:
        lo, hi = bounds[group], bounds[group + 1]
        # Without pre-buffering, as `stream_batches`; one reader per thread.
        texts = pq.ParquetFile(cleaned, pre_buffer=False).read_row_group(group, columns=["abstract"])
        return ShingleSets.of_texts(
            texts.column(0).take(pa.array(wanted[lo:hi] - starts[group])), wanted[lo:hi], shingle_words
        )

    groups = [g for g in range(meta.num_row_groups) if bounds[g + 1] > bounds[g]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return ShingleSets.concat(list(pool.map(shingle_group, groups)))


def near_duplicate_pairs(
    cleaned: Path, all_keys: npt.NDArray[np.uint64], survivors: npt.NDArray[np.int64], params: DedupParams
) -> tuple[npt.NDArray[np.int64], ShingleSets]:
    """Verified near-duplicate pairs among `survivors`, and the shingle sets of their rows."""
    candidates = candidate_pairs(survivors, all_keys)
    sets = read_shingle_sets(cleaned, candidates.reshape(-1), params.shingle_words)
    similarity = sets.similarity(candidates)
    print(
        f"dedup: {len(candidates):,} candidate pairs, "
        f"{int((similarity >= params.near_threshold).sum()):,} verified",
        file=sys.stderr,
    )
    return candidates[similarity >= params.near_threshold], sets


def duplicates_table(cleaned: Path, folded: pl.DataFrame, sets: ShingleSets) -> pl.DataFrame:
    """One row per folded record: its source, the id and source it folded into, method, similarity.

    Sources and ids are read back for the folded rows and their winners only.
    """
    folds = folded.filter(pl.col("method").is_not_null()).select(
        pl.col("row", "winner").cast(pl.Int64), "method"
    )
    wanted, table = read_rows(
        cleaned,
        np.concatenate([folds["row"].to_numpy(), folds["winner"].to_numpy()]),
        ["source", "arxiv_id", "text_hash"],
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    values = frame.select(
        pl.Series("row", wanted),
        "source",
        pl.coalesce("arxiv_id", text_id(pl.col("text_hash"))).alias("id"),
    )
    folds = (
        folds.join(values.select("row", "source"), on="row")
        .join(
            values.select(pl.col("row").alias("winner"), "id", pl.col("source").alias("kept_source")),
            on="winner",
        )
        .sort("row")
    )
    near = folds.filter(pl.col("method") == "near").select("row", "winner").to_numpy()
    near_similarity = sets.similarity(near)
    similarity = {int(r): float(s) for (r, _), s in zip(near.tolist(), near_similarity, strict=True)}
    return folds.select(
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


def run_dedup(
    cleaned: Path,
    out: Path,
    minhash_out: Path,
    duplicates_out: Path,
    report_out: Path,
    params: DedupParams,
) -> dict[str, Any]:
    """Fold duplicates of `cleaned` into `out`; write band keys, folded records and the report."""
    with returning_arrow_memory():
        map_batches(
            cleaned,
            minhash_out,
            functools.partial(minhash_batch, params=params),
            MINHASH_SCHEMA,
            workers=params.workers,
            batch_rows=params.batch_rows,
            label="dedup: minhash",
            columns=["abstract"],
            options=build_file_options(MINHASH_SCHEMA, hashes=("band_keys",)),
        )
        all_keys = read_band_keys(minhash_out, params.bands)
        lengths = pq.read_table(minhash_out, columns=["length"])["length"].combine_chunks()
        keys = read_keys(cleaned, lengths, params)
        del lengths
        folded = fold_exact(keys)
        del keys
        survivors = folded.filter(pl.col("row") == pl.col("exact_winner"))["row"].to_numpy().astype(np.int64)
        verified, sets = near_duplicate_pairs(cleaned, all_keys, survivors, params)
        del survivors
        folded = fold_near(folded, verified).select("row", "winner", "method")
        duplicates = duplicates_table(cleaned, folded, sets)
        del sets

        n_rows = folded.height
        counts = folded.group_by("winner").len()
        del folded
        keep = np.zeros(n_rows, dtype=bool)
        duplicate_count = np.zeros(n_rows, dtype=np.int64)
        winners = counts["winner"].to_numpy()
        keep[winners] = True
        duplicate_count[winners] = counts["len"].to_numpy() - 1
        write_kept_rows(cleaned, all_keys, out, keep, duplicate_count)
        write_parquet(duplicates.to_arrow().cast(DUPLICATES_SCHEMA), duplicates_out)
        by_method = {m: duplicates.filter(pl.col("method") == m).height for m in DEDUP_METHODS}
        report = {"rows_in": n_rows, "rows_out": int(keep.sum()), "folded_by_method": by_method}
        write_json(report, report_out)
        print(f"dedup: {n_rows:,} rows in, {report['rows_out']:,} out, folded {by_method}", file=sys.stderr)
    return report


def write_kept_rows(
    cleaned: Path,
    all_keys: npt.NDArray[np.uint64],
    out: Path,
    keep: npt.NDArray[np.bool_],
    duplicate_count: npt.NDArray[np.int64],
) -> None:
    """Stream the cleaned rows' metadata once, writing the kept ones with their row number, id,
    count and band keys (not their abstracts: those stay in the cleaned file).

    A kept row is its own winner, so its id comes from its own columns.
    """
    columns = ["arxiv_id", "arxiv_version", "source", "flags", "text_hash"]
    with parquet_writer(out, DEDUP_SCHEMA, build_file_options(DEDUP_SCHEMA, hashes=("band_keys",))) as writer:
        offset = 0
        for batch in stream_batches(cleaned, columns):
            rows = offset + np.flatnonzero(keep[offset : offset + batch.num_rows])
            kept = batch.take(pa.array(rows - offset))
            hash_ids = pc.binary_join_element_wise(TEXT_ID_PREFIX, kept.column("text_hash"), "")
            values = {
                "row": pa.array(rows, pa.int64()),
                "id": pc.coalesce(kept.column("arxiv_id"), hash_ids),
                **{name: kept.column(name) for name in columns},
                "duplicate_count": pa.array(duplicate_count[rows]),
                "band_keys": keys_to_arrow(all_keys[rows]),
            }
            arrays = [values[field.name].cast(field.type) for field in DEDUP_SCHEMA]
            writer.write_table(pa.Table.from_arrays(arrays, schema=DEDUP_SCHEMA))
            offset += batch.num_rows


def kept_abstracts(cleaned: Path, deduped: Path) -> pa.ChunkedArray:
    """The abstracts of the kept rows, in the deduplicated table's order."""
    rows = pq.read_table(deduped, columns=["row"])["row"].to_numpy()
    return pq.read_table(cleaned, columns=["abstract"])["abstract"].take(pa.array(rows))
