"""Stage `validate`: Great Expectations suites gate the release.

Reads: the release data directory, the deduplicated table (`build/dedup.parquet`: normalised
text hash and clean flags per row), the cleaned records (`build/clean.parquet`, without their
texts), the split report (`leaked_pairs`) and the suites in
`expectations/*.json`. Writes: `validation.json` (every expectation: suite, table, severity,
success, observed value, unexpected count and up to 20 failing rows with their `source`) and,
when asked, offline Data Docs HTML. Params: `validate` (row-count, length and word bounds,
passed to the suites as `$PARAMETER`s).

Each expectation runs on one of four tables (`TABLES`):
- `release`: every release split, concatenated, exactly as published, plus `split`. Only
  table-level and type expectations run here: GX filters the whole frame for every column
  expectation, and copying 3 GB of abstracts per expectation does not fit the time budget.
- `rows`: one row per release row (same order) without the text: the release's small columns
  plus facts computed from the text and the build (`build_rows`): `abstract_chars`,
  `abstract_words`, `artifacts` (the suites' named artifact patterns that match, as `|a|b|`
  text), `text_hash` and `flags` (from the dedup table), `id_splits` (how many splits hold the
  id) and `leaked_with` (the other side of a near-duplicate pair across splits).
- `dedup`: the intermediate dedup table (without `abstract`, which the release checks).
- `clean`: the intermediate clean table, one row per raw record (without its texts).

A failed `critical` expectation prints a table of every failure and exits non-zero, so
`dvc repro` stops before the card is written; a failed `warning` is only reported.
GX is imported here only: it costs seconds, and the other stages must not pay for it.

Speed (2.7M abstracts in 26 s on 2 cores): the release is read row group by row group on two
threads, each decoding its group and computing the facts about its text (pyarrow, polars and
the compiled space count run without the GIL), while the main thread imports GX. The
abstracts are scanned once, by polars, with every artifact pattern combined into one regex;
only the rows that match are tested pattern by pattern. GX then checks small columns: numbers
as float64 (GX compares pandas' nullable integers one Python call per row), strings
Arrow-backed (its regexes run in RE2, not Python's `re`).

Memory (2.7M abstracts, 3 GB of text, in 2.5 GB peak RSS): the tables are built and checked
one at a time, each freed before the next is built, and each polars table is handed to pandas
column by column. The text passes through memory once, two row groups at a time. The
`release` suites read the columns, their types and the row count (`SHAPE_EXPECTATIONS`), so
the `release` table GX checks holds the abstract column as nulls of its type. When an
expectation on `release` may read the text (`release_reads_text`), the release is instead
spooled, uncompressed, to a temporary Arrow file next to the report and checked memory-mapped
(`read_spool`): still correct, only slower (writing 3 GB) and as costly in memory as the
pages that expectation reads.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import os
import re
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import BadInputError, ValidationFailed
from pipeline.io.writers import write_json
from pipeline.kernels.fingerprint import utf8_buffers
from pipeline.params import ValidateParams

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
]
# The dedup columns the gate reads and checks (the `dedup` table).
DEDUP_COLUMNS = ("id", "arxiv_id", "arxiv_version", "source", "duplicate_count", "flags", "text_hash")
# The clean table without its two text columns (raw and cleaned), which would double memory.
CLEAN_COLUMNS = ("source", "format", "line", "arxiv_id", "arxiv_version", "clean_rules", "flags", "text_hash")
_ARTIFACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def load_suites(directory: Path) -> list[dict[str, Any]]:
    """Read every suite JSON file.

    Each expectation must carry `meta.severity`; its table is its own `table` key, else the
    suite's `table`, else `release`. A suite may name artifact patterns (`artifacts`: name ->
    regex) that `build_rows` looks for in the abstracts.

    Raises:
        BadInputError: no suite, invalid JSON, a missing severity, an unknown table or a bad
            artifact pattern.
    """
    suites = []
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise BadInputError(f"{directory}: no expectation suites (*.json) found")
    for path in paths:
        try:
            suite = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        suite.setdefault("name", path.stem)
        default_table = suite.get("table", "release")
        for index, expectation in enumerate(suite.get("expectations", [])):
            severity = expectation.get("meta", {}).get("severity")
            if severity not in SEVERITIES:
                raise BadInputError(
                    f"{path}: expectation {index} ({expectation.get('type')}) needs meta.severity "
                    f"set to one of {', '.join(SEVERITIES)}, got {severity!r}"
                )
            table = expectation.setdefault("table", default_table)
            if table not in TABLES:
                raise BadInputError(
                    f"{path}: expectation {index} ({expectation.get('type')}) has table {table!r}; "
                    f"use one of {', '.join(TABLES)}"
                )
        for name, pattern in suite.get("artifacts", {}).items():
            if not _ARTIFACT_NAME.match(name) or not isinstance(pattern, str):
                raise BadInputError(f"{path}: artifacts.{name} needs a snake_case name and a regex string")
            try:
                pl.select(pl.lit("").str.contains(pattern))
            except pl.exceptions.ComputeError as exc:
                raise BadInputError(f"{path}: artifacts.{name} is not a valid regex ({exc})") from None
        suites.append(suite)
    return suites


def artifact_patterns(suites: list[dict[str, Any]]) -> dict[str, str]:
    """Every suite's named artifact patterns, in suite order."""
    patterns: dict[str, str] = {}
    for suite in suites:
        for name, pattern in suite.get("artifacts", {}).items():
            if name in patterns:
                raise BadInputError(f"expectations/{suite['name']}.json: artifact {name!r} is defined twice")
            patterns[name] = pattern
    return patterns


def _pandas_type(arrow_type: pa.DataType) -> Any:
    # Nullable pandas dtypes: integer columns with nulls stay integers, and strings stay in
    # Arrow memory (a 2.7M-abstract release as Python str objects would not fit the budget).
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
    freed once its Arrow copy exists, so the table is never in memory twice (at 2.7M rows that
    pair of copies was the stage's peak)."""
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


def find_artifacts(abstracts: pl.Series, patterns: dict[str, str]) -> pl.Series:
    """Per abstract, the names of the matching patterns as `|a|b|` text (`""` when none).

    One pass over all the text with the patterns combined; then each pattern only on the
    (few) rows that matched any.
    """
    result = pl.Series("artifacts", [""] * len(abstracts), pl.String)
    if not patterns or len(abstracts) == 0:
        return result
    combined = "|".join(f"(?:{pattern})" for pattern in patterns.values())
    hits = abstracts.str.contains(combined).fill_null(False).arg_true()
    if len(hits) == 0:
        return result
    suspects = pl.DataFrame({"abstract": abstracts.gather(hits)})
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


def count_spaces(text: pa.Array | pa.ChunkedArray) -> pl.Series:
    """Spaces per string (null for null), as `str.count_matches(" ", literal=True)` counts them,
    but in one compiled pass over the UTF-8 buffer, without the GIL (8x faster)."""
    data, offsets = utf8_buffers(text)
    counts = _space_counts(data, offsets)
    series = pl.from_arrow(pa.array(counts, mask=text.is_null().to_numpy(zero_copy_only=False)))
    assert isinstance(series, pl.Series)
    return series


def _text_facts(
    abstracts: pl.Series, patterns: dict[str, str], spaces: pl.Series | None = None
) -> pl.DataFrame:
    chars = abstracts.str.len_chars()
    # clean leaves single spaces between words, so words are spaces + 1.
    if spaces is None:
        spaces = abstracts.str.count_matches(" ", literal=True)
    words = spaces + 1
    return pl.DataFrame(
        {
            "abstract_chars": chars.cast(pl.Float64),
            "abstract_words": pl.select(pl.when(chars == 0).then(0).otherwise(words))
            .to_series()
            .cast(pl.Float64),
            "artifacts": find_artifacts(abstracts, patterns),
        }
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


def _arrow_text_facts(text: pa.ChunkedArray, patterns: dict[str, str]) -> pl.DataFrame:
    abstracts = pl.from_arrow(text)
    assert isinstance(abstracts, pl.Series)
    return _text_facts(abstracts, patterns, count_spaces(text))


# Expectations decided by a table's column names, their dtypes and its row count alone: GX reads
# values for a type expectation only on a pandas object column, and release text is never one.
SHAPE_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_of_type",
        "expect_table_column_count_to_be_between",
        "expect_table_column_count_to_equal",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
    }
)


def release_reads_text(suites: list[dict[str, Any]]) -> bool:
    """Whether an expectation on `release` may read the abstracts, not only their column."""
    return any(
        spec["table"] == "release"
        and (spec.get("type") not in SHAPE_EXPECTATIONS or "row_condition" in (spec.get("kwargs") or {}))
        for suite in suites
        for spec in suite.get("expectations", [])
    )


def _release_piece(
    path: Path,
    group: int,
    schema: pa.Schema,
    conflicting: list[str],
    patterns: dict[str, str],
    keep_text: bool,
) -> tuple[pa.Table, pl.DataFrame | None]:
    """One row group of the `release` table and the facts about its text (None: no text).

    Without `keep_text`, the abstract column holds nulls of its type once the facts are taken.
    """
    table = read_release_group(path, group, schema, conflicting)
    text = _abstract_text(table)
    facts = None if text is None else _arrow_text_facts(text, patterns)
    if not keep_text and "abstract" in table.column_names:
        index = table.schema.get_field_index("abstract")
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.nulls(table.num_rows, field.type))
    return table, facts


def start_release(
    release_data: Path, patterns: dict[str, str], pool: ThreadPoolExecutor, spool: Path | None
) -> Callable[[], tuple[pa.Table, pl.DataFrame]]:
    """Start reading the release on `pool`, row group by row group; the returned function waits
    for the rest and returns the `release` table and its rows' `abstract_chars`,
    `abstract_words` and `artifacts`, in order.

    The text passes through memory once, two row groups at a time (decoded and its facts
    computed on the pool's threads, which polars, pyarrow and `count_spaces` run without the
    GIL). With `spool`, every row group is written there, whole, as an uncompressed Arrow IPC
    file, and the `release` table is that file memory-mapped (`read_spool`); at most three row
    groups wait. Without (no `release` expectation reads the text, `release_reads_text`), the
    table's abstract column holds nulls of its type: what waits is small, so every row group is
    queued at once and the pool reads on while the caller does other work.

    Raises:
        BadInputError: see `release_schema`.
    """
    schema, conflicting = release_schema(release_data)
    if spool is None and "abstract" in schema.names:
        kind = schema.field("abstract").type
        # Only text becomes pandas' string dtype; another type keeps its values (see above).
        assert pa.types.is_string(kind) or pa.types.is_large_string(kind), "spool a non-text abstract"
    jobs = iter(release_groups(release_data))
    pending: deque[Future[tuple[pa.Table, pl.DataFrame | None]]] = deque()

    def submit(count: int) -> None:
        for path, group in itertools.islice(jobs, count):
            pending.append(
                pool.submit(_release_piece, path, group, schema, conflicting, patterns, spool is not None)
            )

    submit(3 if spool is not None else sys.maxsize)

    def finish() -> tuple[pa.Table, pl.DataFrame]:
        tables: list[pa.Table] = []
        facts: list[pl.DataFrame] = []
        rows = 0
        texts = True
        with contextlib.ExitStack() as stack:
            writer = None if spool is None else stack.enter_context(pa.ipc.new_file(str(spool), schema))
            while pending:
                table, piece = pending.popleft().result()
                submit(1)
                rows += table.num_rows
                if writer is None:
                    tables.append(table)
                else:
                    writer.write_table(table)
                del table
                texts = texts and piece is not None
                if texts and piece is not None:
                    facts.append(piece)
        # The decoded text's pages go back to the OS before the joins that set the stage's peak.
        pa.default_memory_pool().release_unused()
        release = (
            read_spool(spool) if spool is not None else pa.concat_tables([schema.empty_table(), *tables])
        )
        if not texts:
            return release, _text_facts(pl.Series([None] * rows, dtype=pl.String), patterns)
        if not facts:
            return release, _text_facts(pl.Series([], dtype=pl.String), patterns)
        return release, pl.concat(facts)

    return finish


def read_spool(spool: Path) -> pa.Table:
    """`start_release`'s spool as one Arrow table, memory-mapped: only the pages read are loaded.

    The `release` suites look at the columns, their types and the row count, never at the text,
    so the abstracts stay on disk (the facts about them are in the `rows` table).
    """
    return pa.ipc.open_file(pa.memory_map(str(spool))).read_all()


def build_rows(
    release: pa.Table,
    text: pl.DataFrame,
    dedup: pl.DataFrame,
    leaked_pairs: list[dict[str, Any]],
) -> pl.DataFrame:
    """One row per release row (same order) with the text replaced by facts about it.

    Pure: `release` is the concatenated release with `split` (its `abstract` is not read);
    `text` is `start_release`'s facts about each abstract; `dedup` is `read_dedup`'s frame
    (`flags` already as `|a|b|` text). Numbers are float64 (NaN for null): GX compares numpy
    numbers vectorised.
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
    )
    build = dedup.select(
        _column(dedup, "id", pl.String),
        _column(dedup, "text_hash", pl.String),
        _column(dedup, "flags", pl.String),
    )
    # The first row of each id, in order: `unique(keep="first", maintain_order=True)` keeps the
    # same rows but builds a second copy of the table (half a GB at 2.7M rows).
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NA:
        return None
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _exception_message(result: Any) -> str | None:
    info = getattr(result, "exception_info", None) or {}
    if "raised_exception" not in info:
        # Several metrics can raise; GX keys them by metric id.
        info = next((v for v in info.values() if isinstance(v, dict)), {})
    if not info.get("raised_exception"):
        return None
    message = str(info.get("exception_message") or "").strip()
    return message.splitlines()[-1] if message else "exception"


@dataclass
class _SuitePart:
    """The expectations of one suite file that run on one table, and once run, their results."""

    number: int  # the suite file's place among the suites
    suite: str
    table: str
    indexed: list[tuple[int, dict[str, Any]]]  # (position in the suite file, spec)
    gx_suite: Any
    outcome: Any = None
    results: list[dict[str, Any]] = field(default_factory=list)


class _Gx:
    """An ephemeral, offline GX context (no analytics, no stores on disk, no progress bars)."""

    def __init__(self, params: ValidateParams) -> None:
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(),
        )
        from great_expectations.execution_engine import pandas_execution_engine

        # GX labels each pandas batch with an md5 of every cell when the frame is under 1 GB
        # (seconds per table at 2.7M rows). The label only identifies the batch in GX's own
        # stores; this context keeps none, and the report identifies the data by its inputs.
        pandas_execution_engine.HASH_THRESHOLD = 0
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.parameters = {
            "min_rows": params.min_rows,
            "max_rows": params.max_rows,
            "min_chars": params.min_chars,
            "max_chars": params.max_chars,
            "min_words": params.min_words,
            "max_words": params.max_words,
        }

    def validate(self, table: str, frame: pd.DataFrame, parts: list[_SuitePart]) -> None:
        """Run every part on `table` against `frame`; store each part's outcome and plain results."""
        from great_expectations.validator.v1_validator import Validator

        # No `unexpected_index_column_names`: GX would look up every unexpected row's columns one
        # `.at[]` at a time. Without them it returns the frame's index (positions, vectorised) and
        # the first MAX_FAILING_ROWS positions are turned into ids and sources here.
        result_format = {
            "result_format": "SUMMARY",
            "partial_unexpected_count": MAX_FAILING_ROWS,
            "return_unexpected_index_query": False,
        }
        # A data source per table: its execution engine caches the frame it was given, and the
        # frame must be freed before the next table is built.
        source = self.context.data_sources.add_pandas("pipeline")
        try:
            definition = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe("all")
            validator = Validator(
                definition, result_format=result_format, batch_parameters={"dataframe": frame}
            )
            for part in parts:
                outcome = validator.validate_expectation_suite(
                    part.gx_suite, expectation_parameters=self.parameters
                )
                # GX returns results in its own order; `meta.position` maps them back to the file.
                by_position = {_position(r): r for r in outcome.results}
                part.outcome = outcome
                part.results = [
                    _plain_result(part.suite, table, spec, by_position[position], frame)
                    for position, (_, spec) in enumerate(part.indexed)
                ]
        finally:
            self.context.data_sources.delete("pipeline")
        gc.collect()  # GX's validator and engine keep the frame in reference cycles


def _configurations(suite: dict[str, Any], specs: list[dict[str, Any]]) -> list[Any]:
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    configurations = []
    for position, spec in enumerate(specs):
        try:
            configuration = ExpectationConfiguration(
                type=spec["type"], kwargs=spec["kwargs"], meta={**spec.get("meta", {}), "position": position}
            )
            configuration.to_domain_obj()  # checks the kwargs now, with the suite file named
        except Exception as exc:  # GX raises pydantic and its own errors for bad specs
            raise BadInputError(
                f"expectations/{suite['name']}.json: {spec.get('type')} is not a valid "
                f"expectation: {str(exc).splitlines()[-1] if str(exc) else type(exc).__name__}"
            ) from None
        configurations.append(configuration)
    return configurations


def suite_parts(suites: list[dict[str, Any]]) -> list[_SuitePart]:
    """Every suite split by table, in suite-file order, then by each table's first expectation.

    Raises:
        BadInputError: an expectation GX does not accept.
    """
    from great_expectations.core.expectation_suite import ExpectationSuite

    parts = []
    for number, suite_spec in enumerate(suites):
        by_table: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for index, spec in enumerate(suite_spec["expectations"]):
            by_table.setdefault(spec["table"], []).append((index, spec))
        for table, indexed in by_table.items():
            specs = [spec for _, spec in indexed]
            # The suite is built from the whole list: ExpectationSuite.add_expectation would
            # drop an expectation it considers equal to another, the constructor does not.
            gx_suite = ExpectationSuite(
                name=f"{suite_spec['name']}.{table}", expectations=_configurations(suite_spec, specs)
            )
            if len(gx_suite.expectations) != len(specs):
                raise BadInputError(f"expectations/{suite_spec['name']}.json: GX dropped an expectation")
            parts.append(_SuitePart(number, suite_spec["name"], table, indexed, gx_suite))
    return parts


def run_suites(
    release_data: Path,
    dedup_path: Path,
    split_report: Path,
    clean_path: Path,
    suites: list[dict[str, Any]],
    params: ValidateParams,
    spool_dir: Path,
) -> tuple[int, list[dict[str, Any]], list[Any]]:
    """Validate every suite on its tables, building one table at a time and freeing it before
    the next (at 2.7M abstracts the tables side by side would not fit the memory budget).

    Returns the release's row count, one plain result per expectation (in suite-file order)
    and, per suite and table, the GX suite validation result (for Data Docs). When a `release`
    expectation reads the text, the release is spooled to a temporary file in `spool_dir`
    while it is checked (`start_release`).

    Raises:
        BadInputError: a suite or an input table cannot be read.
    """
    # Every input is looked at before the long work starts, in the order the tables are built.
    schema, _ = release_schema(release_data)
    _build_columns(dedup_path, "dedup", DEDUP_COLUMNS)
    leaked_pairs = read_leaked_pairs(split_report)
    _build_columns(clean_path, "clean", CLEAN_COLUMNS)
    patterns = artifact_patterns(suites)
    abstract = schema.field("abstract").type if "abstract" in schema.names else pa.string()
    # Spooled only when a `release` expectation reads the text or the text is not text.
    spooled = release_reads_text(suites) or not (
        pa.types.is_string(abstract) or pa.types.is_large_string(abstract)
    )
    with contextlib.ExitStack() as stack:
        pool = ThreadPoolExecutor(max_workers=2)
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        spool = None
        if spooled:
            spool_dir.mkdir(parents=True, exist_ok=True)
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix=".validate-", dir=spool_dir))
            spool = Path(directory) / "release.arrow"
        finish = start_release(release_data, patterns, pool, spool)
        # Importing GX and checking the suites (seconds of Python) overlaps the reading.
        parts = suite_parts(suites)
        gx = _Gx(params)

        def check(table: str, frame: pd.DataFrame) -> None:
            gx.validate(table, frame, [part for part in parts if part.table == table])

        release, text = finish()
        check("release", _to_pandas(release))
        dedup = read_dedup(dedup_path)
        rows = build_rows(release, text, dedup, leaked_pairs)
        release_rows = release.num_rows
        del release, text
    # Each polars frame goes as soon as its pandas copy exists, and each pandas frame once checked.
    frame = _polars_to_pandas(rows)
    del rows
    check("rows", frame)
    del frame
    frame = _polars_to_pandas(dedup)
    del dedup
    check("dedup", frame)
    del frame
    check("clean", _polars_to_pandas(read_clean(clean_path)))
    # Reported in suite-file order, each suite's expectations in file order.
    results: list[dict[str, Any]] = []
    for number in range(len(suites)):
        ordered = {
            index: result
            for part in parts
            if part.number == number
            for (index, _), result in zip(part.indexed, part.results, strict=True)
        }
        results.extend(ordered[index] for index in sorted(ordered))
    return release_rows, results, [part.outcome for part in parts]


def _position(result: Any) -> int:
    config = result.expectation_config
    assert config is not None, "GX returned a result without its expectation"
    return int(config.meta["position"])


def _failing_rows(frame: pd.DataFrame, positions: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for position in positions[:MAX_FAILING_ROWS]:
        if not isinstance(position, int | np.integer):
            continue
        rows.append(
            {
                column: _json_safe(frame[column].iat[int(position)]) if column in frame.columns else None
                for column in INDEX_COLUMNS
            }
        )
    return rows


def _plain_result(
    suite: str, table: str, spec: dict[str, Any], result: Any, frame: pd.DataFrame
) -> dict[str, Any]:
    detail = result.result or {}
    plain = {
        "suite": suite,
        "table": table,
        "expectation": spec["type"],
        "name": spec["meta"].get("name", spec["type"]),
        "kwargs": _json_safe(spec["kwargs"]),
        "severity": spec["meta"]["severity"],
        "success": bool(result.success),
        "observed_value": _json_safe(detail.get("observed_value")),
        "unexpected_count": _json_safe(detail.get("unexpected_count")),
        "failing_rows": _failing_rows(frame, detail.get("partial_unexpected_index_list") or []),
    }
    error = _exception_message(result)
    if error is not None:
        plain["error"] = error
    return plain


def failure_table(results: list[dict[str, Any]]) -> str:
    """A short terminal table: every failed expectation with its count and example ids."""
    lines = [f"{'suite':<13} {'severity':<9} {'expectation':<80} {'count':>7}  example ids"]
    for r in results:
        if r["success"]:
            continue
        ids = ", ".join(str(row.get("id")) for row in r["failing_rows"][:3])
        if not ids and r.get("error"):
            ids = f"error: {r['error'][:80]}"
        column = r["kwargs"].get("column")
        name = f"{r['name']}: {r['expectation']}" + (f"({column})" if column else "")
        count = r["unexpected_count"] if r["unexpected_count"] is not None else "-"
        lines.append(f"{r['suite']:<13} {r['severity']:<9} {name:<80} {count!s:>7}  {ids}")
    return "\n".join(lines)


def run_validate(
    release_data: Path,
    suites_dir: Path,
    report_out: Path,
    params: ValidateParams,
    *,
    dedup: Path,
    split_report: Path,
    clean: Path,
    data_docs: Path | None = None,
) -> dict[str, Any]:
    """Validate the release and the build tables; write the report (and Data Docs).

    Raises:
        BadInputError: a suite or an input table cannot be read.
        ValidationFailed: a critical expectation failed (after writing the report).
    """
    suites = load_suites(suites_dir)
    rows, results, suite_results = run_suites(
        release_data, dedup, split_report, clean, suites, params, spool_dir=report_out.parent
    )
    critical = [r for r in results if not r["success"] and r["severity"] == "critical"]
    warnings = [r for r in results if not r["success"] and r["severity"] == "warning"]
    report = {
        "rows": rows,
        "success": not critical,
        "critical_failures": len(critical),
        "warnings": len(warnings),
        "results": results,
    }
    write_json(report, report_out)
    if data_docs is not None:
        write_data_docs(suite_results, data_docs)
    if critical or warnings:
        print(failure_table(results), file=sys.stderr)
    if critical:
        raise ValidationFailed(
            f"{len(critical)} critical expectation(s) failed (table above, details in {report_out}); "
            "fix the data or the rule, then rerun `dvc repro`"
        )
    print(
        f"validate: {len(results)} expectations, {len(warnings)} warnings, all critical passed",
        file=sys.stderr,
    )
    return report


# Data Docs pull CSS/JS from CDNs and a logo from GX's bucket (with a timestamp query). The
# gate's pages must open without network and fetch nothing, so every remote tag is dropped and
# GX's own stylesheet (shipped in the package) is inlined.
_REMOTE_TAG = re.compile(
    r"<link\b[^>]*\bhref=[\"']https?://[^>]*>|<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>"
    r"|<img\b[^>]*\bsrc=[\"']https?://[^>]*>",
    re.IGNORECASE,
)
_REMOTE_URL = re.compile(r"https?://[^\s\"'<>)]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OFFLINE_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ccc; padding: .2rem .4rem; }
.text-danger { color: #b00020; } .text-success { color: #1b7f3b; } .d-none, .modal { display: none; }
"""


def offline_html(html: str) -> str:
    """GX Data Docs HTML that loads nothing from the network."""
    from great_expectations.render.view import view

    styles = Path(view.__file__).parent / "static" / "styles" / "data_docs_default_styles.css"
    inline = f"<style>{_OFFLINE_CSS}{styles.read_text(encoding='utf-8')}</style>"
    html = _REMOTE_TAG.sub("", html.replace("</head>", f"{inline}</head>", 1))
    html = _REMOTE_URL.sub("#", html)
    # GX gives collapsible blocks random uuid4 ids; number them so reruns are byte-identical.
    numbers: dict[str, str] = {}
    return _UUID.sub(lambda m: numbers.setdefault(m.group(0), f"block-{len(numbers) + 1}"), html)


def write_data_docs(suite_results: list[Any], directory: Path) -> None:
    """Render one GX Data Docs page per suite and table, plus an index, offline and stable.

    The directory is replaced as a whole, so pages of suites that no longer exist disappear.
    """
    import shutil

    from great_expectations.render.renderer.page_renderer import ValidationResultsPageRenderer
    from great_expectations.render.view.view import DefaultJinjaPageView

    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    links = []
    for result in suite_results:
        name = result.suite_name
        # Drop what differs between identical runs (batch markers carry a load time).
        result.meta = {"great_expectations_version": result.meta.get("great_expectations_version")}
        document = ValidationResultsPageRenderer().render(result)
        html = offline_html(DefaultJinjaPageView().render(document))  # type: ignore[no-untyped-call]
        (staging / f"{name}.html").write_text(html, encoding="utf-8")
        status = "passed" if result.success else "FAILED"
        links.append(f'<li><a href="{name}.html">{name}</a> ({status})</li>')
    (staging / "index.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Validation</title></head><body>"
        "<h1>Release validation</h1><ul>" + "".join(links) + "</ul></body></html>\n",
        encoding="utf-8",
    )
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(staging, directory)
