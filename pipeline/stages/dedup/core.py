"""Stage `dedup`: fold every paper to one row, keep its best copy, merge what the copies know,
and keep the ids of papers already published.

Reads: the cleaned (or filtered) parquet and the published releases' membership
(`releases/<version>.rows.parquet`, see `pipeline.releases.read_membership`). Writes: the
deduplicated parquet (one row per paper: `id`, `duplicate_count`, merged metadata, member keys,
the published split it keeps, and its `row` in the input parquet, which holds its abstract),
`duplicates.parquet` (every folded record: its source and own ids, the `id` it folded into,
`method`, `similarity` and the `reason` the kept copy won) and `dedup.json` (rows in and out by
method, keep reasons, metadata conflicts (counts, and the conflicting rows by id), what became
of the published rows).
Params: `dedup` (format priority, the near-duplicate threshold and LSH layout).

Clusters, in order:
1. `same_id`: records with the same arXiv id (version stripped).
2. `exact`: identical normalised text (`text_hash` from `clean`).
3. `near` and linked ids: MinHash LSH over word shingles (`pipeline.kernels.minhash`) proposes
   candidate pairs, each verified with the exact Jaccard similarity (`dedup.near_threshold`);
   records sharing a DOI or another source id (`same_id`) and records holding a member key of
   the same published row (`published`) are linked too; connected components fold.
In every cluster the abstract comes from the best copy by `KEEP_ORDER` (the one place the order
is written), each metadata field from the best copy that has it (`merge_metadata`).

Ids and splits never move once published: a cluster holding a key of a published row gets that
row's id and keeps its split (`published_split`); a cluster holding keys of several published
rows keeps the row of the earliest split in test > validation > train order (then the smallest
id) and the others are merged into it. Only a cluster with no published key gets a new id: the
arXiv id of its best copy that has one, else `txt-` and its kept text's hash.

Clustering holds the band keys and a fixed-width key table, never texts: candidate rows are
re-read and shingled a batch at a time to verify pairs, and the kept rows are streamed through
once at the end, without their abstracts.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import (
    DEDUP_METHODS,
    DEDUP_SCHEMA,
    DUPLICATES_SCHEMA,
    KEEP_REASONS,
    MINHASH_SCHEMA,
    PAPER_METADATA_NAMES,
    SOURCE_ID_KINDS,
)
from pipeline.engines import LOCAL, Engine
from pipeline.errors import PipelineError
from pipeline.executor import BatchSlice, batch_slices, engine, map_batches, read_slice
from pipeline.io.writers import build_file_options, parquet_writer, write_json, write_parquet
from pipeline.kernels.fingerprint import I64
from pipeline.kernels.minhash import (
    BandKeyPart,
    ShingleSets,
    band_keys,
    bucket_pairs,
    candidate_pairs,
    keys_from_arrow,
    keys_to_arrow,
    partition_band_keys,
    read_band_keys,
)
from pipeline.params import DedupParams
from pipeline.releases import (
    Membership,
    key_hashes,
    member_key_lists,
    member_keys,
    read_membership,
    split_rank,
)

_ARROW_DEFAULT_DECAY_MS = 1000


@contextlib.contextmanager
def returning_arrow_memory() -> Iterator[None]:
    """Within the block, Arrow allocates from a jemalloc pool that hands freed pages back at once.

    Arrow's default pool keeps freed pages for reuse: streaming a large corpus's abstracts
    (MinHash batches, re-reading candidate texts, writing the kept rows) left more of them in
    the process than the band keys and key table together (see benchmarks/RESULTS.md).
    """
    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:  # an Arrow build without jemalloc: keep the default pool
        pool = previous
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        if pool is not previous:
            # Arrow's build default on Linux, where jemalloc has background threads
            # (`je_arrow_malloc_conf` in arrow/cpp/src/arrow/memory_pool.cc); there is no getter.
            pa.jemalloc_set_decay_ms(_ARROW_DEFAULT_DECAY_MS)


def stream_batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """`columns` of a parquet file in batches of 100,000 rows (the kept rows' row groups).

    Without pre-buffering: its read buffers come from Arrow's default pool whatever pool is
    set, and that pool keeps them after a pass over the texts.
    """
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=100_000, columns=columns)


# A row without an arXiv id gets a stable id derived from its normalised text.
TEXT_ID_PREFIX = "txt-"

# Which copy of a paper gives the release its abstract: the first rule on which two copies
# differ decides, and its name is the `reason` duplicates.parquet records for the folded copy.
# (reason, key-table column, descending)
KEEP_ORDER: tuple[tuple[str, str, bool], ...] = (
    # not cut short: clean's `truncated` flag, or an ellipsis at the end
    ("complete", "truncated", False),
    # fewest of clean's other flags plus markup leftovers (`MARKUP_LEFTOVERS`)
    ("fewer_defects", "defects", False),
    # the longest complete text
    ("longer", "length", True),
    ("higher_version", "arxiv_version", True),
    # then the richer source format (`dedup.format_priority`) and the first record read
    ("format_priority", "format_rank", False),
    ("first_seen", "row", False),
)
assert tuple(reason for reason, _, _ in KEEP_ORDER) == KEEP_REASONS

# HTML tags and entities and LaTeX accent or text commands left in an abstract (RE2 syntax).
MARKUP_LEFTOVERS = (
    r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>"
    r"|&(?:[A-Za-z]+|#[0-9]+|#x[0-9A-Fa-f]+);"
    r"|\\[\"'`^~=.uvHckrbd]\{?[A-Za-z]"
    r"|\\(?:textbf|textit|emph|url|href|mathrm|cite[a-z]*)\{"
)
_ELLIPSIS = r"(?:\.\.\.|\x{2026})\s*$"


def minhash_batch(batch: pa.RecordBatch, params: DedupParams) -> pa.RecordBatch:
    """Row-local unit of work: the LSH band keys of every abstract in the batch and what the
    keep order needs of it (length, defects, truncation)."""
    texts = batch.column("abstract")
    keys = band_keys(texts, params.shingle_words, params.bands, params.rows_per_band, params.seed)
    lengths = pc.utf8_length(texts).cast(pa.int64())
    flags = batch.column("flags")
    flag_values = flags.flatten()
    row_of_flag = pc.list_parent_indices(flags)
    truncated_flag = np.zeros(batch.num_rows, dtype=bool)
    truncated_flag[
        row_of_flag.to_numpy()[pc.equal(flag_values, "truncated").to_numpy(zero_copy_only=False)]
    ] = True
    other_flags = pc.subtract(
        pc.list_value_length(flags).fill_null(0), pa.array(truncated_flag.astype(np.int32))
    )
    markup = pc.count_substring_regex(texts, MARKUP_LEFTOVERS)
    defects = pc.add(other_flags.cast(pa.int32()), markup.cast(pa.int32()))
    truncated = pc.or_(pa.array(truncated_flag), pc.match_substring_regex(texts, _ELLIPSIS))
    return pa.RecordBatch.from_arrays(
        [keys_to_arrow(keys), lengths, defects, truncated], schema=MINHASH_SCHEMA
    )


def _codes(cleaned: Path, column: str) -> pa.ChunkedArray:
    """Dense int32 codes of a string column (equal strings, equal codes; nulls stay null).

    Grouping on codes instead of the strings keeps the key table to fixed-width columns: on a
    large corpus the string columns and their copies in sorts and joins made most of the peak.
    """
    encoded = pc.dictionary_encode(pq.read_table(cleaned, columns=[column])[column])
    return pa.chunked_array([chunk.indices for chunk in encoded.chunks], pa.int32())


def read_keys(cleaned: Path, minhash: Path, params: DedupParams) -> pl.DataFrame:
    """The key table: one small fixed-width row per record, with the keep order's columns and
    the group codes.

    `id_group` is the step 1 group (the arXiv id's code; a row of its own without one) and
    `text_group` the step 2 group (the code of `text_hash`).
    """
    rank = {fmt: i for i, fmt in enumerate(params.format_priority)}
    columns = pl.read_parquet(cleaned, columns=["arxiv_version", "format"])
    quality = pl.read_parquet(minhash, columns=["length", "defects", "truncated"])
    keys = pl.DataFrame(
        {
            "row": pl.int_range(columns.height, dtype=pl.Int32, eager=True),
            "arxiv_code": pl.Series(_codes(cleaned, "arxiv_id")),
            "arxiv_version": columns["arxiv_version"],
            "format_rank": columns["format"].replace_strict(rank, default=len(rank), return_dtype=pl.Int8),
            "length": quality["length"].cast(pl.Int32),
            "defects": quality["defects"],
            "truncated": quality["truncated"],
            "text_group": pl.Series(_codes(cleaned, "text_hash")),
        }
    )
    return keys.select(
        "row",
        # Rows without an arXiv id are their own group in step 1: negative, so never a code.
        pl.coalesce("arxiv_code", -1 - pl.col("row")).alias("id_group"),
        *(column for _, column, _ in KEEP_ORDER if column != "row"),
        "text_group",
        pl.col("arxiv_code").is_null().alias("no_arxiv_id"),
    )


_ORDER = [column for _, column, _ in KEEP_ORDER]
_DESCENDING = [descending for _, _, descending in KEEP_ORDER]


def _winner_of(groups: pl.DataFrame, key: str) -> pl.DataFrame:
    """Map each row to the first row of its `key` group under the keep order."""
    ranked = groups.select(key, *_ORDER).sort(_ORDER, descending=_DESCENDING, nulls_last=True)
    return ranked.select("row", pl.col("row").first().over(key).alias("winner"))


def fold_exact(keys: pl.DataFrame) -> pl.DataFrame:
    """Steps 1 and 2: each row's `same_id_winner` and `exact_winner` (the row it ends in)."""
    step1 = _winner_of(keys, "id_group").rename({"winner": "same_id_winner"})
    keys = keys.join(step1, on="row")
    survivors = keys.filter(pl.col("row") == pl.col("same_id_winner"))
    step2 = _winner_of(survivors, "text_group")
    step2 = step2.rename({"row": "same_id_winner", "winner": "exact_winner"})
    return keys.join(step2, on="same_id_winner").sort("row")


@numba.njit(cache=True, nogil=True)
def _components_kernel(nodes: int, pairs: I64) -> I64:  # pragma: no cover - compiled
    """Union-find over `pairs` of node numbers: each node's smallest node of its component."""
    parent = np.arange(nodes)
    for k in range(pairs.shape[0]):
        a, b = pairs[k, 0], pairs[k, 1]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    for x in range(nodes):
        root = x
        while parent[root] != root:
            root = parent[root]
        parent[x] = root
    return parent


def connected_components(nodes: int, pairs: npt.NDArray[np.int64]) -> I64:
    """Each of `nodes` node numbers -> smallest node of its component under the `pairs`."""
    return _components_kernel(nodes, np.ascontiguousarray(pairs, dtype=np.int64).reshape(-1, 2))


def record_keys(cleaned: Path) -> pl.DataFrame:
    """Every record's member keys as (`row`, `key_hash`, `kind`): arXiv id, DOI, other ids, text."""
    frame = pq.read_table(cleaned, columns=["arxiv_id", "doi", "source_ids", "text_hash"]).combine_chunks()
    lists = (
        member_key_lists(
            frame.column("arxiv_id").chunk(0),
            frame.column("doi").chunk(0),
            frame.column("source_ids").chunk(0),
            frame.column("text_hash").chunk(0),
        )
        if frame.num_rows
        else pa.array([], pa.list_(pa.string()))
    )
    keys = pl.Series("key", lists.flatten())
    return pl.DataFrame(
        {
            "row": pl.Series(pc.list_parent_indices(lists).to_numpy(), dtype=pl.Int32),
            "key_hash": key_hashes(keys),
            "kind": keys.str.split_exact(":", 1).struct.field("field_0"),
        }
    )


def id_links(keys: pl.DataFrame, exact_winner: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Pairs of step 2 survivors that share a DOI or another source id (steps 1 and 2 folded
    the arXiv ids and texts): each survivor holding a key with the first survivor holding it."""
    shared = keys.filter(pl.col("kind").is_in(["doi", *SOURCE_ID_KINDS]))
    linked = pl.DataFrame(
        {"survivor": exact_winner[shared["row"].to_numpy()], "key_hash": shared["key_hash"]}
    ).unique()
    linked = linked.with_columns(pl.col("survivor").min().over("key_hash").alias("first"))
    pairs = linked.filter(pl.col("survivor") != pl.col("first")).select("first", "survivor")
    return pairs.to_numpy().astype(np.int64).reshape(-1, 2)


def published_links(
    keys: pl.DataFrame, exact_winner: npt.NDArray[np.int64], membership: Membership, nodes: int
) -> tuple[npt.NDArray[np.int64], pl.DataFrame]:
    """Pairs (step 2 survivor, published node) for every record holding a member key of a
    published row, and the published rows that are nodes (`node`, `id`, `split`); published
    row i of the sorted matched ids is node `nodes + i`."""
    matched = keys.select("row", "key_hash").join(membership.keys, on="key_hash")
    published = matched.select("id", "split").unique("id").sort("id")
    published = published.with_columns((nodes + pl.int_range(published.height, dtype=pl.Int64)).alias("node"))
    pairs = (
        pl.DataFrame({"survivor": exact_winner[matched["row"].to_numpy()], "id": matched["id"]})
        .join(published.select("id", "node"), on="id")
        .select("survivor", "node")
        .unique()
    )
    return pairs.to_numpy().astype(np.int64).reshape(-1, 2), published


def read_rows(
    cleaned: Path, rows: npt.NDArray[np.int64], columns: list[str]
) -> tuple[npt.NDArray[np.int64], pa.Table]:
    """`columns` of `rows` only, streamed from the cleaned file: (the distinct rows, sorted; their values)."""
    wanted = np.unique(rows)
    parts = []
    offset = 0
    for batch in stream_batches(cleaned, columns):
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            parts.append(batch.take(pa.array(wanted[lo:hi] - offset)))
        offset += batch.num_rows
    return wanted, pa.Table.from_batches(
        parts, schema=pa.schema([pq.read_schema(cleaned).field(c) for c in columns])
    )


def read_shingle_sets(cleaned: Path, rows: npt.NDArray[np.int64], shingle_words: int) -> ShingleSets:
    """The shingle sets of `rows`, read and shingled one row group at a time on two threads
    (parquet decoding and the compiled shingling release the GIL): at most two row groups of
    texts are held."""
    wanted = np.unique(rows)
    meta = pq.ParquetFile(cleaned).metadata
    starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
    bounds = np.searchsorted(wanted, starts)

    def shingle_group(group: int) -> ShingleSets:
        lo, hi = bounds[group], bounds[group + 1]
        # Without pre-buffering, as `stream_batches`; one reader per thread.
        texts = pq.ParquetFile(cleaned, pre_buffer=False).read_row_group(group, columns=["abstract"])
        return ShingleSets.of_texts(
            texts.column(0).take(pa.array(wanted[lo:hi] - starts[group])), wanted[lo:hi], shingle_words
        )

    groups = [g for g in range(meta.num_row_groups) if bounds[g + 1] > bounds[g]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return ShingleSets.concat(list(pool.map(shingle_group, groups)))


def _band_key_parts(
    item: tuple[str, BatchSlice, int, npt.NDArray[np.int64]], bands: int, partitions: int
) -> list[BandKeyPart]:
    """Map side of the candidate shuffle: the band keys of the survivors `rows` of one slice of
    the band-key file, by partition (`minhash.partition_band_keys`)."""
    path, part, first_row, rows = item
    keys = keys_from_arrow(read_slice(Path(path), ["band_keys"], part).column(0), bands)
    return partition_band_keys(keys[rows - first_row], rows, partitions)


def shuffled_candidate_pairs(
    minhash: Path, survivors: npt.NDArray[np.int64], params: DedupParams, engine: Engine
) -> npt.NDArray[np.int64]:
    """`candidate_pairs` of `survivors` as a shuffle by band-key hash on `engine`: map tasks
    read their slice of the band-key file, reduce tasks pair the buckets of their partition;
    the union is made unique here, so the pairs are the same for any partitioning."""
    slices = batch_slices(pq.ParquetFile(minhash), params.batch_rows)
    starts = np.cumsum([0] + [part.rows for part in slices])
    # Slices are in file order: the row groups, each cut into consecutive parts.
    survivors = np.sort(survivors)
    bounds = np.searchsorted(survivors, starts)
    path = str(minhash.resolve())
    items = [
        (path, part, int(starts[i]), survivors[bounds[i] : bounds[i + 1]]) for i, part in enumerate(slices)
    ]
    partitions = max(2, 2 * len(slices))
    found = engine.shuffle(
        functools.partial(_band_key_parts, bands=params.bands, partitions=partitions),
        items,
        bucket_pairs,
        partitions,
    )
    pairs: npt.NDArray[np.int64] = np.unique(
        np.concatenate([np.zeros((0, 2), dtype=np.int64), *found]), axis=0
    )
    return pairs


def near_duplicate_pairs(
    cleaned: Path,
    all_keys: npt.NDArray[np.uint64],
    survivors: npt.NDArray[np.int64],
    params: DedupParams,
    minhash: Path | None = None,
) -> tuple[npt.NDArray[np.int64], ShingleSets]:
    """Verified near-duplicate pairs among `survivors`, and the shingle sets of their rows.

    On a distributed engine the candidates come from a shuffle of the band-key file
    `minhash` (`shuffled_candidate_pairs`); locally from the keys in memory.
    """
    chosen = engine()
    if minhash is not None and chosen.name != LOCAL:
        candidates = shuffled_candidate_pairs(minhash, survivors, params, chosen)
    else:
        candidates = candidate_pairs(survivors, all_keys)
    sets = read_shingle_sets(cleaned, candidates.reshape(-1), params.shingle_words)
    similarity = sets.similarity(candidates)
    print(
        f"dedup: {len(candidates):,} candidate pairs, "
        f"{int((similarity >= params.near_threshold).sum()):,} verified",
        file=sys.stderr,
    )
    return candidates[similarity >= params.near_threshold], sets


def fold_linked(
    folded: pl.DataFrame,
    near: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    published: npt.NDArray[np.int64],
    nodes: int,
) -> tuple[pl.DataFrame, I64]:
    """Step 3: fold the components of near, id and published links among step 2 survivors.

    Returns every row's `winner` and `method`, and the component of every node (rows, then
    published nodes).
    """
    component = connected_components(nodes, np.concatenate([near, ids, published]))
    survivors = folded.filter(pl.col("row") == pl.col("exact_winner"))
    survivors = survivors.with_columns(pl.Series("component", component[survivors["row"].to_numpy()]))
    step3 = _winner_of(survivors, "component").rename({"row": "exact_winner", "winner": "near_winner"})
    folded = folded.join(step3, on="exact_winner", how="left").with_columns(
        pl.col("near_winner").alias("winner")
    )
    near_rows = pl.Series(np.unique(near), dtype=pl.Int64)
    id_rows = pl.Series(np.unique(ids), dtype=pl.Int64)
    folded = folded.with_columns(
        pl.when(pl.col("row") != pl.col("same_id_winner"))
        .then(pl.lit("same_id"))
        .when(pl.col("row") != pl.col("exact_winner"))
        .then(pl.lit("exact"))
        .when(pl.col("row") == pl.col("winner"))
        .then(pl.lit(None, dtype=pl.String))
        .when(pl.col("row").cast(pl.Int64).is_in(id_rows))
        .then(pl.lit("same_id"))
        .when(pl.col("row").cast(pl.Int64).is_in(near_rows))
        .then(pl.lit("near"))
        .otherwise(pl.lit("published"))
        .alias("method")
    ).sort("row")
    return folded, component


def resolve_published(
    published: pl.DataFrame, component: I64, winners: pl.DataFrame
) -> tuple[pl.DataFrame, list[dict[str, str]], list[str]]:
    """Which published row each cluster continues, and what became of the others.

    Returns (`winner`, `published_id`, `published_split`) per cluster holding a published key,
    the published rows merged into another (`id`, `into`), and those no cluster holds.
    `winners` maps each component to its kept row (`component`, `winner`).
    """
    nodes = published.with_columns(pl.Series("component", component[published["node"].to_numpy()]))
    nodes = nodes.join(winners, on="component", how="left")
    missing = nodes.filter(pl.col("winner").is_null())["id"].sort().to_list()
    held = nodes.filter(pl.col("winner").is_not_null()).sort([split_rank(pl.col("split")), pl.col("id")])
    kept = held.unique("winner", keep="first").select(
        "winner", pl.col("id").alias("published_id"), pl.col("split").alias("published_split")
    )
    others = held.join(kept, on="winner").filter(pl.col("id") != pl.col("published_id"))
    merged = [
        {"id": row_id, "into": into}
        for row_id, into in others.select("id", "published_id").sort("id").iter_rows()
    ]
    return kept, merged, missing


# The cleaned columns a kept row's metadata is merged from.
_MERGED_FROM = ["arxiv_id", "arxiv_version", "source_name", "file", *PAPER_METADATA_NAMES, "text_hash"]


def _source_name() -> pl.Expr:
    # An undeclared file's source name is its path under raw/ (issue 18).
    return pl.coalesce("source_name", "file")


def merge_metadata(
    cleaned: Path, folded: pl.DataFrame, keys: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The merged metadata of every cluster with more than one record, by its `winner`.

    Each field comes from the best copy (keep order) that has it; `source_ids` field by field;
    `license` is the kept copy's (the abstract is its source's text);
    `published` is the earliest; `sources` the union of the copies' source names;
    `member_keys` the union of their keys; `arxiv_version` is the highest seen of the chosen
    `arxiv_id`.
    Also returns the conflicts: clusters whose copies carry two DOIs, or years two or more apart.
    """
    sizes = folded.group_by("winner").len()
    multi = folded.join(sizes.filter(pl.col("len") > 1), on="winner").select("row", "winner")
    wanted, table = read_rows(cleaned, multi["row"].to_numpy().astype(np.int64), _MERGED_FROM)
    records = pl.from_arrow(table)
    assert isinstance(records, pl.DataFrame)
    records = records.with_columns(pl.Series("row", wanted, dtype=pl.Int32))
    records = records.join(multi, on="row").join(keys.select([*_ORDER[:-1], "row"]), on="row")
    records = records.sort(["winner", *_ORDER], descending=[False, *_DESCENDING], nulls_last=True)
    first = [
        pl.col(name).drop_nulls().first()
        for name in PAPER_METADATA_NAMES
        if name not in ("published", "source_ids", "license")
    ]
    merged = records.group_by("winner", maintain_order=True).agg(
        pl.col("arxiv_id").drop_nulls().first(),
        # The newest version seen of the chosen arXiv id.
        pl.col("arxiv_version").filter(pl.col("arxiv_id") == pl.col("arxiv_id").drop_nulls().first()).max(),
        *first,
        pl.col("published").min(),
        # The abstract's licence is its own source's: the kept copy's (first in keep order).
        pl.col("license").first(),
        *[
            pl.col("source_ids").struct.field(kind).drop_nulls().first().alias(f"_id_{kind}")
            for kind in SOURCE_ID_KINDS
        ],
        _source_name().unique().sort().alias("sources"),
        member_keys(pl.col("arxiv_id"), pl.col("doi"), pl.col("source_ids"), pl.col("text_hash"))
        .list.explode(keep_nulls=False, empty_as_null=False)
        .unique()
        .sort()
        .alias("member_keys"),
        pl.col("doi").drop_nulls().n_unique().alias("_dois"),
        (pl.col("year").max() - pl.col("year").min()).alias("_year_span"),
        pl.col("doi").drop_nulls().unique().sort().alias("_doi_values"),
        pl.col("year").drop_nulls().unique().sort().alias("_year_values"),
    )
    merged = merged.with_columns(
        pl.struct([pl.col(f"_id_{kind}").alias(kind) for kind in SOURCE_ID_KINDS]).alias("source_ids")
    ).drop(pl.selectors.starts_with("_id_"))
    doi_conflicts = merged.filter(pl.col("_dois") > 1)
    year_conflicts = merged.filter(pl.col("_year_span") >= 2)
    conflicts = {
        "doi": doi_conflicts.height,
        "year": year_conflicts.height,
        "doi_examples": doi_conflicts.head(CONFLICT_EXAMPLES)["_doi_values"].to_list(),
        "year_examples": year_conflicts.head(CONFLICT_EXAMPLES)["_year_values"].to_list(),
    }
    return merged, conflicts


# Example value lists per kind of metadata conflict in dedup.json.
CONFLICT_EXAMPLES = 10


def conflict_rows(merged: pl.DataFrame, ids: pl.DataFrame) -> list[dict[str, Any]]:
    """The conflicting clusters a reviewer looks up (at most CONFLICT_EXAMPLES per kind, by id):
    the id of the row each became, the kind (`doi`, `year`), the values that disagree and the
    sources the copies came from.

    `merged` is `merge_metadata`'s table (with its `_dois`/`_year_span` columns), `ids` the
    cluster ids by `winner` (`cluster_id_table`).
    """
    frame = merged.select(
        pl.col("winner").cast(pl.Int64), "_dois", "_year_span", "_doi_values", "_year_values", "sources"
    ).join(ids.select(pl.col("winner").cast(pl.Int64), "id"), on="winner")
    rows: list[dict[str, Any]] = []
    for kind, conflicting, values in (
        ("doi", pl.col("_dois") > 1, "_doi_values"),
        ("year", pl.col("_year_span") >= 2, "_year_values"),
    ):
        for row in frame.filter(conflicting).sort("id").head(CONFLICT_EXAMPLES).iter_rows(named=True):
            rows.append({"id": row["id"], "kind": kind, "values": row[values], "sources": row["sources"]})
    return rows


def _reason(kept: str, folded: str) -> pl.Expr:
    """The KEEP_ORDER reason of the first column on which the kept copy's (`kept`-suffixed
    columns) and the folded copy's (`folded`-suffixed) values differ."""
    return pl.coalesce(
        *[
            pl.when(pl.col(f"{column}{kept}").ne_missing(pl.col(f"{column}{folded}"))).then(pl.lit(reason))
            for reason, column, _ in KEEP_ORDER
        ],
        pl.lit(KEEP_ORDER[-1][0]),
    )


def duplicates_table(
    cleaned: Path, folded: pl.DataFrame, sets: ShingleSets, keys: pl.DataFrame, ids: pl.DataFrame
) -> pl.DataFrame:
    """One row per folded record: its source and own ids, the id and source it folded into,
    method, similarity and why the kept copy won (`reason`).

    `ids` maps each winner of a cluster with folded records to the cluster's id.
    """
    folds = folded.filter(pl.col("method").is_not_null()).select(
        pl.col("row", "winner").cast(pl.Int64), "method"
    )
    own = ["source", "source_name", "arxiv_id", "arxiv_version", "doi", "source_ids", "text_hash"]
    wanted, table = read_rows(
        cleaned, np.concatenate([folds["row"].to_numpy(), folds["winner"].to_numpy()]), own
    )
    values = pl.from_arrow(table)
    assert isinstance(values, pl.DataFrame)
    values = values.with_columns(pl.Series("row", wanted))
    order = keys.select(pl.col("row").cast(pl.Int64), *_ORDER[:-1])
    folds = (
        folds.join(values, on="row")
        .join(
            values.select(pl.col("row").alias("winner"), pl.col("source").alias("kept_source")), on="winner"
        )
        .join(ids.select(pl.col("winner").cast(pl.Int64), "id"), on="winner")
        .join(order, on="row")
        .join(
            order.rename({c: f"{c}_kept" for c in order.columns if c != "row"}).rename({"row": "winner"}),
            on="winner",
        )
        .with_columns(pl.col("winner").alias("row_kept"))
        .with_columns(_reason("_kept", "").alias("reason"))
        .sort("row")
    )
    near = folds.filter(pl.col("method") == "near").select("row", "winner").to_numpy()
    held = np.isin(near, sets.rows).all(axis=1) if len(near) else np.zeros(0, dtype=bool)
    similarity = dict.fromkeys(near[:, 0].tolist(), None) if len(near) else {}
    if held.any():
        values_near = sets.similarity(near[held])
        similarity.update(
            {int(r): float(s) for r, s in zip(near[held][:, 0].tolist(), values_near.tolist(), strict=True)}
        )
    return folds.select(
        *own[:-1],
        "text_hash",
        "id",
        "kept_source",
        "method",
        pl.when(pl.col("method") == "exact")
        .then(1.0)
        .when(pl.col("method") == "near")
        .then(pl.col("row").replace_strict(similarity, default=None, return_dtype=pl.Float64))
        .otherwise(None)
        .alias("similarity"),
        "reason",
    )


def run_dedup(
    cleaned: Path,
    out: Path,
    minhash_out: Path,
    duplicates_out: Path,
    report_out: Path,
    params: DedupParams,
    releases: Path | None = None,
) -> dict[str, Any]:
    """Fold duplicates of `cleaned` into `out`, keeping published ids (`releases`); write band
    keys, folded records and the report."""
    membership = read_membership(releases)
    with returning_arrow_memory():
        map_batches(
            cleaned,
            minhash_out,
            functools.partial(minhash_batch, params=params),
            MINHASH_SCHEMA,
            workers=params.workers,
            batch_rows=params.batch_rows,
            label="dedup: minhash",
            columns=["abstract", "flags"],
            options=build_file_options(MINHASH_SCHEMA, hashes=("band_keys",)),
        )
        all_keys = read_band_keys(minhash_out, params.bands)
        keys = read_keys(cleaned, minhash_out, params)
        folded = fold_exact(keys)
        n_rows = folded.height
        exact_winner = folded["exact_winner"].to_numpy().astype(np.int64)
        survivors = np.flatnonzero(np.arange(n_rows) == exact_winner).astype(np.int64)
        verified, sets = near_duplicate_pairs(cleaned, all_keys, survivors, params, minhash_out)
        del survivors
        links = record_keys(cleaned)
        linked_ids = id_links(links, exact_winner)
        published_pairs, published = published_links(links, exact_winner, membership, n_rows)
        del links, exact_winner
        folded, component = fold_linked(
            folded, verified, linked_ids, published_pairs, n_rows + published.height
        )
        folded = folded.select("row", "winner", "method")
        kept_rows = folded.filter(pl.col("row") == pl.col("winner"))["row"].to_numpy().astype(np.int64)
        winners = pl.DataFrame({"winner": kept_rows, "component": component[kept_rows]})
        kept_published, merged_published, missing = resolve_published(published, component, winners)
        del component
        merged, conflicts = merge_metadata(cleaned, folded, keys)
        cluster_ids = cluster_id_table(cleaned, merged, kept_published)
        conflicts["rows"] = conflict_rows(merged, cluster_ids)
        duplicates = duplicates_table(cleaned, folded, sets, keys, cluster_ids)
        del sets, keys

        counts = folded.group_by("winner").len()
        del folded
        keep = np.zeros(n_rows, dtype=bool)
        duplicate_count = np.zeros(n_rows, dtype=np.int64)
        winner_rows = counts["winner"].to_numpy()
        keep[winner_rows] = True
        duplicate_count[winner_rows] = counts["len"].to_numpy() - 1
        rows_out = write_kept_rows(cleaned, all_keys, out, keep, duplicate_count, merged, kept_published)
        write_parquet(duplicates.to_arrow().cast(DUPLICATES_SCHEMA), duplicates_out)
        by_method = {m: duplicates.filter(pl.col("method") == m).height for m in DEDUP_METHODS}
        reasons = {r: duplicates.filter(pl.col("reason") == r).height for r in KEEP_REASONS}
        report = {
            "rows_in": n_rows,
            "rows_out": rows_out,
            "folded_by_method": by_method,
            "keep_reasons": reasons,
            "conflicts": conflicts,
            "published": {
                "version": membership.latest,
                "rows": membership.rows.height,
                "kept": kept_published.height,
                "merged": merged_published,
                "not_found": len(missing),
            },
        }
        write_json(report, report_out)
        print(
            f"dedup: {n_rows:,} rows in, {rows_out:,} out, folded {by_method}; "
            f"{kept_published.height:,} published ids kept, {len(merged_published):,} merged, "
            f"{len(missing):,} not found",
            file=sys.stderr,
        )
    return report


def cluster_id_table(cleaned: Path, merged: pl.DataFrame, kept_published: pl.DataFrame) -> pl.DataFrame:
    """The id of every cluster with more than one record, by `winner`: its published row's id,
    else the arXiv id of its best copy that has one, else `txt-` and the kept text's hash."""
    winners = merged["winner"].to_numpy().astype(np.int64)
    wanted, table = read_rows(cleaned, winners, ["text_hash"])
    hashes = pl.DataFrame({"winner": wanted, "text_hash": table.column("text_hash").to_pylist()})
    frame = merged.select(pl.col("winner").cast(pl.Int64), "arxiv_id").join(hashes, on="winner")
    frame = frame.join(
        kept_published.select(pl.col("winner").cast(pl.Int64), "published_id"), on="winner", how="left"
    )
    return frame.select(
        "winner",
        pl.coalesce("published_id", "arxiv_id", pl.lit(TEXT_ID_PREFIX) + pl.col("text_hash")).alias("id"),
    )


def write_kept_rows(
    cleaned: Path,
    all_keys: npt.NDArray[np.uint64],
    out: Path,
    keep: npt.NDArray[np.bool_],
    duplicate_count: npt.NDArray[np.int64],
    merged: pl.DataFrame,
    kept_published: pl.DataFrame,
) -> int:
    """Stream the cleaned rows' metadata once, writing the kept ones with their row number, id,
    count, merged metadata, member keys and band keys (not their abstracts: those stay in the
    cleaned file). Returns the rows written.

    A kept row of a cluster of one takes everything from its own columns.

    Raises:
        PipelineError: two kept rows would get the same id.
    """
    columns = [
        "arxiv_id",
        "arxiv_version",
        "source",
        "source_name",
        "file",
        "flags",
        "text_hash",
        *PAPER_METADATA_NAMES,
    ]
    fields = ["arxiv_id", "arxiv_version", *PAPER_METADATA_NAMES, "sources", "member_keys"]
    merged = merged.select(
        pl.col("winner").cast(pl.Int64).alias("row"), *[pl.col(f).alias(f"{f}__m") for f in fields]
    )
    published = kept_published.select(
        pl.col("winner").cast(pl.Int64).alias("row"), "published_id", "published_split"
    )
    seen: list[pl.Series] = []
    with parquet_writer(out, DEDUP_SCHEMA, build_file_options(DEDUP_SCHEMA, hashes=("band_keys",))) as writer:
        offset = 0
        for batch in stream_batches(cleaned, columns):
            rows = offset + np.flatnonzero(keep[offset : offset + batch.num_rows])
            kept_batch = batch.take(pa.array(rows - offset))
            kept = pl.from_arrow(kept_batch)
            assert isinstance(kept, pl.DataFrame)
            kept = kept.with_columns(
                pl.Series("row", rows, dtype=pl.Int64),
                pl.Series("duplicate_count", duplicate_count[rows]),
                pl.concat_list([_source_name()]).alias("sources"),
                pl.Series(
                    "member_keys",
                    member_key_lists(
                        *(kept_batch.column(name) for name in ("arxiv_id", "doi", "source_ids", "text_hash"))
                    ),
                ),
            )
            kept = kept.join(merged, on="row", how="left").join(published, on="row", how="left")
            many = pl.col("member_keys__m").is_not_null()
            kept = kept.with_columns(
                [pl.when(many).then(pl.col(f"{f}__m")).otherwise(pl.col(f)).alias(f) for f in fields]
            ).with_columns(
                pl.coalesce("published_id", "arxiv_id", pl.lit(TEXT_ID_PREFIX) + pl.col("text_hash")).alias(
                    "id"
                ),
                # No other id at all is a null struct, not a struct of nulls.
                pl.when(
                    pl.any_horizontal(
                        [pl.col("source_ids").struct.field(kind).is_not_null() for kind in SOURCE_ID_KINDS]
                    )
                )
                .then(pl.col("source_ids"))
                .alias("source_ids"),
            )
            seen.append(kept["id"])
            table = kept.to_arrow().append_column("band_keys", keys_to_arrow(all_keys[rows]))
            writer.write_table(table.select(DEDUP_SCHEMA.names).cast(DEDUP_SCHEMA))
            offset += batch.num_rows
    ids = pl.concat(seen) if seen else pl.Series("id", [], pl.String)
    twice = ids.filter(ids.is_duplicated())
    if len(twice):
        out.unlink(missing_ok=True)
        raise PipelineError(
            f"{cleaned}: two kept rows would both get the id {twice[0]!r}; the published membership and "
            "this build disagree: report it with releases/ and this input"
        )
    return len(ids)


def kept_abstracts(cleaned: Path, deduped: Path) -> pa.ChunkedArray:
    """The abstracts of the kept rows, in the deduplicated table's order."""
    rows = pq.read_table(deduped, columns=["row"])["row"].to_numpy()
    return pq.read_table(cleaned, columns=["abstract"])["abstract"].take(pa.array(rows))
