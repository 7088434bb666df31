"""The contracts other files, tools and users depend on, written once.

Every parquet schema between stages and of the release, the split names, the release shard-name
grammar and the report file names live here. This module imports nothing of the project, so any
stage, reader or tool can import it without pulling in a stage (or numba).
"""

from __future__ import annotations

import re

import pyarrow as pa

# Split names, in their canonical order (the release, the card and the Hub configs use it).
SPLITS = ("train", "validation", "test")

# Release shards: `data/{split}-NNNNN-of-NNNNN.parquet`, the Hub's default data-files pattern.
SHARD_NAME = re.compile(r"(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet")
RELEASE_DATA_DIR = "data"


def shard_name(split: str, index: int, count: int) -> str:
    """The file name of shard `index` (0-based) of `count` shards of `split`."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def shard_split(name: str) -> str | None:
    """The split a release shard file name belongs to, or None when `name` is not a shard name."""
    match = SHARD_NAME.fullmatch(name)
    return match.group("split") if match is not None else None


# The other ids a paper may carry besides its arXiv id (issue 18's planned columns).
SOURCE_ID_KINDS = ("acl_anthology", "openreview", "semantic_scholar", "pmlr", "openalex", "dblp")
SOURCE_IDS_TYPE = pa.struct([pa.field(kind, pa.string()) for kind in SOURCE_ID_KINDS])

# A paper's metadata as ingest reads it and the release ships it, all nullable.
PAPER_METADATA = (
    pa.field("title", pa.string()),
    # "First Last", in the source's order.
    pa.field("authors", pa.list_(pa.string())),
    pa.field("year", pa.int64()),
    pa.field("published", pa.date32()),
    pa.field("venue", pa.string()),
    pa.field("categories", pa.list_(pa.string())),
    # Lower-case, no resolver prefix.
    pa.field("doi", pa.string()),
    pa.field("url", pa.string()),
    # SPDX id of the source's licence.
    pa.field("license", pa.string()),
    pa.field("source_ids", SOURCE_IDS_TYPE),
)
PAPER_METADATA_NAMES = tuple(field.name for field in PAPER_METADATA)

# One row per raw record (build/ingested.parquet), written by ingest.
RECORD_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("raw_id", pa.string()),
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("raw_text", pa.string(), nullable=False),
        # The declared (sources.yaml) or derived (path under raw/) source name.
        pa.field("source_name", pa.string()),
        # The record's position in its file: "line 12", "$[3]", "paper[4]", "row 7".
        pa.field("locator", pa.string()),
        # The paper's metadata, null where the source's format lacks it.
        *PAPER_METADATA,
    ]
)
# Columns every text-dump record has (the rest are null for them but source_name and locator).
TEXT_DUMP_COLUMNS = ("source", "file", "line", "format", "raw_id", "arxiv_id", "arxiv_version", "raw_text")

# Row for row the ingested records (build/clean.parquet), written by clean.
CLEAN_SCHEMA = pa.schema(
    [
        # Not `raw_text`: written again, it was a third of the stage's time on the bench corpus.
        *[field for field in RECORD_SCHEMA if field.name != "raw_text"],
        pa.field("abstract", pa.string(), nullable=False),
        pa.field("clean_rules", pa.list_(pa.string()), nullable=False),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
    ]
)

# Every cleaned record the filter stage did not release (reports/filtered.parquet), with why.
FILTERED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        # The row's arXiv id when it has one (rows of other sources: null).
        pa.field("id", pa.string()),
        pa.field("arxiv_id", pa.string()),
        # The first rule (in filter.RULES order) the row failed, and every rule it failed.
        pa.field("reason", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        # What the first rule measured ("143 chars, 21 words; min 200 chars, 20 words").
        pa.field("detail", pa.string(), nullable=False),
        pa.field("abstract", pa.string(), nullable=False),
    ]
)

# How dedup folded a record into the row it kept: same arXiv id or another shared id (DOI, an
# anthology or venue id), identical normalised text, near-identical text, or the record belongs
# to a published row that this build merged into another published row.
DEDUP_METHODS = ("same_id", "exact", "near", "published")

# Why the kept copy's abstract won over a folded one: the first rule of dedup's keep order
# (`pipeline.stages.dedup.core.KEEP_ORDER`) on which the two copies differ.
KEEP_REASONS = ("complete", "fewer_defects", "longer", "higher_version", "format_priority", "first_seen")

# The member keys that recognise a paper in a later build: "<kind>:<value>" strings.
MEMBER_KEY_KINDS = ("arxiv", "doi", *SOURCE_ID_KINDS, "text")

# The kept rows (build/dedup.parquet), written by dedup.
DEDUP_SCHEMA = pa.schema(
    [
        # The kept row's row number in build/filter.parquet, where its abstract is: the split
        # stage reads the texts from there, so they are not written (and read) once more, and
        # checks that the row's `text_hash` there is this row's `text_hash`.
        pa.field("row", pa.int64(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("duplicate_count", pa.int64(), nullable=False),
        pa.field("flags", pa.list_(pa.string()), nullable=False),
        pa.field("text_hash", pa.string(), nullable=False),
        # LSH band keys of the kept row: the split stage checks them for cross-split leaks.
        pa.field("band_keys", pa.list_(pa.uint64()), nullable=False),
        # Merged from the cluster's copies (see dedup's `merge_metadata`).
        *PAPER_METADATA,
        pa.field("sources", pa.list_(pa.string()), nullable=False),
        # Every key of every copy in the cluster (MEMBER_KEY_KINDS), each once.
        pa.field("member_keys", pa.list_(pa.string()), nullable=False),
        # The split of the published row this row continues (its id is that row's), else null.
        pa.field("published_split", pa.string()),
    ]
)

# Every folded record (reports/duplicates.parquet), written by dedup.
DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_name", pa.string()),
        # The folded record's own ids, so a user can look up what happened to "their" paper.
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("doi", pa.string()),
        pa.field("source_ids", SOURCE_IDS_TYPE),
        pa.field("text_hash", pa.string(), nullable=False),
        # The row it folded into.
        pa.field("id", pa.string(), nullable=False),
        pa.field("kept_source", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("similarity", pa.float64()),
        # KEEP_REASONS: why the kept copy's abstract won over this record's.
        pa.field("reason", pa.string(), nullable=False),
    ]
)

# Row for row the cleaned records (build/minhash.parquet), written by dedup.
MINHASH_SCHEMA = pa.schema(
    [
        pa.field("band_keys", pa.list_(pa.uint64()), nullable=False),
        # Characters of the abstract: the keep order needs it, and the global step must not
        # read the texts again to get it.
        pa.field("length", pa.int64(), nullable=False),
        # Clean's flags other than `truncated` plus markup leftovers (dedup's keep order).
        pa.field("defects", pa.int32(), nullable=False),
        # Flagged `truncated` by clean or ending in an ellipsis: cut short by its source.
        pa.field("truncated", pa.bool_(), nullable=False),
    ]
)

# The release rows (release/data/*.parquet), written by split; the card's features follow it.
RELEASE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("arxiv_id", pa.string()),
        pa.field("arxiv_version", pa.int64()),
        pa.field("abstract", pa.string()),
        pa.field("source", pa.string()),
        pa.field("duplicate_count", pa.int64()),
        *PAPER_METADATA,
        # Every source name the paper was seen in.
        pa.field("sources", pa.list_(pa.string())),
    ]
)

# Kinds of change between two releases, in report order. `merged`: a published row that this
# release folds into another published row (both ids are listed); `removed`: any other published
# row that is gone. Both are breaking.
DIFF_KINDS = ("added", "removed", "merged", "changed", "moved")

# Release columns other than `id` and `abstract`: small, so the row index keeps them as they are.
ROW_INDEX_META_COLUMNS = ("arxiv_id", "arxiv_version", "source", "duplicate_count")
# Release columns the row index keeps as one fingerprint (`metadata_hash`).
ROW_INDEX_HASHED_COLUMNS = (*PAPER_METADATA_NAMES, "sources")
# Row-index columns that identify a paper rather than describe it: not compared by the diff.
ROW_INDEX_MEMBERSHIP_COLUMNS = ("member_keys", "band_keys")

# A published release's rows (releases/<version>.rows.parquet), written by publish: what the
# release shipped (fingerprinted) and its membership, which keeps ids and splits in later builds.
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
        ("metadata_hash", pa.uint64()),
        # MEMBER_KEY_KINDS of every copy folded into the row.
        ("member_keys", pa.list_(pa.string())),
        # The row's LSH band keys, for validation and test rows only (null for train): a later
        # build checks that no new train row is a near duplicate of them.
        ("band_keys", pa.list_(pa.uint64())),
    ]
)
ROW_INDEX_SUFFIX = ".rows.parquet"

# Report file names under reports/, as dvc.yaml declares them.
INGEST_REPORT = "ingest.json"
REJECTS = "rejects.jsonl"
CLEAN_REPORT = "clean.json"
FILTER_REPORT = "filter.json"
FILTERED = "filtered.parquet"
DEDUP_REPORT = "dedup.json"
DUPLICATES = "duplicates.parquet"
SPLIT_REPORT = "split.json"
VALIDATION_REPORT = "validation.json"
RELEASE_DIFF_REPORT = "release_diff.json"
# The split report's count of new train rows near-duplicating a published validation/test row.
CROSS_RELEASE_LEAKS = "cross_release_leaks"
