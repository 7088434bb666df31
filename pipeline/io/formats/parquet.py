"""Parquet tables: one record per row, read a row group batch at a time."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import BadInputError
from pipeline.io.formats import RawItems, RawRecord

_BATCH_ROWS = 10_000


def read_parquet(path: Path, name: str) -> RawItems:
    """Rows as dicts (`row 1` is the first row); nested columns come through as lists/dicts."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{name}: not a readable parquet file ({exc}); re-export it") from None
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield RawRecord(number, f"row {number}", row)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{name}: row {number + 1}: cannot be read ({exc}); re-export the file") from None
