"""Stage `split`: assign every deduplicated row to train/validation/test and write the release data.

Reads: the deduplicated parquet (kept rows, without texts), the cleaned parquet (their
abstracts, found by the kept rows' `row`) and the published releases' membership (`releases/`).
Writes: the release data directory (`{split}-NNNNN-of-NNNNN.parquet`, release columns only) and
`split.json`: rows and shards per split; `leaked_pairs`, near-duplicate pairs that ended in
different splits, which must be empty; `cross_release_leaks`, new train rows that near-duplicate
a published validation or test row, which must be 0; and `size_bounds`, each split's count
against its statistical bound. Params: `split` (seed, fractions, rows per shard) and `dedup` (the
near-duplicate threshold and LSH layout, to check for leaks exactly as dedup folds).

Splits never move once published: a row that continues a published row (dedup gave it that
row's id, `published_split`) keeps its split. A new row's split is a pure function of its `id`
and `split.seed` (the id is hashed to a number in [0, 1) and compared with the cumulative
fractions), except that a new row sharing an LSH band key with a published validation or test
row goes to that row's split (test before validation) when the pair verifies as a near
duplicate, or when the published row is not in this build and its text cannot be compared:
a paper published for evaluation must never come back in train. Adding or removing other rows
never moves a row to another split.

Stable splits win over exact sizes: each split's count must lie within
|count - n*p| <= 4*sqrt(n*p*(1-p)) + 1 of its fraction p of the n rows (`size_bounds`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import CROSS_RELEASE_LEAKS, RELEASE_SCHEMA, SPLITS, shard_name
from pipeline.errors import PipelineError
from pipeline.io.writers import PARQUET_OPTIONS, atomic_directory, write_json
from pipeline.kernels.fingerprint import I64, U64, blake2b_64
from pipeline.kernels.minhash import ShingleSets, candidate_pairs, read_band_keys
from pipeline.params import DedupParams, SplitParams
from pipeline.policy import split_size_allowed_deviation
from pipeline.releases import Membership, read_membership

_HASH_SPACE = float(2**64)


Codes: TypeAlias = npt.NDArray[np.int8]
Pairs: TypeAlias = npt.NDArray[np.int64]


def salted_digests(ids: Sequence[str] | pa.Array | pa.ChunkedArray, seed: int) -> U64:
    """blake2b(f"{seed}:{id}", digest_size=8) of each id, its digest bytes read big-endian.

    Hashed in a compiled loop (`fingerprint.blake2b_64`): hashlib costs a Python call per id,
    seconds for the millions of benchmark rows, while the writing waits for the splits.
    """
    strings = ids if isinstance(ids, pa.Array | pa.ChunkedArray) else pa.array(ids, pa.string())
    # `blake2b_64` reads the digest bytes as a little-endian number: swap to read them big-endian.
    digests: U64 = blake2b_64(strings, prefix=str(seed).encode("ascii") + b":").byteswap()
    return digests


def split_codes(ids: Sequence[str] | pa.Array | pa.ChunkedArray, params: SplitParams) -> Codes:
    """The split of each id as an index into SPLITS; see `assign_split`."""
    bounds: list[float] = []
    cumulative = 0.0
    for name in SPLITS:
        cumulative += params.fractions[name]
        bounds.append(cumulative)
    # The same point as int.from_bytes(digest, "big") / 2**64: both round the integer to the
    # nearest double, and dividing by a power of two is exact.
    points = salted_digests(ids, params.seed).astype(np.float64) / _HASH_SPACE
    below = points[:, None] < np.array(bounds)[None, :]
    # The first split whose cumulative bound lies above the point; the last split otherwise.
    return np.where(below.any(axis=1), below.argmax(axis=1), len(SPLITS) - 1).astype(np.int8)


def assign_split(ids: list[str], params: SplitParams) -> list[str]:
    """The split of each id; depends on nothing but the id and `params.seed`/`fractions`.

    The id is hashed with blake2b (8 bytes, salted with the seed) to a point in [0, 1) that
    falls into the first split whose cumulative fraction exceeds it.
    """
    return [SPLITS[code] for code in split_codes(ids, params).tolist()]


class ShardWriter:
    """Writes one split's rows into consecutive shards of at most `rows_per_shard` rows."""

    def __init__(self, directory: Path, split: str, total_rows: int, rows_per_shard: int) -> None:
        self.directory = directory
        self.split = split
        self.rows_per_shard = rows_per_shard
        self.shard_count = max(1, math.ceil(total_rows / rows_per_shard))
        self.written = 0
        self.writer: pq.ParquetWriter | None = None
        self.names: list[str] = []

    def _open(self) -> pq.ParquetWriter:
        name = shard_name(self.split, len(self.names), self.shard_count)
        self.names.append(name)
        return pq.ParquetWriter(self.directory / name, RELEASE_SCHEMA, **PARQUET_OPTIONS)

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                self.writer = self._open()
            room = self.rows_per_shard - self.written % self.rows_per_shard
            head, table = table.slice(0, room), table.slice(room)
            self.writer.write_table(head)
            self.written += head.num_rows
            if self.written % self.rows_per_shard == 0:
                self.writer.close()
                self.writer = None

    def close(self) -> None:
        if self.writer is None and not self.names:
            # An empty split still gets one (empty) shard so every split loads.
            self.writer = self._open()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def cross_split_candidates(keys: U64, codes: Codes) -> Pairs:
    """The candidate pairs `minhash.candidate_pairs` gives for all rows, kept when the rows are
    in different splits."""
    pairs = candidate_pairs(np.arange(len(keys), dtype=np.int64), keys)
    cross: Pairs = pairs[codes[pairs[:, 0]] != codes[pairs[:, 1]]]
    return cross


def leaked_pairs(
    pairs: Pairs, sets: ShingleSets, ids: pa.ChunkedArray, dedup: DedupParams
) -> list[dict[str, Any]]:
    """The candidate `pairs` whose verified Jaccard similarity is >= dedup.near_threshold.

    `sets` holds the shingle set of every row in `pairs`.
    """
    if not len(pairs):
        return []
    leaks = []
    for (a, b), similarity in zip(pairs.tolist(), sets.similarity(pairs).tolist(), strict=True):
        if similarity >= dedup.near_threshold:
            leaks.append(
                {"id": ids[a].as_py(), "other_id": ids[b].as_py(), "similarity": round(similarity, 6)}
            )
    return sorted(leaks, key=lambda leak: (leak["id"], leak["other_id"]))


def read_shingle_sets(cleaned: Path, clean_rows: I64, rows: I64, shingle_words: int) -> ShingleSets:
    """The shingle sets of the kept `rows` (ascending), whose abstracts are read from the row
    groups of the cleaned file that hold them (`clean_rows` maps a kept row to its cleaned row)."""
    parquet = pq.ParquetFile(cleaned, pre_buffer=False)
    starts = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)])
    targets = clean_rows[rows]
    groups = np.searchsorted(starts, targets, side="right") - 1
    bounds = np.searchsorted(groups, np.arange(parquet.num_row_groups + 1))
    parts = []
    for group, (first, last) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        if last > first:
            texts = parquet.read_row_group(group, columns=["abstract"]).column(0)
            texts = texts.take(pa.array(targets[first:last] - starts[group]))
            parts.append(ShingleSets.of_texts(texts, rows[first:last], shingle_words))
    return ShingleSets.concat(parts)


def _check_aligned(
    cleaned: Path, batch_hashes: pa.Array, batch_start: int, rows: I64, kept_hashes: pa.ChunkedArray
) -> None:
    """Raise when the cleaned file's `rows` (in the batch starting at `batch_start`) are not the
    kept rows: their text hashes differ."""
    taken = batch_hashes.take(pa.array(rows - batch_start))
    same = pc.equal(taken, kept_hashes.combine_chunks())
    if not pc.all(same).as_py():
        first = int(pc.index(same, False).as_py())
        raise PipelineError(
            f"{cleaned}: row {int(rows[first])} has text_hash {taken[first].as_py()} but dedup kept that "
            f"row with text_hash {kept_hashes[first].as_py()}: the build files come from different "
            "runs; run `dvc repro`"
        )


def write_release(
    kept: pa.Table,
    clean_rows: I64,
    cleaned: Path,
    codes: Codes,
    writers: dict[str, ShardWriter],
    candidates: Future[Pairs],
    shingle_words: int,
) -> ShingleSets:
    """Stream the release columns into each split's shards; return the shingle sets of the rows
    in the `candidates` pairs.

    `kept` holds the kept rows' metadata (no texts) and their `text_hash`, `clean_rows` their
    rows in the cleaned file, whose abstracts are read batch by batch, once, and cut to the kept
    rows; the cleaned rows' `text_hash` must match the kept rows' at every position, so a
    cleaned file from another run can never pair an id with another paper's abstract.
    Each split's writer runs in its own thread (parquet encoding and compression release the
    GIL) while the next batch is read; a batch is handed over only when the previous one is
    written, so every shard receives the same tables in the same order as a serial loop.

    The candidate pairs are computed beside the writing, which does not wait for them: the
    candidates' texts are shingled from the batches read once the pairs are known, and those of
    the batches read before are read again from the cleaned file, also beside the writing.
    """
    wanted: I64 | None = None
    shingled: list[ShingleSets] = []
    earlier: Future[ShingleSets] | None = None
    clean_offset = 0
    with ThreadPoolExecutor(max_workers=len(SPLITS) + 1) as pool:
        writing: list[Future[None]] = []
        # Without pre-buffering: its read buffers bypass Arrow's pool, so each batch's came as
        # fresh pages from the kernel, which cost more system time than the decompression.
        parquet = pq.ParquetFile(cleaned, pre_buffer=False)
        batches = parquet.iter_batches(batch_size=100_000, columns=["abstract", "text_hash"])
        for batch in batches:
            batch_start, clean_offset = clean_offset, clean_offset + batch.num_rows
            lo, hi = np.searchsorted(clean_rows, [batch_start, clean_offset])
            if hi == lo:
                continue
            _check_aligned(
                cleaned, batch.column(1), batch_start, clean_rows[lo:hi], kept["text_hash"].slice(lo, hi - lo)
            )
            if wanted is None and candidates.done():
                wanted = np.unique(candidates.result())
                earlier = pool.submit(
                    read_shingle_sets, cleaned, clean_rows, wanted[wanted < lo], shingle_words
                )
            batch_codes = codes[lo:hi]
            # One stable order groups the batch by split, each split's rows in file order; the
            # abstracts are taken in that order at once (one copy of the texts, not two).
            order = np.argsort(batch_codes, kind="stable")
            abstracts = batch.column(0).take(pa.array(clean_rows[lo:hi][order] - batch_start))
            table = kept.slice(lo, hi - lo).take(order).append_column("abstract", abstracts)
            table = table.select(RELEASE_SCHEMA.names).cast(RELEASE_SCHEMA)
            ends = np.cumsum(np.bincount(batch_codes, minlength=len(SPLITS))).tolist()
            parts = [
                table.slice(start, end - start) for start, end in zip([0, *ends[:-1]], ends, strict=True)
            ]
            for future in writing:
                future.result()
            writing = [
                pool.submit(writers[name].write, part) for name, part in zip(SPLITS, parts, strict=True)
            ]
            if wanted is not None:
                # Shingled here, while the writers compress: this thread would only wait.
                first, last = np.searchsorted(wanted, [lo, hi])
                if last > first:
                    texts = batch.column(0).take(pa.array(clean_rows[wanted[first:last]] - batch_start))
                    shingled.append(ShingleSets.of_texts(texts, wanted[first:last], shingle_words))
        for future in writing:
            future.result()
    if earlier is None:  # the pairs came after the last batch: read all their texts again
        wanted = np.unique(candidates.result())
        return read_shingle_sets(cleaned, clean_rows, wanted, shingle_words)
    return ShingleSets.concat([earlier.result(), *shingled])


def keep_published_splits(codes: Codes, published_split: pa.ChunkedArray) -> Codes:
    """`codes` with every row that continues a published row back in that row's split."""
    published = published_split.to_numpy(zero_copy_only=False)
    kept: Codes = codes.copy()
    for code, name in enumerate(SPLITS):
        kept[published == name] = code
    return kept


def _published_band_matches(
    keys: U64, rows: I64, membership: Membership
) -> tuple[Pairs, list[str], list[str]]:
    """(row, published index) for each of `rows` sharing a band key, band for band, with a
    published validation or test row; and those published rows' ids and splits."""
    held = membership.rows.filter(pl.col("split") != SPLITS[0]).drop_nulls("band_keys")
    if not held.height or not len(rows):
        return np.zeros((0, 2), dtype=np.int64), [], []
    lengths = held["band_keys"].list.len().unique().to_list()
    if lengths != [keys.shape[1]]:
        raise PipelineError(
            f"published band keys have {lengths} bands, this build {keys.shape[1]}: "
            "dedup.bands changed since the last release; restore it or start a new major version"
        )
    # Through numpy, not Python lists: the keys are 64-bit and must not pass through floats.
    published: U64 = held["band_keys"].explode().to_numpy().astype(np.uint64).reshape(held.height, -1)
    found: list[tuple[int, int]] = []
    for band in range(keys.shape[1]):
        order = np.argsort(published[:, band], kind="stable")
        values = published[order, band]
        mine = keys[rows, band]
        lo = np.searchsorted(values, mine, side="left")
        hi = np.searchsorted(values, mine, side="right")
        for i in np.flatnonzero(hi > lo).tolist():
            found.extend((int(rows[i]), int(order[j])) for j in range(lo[i], hi[i]))
    pairs = np.unique(np.array(found, dtype=np.int64).reshape(-1, 2), axis=0)
    return pairs, held["id"].to_list(), held["split"].to_list()


def pin_near_published(
    codes: Codes,
    is_new: npt.NDArray[np.bool_],
    keys: U64,
    ids: pa.ChunkedArray,
    clean_rows: I64,
    cleaned: Path,
    membership: Membership,
    dedup: DedupParams,
) -> tuple[list[dict[str, Any]], int]:
    """Put each new row that near-duplicates a published validation or test row into that row's
    split (in place, test first); return the pinned rows and the new train rows left that still
    near-duplicate one (the leak count, 0 unless this check is wrong).

    A pair is verified with the exact Jaccard similarity when the published row is in this build
    (its current text), and counts as a near duplicate otherwise (its text is not here).
    """
    candidates = np.flatnonzero(is_new).astype(np.int64)
    pairs, published_ids, published_splits = _published_band_matches(keys, candidates, membership)
    if not len(pairs):
        return [], 0
    position = {row_id: i for i, row_id in enumerate(ids.to_pylist())}
    here = np.array([position.get(published_ids[p], -1) for p in pairs[:, 1].tolist()], dtype=np.int64)
    near = np.ones(len(pairs), dtype=bool)
    verifiable = here >= 0
    if verifiable.any():
        compared = np.stack([pairs[verifiable, 0], here[verifiable]], axis=1)
        sets = read_shingle_sets(cleaned, clean_rows, np.unique(compared), dedup.shingle_words)
        near[verifiable] = sets.similarity(compared) >= dedup.near_threshold
    rank = {name: code for code, name in enumerate(SPLITS)}
    pinned: dict[int, dict[str, Any]] = {}
    for (row, published), is_near in zip(pairs.tolist(), near.tolist(), strict=True):
        split = published_splits[published]
        if not is_near or (row in pinned and rank[pinned[row]["split"]] >= rank[split]):
            continue
        pinned[row] = {"id": ids[row].as_py(), "split": split, "published_id": published_ids[published]}
    for row, entry in pinned.items():
        # Toward test, never toward train: a new row hashed to test stays there.
        codes[row] = max(int(codes[row]), rank[entry["split"]])
        entry["split"] = SPLITS[codes[row]]
    leaks = len(np.unique(pairs[near & (codes[pairs[:, 0]] == 0), 0]))
    return sorted(pinned.values(), key=lambda entry: str(entry["id"])), leaks


def size_bounds(totals: dict[str, int], params: SplitParams) -> dict[str, dict[str, Any]]:
    """Each split's count against |count - n*p| <= 4*sqrt(n*p*(1-p)) + 1 (n rows, fraction p):
    `pipeline.policy.split_size_allowed_deviation`, the bound GX's
    `expect_split_sizes_within_binomial_bound` holds the release to (at validate.split_sigmas,
    4 by default)."""
    n = sum(totals.values())
    bounds = {}
    for name in SPLITS:
        p = params.fractions[name]
        expected = n * p
        allowed = split_size_allowed_deviation(n, p)
        bounds[name] = {
            "count": totals[name],
            "expected": round(expected, 3),
            "allowed_deviation": round(allowed, 3),
            "within": abs(totals[name] - expected) <= allowed,
        }
    return bounds


def run_split(
    deduped: Path,
    cleaned: Path,
    release_data: Path,
    report_out: Path,
    params: SplitParams,
    dedup: DedupParams,
    releases: Path | None = None,
) -> dict[str, Any]:
    """Write the release shards for every split and the split report (with the leak checks)."""
    columns = [name for name in RELEASE_SCHEMA.names if name != "abstract"]
    # The kept rows' metadata, read once (no texts in it): the ids give the splits, and the
    # rest is cut into the shards beside the abstracts.
    kept = pq.read_table(deduped, columns=["row", "text_hash", *columns])
    clean_rows = kept.column("row").to_numpy()
    kept = kept.drop_columns(["row"])
    clean_count = pq.ParquetFile(cleaned).metadata.num_rows
    if len(clean_rows) and clean_rows[-1] >= clean_count:
        raise PipelineError(
            f"{deduped}: kept row {int(clean_rows[-1])} is past the end of {cleaned} ({clean_count} rows); "
            "the two files come from different runs: run `dvc repro`"
        )
    ids = kept["id"]
    codes = split_codes(ids, params)
    published_split = pq.read_table(deduped, columns=["published_split"])["published_split"]
    codes = keep_published_splits(codes, published_split)
    is_new = pc.is_null(published_split).to_numpy(zero_copy_only=False)
    pinned, leaks_across = pin_near_published(
        codes,
        is_new,
        read_band_keys(deduped, dedup.bands),
        ids,
        clean_rows,
        cleaned,
        read_membership(releases),
        dedup,
    )
    totals = {name: int(np.count_nonzero(codes == code)) for code, name in enumerate(SPLITS)}
    with ThreadPoolExecutor(max_workers=1) as background:
        # numpy's sorts and counts release the GIL, so the candidates cost the writing little.
        candidates = background.submit(
            lambda: cross_split_candidates(read_band_keys(deduped, dedup.bands), codes)
        )
        with atomic_directory(release_data) as directory:
            writers = {
                name: ShardWriter(directory, name, totals[name], params.rows_per_shard) for name in SPLITS
            }
            sets = write_release(kept, clean_rows, cleaned, codes, writers, candidates, dedup.shingle_words)
            for writer in writers.values():
                writer.close()
            shards = {name: writers[name].names for name in SPLITS}
    leaks = leaked_pairs(candidates.result(), sets, ids, dedup)
    bounds = size_bounds(totals, params)
    report = {
        "seed": params.seed,
        "rows": totals,
        "shards": shards,
        "leaked_pairs": leaks,
        CROSS_RELEASE_LEAKS: leaks_across,
        "published_rows_kept": int(np.count_nonzero(~is_new)),
        "pinned_to_published_split": pinned,
        "size_bounds": bounds,
    }
    write_json(report, report_out)
    print(
        f"split: {totals}, {len(leaks)} near-duplicate pairs across splits, "
        f"{int(np.count_nonzero(~is_new)):,} published rows kept their split, {len(pinned)} new rows pinned "
        f"to a published row's split, {leaks_across} new train rows near a published validation/test row",
        file=sys.stderr,
    )
    return report
