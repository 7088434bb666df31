"""Stage `release_diff`: what this build changes against the newest published release.

Reads: the release data directory and `releases/`, where `abstracts publish` keeps one record
per published version (`<version>.json`) and that version's row index
(`<version>.rows.parquet`: per row its `id`, `split`, the release columns other than the
abstract, a fingerprint of the abstract and its length in characters). Writes:
`release_diff.json` with the previous version, the version the Croissant bump rules propose,
counts per kind (added / removed / changed / moved) and a few example ids of each. Params:
`release_diff` (examples per kind) and `card.version` (compared with the proposal).

The same diff and version rules serve `abstracts publish`, which diffs against the Hub's
previous tag; this stage diffs against the local record of it, so that a maintainer sees the
proposed version and the changes before publishing, without network access.

The abstract fingerprint is a blake2b digest, not a polars hash, because an index must still
compare equal after a polars upgrade.
"""

from __future__ import annotations

import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import BadInputError
from pipeline.fingerprint import blake2b_64
from pipeline.outputs import write_json, write_parquet
from pipeline.params import CardParams, ReleaseDiffParams

Version = tuple[int, int, int]
DIFF_KINDS = ("added", "removed", "changed", "moved")
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_SHARD = re.compile(r"([a-z]+)-\d+-of-\d+\.parquet")
# Release columns other than `id` and `abstract`: small, so the index keeps them as they are.
META_COLUMNS = ("arxiv_id", "arxiv_version", "source", "duplicate_count")
ROW_INDEX_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("arxiv_id", pa.string()),
        ("arxiv_version", pa.int64()),
        ("source", pa.string()),
        ("duplicate_count", pa.int64()),
        ("abstract_hash", pa.uint64()),
        ("chars", pa.int32()),
    ]
)
INDEX_SUFFIX = ".rows.parquet"


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


def parse_version(text: str) -> Version:
    """`1.2.3` or `v1.2.3` as a tuple.

    Raises:
        BadInputError: `text` is not MAJOR.MINOR.PATCH.
    """
    match = _VERSION.match(text.strip())
    if match is None:
        raise BadInputError(f"version {text!r} is not a semantic version; use MAJOR.MINOR.PATCH, e.g. 1.2.0")
    major, minor, patch = (int(g) for g in match.groups())
    return (major, minor, patch)


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def tag_name(version: Version) -> str:
    return f"v{format_version(version)}"


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
    """The next version by the Croissant 1.1 rules.

    Patch: the same records; minor: records only added; major: any record removed, changed or
    moved to another split. The first release is 1.0.0.
    """
    if previous is None:
        return (1, 0, 0)
    major, minor, patch = previous
    if diff.removed or diff.changed or diff.moved:
        return (major + 1, 0, 0)
    if diff.added:
        return (major, minor + 1, 0)
    return (major, minor, patch + 1)


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
        if (match := _SHARD.fullmatch(path.name)) is not None
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
            *(batch.column(name) for name in META_COLUMNS),
            fingerprints(abstracts),
            _chars(abstracts) if chars is None else chars,
        ],
        schema=ROW_INDEX_SCHEMA,
    )


def _chars(abstracts: pa.Array) -> pa.Array:
    return pc.utf8_length(abstracts).cast(pa.int32())


def _read_row_group(path: Path, group: int, batch_rows: int) -> list[tuple[pa.RecordBatch, pa.Array]]:
    """A row group's index columns in batches, each with its abstracts' lengths."""
    columns = ["id", "abstract", *META_COLUMNS]
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
        match = _VERSION.match(path.stem)
        if match is not None:
            found.append(((int(match[1]), int(match[2]), int(match[3])), path))
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
    index = record.with_name(format_version(version) + INDEX_SUFFIX)
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


# -- stage ------------------------------------------------------------------------------------


def describe(old: pl.DataFrame, new: pl.DataFrame, diff: ReleaseDiff, limit: int) -> dict[str, list[str]]:
    """Examples per kind; `changed` and `moved` say what changed about the row."""
    examples = diff.examples(limit)
    shown = set(examples["changed"]) | set(examples["moved"])
    if not shown:
        return examples
    pairs = old.filter(pl.col("id").is_in(shown)).join(
        new.filter(pl.col("id").is_in(shown)), on="id", suffix="__new"
    )
    by_id = {row["id"]: row for row in pairs.iter_rows(named=True)}

    def changed(row_id: str) -> str:
        row = by_id[row_id]
        columns = [
            "abstract" if column == "abstract_hash" else column
            for column in ("abstract_hash", *META_COLUMNS)
            if f"{column}__new" in row and row[column] != row[f"{column}__new"]
        ]
        return f"{row_id} ({', '.join(columns) or 'columns'} changed)"

    examples["changed"] = [changed(i) for i in examples["changed"]]
    examples["moved"] = [f"{i} ({by_id[i]['split']} -> {by_id[i]['split__new']})" for i in examples["moved"]]
    return examples


def run_release_diff(
    release_data: Path, releases: Path, out: Path, params: ReleaseDiffParams, card: CardParams
) -> dict[str, Any]:
    """Diff the release against the newest published row index; write and return the report.

    Raises:
        BadInputError: no release shards, or a published record without its row index.
    """
    new = pl.from_arrow(row_index(release_data))
    assert isinstance(new, pl.DataFrame)
    latest = latest_index(releases)
    previous = None if latest is None else tag_name(latest[0])
    old = new.clear() if latest is None else read_index(latest[1])
    diff = diff_releases(old, new, previous)
    proposed = format_version(propose_version(None if latest is None else latest[0], diff))
    notes = []
    if card.version != proposed:
        notes.append(
            f"params.yaml card.version is {card.version} but this release would be {proposed}: "
            f"set card.version: {proposed} and run `dvc repro` before publishing"
        )
    report = {
        "previous": previous,
        "proposed_version": proposed,
        "card_version": card.version,
        "rows": new.height,
        "counts": diff.counts(),
        "diff": {
            kind: {"count": count, "examples": examples}
            for (kind, count), examples in zip(
                diff.counts().items(), describe(old, new, diff, params.examples).values(), strict=True
            )
        },
        "notes": notes,
    }
    write_json(report, out)
    return report
