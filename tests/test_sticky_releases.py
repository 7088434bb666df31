"""Ids and splits never move once published: three builds over the seeds, each published in
turn (`write_row_index` with the membership, as `abstracts publish` writes it).

1. the seeds;
2. the seeds and a new dump whose records near-duplicate published rows of every split (longer
   copies, so they win their clusters' abstracts) and a few new papers;
3. the seeds and a dump with one record that links two published rows of different splits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO_ROOT

from pipeline.kernels.minhash import ShingleSets
from pipeline.params import load_params
from pipeline.releases import diff_releases, read_index, row_index, write_row_index
from pipeline.stages.clean.core import run_clean
from pipeline.stages.dedup.core import run_dedup
from pipeline.stages.ingest.core import run_ingest
from pipeline.stages.release_diff.core import run_release_diff
from pipeline.stages.split.core import run_split

PARAMS = load_params(REPO_ROOT / "params.yaml")
SUFFIX = " We release our code, the trained models and the evaluation data to support future work."


def build(root: Path, dumps: dict[str, list[dict[str, str]]], releases: Path) -> dict[str, dict]:
    """The seeds plus `dumps` (file name -> JSON lines records) through ingest .. release_diff."""
    raw = root / "raw"
    shutil.copytree(REPO_ROOT / "raw", raw)
    for name, records in dumps.items():
        (raw / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    b, r = root / "build", root / "reports"
    run_ingest(raw, b / "ingested.parquet", r / "rejects.jsonl", r / "ingest.json", PARAMS.ingest)
    run_clean(b / "ingested.parquet", b / "clean.parquet", r / "clean.json", PARAMS.clean)
    dedup = run_dedup(
        b / "clean.parquet",
        b / "dedup.parquet",
        b / "minhash.parquet",
        r / "duplicates.parquet",
        r / "dedup.json",
        PARAMS.dedup,
        releases,
    )
    split = run_split(
        b / "dedup.parquet",
        b / "clean.parquet",
        root / "data",
        r / "split.json",
        PARAMS.split,
        PARAMS.dedup,
        releases,
    )
    diff = run_release_diff(
        root / "data",
        releases,
        r / "release_diff.json",
        PARAMS.release_diff,
        b / "dedup.parquet",
    )
    return {"dedup": dedup, "split": split, "diff": diff}


def publish(root: Path, releases: Path, version: str) -> pl.DataFrame:
    """What `abstracts publish` leaves in releases/: the row index with membership and the record."""
    releases.mkdir(parents=True, exist_ok=True)
    write_row_index(root / "data", releases / f"{version}.rows.parquet", root / "build" / "dedup.parquet")
    diff = json.loads((root / "reports" / "release_diff.json").read_text())["counts"]
    (releases / f"{version}.json").write_text(json.dumps({"version": version, "diff": diff}))
    return read_index(releases / f"{version}.rows.parquet")


def release_rows(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "data" / "*.parquet", include_file_paths="path").with_columns(
        pl.col("path").str.extract(r"/(train|validation|test)-\d+-of-\d+\.parquet$").alias("split")
    )


def near_pairs(new: list[str], old: list[str]) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of every pair of `new` x `old` texts at or above dedup's threshold."""
    texts = new + old
    sets = ShingleSets.of_texts(texts, list(range(len(texts))), PARAMS.dedup.shingle_words)
    pairs = [(i, len(new) + j) for i in range(len(new)) for j in range(len(old))]
    if not pairs:
        return []
    similarity = sets.similarity(pairs)
    return [
        (i, j - len(new), float(s))
        for (i, j), s in zip(pairs, similarity.tolist(), strict=True)
        if s >= PARAMS.dedup.near_threshold
    ]


NEW_PAPERS = [
    "We introduce a benchmark of household robot manipulation tasks recorded in forty real kitchens, "
    "with language instructions, depth video and force readings for every episode, and we evaluate "
    "imitation learning policies that transfer across kitchens with little additional data.",
    "This paper studies the calibration of probabilistic weather forecasts produced by graph neural "
    "networks trained on reanalysis data, and proposes an ensemble recalibration that improves the "
    "continuous ranked probability score at every lead time we consider.",
    "We present a compiler pass that fuses attention kernels for sparse transformer layers on mobile "
    "GPUs, reducing memory traffic by half and latency by a third on three phone models without any "
    "change to the accuracy of the compiled networks.",
]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("sticky")
    releases = root / "releases"
    first = build(root / "b1", {}, releases)
    v1 = publish(root / "b1", releases, "1.0.0")
    rows1 = release_rows(root / "b1")

    # Two long rows of every split, each re-published by a new source with one more sentence.
    chosen = (
        rows1.filter(pl.col("abstract").str.len_chars() > 600)
        .sort("id")
        .group_by("split", maintain_order=True)
        .head(2)
    )
    near = [{"id": "", "abstract": text + SUFFIX} for text in chosen["abstract"].to_list()]
    second = build(
        root / "b2", {"venue_dump.jsonl": near + [{"id": "", "abstract": t} for t in NEW_PAPERS]}, releases
    )
    v2 = publish(root / "b2", releases, "1.1.0")

    # One record linking a published train row with an arXiv id to a published test row: the
    # train row's arXiv id and the test row's text.
    train = (
        v2.filter((pl.col("split") == "train") & pl.col("arxiv_id").is_not_null())
        .sort("id")
        .row(0, named=True)
    )
    test_row = release_rows(root / "b2").filter(pl.col("split") == "test").sort("id").row(0, named=True)
    link = [{"id": train["arxiv_id"], "abstract": test_row["abstract"]}]
    third = build(root / "b3", {"link_dump.jsonl": link}, releases)
    return {
        "root": root,
        "v1": v1,
        "v2": v2,
        "chosen": chosen,
        "first": first,
        "second": second,
        "third": third,
        "train": train,
        "test": test_row,
    }


def test_published_rows_keep_id_and_split_when_near_duplicates_win(builds: dict) -> None:
    root, v1, chosen = builds["root"], builds["v1"], builds["chosen"]
    assert set(chosen["split"]) == {"train", "validation", "test"}
    rows2 = release_rows(root / "b2")
    v1_splits = dict(zip(v1["id"], v1["split"], strict=True))
    # Every published id is still there, in its split.
    assert set(v1_splits) <= set(rows2["id"])
    moved = rows2.filter(pl.col("id").is_in(list(v1_splits))).filter(
        pl.col("split") != pl.col("id").replace_strict(v1_splits)
    )
    assert moved.height == 0
    # The longer copies won their clusters' abstracts, under the published ids.
    for row in chosen.iter_rows(named=True):
        kept = rows2.filter(pl.col("id") == row["id"]).row(0, named=True)
        assert kept["abstract"] == row["abstract"] + SUFFIX
        assert kept["split"] == row["split"]
        assert kept["source"].startswith("venue_dump.jsonl:")
        assert sorted(kept["sources"]) == sorted({*row["sources"], "venue_dump.jsonl"})
    second = builds["second"]
    assert second["dedup"]["published"]["kept"] == v1.height
    assert second["dedup"]["published"]["merged"] == [] and second["dedup"]["published"]["not_found"] == 0
    assert second["diff"]["counts"]["added"] == len(NEW_PAPERS)
    assert second["diff"]["counts"]["removed"] == second["diff"]["counts"]["merged"] == 0
    assert second["diff"]["counts"]["moved"] == 0
    assert second["split"]["cross_release_leaks"] == 0


def test_no_new_train_row_near_duplicates_a_published_evaluation_row(builds: dict) -> None:
    root, v1 = builds["root"], builds["v1"]
    rows1, rows2 = release_rows(root / "b1"), release_rows(root / "b2")
    published = set(v1["id"])
    new_train = rows2.filter(~pl.col("id").is_in(list(published)) & (pl.col("split") == "train"))
    evaluation = rows1.filter(pl.col("split") != "train")
    assert near_pairs(new_train["abstract"].to_list(), evaluation["abstract"].to_list()) == []
    # The near copies themselves were folded: none is a new row.
    assert not rows2.filter(
        pl.col("abstract").str.ends_with(SUFFIX) & ~pl.col("id").is_in(list(published))
    ).height


def test_a_dump_linking_two_published_rows_merges_them_into_the_test_row(builds: dict) -> None:
    root, v2, third = builds["root"], builds["v2"], builds["third"]
    train, test_row = builds["train"], builds["test"]
    rows3 = release_rows(root / "b3")
    assert third["dedup"]["published"]["merged"] == [{"id": train["id"], "into": test_row["id"]}]
    assert train["id"] not in set(rows3["id"])
    kept = rows3.filter(pl.col("id") == test_row["id"]).row(0, named=True)
    assert kept["split"] == "test"
    assert kept["arxiv_id"] == train["arxiv_id"]
    # The diff reports the merge as its own kind, with both ids.
    diff = third["diff"]
    assert diff["counts"]["merged"] == 1
    assert diff["diff"]["merged"]["examples"] == [f"{train['id']} (merged into {test_row['id']})"]
    removals = {row["id"]: row for row in diff["removals"]}
    assert removals[train["id"]] == {"id": train["id"], "reason": "merged", "into": test_row["id"]}
    # No published id vanishes without a diff entry, and none moves split.
    v2_splits = dict(zip(v2["id"], v2["split"], strict=True))
    assert set(v2_splits) - set(rows3["id"]) == set(removals)
    assert all(row["reason"] != "merged" or row["id"] == train["id"] for row in diff["removals"])
    still = rows3.filter(pl.col("id").is_in(list(v2_splits)))
    assert still.filter(pl.col("split") != pl.col("id").replace_strict(v2_splits)).height == 0
    assert diff["counts"]["moved"] == 0
    # The second dump is gone from raw/: its new papers are removed, by id and reason.
    assert diff["counts"]["removed"] == len(NEW_PAPERS)
    assert all(
        row["reason"].startswith("not in this build") for row in diff["removals"] if row["into"] is None
    )
    # A merge is breaking.
    assert diff["proposed_version"] == "2.0.0"


def test_the_row_index_holds_the_membership(builds: dict) -> None:
    v1 = builds["v1"]
    assert v1.filter(pl.col("member_keys").list.len() == 0).height == 0
    # Every row's own key: its arXiv id, or its text hash for a text id.
    for row in v1.iter_rows(named=True):
        own = f"arxiv:{row['arxiv_id']}" if row["arxiv_id"] else f"text:{row['id'][4:]}"
        assert own in row["member_keys"]
    # Band keys for evaluation rows only.
    assert v1.filter((pl.col("split") == "train") & pl.col("band_keys").is_not_null()).height == 0
    evaluation = v1.filter(pl.col("split") != "train")
    assert evaluation.filter(pl.col("band_keys").list.len() != PARAMS.dedup.bands).height == 0
    # The index diffs against itself as unchanged.
    same = diff_releases(
        v1,
        pl.from_arrow(
            row_index(
                builds["root"] / "b1" / "data", deduped=builds["root"] / "b1" / "build" / "dedup.parquet"
            )
        ),
    )  # type: ignore[arg-type]
    assert same.counts() == {"added": 0, "removed": 0, "merged": 0, "changed": 0, "moved": 0}
