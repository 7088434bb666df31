"""Published releases: their row indexes under `releases/`, the diff between two releases and
the version it calls for.

`abstracts publish` keeps one record per published version in `releases/` (`<version>.json`)
and that version's row index (`<version>.rows.parquet`: per row its `id`, `split`, the release
columns other than the abstract, a fingerprint of the abstract and its length in characters).
The `release_diff` stage, the card's changelog, the review page and `abstracts publish` read
them through this module.

The abstract fingerprint is a blake2b digest, not a polars hash, because an index must still
compare equal after a polars upgrade.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import (
    DIFF_KINDS,
    ROW_INDEX_META_COLUMNS,
    ROW_INDEX_SCHEMA,
    ROW_INDEX_SUFFIX,
    SHARD_NAME,
)
from pipeline.errors import BadInputError
from pipeline.io.writers import write_parquet
from pipeline.kernels.fingerprint import blake2b_64
from pipeline.versions import Version, format_version, next_version, release_version, sort_key, tag_name


@dataclass(frozen=True)
class ReleaseDiff:
    """Row-by-row difference between two releases, keyed by `id` (sorted id lists)."""

    previous: str | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in DIFF_KINDS}

    def summary(self) -> str:
        counts = self.counts()
        against = f"against {self.previous}" if self.previous else "first release"
        return (
            f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed, "
            f"{counts['moved']} moved split ({against})"
        )

    def examples(self, limit: int) -> dict[str, list[str]]:
        return {kind: getattr(self, kind)[:limit] for kind in DIFF_KINDS}


def diff_releases(old: pl.DataFrame, new: pl.DataFrame, previous: str | None = None) -> ReleaseDiff:
    """Compare two releases (release columns, or row indexes, plus `split`) keyed by `id`.

    A row is `added`/`removed` when its id is only in one release, `changed` when any other
    column differs, and `moved` when its split differs (a row can be both changed and moved).
    Joins, not Python sets: releases have millions of rows.
    """
    content = [c for c in new.columns if c not in ("id", "split") and c in old.columns]
    both = old.join(new, on="id", how="inner", suffix="__new")
    # A column added or dropped changes every record that both releases share.
    changed_mask = pl.lit(set(old.columns) != set(new.columns))
    for column in content:
        changed_mask = changed_mask | pl.col(column).ne_missing(pl.col(f"{column}__new"))

    def ids(frame: pl.DataFrame) -> list[str]:
        return frame["id"].sort().to_list()

    return ReleaseDiff(
        previous=previous,
        added=ids(new.join(old, on="id", how="anti")),
        removed=ids(old.join(new, on="id", how="anti")),
        changed=ids(both.filter(changed_mask)),
        moved=ids(both.filter(pl.col("split") != pl.col("split__new"))),
    )


def propose_version(previous: Version | None, diff: ReleaseDiff) -> Version:
    """The next version after `previous` for the changes in `diff` (see `versions.next_version`)."""
    return next_version(
        previous, breaking=bool(diff.removed or diff.changed or diff.moved), additive=bool(diff.added)
    )


# -- row index --------------------------------------------------------------------------------


def fingerprints(strings: pa.Array) -> pa.Array:
    """blake2b-64 of each string's UTF-8 bytes, as unsigned integers."""
    return pa.array(blake2b_64(strings), pa.uint64())


def release_shards(release_data: Path) -> list[tuple[str, Path]]:
    """(split, shard path) of every release shard, in name order.

    Raises:
        BadInputError: the directory holds no shard.
    """
    shards = [
        (match.group(1), path)
        for path in sorted(release_data.glob("*.parquet"))
        if (match := SHARD_NAME.fullmatch(path.name)) is not None
    ]
    if not shards:
        raise BadInputError(
            f"{release_data}: no release shards (`<split>-NNNNN-of-NNNNN.parquet`); run `dvc repro`"
        )
    return shards


def index_batch(batch: pa.RecordBatch, split: str, chars: pa.Array | None = None) -> pa.RecordBatch:
    """The row-index rows of one batch of release rows (a pure function of the batch);
    `chars` is the abstracts' lengths when the caller already has them."""
    abstracts = batch.column("abstract")
    return pa.RecordBatch.from_arrays(
        [
            batch.column("id"),
            pa.array([split] * batch.num_rows, pa.string()),
            *(batch.column(name) for name in ROW_INDEX_META_COLUMNS),
            fingerprints(abstracts),
            _chars(abstracts) if chars is None else chars,
        ],
        schema=ROW_INDEX_SCHEMA,
    )


def _chars(abstracts: pa.Array) -> pa.Array:
    return pc.utf8_length(abstracts).cast(pa.int32())


def _read_row_group(path: Path, group: int, batch_rows: int) -> list[tuple[pa.RecordBatch, pa.Array]]:
    """A row group's index columns in batches, each with its abstracts' lengths."""
    columns = ["id", "abstract", *ROW_INDEX_META_COLUMNS]
    batches = pq.ParquetFile(path).iter_batches(
        batch_size=batch_rows, row_groups=[group], columns=columns, use_threads=False
    )
    return [(batch, _chars(batch.column("abstract"))) for batch in batches]


def _id_order(paths: list[Path]) -> pa.Array:
    """The `sort_by("id")` order of the release's rows (read in release order): the indices that
    `Table.sort_by` computes, from the ids alone."""
    kind = ROW_INDEX_SCHEMA.field("id").type
    # Cast as `index_batch` casts each batch's ids to the index schema.
    columns = [pq.read_table(path, columns=["id"]).column("id").cast(kind) for path in paths]
    ids = pa.chunked_array([chunk for column in columns for chunk in column.chunks], type=kind)
    return pc.sort_indices(pa.table({"id": ids}), sort_keys=[("id", "ascending")])


def row_index(release_data: Path, batch_rows: int = 100_000) -> pa.Table:
    """The row index of a release directory, shard by shard (never the whole text at once).

    This thread hashes while two others decode the next row groups and sort the ids (pyarrow
    releases the GIL). At most three row groups of text, in batches of `batch_rows`, wait.
    """
    shards = release_shards(release_data)
    groups = [
        (split, path, group)
        for split, path in shards
        for group in range(pq.ParquetFile(path).metadata.num_row_groups)
    ]
    batches: list[pa.RecordBatch] = []
    pending: deque[tuple[str, Future[list[tuple[pa.RecordBatch, pa.Array]]]]] = deque()
    with ThreadPoolExecutor(max_workers=2) as pool:
        order = pool.submit(_id_order, [path for _, path in shards])
        for number, (split, path, group) in enumerate(groups):
            pending.append((split, pool.submit(_read_row_group, path, group, batch_rows)))
            while pending and (len(pending) > 2 or number == len(groups) - 1):
                read_split, future = pending.popleft()
                batches.extend(index_batch(batch, read_split, chars) for batch, chars in future.result())
        table = pa.Table.from_batches(batches, schema=ROW_INDEX_SCHEMA)
        return table.take(order.result())


def write_row_index(release_data: Path, target: Path) -> None:
    write_parquet(row_index(release_data), target)


def published_versions(releases: Path) -> list[tuple[Version, Path]]:
    """(version, record path) of every `releases/<version>.json`, oldest first."""
    if not releases.is_dir():
        return []
    found = []
    for path in releases.glob("*.json"):
        version = release_version(path.stem)
        if version is not None:
            found.append((version, path))
    return sorted(found)


def latest_index(releases: Path) -> tuple[Version, Path] | None:
    """The newest published version and its row index path, or None before the first release.

    Raises:
        BadInputError: the newest record has no row index beside it.
    """
    versions = published_versions(releases)
    if not versions:
        return None
    version, record = versions[-1]
    index = record.with_name(format_version(version) + ROW_INDEX_SUFFIX)
    if not index.is_file():
        raise BadInputError(
            f"{record}: published release {tag_name(version)} has no row index {index.name} beside it; "
            f"restore it from the commit that published {tag_name(version)} (publish writes both)"
        )
    return version, index


def read_index(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BadInputError(f"{path}: cannot read the row index ({exc})") from None


# -- changelog records ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChangelogEntry:
    """One published (or about-to-be-published) release, as recorded in `releases/<version>.json`."""

    version: str
    added: int
    removed: int
    changed: int
    moved: int


def parse_changelog_entry(record: Mapping[str, Any], origin: str) -> ChangelogEntry:
    """A `ChangelogEntry` from a release record (`{"version": ..., "diff": {...}}`).

    Raises:
        BadInputError: a key is missing or has the wrong type; `origin` names the record.
    """
    version = record.get("version")
    diff = record.get("diff")
    if not isinstance(version, str):
        raise BadInputError(f"{origin}: 'version' must be a string like \"1.0.0\"")
    sort_key(version)
    if not isinstance(diff, Mapping):
        raise BadInputError(f"{origin}: 'diff' must be a mapping of {', '.join(DIFF_KINDS)}")
    counts = {}
    for key in DIFF_KINDS:
        value = diff.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadInputError(f"{origin}: diff.{key} must be a non-negative integer, got {value!r}")
        counts[key] = value
    return ChangelogEntry(version=version, **counts)


def load_changelog(releases: Path | None) -> list[ChangelogEntry]:
    """Every `releases/*.json` record; a missing directory means nothing was published yet.

    Raises:
        BadInputError: a record cannot be read or lacks a required key.
    """
    if releases is None or not releases.is_dir():
        return []
    entries = []
    for path in sorted(releases.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise BadInputError(f"{path}: cannot read release record ({exc})") from None
        if not isinstance(record, dict):
            raise BadInputError(f"{path}: a release record must be a JSON object")
        entries.append(parse_changelog_entry(record, str(path)))
    return entries
