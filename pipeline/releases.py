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

import hashlib
import json
import re
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import (
    DIFF_KINDS,
    ROW_INDEX_HASHED_COLUMNS,
    ROW_INDEX_MEMBERSHIP_COLUMNS,
    ROW_INDEX_META_COLUMNS,
    ROW_INDEX_SCHEMA,
    ROW_INDEX_SUFFIX,
    SHARD_NAME,
    SOURCE_ID_KINDS,
    SPLITS,
)
from pipeline.errors import BadInputError
from pipeline.io.writers import sha256_file, write_parquet
from pipeline.kernels.fingerprint import blake2b_64
from pipeline.versions import Version, format_version, next_version, release_version, sort_key, tag_name


@dataclass(frozen=True)
class ReleaseDiff:
    """Row-by-row difference between two releases, keyed by `id` (sorted id lists).

    `merged` lists the published rows this release folds into another published row
    (`merged_into` names that row); `removed` every other published row that is gone.
    """

    previous: str | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    merged_into: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {kind: len(getattr(self, kind)) for kind in DIFF_KINDS}

    def summary(self) -> str:
        counts = self.counts()
        against = f"against {self.previous}" if self.previous else "first release"
        return (
            f"{counts['added']} added, {counts['removed']} removed, {counts['merged']} merged, "
            f"{counts['changed']} changed, {counts['moved']} moved split ({against})"
        )

    def examples(self, limit: int) -> dict[str, list[str]]:
        examples = {kind: getattr(self, kind)[:limit] for kind in DIFF_KINDS}
        examples["merged"] = [f"{i} (merged into {self.merged_into[i]})" for i in examples["merged"]]
        return examples

    def removals(self) -> list[dict[str, str | None]]:
        """Every published row that is gone, by id, with why and (when merged) the row it went into."""
        gone: list[dict[str, str | None]] = [
            {"id": i, "reason": REMOVED_REASON, "into": None} for i in self.removed
        ]
        gone += [{"id": i, "reason": "merged", "into": self.merged_into[i]} for i in self.merged]
        return sorted(gone, key=lambda row: str(row["id"]))


# Why a published row is gone when no row of the new release holds one of its member keys.
REMOVED_REASON = "not in this build (its records were filtered out or their source removed)"


def _merges(gone: pl.DataFrame, new: pl.DataFrame) -> dict[str, str]:
    """Each gone row whose member keys are now held by a row of `new`: gone id -> new id.

    A gone row whose keys went to several rows is merged into the smallest of their ids.
    """
    if not gone.height:
        return {}
    old_keys = _keys_of(gone).explode("member_keys").drop_nulls()
    new_keys = _keys_of(new).rename({"id": "into"}).explode("member_keys").drop_nulls()
    pairs = old_keys.join(new_keys, on="member_keys").group_by("id").agg(pl.col("into").min())
    return dict(zip(pairs["id"].to_list(), pairs["into"].to_list(), strict=True))


def _keys_of(frame: pl.DataFrame) -> pl.DataFrame:
    """id and member keys of each row: a row index's own, or those its release columns give."""
    if "member_keys" in frame.columns:
        return frame.select("id", "member_keys")

    def column(name: str) -> pl.Expr:
        return pl.col(name) if name in frame.columns else pl.lit(None, pl.String)

    source_ids = pl.col("source_ids") if "source_ids" in frame.columns else None
    text = pl.when(pl.col("id").str.starts_with("txt-")).then(pl.col("id").str.slice(4))
    return frame.select(
        "id", member_keys(column("arxiv_id"), column("doi"), source_ids, text).alias("member_keys")
    )


def diff_releases(old: pl.DataFrame, new: pl.DataFrame, previous: str | None = None) -> ReleaseDiff:
    """Compare two releases (release columns, or row indexes, plus `split`) keyed by `id`.

    A row is `added` when its id is only in the new release; a published row whose id is gone
    is `merged` when a new row holds one of its member keys (a new dump linked it to another
    published row) and `removed` otherwise. A row is `changed` when any other column differs
    and `moved` when its split differs (a row can be both changed and moved). Membership
    columns (member keys, band keys) identify a paper and are not compared.
    Joins, not Python sets: releases have millions of rows.
    """
    skip = ("id", "split", *ROW_INDEX_MEMBERSHIP_COLUMNS)
    content = [c for c in new.columns if c not in skip and c in old.columns]
    both = old.join(new, on="id", how="inner", suffix="__new")
    # A column added or dropped changes every record that both releases share.
    changed_mask = pl.lit(set(old.columns) - set(skip) != set(new.columns) - set(skip))
    for column in content:
        changed_mask = changed_mask | pl.col(column).ne_missing(pl.col(f"{column}__new"))

    def ids(frame: pl.DataFrame) -> list[str]:
        return frame["id"].sort().to_list()

    gone = old.join(new, on="id", how="anti")
    merged_into = _merges(gone, new)
    return ReleaseDiff(
        previous=previous,
        added=ids(new.join(old, on="id", how="anti")),
        removed=sorted(i for i in ids(gone) if i not in merged_into),
        merged=sorted(merged_into),
        changed=ids(both.filter(changed_mask)),
        moved=ids(both.filter(pl.col("split") != pl.col("split__new"))),
        merged_into=merged_into,
    )


def propose_version(previous: Version | None, diff: ReleaseDiff) -> Version:
    """The next version after `previous` for the changes in `diff` (see `versions.next_version`):
    a removed or merged row, a changed row or one that moved split is breaking."""
    return next_version(
        previous,
        breaking=bool(diff.removed or diff.merged or diff.changed or diff.moved),
        additive=bool(diff.added),
    )


# -- membership -------------------------------------------------------------------------------


def member_keys(arxiv_id: pl.Expr, doi: pl.Expr, source_ids: pl.Expr | None, text_hash: pl.Expr) -> pl.Expr:
    """The keys that recognise a record's paper in a later build (MEMBER_KEY_KINDS), as a list
    of "<kind>:<value>" strings; `source_ids` is the struct of other ids, or None without one."""
    parts = [("arxiv", arxiv_id), ("doi", doi)]
    if source_ids is not None:
        parts += [(kind, source_ids.struct.field(kind)) for kind in SOURCE_ID_KINDS]
    parts.append(("text", text_hash))
    return pl.concat_list(
        [pl.when(value.is_not_null()).then(pl.lit(f"{kind}:") + value) for kind, value in parts]
    ).list.drop_nulls()


def member_key_lists(
    arxiv_id: pa.Array, doi: pa.Array, source_ids: pa.StructArray | None, text_hash: pa.Array
) -> pa.ListArray:
    """`member_keys` of Arrow arrays, each row's keys in MEMBER_KEY_KINDS order.

    Built from whole columns (one string join per kind, one gather): the same list expression in
    polars cost several CPU-seconds per million rows.
    """
    parts = [("arxiv", arxiv_id), ("doi", doi)]
    if source_ids is not None:
        parts += [(kind, source_ids.field(kind)) for kind in SOURCE_ID_KINDS]
    parts.append(("text", text_hash))
    rows = len(text_hash)
    strings = [
        pc.binary_join_element_wise(f"{kind}:", values.cast(pa.string()), "")
        for kind, values in parts
        if values.null_count < rows
    ]
    if not strings or not rows:
        return pa.ListArray.from_arrays(
            pa.array(np.zeros(rows + 1, dtype=np.int32)), pa.array([], pa.string())
        )
    stacked = pa.concat_arrays(strings)
    # Row-major positions in the kind-major stack; a row's keys in kind order, nulls dropped.
    order = (np.arange(rows)[:, None] + rows * np.arange(len(strings))[None, :]).reshape(-1)
    present = stacked.is_valid().to_numpy(zero_copy_only=False)[order]
    values = stacked.take(pa.array(order[present]))
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(present.reshape(rows, len(strings)).sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def key_hashes(keys: pl.Series) -> pl.Series:
    """A 64-bit fingerprint of each member key: joins on them are much cheaper than on strings."""
    return pl.Series(keys.name, blake2b_64(keys.cast(pl.String).to_arrow()), pl.UInt64)


@dataclass(frozen=True)
class Membership:
    """What the published releases shipped, as a later build needs it to keep ids and splits.

    `keys`: per member key (`key_hash`), the published row that holds it in the newest release
    that has the key (`id`, `split`). `rows`: per published id, its split and band keys in the
    newest release that has it. `latest`: the newest version, or None before the first.
    """

    latest: str | None
    keys: pl.DataFrame
    rows: pl.DataFrame

    @staticmethod
    def empty() -> Membership:
        return Membership(
            None,
            pl.DataFrame(schema={"key_hash": pl.UInt64, "id": pl.String, "split": pl.String}),
            pl.DataFrame(schema={"id": pl.String, "split": pl.String, "band_keys": pl.List(pl.UInt64)}),
        )


_SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}


def _index_membership(path: Path) -> pl.DataFrame:
    """id, split, member_keys and band_keys of one row index; an index written before member keys
    were stored gives each row its arXiv id and, for a text id, its text hash as keys."""
    columns = pq.read_schema(path).names
    if "member_keys" in columns:
        frame = pl.read_parquet(path, columns=["id", "split", "member_keys", "band_keys"])
    else:
        frame = pl.read_parquet(path, columns=["id", "split", "arxiv_id"]).select(
            "id",
            "split",
            member_keys(
                pl.col("arxiv_id"),
                pl.lit(None, pl.String),
                None,
                pl.when(pl.col("id").str.starts_with("txt-")).then(pl.col("id").str.slice(4)),
            ).alias("member_keys"),
            pl.lit(None, pl.List(pl.UInt64)).alias("band_keys"),
        )
    unknown = frame.filter(~pl.col("split").is_in(list(SPLITS)))
    if unknown.height:
        raise BadInputError(
            f"{path}: row {unknown['id'][0]!r} has split {unknown['split'][0]!r}, "
            f"not one of {', '.join(SPLITS)}; restore the row index from the commit that published it"
        )
    return frame


def row_index_path(record: Path, version: Version) -> Path:
    """The row index beside a published release's record.

    Raises:
        BadInputError: it is missing.
    """
    index = record.with_name(format_version(version) + ROW_INDEX_SUFFIX)
    if not index.is_file():
        raise BadInputError(
            f"{record}: published release {tag_name(version)} has no row index {index.name} beside it; "
            f"restore it from the commit that published {tag_name(version)} (publish writes both)"
        )
    return index


def read_membership(releases: Path | None) -> Membership:
    """The membership of every published release under `releases/` (see `Membership`).

    Raises:
        BadInputError: a published record without its row index, or an unreadable index.
    """
    if releases is None:
        return Membership.empty()
    versions = published_versions(releases)
    if not versions:
        return Membership.empty()
    frames = []
    for age, (version, record) in enumerate(reversed(versions)):
        index = row_index_path(record, version)
        try:
            frames.append(_index_membership(index).with_columns(pl.lit(age, pl.Int32).alias("age")))
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise BadInputError(f"{index}: cannot read the row index ({exc})") from None
    indexes = pl.concat(frames, how="vertical_relaxed")
    rows = indexes.sort("age").unique("id", keep="first").select("id", "split", "band_keys")
    keys = (
        indexes.select("id", "split", "age", "member_keys")
        .explode("member_keys")
        .drop_nulls("member_keys")
        .sort("age")
        .unique("member_keys", keep="first")
    )
    keys = keys.select(key_hashes(keys["member_keys"]).alias("key_hash"), "id", "split")
    return Membership(format_version(versions[-1][0]), keys, rows.sort("id"))


def split_rank(split: pl.Expr) -> pl.Expr:
    """Which published split a merge keeps: test (0) before validation (1) before train (2)."""
    return pl.lit(len(SPLITS) - 1, pl.Int8) - split.replace_strict(_SPLIT_CODES, return_dtype=pl.Int8)


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


def metadata_hashes(batch: pa.RecordBatch | pa.Table) -> pa.Array:
    """blake2b-64 of each row's ROW_INDEX_HASHED_COLUMNS, written as one string per row: equal
    metadata, equal fingerprint, whatever library version wrote it."""
    frame = pl.from_arrow(batch.select(list(ROW_INDEX_HASHED_COLUMNS)))
    assert isinstance(frame, pl.DataFrame)
    parts: list[pl.Expr] = []
    for name in ROW_INDEX_HASHED_COLUMNS:
        dtype = frame.schema[name]
        if isinstance(dtype, pl.List):
            part = pl.col(name).list.join("\x1f")
        elif isinstance(dtype, pl.Struct):
            part = pl.concat_str(
                [pl.col(name).struct.field(f.name).fill_null("\x00") for f in dtype.fields], separator="\x1f"
            )
        else:
            part = pl.col(name).cast(pl.String)
        parts.append(part.fill_null("\x00"))
    rows = frame.select(pl.concat_str(parts, separator="\x1e").alias("row")).to_series()
    return fingerprints(rows.to_arrow())


def index_batch(batch: pa.RecordBatch, split: str, chars: pa.Array | None = None) -> pa.RecordBatch:
    """The row-index rows of one batch of release rows (a pure function of the batch), without
    membership (null here; `row_index` adds it); `chars` is the abstracts' lengths when the
    caller already has them."""
    abstracts = batch.column("abstract")
    return pa.RecordBatch.from_arrays(
        [
            batch.column("id"),
            pa.array([split] * batch.num_rows, pa.string()),
            *(batch.column(name) for name in ROW_INDEX_META_COLUMNS),
            fingerprints(abstracts),
            _chars(abstracts) if chars is None else chars,
            metadata_hashes(batch),
            pa.nulls(batch.num_rows, ROW_INDEX_SCHEMA.field("member_keys").type),
            pa.nulls(batch.num_rows, ROW_INDEX_SCHEMA.field("band_keys").type),
        ],
        schema=ROW_INDEX_SCHEMA,
    )


def _chars(abstracts: pa.Array) -> pa.Array:
    return pc.utf8_length(abstracts).cast(pa.int32())


def _read_row_group(path: Path, group: int, batch_rows: int) -> list[tuple[pa.RecordBatch, pa.Array]]:
    """A row group's index columns in batches, each with its abstracts' lengths."""
    columns = ["id", "abstract", *ROW_INDEX_META_COLUMNS, *ROW_INDEX_HASHED_COLUMNS]
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


def with_membership(index: pa.Table, deduped: Path | None) -> pa.Table:
    """The row index with its membership: each row's member keys and, for validation and test
    rows, its band keys, from the deduplicated parquet the release was split from.

    Without one (a release directory on its own), the keys its release columns give.

    Raises:
        BadInputError: a release id the deduplicated parquet does not hold (they come from
            different runs).
    """
    frame = pl.from_arrow(index)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.drop(list(ROW_INDEX_MEMBERSHIP_COLUMNS))
    if deduped is None:
        frame = frame.join(_keys_of(frame), on="id", how="left").with_columns(
            pl.lit(None, pl.List(pl.UInt64)).alias("band_keys")
        )
    else:
        try:
            members = pl.read_parquet(deduped, columns=["id", "member_keys", "band_keys"])
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise BadInputError(
                f"{deduped}: cannot read the deduplicated rows ({exc}); run `dvc repro`"
            ) from None
        frame = frame.join(members, on="id", how="left", maintain_order="left")
        missing = frame.filter(pl.col("member_keys").is_null())
        if missing.height:
            raise BadInputError(
                f"{deduped}: has no row {missing['id'][0]!r} of the release; the release and the "
                "deduplicated rows come from different runs: run `dvc repro`"
            )
        frame = frame.with_columns(
            pl.when(pl.col("split") != "train").then(pl.col("band_keys")).alias("band_keys")
        )
    return frame.to_arrow().select(ROW_INDEX_SCHEMA.names).cast(ROW_INDEX_SCHEMA)


def row_index(release_data: Path, batch_rows: int = 100_000, deduped: Path | None = None) -> pa.Table:
    """The row index of a release directory, shard by shard (never the whole text at once),
    with its membership (`with_membership`).

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
        return with_membership(table.take(order.result()), deduped)


def write_row_index(release_data: Path, target: Path, deduped: Path | None = None) -> None:
    write_parquet(row_index(release_data, deduped=deduped), target)


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
    # Records written before merges were told apart from removals have none.
    merged: int = 0


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
        value = diff.get(key, 0 if key == "merged" else None)
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
        record = read_record(path)
        entries.append(parse_changelog_entry(record, str(path)))
    return entries


# -- "is this the published release?" ------------------------------------------------------

# Files the Hub manages itself; never compared, deleted or uploaded by publish.
HUB_MANAGED = frozenset({".gitattributes"})
# The card's changelog section differs between two renderings of the same release (it lists
# the releases published so far), so "same release" compares cards without it.
_CHANGELOG_SECTION = re.compile(r"^## Changelog\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
# Croissant's `datePublished` is the day of the publish, not a property of the release.
_UNKEYED_CROISSANT = ("datePublished",)


def strip_changelog(card: str) -> str:
    """The card text without its `## Changelog` section body (see `_CHANGELOG_SECTION`)."""
    return _CHANGELOG_SECTION.sub("## Changelog\n", card)


def content_key(files: Mapping[str, bytes | Path]) -> dict[str, str]:
    """path -> sha256 of what makes a release: every file, the card without its changelog and
    croissant.json without its publication date.

    The card stage (is this build the last published release?) and `abstracts publish` (is the
    Hub's last tag this release?) both decide with this one key, so they cannot disagree.
    """
    key = {}
    for path, source in files.items():
        if path in HUB_MANAGED:
            continue
        if isinstance(source, Path) and path not in ("README.md", "croissant.json"):
            key[path] = sha256_file(source)
            continue
        data = source if isinstance(source, bytes) else source.read_bytes()
        if path == "README.md":
            data = strip_changelog(data.decode("utf-8")).encode("utf-8")
        elif path == "croissant.json":
            try:
                document = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                document = None
            if isinstance(document, dict):
                for name in _UNKEYED_CROISSANT:
                    document.pop(name, None)
                data = json.dumps(document, sort_keys=True, ensure_ascii=False).encode("utf-8")
        key[path] = hashlib.sha256(data).hexdigest()
    return key


def read_record(path: Path) -> dict[str, Any]:
    """One `releases/<version>.json` record.

    Raises:
        BadInputError: it cannot be read or is not a JSON object.
    """
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read release record ({exc})") from None
    if not isinstance(record, dict):
        raise BadInputError(f"{path}: a release record must be a JSON object")
    return record
