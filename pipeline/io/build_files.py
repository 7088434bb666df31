"""Readers of build files shared by stages: a few rows of a large column, read by row number."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.errors import BadInputError

# Rows per batch when reading a few rows: reading a row group stops after the batch holding the
# last row wanted instead of decompressing the whole group (examples are mostly early rows).
_FEW_ROWS_BATCH = 1_024


def read_raw_texts(
    ingested: Path, rows: list[int], expect_sources: Mapping[int, str] | None = None
) -> dict[int, str]:
    """`raw_text` of the given row numbers of the ingested file (row for row the cleaned one),
    reading each row group only up to the last row wanted.

    The two files are joined by position for speed; `expect_sources` (row -> the `source` the
    caller's file holds at that row) turns a misalignment into an error instead of pairing a
    raw text with another record.

    Raises:
        BadInputError: a row's `source` differs from the one expected.
    """
    parquet = pq.ParquetFile(ingested)
    columns = ["raw_text"] if expect_sources is None else ["raw_text", "source"]
    values: dict[int, str] = {}
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        inside = [r - start for r in rows if start <= r < start + size]
        offset = 0
        if inside:
            for batch in parquet.iter_batches(
                batch_size=_FEW_ROWS_BATCH, row_groups=[group], columns=columns
            ):
                texts = batch.column(0)
                end = offset + batch.num_rows
                for r in inside:
                    if offset <= r < end:
                        values[start + r] = texts[r - offset].as_py()
                        if expect_sources is not None:
                            found = batch.column(1)[r - offset].as_py()
                            if found != expect_sources[start + r]:
                                raise BadInputError(
                                    f"{ingested}: row {start + r} is record {found!r}, not "
                                    f"{expect_sources[start + r]!r}: the build files are out of step; "
                                    "run `dvc repro`"
                                )
                offset = end
                if offset > max(inside):
                    break
        start += size
    return values
