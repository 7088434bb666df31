"""A small local executor for row-local stages: parquet row batches through a pure function.

The function takes and returns an Arrow record batch, so the same code runs unchanged under a
distributed engine's map-over-Arrow-batches (Spark `mapInArrow`, Ray/Daft `map_batches`).
Batches are cut by `batch_rows` only and written back in input order, so the output file is
byte-identical for any worker count.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.outputs import parquet_writer

BatchFunction = Callable[[pa.RecordBatch], pa.RecordBatch]


def map_batches(
    source: Path,
    target: Path,
    function: BatchFunction,
    schema: pa.Schema,
    workers: int,
    batch_rows: int,
    label: str,
    columns: list[str] | None = None,
) -> int:
    """Apply `function` to every batch of `source`, writing the results to `target` in order.

    `function` must be picklable (a module-level function or a `functools.partial` of one).
    `columns` limits what is read from `source` (default: every column).
    Returns the number of rows written.
    """
    parquet = pq.ParquetFile(source)
    total_rows = parquet.metadata.num_rows
    batches = parquet.iter_batches(batch_size=batch_rows, columns=columns)
    done = 0

    def report(batch: pa.RecordBatch) -> None:
        nonlocal done
        done += batch.num_rows
        writer.write_batch(batch)
        print(f"{label}: {done:,}/{total_rows:,} rows", file=sys.stderr)

    with parquet_writer(target, schema) as writer:
        # One batch gains nothing from worker processes but their start-up time.
        if workers == 1 or total_rows <= batch_rows:
            for batch in batches:
                report(function(batch).cast(schema))
            return done
        # spawn, not fork: polars and Arrow thread pools deadlock in forked children.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            # At most 2 batches per worker in flight bounds memory on large inputs.
            pending: deque[Future[pa.RecordBatch]] = deque()
            for batch in batches:
                pending.append(pool.submit(function, batch))
                if len(pending) >= 2 * workers:
                    report(pending.popleft().result().cast(schema))
            while pending:
                report(pending.popleft().result().cast(schema))
    return done
