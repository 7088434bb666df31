"""Readers of build files shared by stages: a few rows of a large column, read by row number."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

# Rows per batch when reading a few rows: reading a row group stops after the batch holding the
# last row wanted instead of decompressing the whole group (examples are mostly early rows).
_FEW_ROWS_BATCH = 1_024


def read_raw_texts(ingested: Path, rows: list[int]) -> dict[int, str]:
    """`raw_text` of the given row numbers of the ingested file (row for row the cleaned one),
    reading each row group only up to the last row wanted."""
    parquet = pq.ParquetFile(ingested)
    values: dict[int, str] = {}
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        inside = [r - start for r in rows if start <= r < start + size]
        offset = 0
        if inside:
            for batch in parquet.iter_batches(
                batch_size=_FEW_ROWS_BATCH, row_groups=[group], columns=["raw_text"]
            ):
                texts = batch.column(0)
                end = offset + batch.num_rows
                values.update({start + r: texts[r - offset].as_py() for r in inside if offset <= r < end})
                offset = end
                if offset > max(inside):
                    break
        start += size
    return values
