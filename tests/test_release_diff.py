"""Stage `release_diff`: row indexes of published releases, the diff and the proposed version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT

from pipeline.cli import main
from pipeline.contracts import FILTERED_SCHEMA
from pipeline.errors import BadInputError
from pipeline.params import ReleaseDiffParams
from pipeline.releases import REMOVED_REASON, row_index, write_row_index
from pipeline.stages.release_diff.core import run_release_diff


def _release_rows(data: Path) -> dict[str, pl.DataFrame]:
    return {path.name: pl.read_parquet(path) for path in sorted(data.glob("*.parquet"))}


def _write_release(data: Path, shards: dict[str, pl.DataFrame]) -> None:
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    for name, frame in shards.items():
        frame.write_parquet(data / name)


def _publish_locally(release_data: Path, releases: Path, version: str) -> None:
    """What `abstracts publish` leaves in releases/ for the stage: the record and the index."""
    releases.mkdir(parents=True, exist_ok=True)
    write_row_index(release_data, releases / f"{version}.rows.parquet")
    (releases / f"{version}.json").write_text(json.dumps({"version": version}))


@pytest.fixture
def release(seed_build: Path, tmp_path: Path) -> Path:
    data = tmp_path / "release" / "data"
    shutil.copytree(seed_build / "release" / "data", data)
    return data


def test_row_index_has_every_row_with_its_split_and_lengths(release: Path) -> None:
    index = pl.from_arrow(row_index(release))
    assert isinstance(index, pl.DataFrame)
    rows = pl.concat(
        [
            frame.with_columns(pl.lit(name.split("-")[0]).alias("split"))
            for name, frame in _release_rows(release).items()
        ]
    ).sort("id")
    assert index["id"].to_list() == rows["id"].to_list() == sorted(rows["id"].to_list())
    assert index["split"].to_list() == rows["split"].to_list()
    assert index["chars"].to_list() == rows["abstract"].str.len_chars().to_list()
    assert index.select("arxiv_id", "arxiv_version", "source", "duplicate_count").equals(
        rows.select("arxiv_id", "arxiv_version", "source", "duplicate_count")
    )
    assert index["abstract_hash"].n_unique() == index.height


def test_diff_against_the_published_index_classifies_every_change(release: Path, tmp_path: Path) -> None:
    releases, out = tmp_path / "releases", tmp_path / "release_diff.json"
    _publish_locally(release, releases, "1.0.0")
    shards = _release_rows(release)
    train, test = "train-00000-of-00001.parquet", "test-00000-of-00001.parquet"
    removed, changed, retitled, moved = shards[train]["id"].to_list()[:4]
    moved_row = shards[train].filter(pl.col("id") == moved)
    shards[train] = (
        shards[train]
        .filter(~pl.col("id").is_in([removed, moved]))
        .with_columns(
            pl.when(pl.col("id") == changed)
            .then(pl.col("abstract") + " Extended.")
            .otherwise(pl.col("abstract"))
            .alias("abstract"),
            pl.when(pl.col("id") == retitled)
            .then(pl.lit("other.txt:1"))
            .otherwise(pl.col("source"))
            .alias("source"),
        )
    )
    added = moved_row.with_columns(pl.lit("2999.00001").alias("id"), pl.lit("A new paper.").alias("abstract"))
    shards[test] = pl.concat([shards[test], moved_row, added])
    _write_release(release, shards)

    report = run_release_diff(release, releases, out, ReleaseDiffParams(examples=5))
    assert report == json.loads(out.read_text())
    assert report["previous"] == "v1.0.0"
    assert report["counts"] == {"added": 1, "removed": 1, "merged": 0, "changed": 2, "moved": 1}
    assert report["proposed_version"] == "2.0.0" and report["notes"] == []
    diff = report["diff"]
    assert diff["added"]["examples"] == ["2999.00001"] and diff["removed"]["examples"] == [removed]
    assert sorted(diff["changed"]["examples"]) == sorted(
        [f"{changed} (abstract changed)", f"{retitled} (source changed)"]
    )
    assert diff["moved"]["examples"] == [f"{moved} (train -> test)"]


def test_a_removed_row_the_filter_dropped_says_which_rule(release: Path, tmp_path: Path) -> None:
    releases, out = tmp_path / "releases", tmp_path / "release_diff.json"
    _publish_locally(release, releases, "1.0.0")
    shards = _release_rows(release)
    train = "train-00000-of-00001.parquet"
    with_arxiv = shards[train].filter(pl.col("arxiv_id").is_not_null())["id"].to_list()
    dropped, gone = with_arxiv[:2]
    shards[train] = shards[train].filter(~pl.col("id").is_in([dropped, gone]))
    _write_release(release, shards)
    filtered = tmp_path / "filtered.parquet"
    row = {"source": "a.txt:9", "id": dropped, "arxiv_id": dropped, "reason": "placeholder"}
    row |= {
        "reasons": ["placeholder"],
        "detail": "withdrawal notice",
        "abstract": "This paper has been withdrawn.",
    }
    pq.write_table(pa.Table.from_pylist([row], schema=FILTERED_SCHEMA), filtered)
    report = run_release_diff(release, releases, out, ReleaseDiffParams(), None, filtered)
    assert report["removals"] == sorted(
        [
            {"id": dropped, "reason": "filtered: placeholder (withdrawal notice)", "into": None},
            {"id": gone, "reason": REMOVED_REASON, "into": None},
        ],
        key=lambda r: str(r["id"]),
    )


def test_versions_follow_the_croissant_rules(release: Path, tmp_path: Path) -> None:
    releases, out = tmp_path / "releases", tmp_path / "release_diff.json"
    first = run_release_diff(release, releases, out, ReleaseDiffParams())
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in release.glob("*.parquet"))
    assert first["previous"] is None and first["proposed_version"] == "1.0.0"
    assert first["counts"]["added"] == rows == first["rows"]
    assert len(first["diff"]["added"]["examples"]) == 20
    assert first["notes"] == []

    _publish_locally(release, releases, "1.0.0")
    same = run_release_diff(release, releases, out, ReleaseDiffParams())
    assert same["counts"] == {"added": 0, "removed": 0, "merged": 0, "changed": 0, "moved": 0}
    assert same["proposed_version"] == "1.0.1"

    # Older records do not matter: the diff is against the newest published version.
    _publish_locally(release, releases, "1.2.0")
    shards = _release_rows(release)
    name = next(iter(shards))
    shards[name] = pl.concat(
        [shards[name], shards[name].head(1).with_columns(pl.lit("2999.00002").alias("id"))]
    )
    _write_release(release, shards)
    grown = run_release_diff(release, releases, out, ReleaseDiffParams())
    assert grown["previous"] == "v1.2.0" and grown["proposed_version"] == "1.3.0"
    assert grown["counts"]["added"] == 1


def test_a_record_without_its_index_is_one_clear_error(
    release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    releases = tmp_path / "releases"
    releases.mkdir()
    (releases / "1.0.0.json").write_text("{}")
    out = tmp_path / "reports" / "release_diff.json"
    code = main(
        [
            "--params",
            str(REPO_ROOT / "params.yaml"),
            "release-diff",
            "--release-data",
            str(release),
            "--releases",
            str(releases),
            "--out",
            str(out),
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "1.0.0.json: published release v1.0.0 has no row index 1.0.0.rows.parquet beside it" in err
    assert "Traceback" not in err and not out.exists()
    with pytest.raises(BadInputError, match=r"no release shards"):
        run_release_diff(tmp_path / "none", releases, out, ReleaseDiffParams())
