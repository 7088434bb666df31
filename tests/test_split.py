from __future__ import annotations

import hashlib
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import DEDUP_SCHEMA
from pipeline.errors import PipelineError
from pipeline.io.writers import write_parquet
from pipeline.kernels.minhash import ShingleSets, band_keys, keys_to_arrow
from pipeline.params import DedupParams, SplitParams
from pipeline.stages.split.core import (
    RELEASE_SCHEMA,
    ShardWriter,
    assign_split,
    cross_split_candidates,
    read_shingle_sets,
    run_split,
    salted_digests,
    write_release,
)


def write_build(directory: Path, ids: list[str], texts: list[str]) -> pa.Table:
    """`dedup.parquet` keeping every row of `clean.parquet` but the folded ones between them.

    Each kept row sits at an odd row of the cleaned file, so a wrong row lookup shows.
    """
    n = len(ids)
    params = DedupParams()
    keys = band_keys(pl.Series(texts), params.shingle_words, params.bands, params.rows_per_band, params.seed)
    cleaned = [text for kept in texts for text in (f"Folded record before {kept}", kept)]
    hashes = [digest for i in range(n) for digest in (f"{i:015x}f", f"{i:016x}")]
    write_parquet(
        pa.table({"abstract": cleaned, "text_hash": hashes}), directory / "clean.parquet", row_group_rows=7
    )
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
            **{
                field.name: pa.nulls(n, field.type)
                for field in DEDUP_SCHEMA
                if field.name not in ("sources", "member_keys")
                and field.name
                not in (
                    "row",
                    "id",
                    "arxiv_id",
                    "arxiv_version",
                    "source",
                    "duplicate_count",
                    "flags",
                    "text_hash",
                )
                and field.name != "band_keys"
            },
            "sources": [["a.txt"] for _ in range(n)],
            "member_keys": [[f"arxiv:{i}"] for i in ids],
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


def test_a_cleaned_file_from_another_run_fails_on_the_first_row_that_differs(tmp_path: Path) -> None:
    """The abstracts are joined to the kept rows by row number; the text hashes must agree."""
    write_build(tmp_path, ["2301.00001", "2301.00002", "2301.00003"], ["One.", "Two.", "Three."])
    cleaned = pq.read_table(tmp_path / "clean.parquet")
    swapped = cleaned.take([0, 1, 2, 5, 4, 3])  # kept rows 3 and 5 trade places
    write_parquet(swapped, tmp_path / "clean.parquet")
    with pytest.raises(
        PipelineError, match=r"clean.parquet: row 3 has text_hash .*different runs; run `dvc repro`"
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


def test_salted_digests_match_hashlib_across_block_boundaries() -> None:
    # Ids of every length around BLAKE2b's 128-byte blocks, with the salt before them, and
    # multi-byte UTF-8; the seed's digits shift where the blocks end.
    ids = ["", "é-ü/1234567", "\U0001f600" * 40] + [
        ("x" * n)[: n // 2] + "é" * (n - n // 2) for n in range(300)
    ]
    ids += [f"2301.{i:05d}" for i in range(100)] + ["a" * n for n in range(110, 270)]
    for seed in (0, 7, 20261123, 2**40 + 3):
        salt = f"{seed}:".encode("ascii")
        expected = [
            int.from_bytes(hashlib.blake2b(salt + i.encode(), digest_size=8).digest(), "big") for i in ids
        ]
        assert salted_digests(ids, seed).tolist() == expected
        assert salted_digests(pa.chunked_array([ids[:50], ids[50:]]), seed).tolist() == expected


class SettingWriter(ShardWriter):
    """A shard writer that completes `pairs` with `result` on its `after`-th table: the leak
    candidates then arrive while the release is being written."""

    def __init__(
        self, directory: Path, pairs: Future[npt.NDArray[np.int64]], result: npt.NDArray[np.int64], after: int
    ) -> None:
        super().__init__(directory, "train", 10**6, 10**6)
        self.pairs, self.result, self.after, self.calls = pairs, result, after, 0

    def write(self, table: pa.Table) -> None:
        self.calls += 1
        if self.calls == self.after:
            self.pairs.set_result(self.result)
        super().write(table)


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_candidate_texts_are_the_same_whenever_the_candidates_arrive(tmp_path: Path, after: int) -> None:
    # 250,000 cleaned rows: three read batches of 100,000, in row groups of 30,000.
    n = 250_000
    write_parquet(
        pa.table(
            {
                "abstract": [f"abstract {i} words {i % 97} more {i % 13} text" for i in range(n)],
                "text_hash": [f"{i:016x}" for i in range(n)],
            }
        ),
        tmp_path / "clean.parquet",
        row_group_rows=30_000,
    )
    clean_rows = np.arange(1, n, 2, dtype=np.int64)
    kept_ids = [f"id-{r}" for r in clean_rows.tolist()]
    kept = pa.table(
        {
            "id": kept_ids,
            "arxiv_id": kept_ids,
            "arxiv_version": [1] * len(kept_ids),
            "source": ["a.txt"] * len(kept_ids),
            "duplicate_count": [0] * len(kept_ids),
            "text_hash": [f"{r:016x}" for r in clean_rows.tolist()],
            **{
                field.name: pa.nulls(len(kept_ids), field.type)
                for field in RELEASE_SCHEMA
                if field.name
                not in ("id", "arxiv_id", "arxiv_version", "abstract", "source", "duplicate_count")
            },
        }
    )
    codes = np.zeros(len(kept_ids), dtype=np.int8)  # all train: the setting writer sees every batch
    rng = np.random.default_rng(2)
    pairs = np.unique(np.sort(rng.integers(0, len(kept_ids), (60, 2)), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    candidates: Future[npt.NDArray[np.int64]] = Future()
    if after == 0:
        candidates.set_result(pairs)
    directory = tmp_path / "data"
    directory.mkdir()
    writers = {name: ShardWriter(directory, name, 10**6, 10**6) for name in ("validation", "test")}
    writers["train"] = SettingWriter(directory, candidates, pairs, after)
    sets = write_release(kept, clean_rows, tmp_path / "clean.parquet", codes, writers, candidates, 5)
    expected = read_shingle_sets(tmp_path / "clean.parquet", clean_rows, np.unique(pairs), 5)
    assert sets.rows.tolist() == np.unique(pairs).tolist()
    assert np.array_equal(sets.hashes, expected.hashes) and np.array_equal(sets.offsets, expected.offsets)
    texts = [f"abstract {r} words {r % 97} more {r % 13} text" for r in clean_rows[np.unique(pairs)].tolist()]
    direct = ShingleSets.of_texts(texts, np.unique(pairs), 5)
    assert np.array_equal(sets.hashes, direct.hashes) and np.array_equal(sets.offsets, direct.offsets)


def _publish_index(releases: Path, rows: list[dict[str, object]]) -> None:
    """A published release whose row index holds `rows` (id, split, member_keys, band_keys)."""
    from pipeline.contracts import ROW_INDEX_SCHEMA

    releases.mkdir()
    columns = {field.name: [row.get(field.name) for row in rows] for field in ROW_INDEX_SCHEMA}
    write_parquet(pa.table(columns, schema=ROW_INDEX_SCHEMA), releases / "1.0.0.rows.parquet")
    (releases / "1.0.0.json").write_text('{"version": "1.0.0", "diff": {}}')


def test_published_splits_are_kept_and_a_new_near_copy_of_a_gone_test_row_is_pinned(tmp_path: Path) -> None:
    text = (
        "We introduce a benchmark of long documents for question answering and show that current "
        "retrieval augmented models fail when the answer requires combining evidence from distant "
        "passages, and we release the data, the evaluation code and strong baselines for it."
    )
    params, dedup = SplitParams(), DedupParams()
    candidates = [f"txt-{i:016x}" for i in range(100)]
    train_ids = [i for i, s in zip(candidates, assign_split(candidates, params), strict=True) if s == "train"]
    # A new row whose id hashes to train, a near copy of a published test row this build lacks.
    new_id, other_id, kept_id = train_ids[:3]
    near = text.replace("strong baselines", "several strong baselines")
    write_build(
        tmp_path,
        [new_id, other_id, kept_id],
        [near, "An unrelated abstract about graphs.", "A third one, about protein folding."],
    )
    dedup_table = pq.read_table(tmp_path / "dedup.parquet")
    published_split = pa.array([None, None, "validation"], pa.string())
    dedup_table = dedup_table.set_column(
        dedup_table.schema.get_field_index("published_split"), "published_split", published_split
    )
    write_parquet(dedup_table, tmp_path / "dedup.parquet")
    gone_keys = band_keys(
        pl.Series([text]), dedup.shingle_words, dedup.bands, dedup.rows_per_band, dedup.seed
    )
    _publish_index(
        tmp_path / "releases",
        [
            {
                "id": "txt-gone",
                "split": "test",
                "member_keys": ["text:gone"],
                "band_keys": gone_keys[0].tolist(),
            },
            {"id": kept_id, "split": "validation", "member_keys": [f"arxiv:{kept_id}"], "band_keys": None},
        ],
    )
    report = run_split(
        tmp_path / "dedup.parquet",
        tmp_path / "clean.parquet",
        tmp_path / "data",
        tmp_path / "split.json",
        params,
        dedup,
        tmp_path / "releases",
    )
    released = pl.read_parquet(tmp_path / "data" / "*.parquet", include_file_paths="path")
    split_of = {
        row_id: path.rsplit("/", 1)[1].split("-")[0] for row_id, path in released.select("id", "path").rows()
    }
    # The published row keeps its split, whatever its id hashes to.
    assert split_of[kept_id] == "validation"
    # The near copy of the gone test row goes to test; the unrelated new row stays in train.
    assert split_of[new_id] == "test" and split_of[other_id] == "train"
    assert report["pinned_to_published_split"] == [
        {"id": new_id, "split": "test", "published_id": "txt-gone"}
    ]
    assert report["cross_release_leaks"] == 0 and report["leaked_pairs"] == []
    assert report["published_rows_kept"] == 1
    assert all(bound["within"] for bound in report["size_bounds"].values())


def test_size_bounds_follow_the_binomial_bound() -> None:
    from pipeline.stages.split.core import size_bounds

    bounds = size_bounds({"train": 780, "validation": 100, "test": 120}, SplitParams())
    # n = 1000: train 800 +- 4*sqrt(160) + 1 = 51.6; test 100 +- 4*sqrt(90) + 1 = 38.9.
    assert bounds["train"] == {"count": 780, "expected": 800.0, "allowed_deviation": 51.596, "within": True}
    assert bounds["test"]["within"] and bounds["test"]["allowed_deviation"] == 38.947
    assert not size_bounds({"train": 700, "validation": 150, "test": 150}, SplitParams())["train"]["within"]


def test_validate_finds_from_the_memberships_the_leak_split_prevented(tmp_path: Path) -> None:
    """The same memberships, read by validate (not through split's report): the new near copy
    that split pinned to test is not a train row, so no leak; had split left it in train,
    validate names it and the published row."""
    from pipeline.stages.validate.core import (
        cross_release_candidates,
        published_twins,
        read_published,
        release_ids,
    )

    text = (
        "We study how agents trained with reinforcement learning generalise to unseen mazes and "
        "show that a curriculum over maze sizes, together with a memory of visited cells, lets "
        "them solve mazes four times larger than those seen during training in most cases."
    )
    params, dedup = SplitParams(), DedupParams()
    candidates = [f"txt-{i:016x}" for i in range(200, 300)]
    train_ids = [i for i, s in zip(candidates, assign_split(candidates, params), strict=True) if s == "train"]
    new_id, other_id = train_ids[:2]
    near = text.replace("most cases", "almost all cases")
    write_build(tmp_path, [new_id, other_id], [near, "An unrelated abstract about compilers."])
    gone_keys = band_keys(
        pl.Series([text]), dedup.shingle_words, dedup.bands, dedup.rows_per_band, dedup.seed
    )
    _publish_index(
        tmp_path / "releases",
        [
            {
                "id": "txt-gone",
                "split": "validation",
                "member_keys": ["text:gone"],
                "band_keys": gone_keys[0].tolist(),
            }
        ],
    )
    report = run_split(
        tmp_path / "dedup.parquet",
        tmp_path / "clean.parquet",
        tmp_path / "data",
        tmp_path / "split.json",
        params,
        dedup,
        tmp_path / "releases",
    )
    assert report["pinned_to_published_split"] == [
        {"id": new_id, "split": "validation", "published_id": "txt-gone"}
    ]

    def twins(data: Path) -> list[tuple[str, str]]:
        evaluation, published = read_published(tmp_path / "releases")
        found = cross_release_candidates(release_ids(data), tmp_path / "dedup.parquet", evaluation, published)
        texts = pl.read_parquet(data / "*.parquet").select("id", "abstract").to_arrow()
        return list(published_twins(found, texts, dedup).iter_rows())

    assert twins(tmp_path / "data") == []
    # Split's pin undone: the near copy back in train.
    unpinned = tmp_path / "unpinned"
    unpinned.mkdir()
    rows = pl.read_parquet(tmp_path / "data" / "*.parquet")
    write_parquet(rows.to_arrow(), unpinned / "train-00000-of-00001.parquet")
    assert twins(unpinned) == [
        (new_id, "txt-gone (validation in v1.0.0, not in this release; a band key is shared)")
    ]
