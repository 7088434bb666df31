"""Stage `split`: assign every deduplicated row to train/validation/test and write the release data.

Reads: the deduplicated parquet (kept rows, without texts) and the cleaned parquet (their
abstracts, found by the kept rows' `row`). Writes: the release data directory
(`{split}-NNNNN-of-NNNNN.parquet`, release columns only) and `split.json` (rows and shards per
split, and `leaked_pairs`: near-duplicate pairs that ended in different splits, which must be
empty). Params: `split` (seed, fractions, rows per shard) and `dedup` (the near-duplicate
threshold and LSH layout, to check for leaks exactly as dedup folds).

A row's split is a pure function of its `id` and `split.seed`: the id is hashed to a number in
[0, 1) and compared with the cumulative fractions. Adding or removing other rows never moves a
row to another split.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError
from pipeline.minhash import U64, ShingleSets, candidate_pairs, read_band_keys
from pipeline.outputs import PARQUET_OPTIONS, write_json
from pipeline.params import DedupParams, SplitParams

SPLITS = ("train", "validation", "test")
RELEASE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("abstract", pa.string()),
        pa.field("source", pa.string()),
        pa.field("duplicate_count", pa.int64()),
    ]
)
_HASH_SPACE = float(2**64)


Codes: TypeAlias = npt.NDArray[np.int8]
Pairs: TypeAlias = npt.NDArray[np.int64]


def split_codes(ids: list[str], params: SplitParams) -> Codes:
    """The split of each id as an index into SPLITS; see `assign_split`."""
    bounds: list[float] = []
    cumulative = 0.0
    for name in SPLITS:
        cumulative += params.fractions[name]
        bounds.append(cumulative)
    salted = hashlib.blake2b(str(params.seed).encode("ascii") + b":", digest_size=8)
    copy = salted.copy
    digests = []
    for row_id in ids:
        state = copy()
        state.update(row_id.encode("utf-8"))
        digests.append(state.digest())
    # The same point as int.from_bytes(digest, "big") / 2**64: both round the integer to the
    # nearest double, and dividing by a power of two is exact.
    points = np.frombuffer(b"".join(digests), dtype=">u8").astype(np.float64) / _HASH_SPACE
    below = points[:, None] < np.array(bounds)[None, :]
    # The first split whose cumulative bound lies above the point; the last split otherwise.
    return np.where(below.any(axis=1), below.argmax(axis=1), len(SPLITS) - 1).astype(np.int8)


def assign_split(ids: list[str], params: SplitParams) -> list[str]:
    """The split of each id; depends on nothing but the id and `params.seed`/`fractions`.

    The id is hashed with blake2b (8 bytes, salted with the seed) to a point in [0, 1) that
    falls into the first split whose cumulative fraction exceeds it.
    """
    return [SPLITS[code] for code in split_codes(ids, params).tolist()]


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    pairs: Pairs, texts: dict[int, str], ids: pa.ChunkedArray, dedup: DedupParams
) -> list[dict[str, Any]]:
    """The candidate `pairs` whose verified Jaccard similarity is >= dedup.near_threshold.

    `texts` holds the abstract of every row in `pairs`.
    """
    if not len(pairs):
        return []
    rows_read = sorted(texts)
    sets = ShingleSets.of_texts([texts[r] for r in rows_read], np.array(rows_read), dedup.shingle_words)
    leaks = []
    for (a, b), similarity in zip(pairs.tolist(), sets.similarity(pairs).tolist(), strict=True):
        if similarity >= dedup.near_threshold:
            leaks.append(
                {"id": ids[a].as_py(), "other_id": ids[b].as_py(), "similarity": round(similarity, 6)}
            )
    return sorted(leaks, key=lambda leak: (leak["id"], leak["other_id"]))


def write_release(
    deduped: Path, cleaned: Path, codes: Codes, writers: dict[str, ShardWriter], wanted: npt.NDArray[np.int64]
) -> dict[int, str]:
    """Stream the release columns into each split's shards; return the abstracts of `wanted` rows.

    The kept rows' metadata comes from the deduplicated table (held whole: no texts in it), their
    abstracts from the cleaned file, whose batches are read once and cut to the kept rows.
    Each split's writer runs in its own thread (parquet encoding and compression release the
    GIL) while the next batch is read; a batch is handed over only when the previous one is
    written, so every shard receives the same tables in the same order as a serial loop.
    """
    columns = [name for name in RELEASE_SCHEMA.names if name != "abstract"]
    kept = pq.read_table(deduped, columns=["row", *columns])
    clean_rows = kept.column("row").to_numpy()
    kept = kept.drop_columns(["row"])
    texts: dict[int, str] = {}
    clean_offset = 0
    with ThreadPoolExecutor(max_workers=len(SPLITS)) as pool:
        writing: list[Future[None]] = []
        batches = pq.ParquetFile(cleaned).iter_batches(batch_size=100_000, columns=["abstract"])
        for batch in batches:
            lo, hi = np.searchsorted(clean_rows, [clean_offset, clean_offset + batch.num_rows])
            abstracts = batch.column(0).take(pa.array(clean_rows[lo:hi] - clean_offset))
            clean_offset += batch.num_rows
            if hi == lo:
                continue
            table = kept.slice(lo, hi - lo).append_column("abstract", abstracts)
            table = table.select(RELEASE_SCHEMA.names).cast(RELEASE_SCHEMA)
            batch_codes = codes[lo:hi]
            # One stable take groups the batch by split (cheaper than a filter per split);
            # each split's rows are then a slice, in file order.
            grouped = table.take(np.argsort(batch_codes, kind="stable"))
            ends = np.cumsum(np.bincount(batch_codes, minlength=len(SPLITS))).tolist()
            parts = [
                grouped.slice(start, end - start) for start, end in zip([0, *ends[:-1]], ends, strict=True)
            ]
            first, last = np.searchsorted(wanted, [lo, hi])
            if last > first:
                leak_texts = abstracts.take(pa.array(wanted[first:last] - lo)).to_pylist()
                texts.update(zip(wanted[first:last].tolist(), leak_texts, strict=True))
            for future in writing:
                future.result()
            writing = [
                pool.submit(writers[name].write, part) for name, part in zip(SPLITS, parts, strict=True)
            ]
        for future in writing:
            future.result()
    if clean_offset <= (clean_rows[-1] if len(clean_rows) else -1):
        raise PipelineError(
            f"{deduped}: kept row {int(clean_rows[-1])} is past the end of {cleaned} ({clean_offset} rows); "
            "the two files come from different runs: run `dvc repro`"
        )
    return texts


def run_split(
    deduped: Path,
    cleaned: Path,
    release_data: Path,
    report_out: Path,
    params: SplitParams,
    dedup: DedupParams,
) -> dict[str, Any]:
    """Write the release shards for every split and the split report (with the leak check)."""
    ids = pq.read_table(deduped, columns=["id"])["id"]
    codes = split_codes(ids.to_pylist(), params)
    pairs = cross_split_candidates(read_band_keys(deduped, dedup.bands), codes)
    totals = {name: int(np.count_nonzero(codes == code)) for code, name in enumerate(SPLITS)}
    with atomic_directory(release_data) as directory:
        writers = {name: ShardWriter(directory, name, totals[name], params.rows_per_shard) for name in SPLITS}
        texts = write_release(deduped, cleaned, codes, writers, np.unique(pairs))
        for writer in writers.values():
            writer.close()
        shards = {name: writers[name].names for name in SPLITS}
    leaks = leaked_pairs(pairs, texts, ids, dedup)
    report = {"seed": params.seed, "rows": totals, "shards": shards, "leaked_pairs": leaks}
    write_json(report, report_out)
    print(f"split: {totals}, {len(leaks)} near-duplicate pairs across splits", file=sys.stderr)
    return report
