"""The engine selection and the local engine's primitives (the Ray engine: test_engine_ray.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.engines import engine_name
from pipeline.errors import ConfigError
from pipeline.executor import LocalEngine, batch_slices, engine, map_slices
from pipeline.kernels.minhash import bucket_pairs, candidate_pairs, keys_to_arrow, partition_band_keys
from pipeline.params import DedupParams
from pipeline.stages.dedup.core import shuffled_candidate_pairs


def test_the_engine_is_local_unless_the_environment_names_ray() -> None:
    assert engine_name({}) == "local"
    assert engine_name({"ABSTRACTS_ENGINE": ""}) == "local"
    assert engine_name({"ABSTRACTS_ENGINE": " Ray "}) == "ray"
    with pytest.raises(ConfigError, match=r"ABSTRACTS_ENGINE='spark': unknown engine; use one of local, ray"):
        engine_name({"ABSTRACTS_ENGINE": "spark"})


def test_the_default_engine_is_the_local_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABSTRACTS_ENGINE", raising=False)
    assert isinstance(engine(), LocalEngine)


def _numbers(batch: pa.RecordBatch) -> list[int]:
    return [int(value) for value in batch.column("n").to_pylist()]


def test_map_slices_gives_every_slice_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"n": list(range(100))}), path, row_group_size=30)
    results = list(map_slices(path, ["n"], 7, _numbers, workers=3))
    assert len(results) == len(batch_slices(pq.ParquetFile(path), 7))
    assert [n for part in results for n in part] == list(range(100))


def _keys_with_buckets(rows: int, bands: int, seed: int) -> np.ndarray:
    """Random band keys where about a third of the rows copy some bands of an earlier row."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 2**63, size=(rows, bands), dtype=np.uint64)
    for row in rng.choice(np.arange(1, rows), size=rows // 3, replace=False):
        source = rng.integers(0, row)
        shared = rng.random(bands) < 0.3
        keys[row, shared] = keys[source, shared]
    # A few keys equal in different bands, which must not pair their rows.
    keys[5, 0] = keys[6, 1]
    return keys


@pytest.mark.parametrize("partitions", [1, 2, 5])
def test_the_band_key_shuffle_finds_the_candidate_pairs(partitions: int) -> None:
    keys = _keys_with_buckets(400, 6, seed=partitions)
    rows = np.sort(np.random.default_rng(0).choice(400, size=300, replace=False)).astype(np.int64)
    # Map parts from three chunks of rows, as map tasks over slices of the file give them.
    chunks = np.array_split(rows, 3)
    mapped = [partition_band_keys(keys[chunk], chunk, partitions) for chunk in chunks]
    reduced = [bucket_pairs([parts[p] for parts in mapped]) for p in range(partitions)]
    union = np.unique(np.concatenate([np.zeros((0, 2), np.int64), *reduced]), axis=0)
    expected = candidate_pairs(rows, keys)
    assert len(expected) > 50
    np.testing.assert_array_equal(union, expected)
    assert union.dtype == expected.dtype


def test_the_shuffle_over_the_band_key_file_equals_the_in_memory_pairs(tmp_path: Path) -> None:
    keys = _keys_with_buckets(500, 20, seed=7)
    minhash = tmp_path / "minhash.parquet"
    pq.write_table(pa.table({"band_keys": keys_to_arrow(keys)}), minhash, row_group_size=120)
    params = dataclasses.replace(DedupParams(), batch_rows=50)
    survivors = np.flatnonzero(np.arange(500) % 7 != 3).astype(np.int64)
    pairs = shuffled_candidate_pairs(minhash, survivors, params, LocalEngine())
    np.testing.assert_array_equal(pairs, candidate_pairs(survivors, keys))
    assert len(pairs) > 50
