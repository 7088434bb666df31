"""Stage `validate`: stage the tables the GX project reads, run its checkpoint, report.

Reads: the candidate release data directory, the deduplicated table (`build/dedup.parquet`:
normalised text hash and clean flags per row), the cleaned records (`build/clean.parquet`,
without their texts), the split report (`leaked_pairs`) and the GX project `gx/` (see
`project`). Writes: the four tables of the GX data source (`build/validate/<asset>.parquet`),
`validation.json` (see `report`), the text-length plot data and, when asked, this run's
offline Data Docs (see `docs`). Params: `validate` and `split.fractions`, passed to the suites
as `$PARAMETER`s. A failed expectation never fails the stage: the `gate` stage does.

The tables (`project.ASSETS`):
- `release`: every release split, concatenated, as published, plus `split`, with the abstract
  column as nulls of its type. Only column, type and row-count expectations run here
  (`project.SHAPE_EXPECTATIONS`): GX filters the whole frame for every column expectation, and
  copying every abstract once per expectation does not fit the time budget.
- `rows`: one row per release row (same order) without the text: the release's small columns
  plus facts computed from the text and the build (`build_rows`): `abstract_chars`,
  `abstract_words`, `artifacts` (the names of the suites' artifact regexes that match, as
  `|a|b|` text), `text_hash` and `flags` (from the dedup table), `id_splits` (how many splits
  hold the id) and `leaked_with` (the other side of a near-duplicate pair across splits).
- `dedup`: the intermediate dedup table (without `abstract`, which the release checks).
- `clean`: the intermediate clean table, one row per raw record (without its texts).

Speed: the release is read row group by row group on two threads, each decoding its group and
computing the facts about its text (pyarrow, polars and the compiled space count run without
the GIL). The abstracts are scanned once, by polars, with every artifact regex combined into
one; only the rows that match are tested regex by regex. GX then checks small columns: numbers
as float64 (GX compares pandas' nullable integers one Python call per row), strings
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
import pyarrow.parquet as pq

from pipeline.errors import BadInputError
from pipeline.io.writers import write_json, write_parquet
from pipeline.kernels.fingerprint import utf8_buffers
from pipeline.params import SplitParams, ValidateParams

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
    but in one compiled pass over the UTF-8 buffer, without the GIL."""
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


def _release_piece(
    path: Path, group: int, schema: pa.Schema, conflicting: list[str], patterns: dict[str, str]
) -> tuple[pa.Table, pl.DataFrame | None]:
    """One row group of the `release` table, its abstract column as nulls of its type, and the
    facts about its text (None: no text)."""
    table = read_release_group(path, group, schema, conflicting)
    text = _abstract_text(table)
    facts = None if text is None else _arrow_text_facts(text, patterns)
    if "abstract" in table.column_names:
        index = table.schema.get_field_index("abstract")
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.nulls(table.num_rows, field.type))
    return table, facts


def start_release(
    release_data: Path, patterns: dict[str, str], pool: ThreadPoolExecutor
) -> Callable[[], tuple[pa.Table, pl.DataFrame]]:
    """Start reading the release on `pool`, row group by row group; the returned function waits
    for the rest and returns the `release` table (its abstract column as nulls of its type) and
    its rows' `abstract_chars`, `abstract_words` and `artifacts`, in order.

    The text passes through memory once, two row groups at a time (decoded and its facts
    computed on the pool's threads, which polars, pyarrow and `count_spaces` run without the
    GIL). What waits is small, so every row group is queued at once and the pool reads on while
    the caller does other work.

    Raises:
        BadInputError: see `release_schema`.
    """
    schema, conflicting = release_schema(release_data)
    pending: deque[Future[tuple[pa.Table, pl.DataFrame | None]]] = deque(
        pool.submit(_release_piece, path, group, schema, conflicting, patterns)
        for path, group in release_groups(release_data)
    )

    def finish() -> tuple[pa.Table, pl.DataFrame]:
        tables: list[pa.Table] = []
        facts: list[pl.DataFrame] = []
        rows = 0
        texts = True
        while pending:
            table, piece = pending.popleft().result()
            rows += table.num_rows
            tables.append(table)
            texts = texts and piece is not None
            if texts and piece is not None:
                facts.append(piece)
        # The decoded text's pages go back to the OS before the joins that set the stage's peak.
        pa.default_memory_pool().release_unused()
        release = pa.concat_tables([schema.empty_table(), *tables])
        if not texts:
            return release, _text_facts(pl.Series([None] * rows, dtype=pl.String), patterns)
        if not facts:
            return release, _text_facts(pl.Series([], dtype=pl.String), patterns)
        return release, pl.concat(facts)

    return finish


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


def stage_tables(
    release_data: Path,
    dedup_path: Path,
    split_report: Path,
    clean_path: Path,
    patterns: dict[str, str],
    out_dir: Path,
) -> dict[str, Path]:
    """Write the four tables the GX data source reads (`project.ASSETS`) to `out_dir`, one at a
    time, each freed before the next is built (on a large release they would not fit side by side).

    Returns asset name -> parquet file. The abstracts are read once, here; what the suites check
    about them is in `rows` (see `build_rows`).

    Raises:
        BadInputError: an input table cannot be read.
    """
    # Every input is looked at before the long work starts, in the order the tables are built.
    release_schema(release_data)
    _build_columns(dedup_path, "dedup", DEDUP_COLUMNS)
    leaked_pairs = read_leaked_pairs(split_report)
    _build_columns(clean_path, "clean", CLEAN_COLUMNS)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.parquet" for name in ("release", "rows", "dedup", "clean")}
    with ThreadPoolExecutor(max_workers=2) as pool:
        release, text = start_release(release_data, patterns, pool)()
    write_parquet(release, paths["release"])
    dedup = read_dedup(dedup_path)
    rows = build_rows(release, text, dedup, leaked_pairs)
    del release, text
    write_parquet(rows.to_arrow(), paths["rows"])
    del rows
    write_parquet(dedup.to_arrow(), paths["dedup"])
    del dedup
    write_parquet(read_clean(clean_path).to_arrow(), paths["clean"])
    gc.collect()
    return paths


def expectation_parameters(params: ValidateParams, split: SplitParams) -> dict[str, Any]:
    """The values the suites' `{"$PARAMETER": name}` kwargs take (from params.yaml)."""
    return {
        "min_rows": params.min_rows,
        "max_rows": params.max_rows,
        "min_chars": params.min_chars,
        "max_chars": params.max_chars,
        "min_words": params.min_words,
        "max_words": params.max_words,
        "split_fractions": dict(split.fractions),
        "split_sigmas": params.split_sigmas,
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
    data_docs: Path | None = None,
) -> dict[str, Any]:
    """Stage the tables, run the GX checkpoint (which also updates GX's own Data Docs site) and
    write the report and, when asked, the offline Data Docs pages (`docs.write_data_docs`).
    Never raises for a failed expectation: the report says what failed, `review` shows it and
    the `gate` stage stops the pipeline on it.

    Raises:
        BadInputError: a suite, the GX project or an input table cannot be read.
    """
    from pipeline.stages.validate import project, report

    checkpoint, specs = project.load_checkpoint(gx_dir)
    paths = stage_tables(
        release_data,
        dedup,
        split_report,
        clean,
        project.artifact_patterns(specs),
        project.tables_directory(checkpoint),
    )
    outcomes = project.run_checkpoint(checkpoint, expectation_parameters(params, split_params))
    results = report.plain_results(specs, outcomes, paths)
    validation = report.build_report(pq.ParquetFile(paths["release"]).metadata.num_rows, results)
    write_json(validation, report_out)
    if data_docs is not None:
        from pipeline.stages.validate.docs import write_data_docs

        assets = {spec.name: spec.asset for spec in specs}
        write_data_docs(outcomes, assets, results, data_docs, gx_dir / "expectations")
    if text_lengths is not None:
        report.write_text_lengths(paths["rows"], text_lengths)
    report.print_summary(validation)
    return validation
