from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dedup import DEDUP_SCHEMA
from pipeline.errors import PipelineError
from pipeline.minhash import band_keys, keys_to_arrow
from pipeline.outputs import write_parquet
from pipeline.params import DedupParams, SplitParams
from pipeline.split import RELEASE_SCHEMA, assign_split, cross_split_candidates, run_split


def write_build(directory: Path, ids: list[str], texts: list[str]) -> pa.Table:
    """`dedup.parquet` keeping every row of `clean.parquet` but the folded ones between them.

    Each kept row sits at an odd row of the cleaned file, so a wrong row lookup shows.
    """
    n = len(ids)
    params = DedupParams()
    keys = band_keys(pl.Series(texts), params.shingle_words, params.bands, params.rows_per_band, params.seed)
    cleaned = [text for kept in texts for text in (f"Folded record before {kept}", kept)]
    write_parquet(pa.table({"abstract": cleaned}), directory / "clean.parquet", row_group_rows=7)
    table = pa.table(
        {
            "row": [2 * i + 1 for i in range(n)],
            "id": ids,
            "arxiv_id": ids,
            "arxiv_version": [1] * n,
            "source": [f"a.txt:{i}" for i in range(n)],
            "duplicate_count": [0] * n,
            "flags": [[] for _ in range(n)],
            "text_hash": [f"{i:016x}" for i in range(n)],
            "band_keys": keys_to_arrow(keys),
        },
        schema=DEDUP_SCHEMA,
    )
    write_parquet(table, directory / "dedup.parquet")
    return table


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
    texts = [f"Abstract number {i} about topic {i}." for i in range(n)]
    table = write_build(tmp_path, [f"2301.{i:05d}" for i in range(n)], texts)
    report = run_split(
        tmp_path / "dedup.parquet",
        tmp_path / "clean.parquet",
        tmp_path / "data",
        tmp_path / "split.json",
        SplitParams(rows_per_shard=50),
        DedupParams(),
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
    # Each id carries its own abstract from the cleaned file.
    assert dict(released.select("id", "abstract").rows()) == dict(
        zip(table["id"].to_pylist(), texts, strict=True)
    )
    assert pq.read_schema(tmp_path / "data" / files[0]).names == RELEASE_SCHEMA.names
    assert sum(report["rows"].values()) == n


def test_near_duplicates_across_splits_are_reported(tmp_path: Path) -> None:
    text = (
        "We introduce a benchmark of long documents for question answering and show that current "
        "retrieval augmented models fail when the answer requires combining evidence from distant "
        "passages, and we release the data, the evaluation code and strong baselines for it."
    )
    params = SplitParams()
    ids = [f"2302.{i:05d}" for i in range(200)]
    splits = assign_split(ids, params)
    first, other = ids[0], next(i for i, s in zip(ids, splits, strict=True) if s != splits[0])
    near = text.replace("strong baselines", "several strong baselines")
    write_build(tmp_path, [first, other, "2303.00001"], [text, near, "An unrelated abstract about graphs."])
    report = run_split(
        tmp_path / "dedup.parquet",
        tmp_path / "clean.parquet",
        tmp_path / "data",
        tmp_path / "split.json",
        params,
        DedupParams(),
    )
    assert len(report["leaked_pairs"]) == 1
    leak = report["leaked_pairs"][0]
    assert {leak["id"], leak["other_id"]} == {first, other}
    assert leak["similarity"] >= 0.7


def test_split_codes_match_the_published_assignment() -> None:
    # The loop that defined the published splits, kept here as the reference.
    def reference(ids: list[str], params: SplitParams) -> list[str]:
        bounds, cumulative = [], 0.0
        for name in ("train", "validation", "test"):
            cumulative += params.fractions[name]
            bounds.append((cumulative, name))
        salt = str(params.seed).encode("ascii") + b":"
        result = []
        for row_id in ids:
            digest = hashlib.blake2b(salt + row_id.encode("utf-8"), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / float(2**64)
            result.append(next((name for bound, name in bounds if point < bound), "test"))
        return result

    ids = [f"2301.{i:05d}" for i in range(20_000)] + [f"txt-{i:016x}" for i in range(5_000)] + ["é-ü/1234567"]
    for params in (
        SplitParams(),
        SplitParams(seed=7, fractions={"train": 0.0, "validation": 0.3, "test": 0.7}),
        SplitParams(seed=3, fractions={"train": 0.5, "validation": 0.5, "test": 0.0}),
    ):
        assert assign_split(ids, params) == reference(ids, params)
    # The vectorised point: numpy rounds uint64 -> float64 as Python's int / float does.
    rng = np.random.default_rng(0)
    values = [*rng.integers(0, 2**63, 1000, dtype=np.uint64).tolist(), 2**53 + 1, 2**63 + 1025, 2**64 - 1]
    assert (np.array(values, dtype=np.uint64).astype(np.float64) / 2**64).tolist() == [
        v / float(2**64) for v in values
    ]


def test_cross_split_candidates_are_star_pairs_across_splits() -> None:
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 6, (300, 3)).astype(np.uint64) << np.uint64(40)  # big buckets
    codes = rng.integers(0, 3, 300).astype(np.int8)
    expected = set()
    for band in range(3):
        for value in set(keys[:, band].tolist()):
            members = [r for r in range(300) if keys[r, band] == value]
            expected |= {(members[0], r) for r in members[1:] if codes[members[0]] != codes[r]}
    assert sorted(map(tuple, cross_split_candidates(keys, codes).tolist())) == sorted(expected)


def test_kept_rows_past_the_cleaned_file_fail_clearly(tmp_path: Path) -> None:
    write_build(tmp_path, ["2301.00001", "2301.00002"], ["First abstract.", "Second abstract."])
    write_parquet(pa.table({"abstract": ["Only one cleaned row."]}), tmp_path / "clean.parquet")
    with pytest.raises(
        PipelineError, match=r"kept row 3 is past the end of .*clean.parquet \(1 rows\).*dvc repro"
    ):
        run_split(
            tmp_path / "dedup.parquet",
            tmp_path / "clean.parquet",
            tmp_path / "data",
            tmp_path / "split.json",
            SplitParams(),
            DedupParams(),
        )
    assert not (tmp_path / "data").exists()
