"""`run_filter`: the files around the filter's pure functions (`core.judge`); the command is `cli`."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts import FILTERED_SCHEMA
from pipeline.errors import BadInputError
from pipeline.executor import map_slices
from pipeline.io.writers import build_file_options, parquet_writer, write_json, write_parquet
from pipeline.params import FilterParams
from pipeline.stages.filter.core import Verdicts, filtered_rows, judge, kept_rows
from pipeline.stages.filter.report import Tally, summarise

# Columns the filter reads; `categories` is read too when the cleaned file has it.
REQUIRED_COLUMNS = ("source", "file", "arxiv_id", "abstract", "flags")


def _schema(cleaned: Path) -> pa.Schema:
    if not cleaned.is_file():
        raise BadInputError(f"{cleaned}: cleaned parquet not found; run `abstracts clean` first")
    try:
        schema = pq.read_schema(cleaned)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(
            f"{cleaned}: not a readable parquet file ({exc}); run `abstracts clean` again"
        ) from None
    missing = [name for name in REQUIRED_COLUMNS if name not in schema.names]
    if missing:
        raise BadInputError(
            f"{cleaned}: missing column(s) {', '.join(missing)}; "
            "it is not clean's output, run `abstracts clean`"
        )
    return schema


Judged = tuple[pa.Array, pa.RecordBatch, pa.Table, Verdicts]


def _judge_batch(batch: pa.RecordBatch, params: FilterParams) -> Judged:
    """The batch's files, its kept rows, its dropped rows and the verdicts."""
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    verdicts = judge(frame, params, batch.column("abstract"))
    return batch.column("file"), kept_rows(batch, verdicts), filtered_rows(frame, verdicts), verdicts


def run_filter(
    cleaned: Path, out: Path, filtered_out: Path, report_out: Path, params: FilterParams
) -> dict[str, Any]:
    """Judge every row of `cleaned`; write the kept rows to `out` (same columns and order),
    the dropped ones to `filtered_out` and the counts to `report_out`."""
    schema = _schema(cleaned)
    parquet = pq.ParquetFile(cleaned)
    tally = Tally()
    dropped: list[pa.Table] = []
    options = build_file_options(schema, repeated=("file", "format"))
    # The local engine judges the batches on `workers` threads (the rules run in polars, numba
    # and regexes that release the GIL for most of their time); results come in input order.
    with parquet_writer(out, schema, options) as writer:
        for files, kept, gone, verdicts in map_slices(
            cleaned, None, params.batch_rows, functools.partial(_judge_batch, params=params), params.workers
        ):
            writer.write_batch(kept.cast(schema))
            dropped.append(gone)
            tally.add(pl.Series(files), pl.Series(kept.column("file")), pl.Series(kept.column("flags")))
            tally.language_scored += verdicts.language_scored
            tally.language_unsure += verdicts.language_unsure
            tally.add_flags(verdicts.flags_cleared, verdicts.flags_added)
            print(f"filter: {tally.rows:,}/{parquet.metadata.num_rows:,} rows", file=sys.stderr)
    table = pa.concat_tables(dropped) if dropped else FILTERED_SCHEMA.empty_table()
    write_parquet(table.cast(FILTERED_SCHEMA), filtered_out)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    report = summarise(tally, frame, params)
    write_json(report, report_out)
    print(
        f"filter: {report['rows']:,} rows, {report['kept']:,} kept, {report['filtered']:,} filtered",
        file=sys.stderr,
    )
    return report
