"""Stage `split`: assign every deduplicated row to train/validation/test and write the release data.

Reads: the deduplicated parquet. Writes: the release data directory
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
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dedup import read_texts
from pipeline.minhash import candidate_pairs, jaccard, read_band_keys, shingle_sets
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


def assign_split(ids: list[str], params: SplitParams) -> list[str]:
    """The split of each id; depends on nothing but the id and `params.seed`/`fractions`."""
    bounds: list[tuple[float, str]] = []
    cumulative = 0.0
    for name in SPLITS:
        cumulative += params.fractions[name]
        bounds.append((cumulative, name))
    salt = str(params.seed).encode("ascii") + b":"
    result = []
    for row_id in ids:
        digest = hashlib.blake2b(salt + row_id.encode("utf-8"), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / _HASH_SPACE
        result.append(next((name for bound, name in bounds if point < bound), SPLITS[-1]))
    return result


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


def leaked_pairs(deduped: Path, splits: list[str], dedup: DedupParams) -> list[dict[str, Any]]:
    """Near-duplicate pairs (verified Jaccard >= dedup.near_threshold) across different splits.

    Uses the band keys dedup stored for each kept row: only rows sharing a band key with a row
    of another split are read back and verified.
    """
    keys = read_band_keys(deduped, dedup.bands)
    rows = np.arange(len(keys), dtype=np.int64)
    pairs = candidate_pairs(rows, keys)
    split_codes = np.array([SPLITS.index(s) for s in splits], dtype=np.int8)
    pairs = pairs[split_codes[pairs[:, 0]] != split_codes[pairs[:, 1]]] if len(pairs) else pairs
    if not len(pairs):
        return []
    texts = read_texts(deduped, pairs.reshape(-1))
    rows_read = sorted(texts)
    sets = dict(zip(rows_read, shingle_sets((texts[r] for r in rows_read), dedup.shingle_words), strict=True))
    ids = pq.read_table(deduped, columns=["id"])["id"]
    leaks = []
    for a, b in pairs.tolist():
        similarity = jaccard(sets[a], sets[b])
        if similarity >= dedup.near_threshold:
            leaks.append(
                {"id": ids[a].as_py(), "other_id": ids[b].as_py(), "similarity": round(similarity, 6)}
            )
    return sorted(leaks, key=lambda leak: (leak["id"], leak["other_id"]))


def run_split(
    deduped: Path, release_data: Path, report_out: Path, params: SplitParams, dedup: DedupParams
) -> dict[str, Any]:
    """Write the release shards for every split and the split report (with the leak check)."""
    ids = pl.read_parquet(deduped, columns=["id"])["id"].to_list()
    splits = assign_split(ids, params)
    del ids
    leaks = leaked_pairs(deduped, splits, dedup)
    totals = {name: splits.count(name) for name in SPLITS}
    with atomic_directory(release_data) as directory:
        writers = {name: ShardWriter(directory, name, totals[name], params.rows_per_shard) for name in SPLITS}
        offset = 0
        for batch in pq.ParquetFile(deduped).iter_batches(batch_size=100_000, columns=RELEASE_SCHEMA.names):
            table = pa.Table.from_batches([batch]).cast(RELEASE_SCHEMA)
            labels = pa.array(splits[offset : offset + batch.num_rows])
            offset += batch.num_rows
            for name in SPLITS:
                writers[name].write(table.filter(pc.equal(labels, name)))
        for writer in writers.values():
            writer.close()
        shards = {name: writers[name].names for name in SPLITS}
    report = {"seed": params.seed, "rows": totals, "shards": shards, "leaked_pairs": leaks}
    write_json(report, report_out)
    print(f"split: {totals}, {len(leaks)} near-duplicate pairs across splits", file=sys.stderr)
    return report
