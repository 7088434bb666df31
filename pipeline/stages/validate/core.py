"""Stage `validate`: stage the tables the GX project reads, run its checkpoint, report.

Reads: the candidate release data directory, the deduplicated table (`build/dedup.parquet`:
normalised text hash and clean flags per row), the cleaned records (`build/clean.parquet`,
without their texts), the split report (`leaked_pairs`), the published releases' row indexes
(`releases/<version>.rows.parquet`) and the GX project `gx/` (see `project`). Writes: the four
tables of the GX data source (`build/validate/<asset>.parquet`), `validation.json` (see
`report`), the text-length plot data and, when asked, this run's offline Data Docs (see
`docs`). Params: `validate` and `split.fractions`, passed to the suites as `$PARAMETER`s; the
filter's length bounds and topics (the `policy` suite's `$PARAMETER`s) and its placeholder and
language params (what the policy facts are computed with); dedup's near-duplicate threshold and
shingle length (leaks across releases). A failed expectation never fails the stage: the `gate`
stage does.

The tables (`project.ASSETS`):
- `release`: every release split, concatenated, as published, plus `split`, with the abstract
  column as nulls of its type. Only column, type and row-count expectations run here
  (`project.SHAPE_EXPECTATIONS`): GX filters the whole frame for every column expectation, and
  copying every abstract once per expectation does not fit the time budget.
- `rows`: one row per release row (same order) without the text: the release's small columns
  plus facts computed from the text and the build (`build_rows`): `abstract_chars`,
  `abstract_words`, `artifacts` (the names of the suites' artifact regexes that match, as
  `|a|b|` text), `text_hash` and `flags` (from the dedup table), `id_splits` (how many splits
  hold the id), `leaked_with` (the other side of a near-duplicate pair across splits),
  `categories` (`|a|b|` text), `placeholder` (the notice the filter's placeholder rule finds,
  `pipeline.policy`), `language` (py3langid's label and probability where the filter's
  not_english rule would drop the row) and `published_twin` (the published validation or test
  row a new train row near-duplicates: `cross_release_candidates`, `published_twins`).
- `dedup`: the intermediate dedup table (without `abstract`, which the release checks).
- `clean`: the intermediate clean table, one row per raw record (without its texts).

No leak across releases is checked from what is stored, not from the split stage's report:
the published validation and test rows' LSH band keys (every release's row index), this
build's band keys (dedup's), and the release texts, compared with dedup's exact Jaccard measure
(see `published_twins` for a published row that is not in this build).

Speed: the release is read row group by row group on two threads, each decoding its group and
computing the facts about its text (pyarrow, polars and the compiled counts run without the
GIL). The abstracts are scanned once, by polars, with every artifact regex combined into one;
only the rows that match are tested regex by regex. The filter's function-word count (for its
language rule) costs ten times the word count, so it runs on every
`validate.language_sample_every`-th row; the identifier scores only the sampled rows whose
function words are too few to be sure, as the filter does. GX then checks small columns:
numbers as float64 (GX compares pandas' nullable integers one Python call per row), strings
Arrow-backed (pandas' default string dtype: its regexes run in RE2, not Python's `re`).

Memory: the tables are built and written one at a time, each freed before the next is built;
the text passes through memory once, two row groups at a time, and is never staged.
"""

from __future__ import annotations

import gc
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import SPLITS
from pipeline.errors import BadInputError
from pipeline.io.writers import write_json, write_parquet
from pipeline.kernels.fingerprint import utf8_buffers
from pipeline.kernels.measures import measure
from pipeline.kernels.minhash import ShingleSets
from pipeline.params import DedupParams, FilterParams, SplitParams, ValidateParams
from pipeline.policy import LANGUAGE_IDENTIFIER, language_verdicts, placeholder_notice, placeholder_rows
from pipeline.releases import published_versions, row_index_path
from pipeline.versions import tag_name

SEVERITIES = ("critical", "warning")
TABLES = ("release", "rows", "dedup", "clean")
MAX_FAILING_ROWS = 20
# Row identity in every table and in the report; `source` says which dump to look at.
INDEX_COLUMNS = ["id", "source"]
# The `rows` table (see `build_rows`).
ROWS_COLUMNS = [
    "id",
    "source",
    "split",
    "arxiv_id",
    "arxiv_version",
    "duplicate_count",
    "abstract_chars",
    "abstract_words",
    "artifacts",
    "text_hash",
    "flags",
    "id_splits",
    "leaked_with",
    "categories",
    "placeholder",
    "language",
    "published_twin",
]
# The dedup columns the gate reads and checks (the `dedup` table).
DEDUP_COLUMNS = ("id", "arxiv_id", "arxiv_version", "source", "duplicate_count", "flags", "text_hash")
# The clean table without its two text columns (raw and cleaned), which would double memory.
CLEAN_COLUMNS = ("source", "format", "line", "arxiv_id", "arxiv_version", "clean_rules", "flags", "text_hash")
_ARTIFACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _pandas_type(arrow_type: pa.DataType) -> Any:
    # Nullable pandas dtypes: integer columns with nulls stay integers, and strings stay in
    # Arrow memory (a large release as Python str objects would not fit the memory budget).
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_string_view(arrow_type)
    ):
        return pd.StringDtype("pyarrow")
    if pa.types.is_int64(arrow_type):
        return pd.Int64Dtype()
    return None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=_pandas_type)


def _polars_to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """`_to_pandas(frame.to_arrow())`, emptying `frame` column by column: each polars column is
    freed once its Arrow copy exists, so the table is never in memory twice (that pair of copies
    would be the stage's peak)."""
    names = frame.columns
    return _to_pandas(pa.table([frame.drop_in_place(name).to_arrow() for name in names], names=names))


def _release_files(release_data: Path) -> list[Path]:
    paths = sorted(release_data.glob("*.parquet"))
    if not paths:
        raise BadInputError(f"{release_data}: no release parquet files to validate")
    return paths


def _with_split(table: pa.Table, path: Path) -> pa.Table:
    split = path.name.split("-", 1)[0]
    return table.append_column("split", pa.repeat(pa.scalar(split, pa.string()), table.num_rows))


def release_schema(release_data: Path) -> tuple[pa.Schema, list[str]]:
    """The schema of all release splits concatenated (with `split`), in file-name order, and
    the columns that are read as text because their type differs between split files (so that
    the schema suite's type expectation fails and names them).

    Decided on empty tables of each file's schema, exactly as `pa.concat_tables` would decide it
    for the full tables, so that the rows can then be streamed file by file.

    Raises:
        BadInputError: no release file, or split files whose schemas cannot be combined.
    """
    empty = [
        _with_split(pq.ParquetFile(path).schema_arrow.empty_table(), path)
        for path in _release_files(release_data)
    ]
    try:
        return pa.concat_tables(empty, promote_options="permissive").schema, []
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    types: dict[str, set[pa.DataType]] = {}
    for table in empty:
        for column in table.schema:
            types.setdefault(column.name, set()).add(column.type)
    conflicting = [name for name, seen in types.items() if len(seen) > 1]
    try:
        schema = pa.concat_tables(
            [_cast_to_string(table, conflicting) for table in empty], promote_options="permissive"
        ).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise BadInputError(f"{release_data}: the split files have different schemas ({exc})") from None
    return schema, conflicting


def release_batches(
    release_data: Path, schema: pa.Schema, conflicting: list[str], batch_rows: int = 100_000
) -> Iterator[pa.Table]:
    """The release batch by batch, in `release_schema` (`schema`, `conflicting`): every split
    file in file-name order, with its `split`. Concatenated, they are the `release` table."""
    target = schema.empty_table()
    for path in _release_files(release_data):
        file = pq.ParquetFile(path)
        for batch in file.iter_batches(batch_size=batch_rows):
            yield _conform(
                pa.Table.from_batches([batch], schema=file.schema_arrow), path, schema, conflicting, target
            )


def release_groups(release_data: Path) -> list[tuple[Path, int]]:
    """(file, row group) of every release row group, in release order (`release_batches`)."""
    return [
        (path, group)
        for path in _release_files(release_data)
        for group in range(pq.ParquetFile(path).metadata.num_row_groups)
    ]


def read_release_group(path: Path, group: int, schema: pa.Schema, conflicting: list[str]) -> pa.Table:
    """One row group of a split file as a piece of the `release` table (see `release_batches`).

    Decoded on the calling thread only: the callers decode two row groups at once, one per core,
    which `read_table`'s per-column threads cannot do for a table whose bulk is one column.
    """
    file = pq.ParquetFile(path)
    table = file.read_row_group(group, use_threads=False)
    table = pa.Table.from_batches(table.to_batches(), schema=file.schema_arrow)
    return _conform(table, path, schema, conflicting, schema.empty_table())


def _conform(
    table: pa.Table, path: Path, schema: pa.Schema, conflicting: list[str], target: pa.Table
) -> pa.Table:
    """Rows of the split file `path` (in its own schema) in the release schema, with `split`."""
    table = _cast_to_string(_with_split(table, path), conflicting)
    if not table.schema.equals(schema, check_metadata=True):
        # Promoted, reordered and null-filled as `pa.concat_tables` does with each table.
        table = pa.concat_tables([target, table], promote_options="permissive")
    return table


def _cast_to_string(table: pa.Table, names: list[str]) -> pa.Table:
    for name in names:
        if name in table.column_names:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(index).cast(pa.string()))
    return table


def read_leaked_pairs(split_report: Path) -> list[dict[str, Any]]:
    """The split report's `leaked_pairs`; a report without the key has none."""
    try:
        report = json.loads(split_report.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{split_report}: split report not found; run the split stage first") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{split_report}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    pairs = report.get("leaked_pairs", [])
    if not isinstance(pairs, list):
        raise BadInputError(f"{split_report}: leaked_pairs must be a list, got {type(pairs).__name__}")
    for index, pair in enumerate(pairs):
        if not (
            isinstance(pair, dict)
            and isinstance(pair.get("id"), str)
            and isinstance(pair.get("other_id"), str)
        ):
            raise BadInputError(
                f"{split_report}: leaked_pairs[{index}] must be an object with string `id` and "
                f"`other_id`, got {pair!r}"
            )
    return pairs


def _column(frame: pl.DataFrame, name: str, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    # A missing or mistyped column is the schema suite's finding (on the `release` table);
    # here it must not crash the other suites, so it becomes nulls (or text).
    if name not in frame.columns:
        return pl.lit(None, dtype).alias(name)
    return pl.col(name).cast(dtype, strict=False).alias(name)


def _flags_text(column: str = "flags") -> pl.Expr:
    return pl.concat_str([pl.lit("|"), pl.col(column).list.join("|"), pl.lit("|")]).alias(column)


def _categories(frame: pl.DataFrame) -> pl.Expr:
    """The release's `categories` as `|a|b|` text (null: none known; a mistyped column is the
    schema suite's finding and is read as text)."""
    if isinstance(frame.schema.get("categories"), pl.List):
        return _flags_text("categories")
    return _column(frame, "categories", pl.String)


# Inline math, which clean keeps verbatim (`$\dots , n$` is right there): an artifact inside
# it is not one. Bounded, so a stray dollar sign cannot hide a paragraph.
INLINE_MATH = r"\$\$[^$]{1,500}\$\$|\$[^$\n]{1,300}\$|\\\([^\n]{1,300}?\\\)|\\\[[^\n]{1,500}?\\\]"


def find_artifacts(abstracts: pl.Series, patterns: dict[str, str]) -> pl.Series:
    """Per abstract, the names of the matching patterns as `|a|b|` text (`""` when none),
    outside inline math (`INLINE_MATH`).

    One pass over all the text with the patterns combined; then, with the math masked, each
    pattern only on the (few) rows that matched any.
    """
    result = pl.Series("artifacts", [""] * len(abstracts), pl.String)
    if not patterns or len(abstracts) == 0:
        return result
    combined = "|".join(f"(?:{pattern})" for pattern in patterns.values())
    hits = abstracts.str.contains(combined).fill_null(False).arg_true()
    if len(hits) == 0:
        return result
    suspects = pl.DataFrame({"abstract": abstracts.gather(hits).str.replace_all(INLINE_MATH, "$MATH$")})
    names = suspects.select(
        pl.concat_str(
            [pl.lit("|")]
            + [
                pl.when(pl.col("abstract").str.contains(pattern))
                .then(pl.lit(f"{name}|"))
                .otherwise(pl.lit(""))
                for name, pattern in patterns.items()
            ]
        )
    ).to_series()
    # A row whose only matches were inside math matches nothing.
    names = names.replace("|", "")
    return result.scatter(hits, names)


@numba.njit(cache=True, nogil=True)
def _space_counts(
    data: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:  # pragma: no cover - compiled
    # A space is the byte 0x20 in UTF-8, never part of a longer character.
    rows = len(offsets) - 1
    counts = np.zeros(rows, dtype=np.int64)
    for row in range(rows):
        count = 0
        for position in range(offsets[row], offsets[row + 1]):
            count += data[position] == 32
        counts[row] = count
    return counts


def count_spaces(text: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """Spaces per string (0 for null), as `str.count_matches(" ", literal=True)` counts them,
    but in one compiled pass over the UTF-8 buffer, without the GIL."""
    data, offsets = utf8_buffers(text)
    return _space_counts(data, offsets)


def _with_nulls(values: npt.NDArray[Any], null: npt.NDArray[np.bool_], name: str) -> pl.Series:
    series = pl.from_arrow(pa.array(values, mask=null))
    assert isinstance(series, pl.Series)
    return series.alias(name)


def _texts_at(values: dict[int, str], rows: int, name: str) -> pl.Series:
    """A text column of `rows` rows, null except at the rows `values` holds."""
    column: list[str | None] = [None] * rows
    for row, value in values.items():
        column[row] = value
    return pl.Series(name, column, pl.String)


def _text_facts(
    abstracts: pl.Series,
    patterns: dict[str, str],
    policy: FilterParams,
    language_every: int,
    arrow: pa.Array | pa.ChunkedArray | None = None,
) -> pl.DataFrame:
    """Per abstract: its length in characters and words, the artifacts found in it and what
    the curation policy finds (`placeholder`: the notice; `language`: the identifier's label
    and probability, for a row it is sure is not English), null where it finds nothing.

    Words are counted as the filter counts them (`pipeline.kernels.measures`: spaces + 1, clean
    leaves single spaces between words; 0 for the empty text). The language rule needs the
    share of English function words, the filter's compiled count, which costs ten times the
    space count: it is taken on every `language_every`-th row (validate.language_sample_every;
    1: every row), and the identifier scores those whose share is too low to be sure, as the
    filter did. `arrow` is `abstracts` as Arrow when the caller has it.
    """
    arrow = abstracts.to_arrow() if arrow is None else arrow
    null = abstracts.is_null().to_numpy()
    chars = abstracts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    words = np.where(chars == 0, 0, count_spaces(arrow) + 1)
    notice_rows = np.flatnonzero(placeholder_rows(abstracts, words, policy.placeholder_max_words))
    texts = abstracts.gather(notice_rows).to_list() if len(notice_rows) else []
    notices = {
        row: placeholder_notice(text) or "" for row, text in zip(notice_rows.tolist(), texts, strict=True)
    }
    sampled = np.arange(0, len(abstracts), language_every, dtype=np.int64)
    counts = measure(arrow.take(pa.array(sampled)))
    language = language_verdicts(
        abstracts.gather(sampled),
        counts.chars,
        counts.words,
        counts.function_words,
        policy.english_sure_share,
        policy.language_min_confidence,
    )
    verdicts = {
        int(sampled[row]): f"{LANGUAGE_IDENTIFIER}: {language.answers[row][0]} {language.answers[row][1]:.3f}"
        for row in np.flatnonzero(language.not_english).tolist()
    }
    return pl.DataFrame(
        [
            _with_nulls(chars.astype(np.float64), null, "abstract_chars"),
            _with_nulls(words.astype(np.float64), null, "abstract_words"),
            find_artifacts(abstracts, patterns),
            _texts_at(notices, len(abstracts), "placeholder"),
            _texts_at(verdicts, len(abstracts), "language"),
        ]
    )


def _abstract_text(table: pa.Table) -> pa.ChunkedArray | None:
    # A missing or non-text abstract column is the schema suite's finding (on `release`); here
    # it must not crash the other suites, so its facts become nulls.
    if "abstract" not in table.column_names:
        return None
    column = table.column("abstract")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column
    try:
        return column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _arrow_text_facts(
    text: pa.ChunkedArray, patterns: dict[str, str], policy: FilterParams, language_every: int
) -> pl.DataFrame:
    abstracts = pl.from_arrow(text)
    assert isinstance(abstracts, pl.Series)
    return _text_facts(abstracts, patterns, policy, language_every, text)


# One piece of the `release` table, the facts about its text (None: no text) and the texts of
# the rows the cross-release check compares (`id`, `abstract`).
Piece = tuple[pa.Table, pl.DataFrame | None, pa.Table]
_TWIN_TEXTS_SCHEMA = pa.schema([("id", pa.string()), ("abstract", pa.large_string())])


def _release_piece(
    path: Path,
    group: int,
    schema: pa.Schema,
    conflicting: list[str],
    patterns: dict[str, str],
    policy: FilterParams,
    language_every: int,
    wanted: pa.Array,
) -> Piece:
    """One row group of the `release` table, its abstract column as nulls of its type, the
    facts about its text (None: no text) and the texts of its rows whose id is in `wanted`."""
    table = read_release_group(path, group, schema, conflicting)
    text = _abstract_text(table)
    facts = None if text is None else _arrow_text_facts(text, patterns, policy, language_every)
    twins = _TWIN_TEXTS_SCHEMA.empty_table()
    if len(wanted) and text is not None and "id" in table.column_names:
        mask = pc.is_in(table.column("id").cast(pa.string()), value_set=wanted)
        twins = pa.table(
            {"id": table.column("id").cast(pa.string()).filter(mask), "abstract": text.filter(mask)}
        ).cast(_TWIN_TEXTS_SCHEMA)
    if "abstract" in table.column_names:
        index = table.schema.get_field_index("abstract")
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.nulls(table.num_rows, field.type))
    return table, facts, twins


def start_release(
    release_data: Path,
    patterns: dict[str, str],
    pool: ThreadPoolExecutor,
    policy: FilterParams,
    language_every: int,
    wanted: pa.Array | None = None,
) -> Callable[[], tuple[pa.Table, pl.DataFrame, pa.Table]]:
    """Start reading the release on `pool`, row group by row group; the returned function waits
    for the rest and returns the `release` table (its abstract column as nulls of its type),
    its rows' facts (`_text_facts`), in order, and the texts of the rows whose id is in `wanted`.

    The text passes through memory once, two row groups at a time (decoded and its facts
    computed on the pool's threads, which polars, pyarrow and the compiled counts run without
    the GIL). What waits is small, so every row group is queued at once and the pool reads on
    while the caller does other work.

    Raises:
        BadInputError: see `release_schema`.
    """
    wanted = pa.array([], pa.string()) if wanted is None else wanted
    schema, conflicting = release_schema(release_data)
    pending: deque[Future[Piece]] = deque(
        pool.submit(
            _release_piece, path, group, schema, conflicting, patterns, policy, language_every, wanted
        )
        for path, group in release_groups(release_data)
    )

    def finish() -> tuple[pa.Table, pl.DataFrame, pa.Table]:
        tables: list[pa.Table] = []
        facts: list[pl.DataFrame] = []
        twins: list[pa.Table] = [_TWIN_TEXTS_SCHEMA.empty_table()]
        rows = 0
        texts = True
        while pending:
            table, piece, twin_texts = pending.popleft().result()
            rows += table.num_rows
            tables.append(table)
            twins.append(twin_texts)
            texts = texts and piece is not None
            if texts and piece is not None:
                facts.append(piece)
        # The decoded text's pages go back to the OS before the joins that set the stage's peak.
        pa.default_memory_pool().release_unused()
        release = pa.concat_tables([schema.empty_table(), *tables])
        twin_table = pa.concat_tables(twins)
        if not texts:
            return (
                release,
                _text_facts(pl.Series([None] * rows, dtype=pl.String), patterns, policy, language_every),
                twin_table,
            )
        if not facts:
            return (
                release,
                _text_facts(pl.Series([], dtype=pl.String), patterns, policy, language_every),
                twin_table,
            )
        return release, pl.concat(facts), twin_table

    return finish


# --- no leak across releases ------------------------------------------------------------


def read_published(releases: Path | None) -> tuple[pl.DataFrame, pl.Series]:
    """The validation and test rows of every published release (`releases/<version>.rows.parquet`)
    with their LSH band keys (`id`, `split`, `version`: the first release that published the row
    in that split, `band_keys`), and every published id (any split, any release).

    A row index written before band keys were stored has none: its rows cannot be compared.

    Raises:
        BadInputError: a published record without its row index, or an unreadable index.
    """
    empty = pl.DataFrame(
        schema={"id": pl.String, "split": pl.String, "version": pl.String, "band_keys": pl.List(pl.UInt64)}
    )
    if releases is None:
        return empty, pl.Series("id", [], pl.String)
    evaluation = [empty]
    ids = [pl.Series("id", [], pl.String)]
    for version, record in published_versions(releases):
        index = row_index_path(record, version)
        try:
            names = pq.read_schema(index).names
            frame = pl.read_parquet(index, columns=[c for c in ("id", "split", "band_keys") if c in names])
        except (OSError, pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise BadInputError(f"{index}: cannot read the row index ({exc})") from None
        if "id" not in frame.columns or "split" not in frame.columns:
            raise BadInputError(f"{index}: a row index needs `id` and `split` columns; restore it from git")
        ids.append(frame["id"].cast(pl.String))
        if "band_keys" in frame.columns:
            evaluation.append(
                frame.filter((pl.col("split") != SPLITS[0]) & pl.col("band_keys").is_not_null()).select(
                    pl.col("id").cast(pl.String),
                    pl.col("split").cast(pl.String),
                    pl.lit(tag_name(version)).alias("version"),
                    pl.col("band_keys").cast(pl.List(pl.UInt64)),
                )
            )
    rows = pl.concat(evaluation).unique("id", keep="first", maintain_order=True)
    return rows, pl.concat(ids).unique().sort()


def _band_matrix(keys: pl.Series, what: str) -> npt.NDArray[np.uint64]:
    lengths = keys.list.len().unique().to_list()
    if len(lengths) > 1:
        raise BadInputError(f"{what}: band keys of different lengths {sorted(lengths)}; run `dvc repro`")
    bands = lengths[0] if lengths else 0
    # Through numpy, not Python lists: the keys are 64-bit and must not pass through floats.
    matrix: npt.NDArray[np.uint64] = keys.explode().to_numpy().astype(np.uint64).reshape(len(keys), bands)
    return matrix


def band_matches(new: npt.NDArray[np.uint64], published: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Pairs (new row, published row) that share a band key in the same band; unique, sorted.

    Band by band: a hash lookup (polars `is_in`) finds the few new rows whose key is published
    at all, and only those are searched in the sorted published keys (searching every new row
    cost ten times as much at millions of rows).
    """
    found = [np.zeros((0, 2), dtype=np.int64)]
    for band in range(published.shape[1]):
        keys = pl.Series(published[:, band])
        hit = np.flatnonzero(pl.Series(new[:, band]).is_in(keys.implode()).to_numpy())
        if not len(hit):
            continue
        order = np.argsort(published[:, band], kind="stable")
        values = published[order, band]
        lo = np.searchsorted(values, new[hit, band], side="left")
        hi = np.searchsorted(values, new[hit, band], side="right")
        counts = hi - lo
        rows = np.repeat(hit.astype(np.int64), counts)
        # Position k of a row's run of matches: lo + k.
        starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        found.append(np.stack([rows, order[starts + np.arange(len(rows))]], axis=1).astype(np.int64))
    return np.unique(np.concatenate(found), axis=0)


def cross_release_candidates(
    release_ids: pl.DataFrame, dedup_path: Path, evaluation: pl.DataFrame, published_ids: pl.Series
) -> pl.DataFrame:
    """Each new train row of the release (`release_ids`: `id`, `split`; new: an id no release
    published) that shares an LSH band key with a published validation or test row
    (`evaluation`, from `read_published`): `id`, `published_id`, `published_split`, `version`.

    The new rows' band keys are the dedup stage's (`build/dedup.parquet`), computed from the
    texts with the same MinHash the published keys were; a new row dedup does not hold is the
    uniqueness suite's finding (`release_row_in_dedup`) and is not compared here.

    Raises:
        BadInputError: the published and this build's keys have different numbers of bands
            (dedup.bands changed since the release: nothing can be compared).
    """
    schema = pl.Schema(
        {"id": pl.String, "published_id": pl.String, "published_split": pl.String, "version": pl.String}
    )
    if not evaluation.height:
        return pl.DataFrame(schema=schema)
    new_train = release_ids.filter(
        (pl.col("split") == SPLITS[0]) & ~pl.col("id").is_in(published_ids.implode())
    )
    if not new_train.height:
        return pl.DataFrame(schema=schema)
    try:
        keys = (
            pl.scan_parquet(dedup_path)
            .select("id", "band_keys")
            .filter(pl.col("id").is_in(new_train["id"].implode()))
            .unique("id", keep="first", maintain_order=True)
            .collect()
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BadInputError(f"{dedup_path}: cannot read the band keys ({exc}); run `dvc repro`") from None
    if not keys.height:
        return pl.DataFrame(schema=schema)
    mine = _band_matrix(keys["band_keys"], str(dedup_path))
    theirs = _band_matrix(evaluation["band_keys"], "releases/*.rows.parquet")
    if mine.shape[1] != theirs.shape[1]:
        raise BadInputError(
            f"{dedup_path}: {mine.shape[1]} band keys per row, the published releases' "
            f"{theirs.shape[1]}: dedup.bands changed since the last release; restore it or start a "
            "new major version"
        )
    pairs = band_matches(mine, theirs)
    published = evaluation.select(
        pl.col("id").alias("published_id"), pl.col("split").alias("published_split"), "version"
    )
    new_ids = keys["id"].gather(pairs[:, 0]).to_frame("id")
    found: pl.DataFrame = pl.concat([new_ids, published[pairs[:, 1].tolist()]], how="horizontal")
    return found.cast(schema)


def published_twins(candidates: pl.DataFrame, texts: pa.Table, dedup: DedupParams) -> pl.DataFrame:
    """Per new train row that is a near duplicate of a published validation or test row: `id`
    and `published_twin`, naming that row (test before validation, then the smallest id).

    A candidate pair (`cross_release_candidates`) is a near duplicate when its exact Jaccard
    similarity of word shingles reaches dedup.near_threshold (dedup's own measure), the
    published row's text being its text in this release (`texts`: `id`, `abstract`); when
    the published row is not in this release its text is not stored anywhere, and the shared
    band key counts as a near duplicate (the split stage pins such a row to the published
    row's split, so it is not in train). A published row whose text changed since (a better
    copy won its cluster) is compared by its text in this release, as split compares it: the
    published text is not stored, only its fingerprint.
    """
    schema = {"id": pl.String, "published_twin": pl.String}
    if not candidates.height:
        return pl.DataFrame(schema=schema)
    frame = pl.from_arrow(texts)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.unique("id", keep="first").sort("id").with_row_index("row")
    row_of = dict(zip(frame["id"].to_list(), frame["row"].to_list(), strict=True))
    here = [
        (row_of.get(a), row_of.get(b))
        for a, b in zip(candidates["id"].to_list(), candidates["published_id"].to_list(), strict=True)
    ]
    verifiable = [a is not None and b is not None for a, b in here]
    similarity: list[float | None] = [None] * len(here)
    compared = np.array([pair for pair, ok in zip(here, verifiable, strict=True) if ok], dtype=np.int64)
    if len(compared):
        sets = ShingleSets.of_texts(
            frame["abstract"].to_arrow(), frame["row"].cast(pl.Int64).to_numpy(), dedup.shingle_words
        )
        values = iter(sets.similarity(compared.reshape(-1, 2)).tolist())
        similarity = [next(values) if ok else None for ok in verifiable]
    rank = {name: code for code, name in enumerate(SPLITS)}
    twins = (
        candidates.with_columns(pl.Series("similarity", similarity, pl.Float64))
        .filter(pl.col("similarity").is_null() | (pl.col("similarity") >= dedup.near_threshold))
        .with_columns(
            pl.col("published_split")
            .replace_strict(rank, default=len(SPLITS), return_dtype=pl.Int8)
            .alias("rank"),
            pl.when(pl.col("similarity").is_null())
            .then(pl.lit("not in this release; a band key is shared"))
            .otherwise(pl.format("similarity {}", pl.col("similarity").round(3)))
            .alias("evidence"),
        )
        .sort(["id", "rank", "published_id"], descending=[False, True, False])
        .unique("id", keep="first", maintain_order=True)
    )
    return twins.select(
        "id",
        pl.format("{} ({} in {}, {})", "published_id", "published_split", "version", "evidence").alias(
            "published_twin"
        ),
    )


def build_rows(
    release: pa.Table,
    text: pl.DataFrame,
    dedup: pl.DataFrame,
    leaked_pairs: list[dict[str, Any]],
    twins: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per release row (same order) with the text replaced by facts about it.

    Pure: `release` is the concatenated release with `split` (its `abstract` is not read);
    `text` is `start_release`'s facts about each abstract; `dedup` is `read_dedup`'s frame
    (`flags` already as `|a|b|` text); `twins` is `published_twins`' frame (None: no published
    release to compare with). Numbers are float64 (NaN for null): GX compares numpy numbers
    vectorised; `categories` is `|a|b|` text like `flags` (null: none known).
    """
    frame = pl.from_arrow(release.drop_columns([c for c in ("abstract",) if c in release.column_names]))
    assert isinstance(frame, pl.DataFrame)
    keys = frame.select(
        _column(frame, "id", pl.String),
        _column(frame, "source", pl.String),
        _column(frame, "split", pl.String),
        _column(frame, "arxiv_id", pl.String),
        _column(frame, "arxiv_version", pl.Float64),
        _column(frame, "duplicate_count", pl.Float64),
        _categories(frame),
    )
    build = dedup.select(
        _column(dedup, "id", pl.String),
        _column(dedup, "text_hash", pl.String),
        _column(dedup, "flags", pl.String),
    )
    # The first row of each id, in order: `unique(keep="first", maintain_order=True)` keeps the
    # same rows but builds a second copy of the table.
    build = build.filter(pl.col("id").is_first_distinct())
    pairs = (
        pl.DataFrame(
            {
                "id": [p["id"] for p in leaked_pairs] + [p["other_id"] for p in leaked_pairs],
                "leaked_with": [p["other_id"] for p in leaked_pairs] + [p["id"] for p in leaked_pairs],
            },
            schema={"id": pl.String, "leaked_with": pl.String},
        )
        .group_by("id")
        .agg(pl.col("leaked_with").min())
    )
    rows = pl.concat([keys, text], how="horizontal").join(build, on="id", how="left", maintain_order="left")
    if pairs.height:
        rows = rows.join(pairs, on="id", how="left", maintain_order="left")
    else:
        # What the join with no pair gives, without a second copy of the table.
        rows = rows.with_columns(pl.lit(None, pl.String).alias("leaked_with"))
    if twins is not None and twins.height:
        rows = rows.join(twins, on="id", how="left", maintain_order="left")
    else:
        rows = rows.with_columns(pl.lit(None, pl.String).alias("published_twin"))
    return rows.with_columns(
        pl.col("split").n_unique().over("id").cast(pl.Float64).alias("id_splits")
    ).select(ROWS_COLUMNS)


def _build_columns(path: Path, stage: str, columns: tuple[str, ...]) -> list[str]:
    """Those of `columns` that a stage's parquet table has, in the file's order.

    Raises:
        BadInputError: the file is missing or not parquet.
    """
    try:
        names = pq.read_schema(path).names
    except FileNotFoundError:
        raise BadInputError(f"{path}: {stage} table not found; run the {stage} stage first") from None
    except pa.ArrowInvalid as exc:
        raise BadInputError(f"{path}: not a parquet file ({exc})") from None
    return [name for name in names if name in columns]


def _read_build_table(path: Path, stage: str, columns: tuple[str, ...]) -> pl.DataFrame:
    """`columns` of a stage's parquet table (those that exist), list columns as `|a|b|` text
    (one regex expectation checks membership) and integers as float64 (see `build_rows`)."""
    frame = pl.read_parquet(path, columns=_build_columns(path, stage, columns))
    for column, dtype in frame.schema.items():
        if isinstance(dtype, pl.List):
            frame = frame.with_columns(_flags_text(column))
    return frame.with_columns(pl.col(pl.Int64).cast(pl.Float64))


def read_dedup(dedup_path: Path) -> pl.DataFrame:
    """The dedup table's `DEDUP_COLUMNS` that exist in the file, in the file's order.

    `abstract` is left out (the release carries and checks the text), and so are columns only
    other stages use (LSH band keys would cost a Python object per row in pandas).
    """
    return _read_build_table(dedup_path, "dedup", DEDUP_COLUMNS)


def read_clean(clean_path: Path) -> pl.DataFrame:
    """The clean stage's record table without its texts: provenance, hash, rules and flags."""
    return _read_build_table(clean_path, "clean", CLEAN_COLUMNS)


def release_ids(release_data: Path) -> pl.DataFrame:
    """`id` and `split` of every release row, in release order, without the text (the id
    column is text here whatever its type; a file without one gives no rows: the schema suite
    names it)."""
    frames = [pl.DataFrame(schema={"id": pl.String, "split": pl.String})]
    for path in _release_files(release_data):
        if "id" not in pq.read_schema(path).names:
            continue
        ids = pq.read_table(path, columns=["id"]).column("id").cast(pa.string())
        frame = pl.from_arrow(_with_split(pa.table({"id": ids}), path))
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame)
    return pl.concat(frames)


def stage_tables(
    release_data: Path,
    dedup_path: Path,
    split_report: Path,
    clean_path: Path,
    patterns: dict[str, str],
    out_dir: Path,
    policy: FilterParams,
    dedup_params: DedupParams,
    language_every: int = 1,
    releases: Path | None = None,
) -> dict[str, Path]:
    """Write the four tables the GX data source reads (`project.ASSETS`) to `out_dir`, one at a
    time, each freed before the next is built (on a large release they would not fit side by side).

    Returns asset name -> parquet file. The abstracts are read once, here; what the suites check
    about them is in `rows` (see `build_rows`). `policy` is the filter's params (the curation
    policy the `policy` suite checks again), `language_every` which rows the language rule is
    checked on (`_text_facts`), `releases` the published memberships the release is compared
    with (None: nothing published).

    Raises:
        BadInputError: an input table cannot be read.
    """
    # Every input is looked at before the long work starts, in the order the tables are built.
    release_schema(release_data)
    _build_columns(dedup_path, "dedup", DEDUP_COLUMNS)
    leaked_pairs = read_leaked_pairs(split_report)
    _build_columns(clean_path, "clean", CLEAN_COLUMNS)
    evaluation, published_ids = read_published(releases)
    # The rows to compare with published ones are known before the text is read, so that
    # their texts are picked up on the way (the ids and band keys are small).
    ids = (
        release_ids(release_data)
        if evaluation.height
        else pl.DataFrame(schema={"id": pl.String, "split": pl.String})
    )
    candidates = cross_release_candidates(ids, dedup_path, evaluation, published_ids)
    wanted = pa.array(
        pl.concat([candidates["id"], candidates["published_id"]]).unique().sort().to_list(), pa.string()
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.parquet" for name in ("release", "rows", "dedup", "clean")}
    with ThreadPoolExecutor(max_workers=2) as pool:
        release, text, twin_texts = start_release(
            release_data, patterns, pool, policy, language_every, wanted
        )()
    write_parquet(release, paths["release"])
    twins = published_twins(candidates, twin_texts, dedup_params)
    dedup = read_dedup(dedup_path)
    rows = build_rows(release, text, dedup, leaked_pairs, twins)
    del release, text
    write_parquet(rows.to_arrow(), paths["rows"])
    del rows
    write_parquet(dedup.to_arrow(), paths["dedup"])
    del dedup
    write_parquet(read_clean(clean_path).to_arrow(), paths["clean"])
    gc.collect()
    return paths


def expectation_parameters(
    params: ValidateParams, split: SplitParams, policy: FilterParams
) -> dict[str, Any]:
    """The values the suites' `{"$PARAMETER": name}` kwargs take (from params.yaml): the
    `policy` suite's from the filter's, the policy it checks again."""
    return {
        "min_rows": params.min_rows,
        "max_rows": params.max_rows,
        "min_chars": params.min_chars,
        "max_chars": params.max_chars,
        "min_words": params.min_words,
        "max_words": params.max_words,
        "split_fractions": dict(split.fractions),
        "split_sigmas": params.split_sigmas,
        "filter_min_chars": policy.min_chars,
        "filter_max_chars": policy.max_chars,
        "filter_min_words": policy.min_words,
        "filter_max_words": policy.max_words,
        "filter_topics": list(policy.topics),
    }


def run_validate(
    release_data: Path,
    gx_dir: Path,
    report_out: Path,
    params: ValidateParams,
    split_params: SplitParams,
    *,
    dedup: Path,
    split_report: Path,
    clean: Path,
    text_lengths: Path | None = None,
    policy: FilterParams | None = None,
    dedup_params: DedupParams | None = None,
    releases: Path | None = None,
) -> dict[str, Any]:
    """Stage the tables, run the GX checkpoint (whose action writes this run's offline Data Docs
    pages, `actions.OfflineDataDocsAction`) and write the report.
    Never raises for a failed expectation: the report says what failed, `review` shows it and
    the `gate` stage stops the pipeline on it. `policy` and `dedup_params` default to the
    params' defaults (params.yaml's `filter` and `dedup` sections, as the command passes them);
    `releases` holds the published memberships (None: nothing published).

    Raises:
        BadInputError: a suite, the GX project or an input table cannot be read.
    """
    from pipeline.io.progress import phases
    from pipeline.stages.validate import project, report

    policy = policy or FilterParams()
    with phases("validate", 4) as step:
        step("staging the tables")
        checkpoint, specs = project.load_checkpoint(gx_dir)
        paths = stage_tables(
            release_data,
            dedup,
            split_report,
            clean,
            project.artifact_patterns(specs),
            project.tables_directory(checkpoint),
            policy,
            dedup_params or DedupParams(),
            params.language_sample_every,
            releases,
        )
        # The checkpoint's action writes the Data Docs pages after the suites.
        step(f"running {len(specs)} suites and writing Data Docs")
        outcomes = project.run_checkpoint(checkpoint, expectation_parameters(params, split_params, policy))
        step("report")
        results = report.plain_results(specs, outcomes, paths)
        validation = report.build_report(pq.ParquetFile(paths["release"]).metadata.num_rows, results)
        write_json(validation, report_out)
        step("text lengths")
        if text_lengths is not None:
            report.write_text_lengths(paths["rows"], text_lengths)
    report.print_summary(validation)
    return validation
