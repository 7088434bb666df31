from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup import DEDUP_SCHEMA
from pipeline.outputs import write_parquet
from pipeline.params import SplitParams
from pipeline.split import RELEASE_SCHEMA, assign_split, run_split


def test_assignment_is_a_pure_function_of_id_and_seed() -> None:
    params = SplitParams()
    ids = [f"2301.{i:05d}" for i in range(5000)]
    first = dict(zip(ids, assign_split(ids, params), strict=True))
    # Adding and removing other rows never moves a row.
    subset = ids[::3] + [f"txt-{i:016x}" for i in range(2000)]
    for row_id, split in zip(subset, assign_split(subset, params), strict=True):
        if row_id in first:
            assert first[row_id] == split
    counts = {name: list(first.values()).count(name) for name in ("train", "validation", "test")}
    assert abs(counts["train"] - 4000) < 150 and abs(counts["test"] - 500) < 80
    reseeded = assign_split(ids, SplitParams(seed=1))
    assert reseeded != list(first.values())


def test_release_shards(tmp_path: Path) -> None:
    n = 230
    table = pa.table(
        {
            "id": [f"2301.{i:05d}" for i in range(n)],
            "arxiv_id": [f"2301.{i:05d}" for i in range(n)],
            "arxiv_version": [1] * n,
            "abstract": [f"Abstract {i}." for i in range(n)],
            "source": [f"a.txt:{i}" for i in range(n)],
            "duplicate_count": [0] * n,
            "flags": [[] for _ in range(n)],
            "text_hash": [f"{i:016x}" for i in range(n)],
        },
        schema=DEDUP_SCHEMA,
    )
    write_parquet(table, tmp_path / "dedup.parquet")
    report = run_split(
        tmp_path / "dedup.parquet", tmp_path / "data", tmp_path / "split.json", SplitParams(rows_per_shard=50)
    )
    files = sorted(p.name for p in (tmp_path / "data").iterdir())
    train_rows = report["rows"]["train"]
    train_shards = -(-train_rows // 50)
    assert report["shards"]["train"] == [
        f"train-{i:05d}-of-{train_shards:05d}.parquet" for i in range(train_shards)
    ]
    assert len(files) == sum(len(s) for s in report["shards"].values())
    released = pl.concat([pl.read_parquet(tmp_path / "data" / f) for f in files])
    assert sorted(released["id"].to_list()) == sorted(table["id"].to_pylist())
    assert pq.read_schema(tmp_path / "data" / files[0]).names == RELEASE_SCHEMA.names
    assert sum(report["rows"].values()) == n
