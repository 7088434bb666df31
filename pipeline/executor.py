"""A small local executor for row-local stages: parquet row batches through a pure function.

The function takes and returns an Arrow record batch, so the same code runs unchanged under a
distributed engine's map-over-Arrow-batches (Spark `mapInArrow`, Ray/Daft `map_batches`).
Batches are the source's row groups, each cut into equal parts of at most `batch_rows` rows,
and are written back in input order, so the output file is byte-identical for any worker
count. A batch cut from a row group decodes the whole group, so stages write row groups of
their batch size.

Batches run on threads of the stage's own process: the stages' functions spend their time in
code that releases the GIL (polars, Arrow, numba `nogil` loops), so threads use every core
with nothing started or loaded twice and no result copied between processes. A pool of worker
processes was measured against threads on dedup's MinHash at full scale and used the same CPU
time (benchmarks/RESULTS.md), so only the simpler one is kept.

This is the embedded (local) engine. `engine()` returns the one the environment selects
(`pipeline.engines`: `ABSTRACTS_ENGINE=ray` runs the same functions as Ray tasks); the stages
call `map_batches` and `map_slices` here and never see which one ran.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.engines import LOCAL, RAY, Engine, engine_name
from pipeline.errors import ConfigError
from pipeline.io import progress
from pipeline.io.writers import PARQUET_OPTIONS, parquet_writer

BatchFunction = Callable[[pa.RecordBatch], pa.RecordBatch]
Item = TypeVar("Item")
Part = TypeVar("Part")
Result = TypeVar("Result")


@dataclass(frozen=True)
class BatchSlice:
    """Rows `offset` to `offset + rows` of row group `row_group` of a parquet file."""

    row_group: int
    offset: int
    rows: int


def batch_slices(parquet: pq.ParquetFile, batch_rows: int) -> list[BatchSlice]:
    """Every row group cut into equal parts of at most `batch_rows` rows, in file order."""
    slices: list[BatchSlice] = []
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        parts = max(1, math.ceil(size / batch_rows))
        bounds = [size * i // parts for i in range(parts + 1)]
        slices.extend(BatchSlice(group, lo, hi - lo) for lo, hi in itertools.pairwise(bounds))
    return slices


def read_slice(source: Path, columns: list[str] | None, part: BatchSlice) -> pa.RecordBatch:
    """One batch of `source`: `part` of its row group, as one contiguous record batch."""
    parquet = pq.ParquetFile(source)
    table = parquet.read_row_group(part.row_group, columns=columns).slice(part.offset, part.rows)
    return table.combine_chunks().to_batches(max_chunksize=None)[0] if part.rows else _empty(table.schema)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def _in_threads(
    parts: list[BatchSlice],
    compute: Callable[[BatchSlice], pa.RecordBatch],
    write: Callable[[pa.RecordBatch], None],
    threads: int,
) -> None:
    """`write(compute(part))` for every part, in order: `threads` threads compute while one
    more writes (Arrow's parquet writer releases the GIL too), so batch n is encoded while
    later ones are computed. At most `threads + 1` results wait, which bounds memory."""
    with ThreadPoolExecutor(max_workers=threads) as pool, ThreadPoolExecutor(max_workers=1) as write_thread:
        pending: deque[Future[pa.RecordBatch]] = deque()
        writing: Future[None] | None = None

        def write_next() -> None:
            nonlocal writing
            result = pending.popleft().result()
            if writing is not None:
                writing.result()  # one write at a time keeps the order
            writing = write_thread.submit(write, result)

        try:
            for part in parts:
                pending.append(pool.submit(compute, part))
                if len(pending) > threads:
                    write_next()
            while pending:
                write_next()
            if writing is not None:
                writing.result()
        except BaseException:
            # A failed batch: the batches not started yet are dropped, not computed for nothing.
            for future in pending:
                future.cancel()
            raise


def map_batches(
    source: Path,
    target: Path,
    function: BatchFunction,
    schema: pa.Schema,
    workers: int,
    batch_rows: int,
    label: str,
    columns: list[str] | None = None,
    options: Mapping[str, Any] = PARQUET_OPTIONS,
) -> int:
    """Apply `function` to every batch of `source`, writing the results to `target` in order,
    on the selected engine (`engine()`: `workers` threads of this process, or Ray tasks).

    `function` must be picklable (a module-level function or a `functools.partial` of one)
    for Ray, which sends it to its workers. `columns` limits what is read from `source`
    (default: every column); `options` are the parquet writer's settings for `target`.
    Returns the number of rows written.
    """
    return engine().map_batches(
        source, target, function, schema, workers, batch_rows, label, columns, options
    )


def map_slices(
    source: Path,
    columns: list[str] | None,
    batch_rows: int,
    function: Callable[[pa.RecordBatch], Result],
    workers: int,
) -> Iterator[Result]:
    """`function` of every batch of `source` (`batch_slices`), in order, on the selected engine:
    for stages whose batches give more than rows (counts, a second table). `function` and its
    results must be picklable."""
    return engine().map_slices(
        source, columns, batch_slices(pq.ParquetFile(source), batch_rows), function, workers
    )


def _ordered_in_threads(
    slices: Sequence[BatchSlice], compute: Callable[[BatchSlice], Result], threads: int
) -> Iterator[Result]:
    """`compute` of every slice on `threads` threads, yielded in order; at most `threads + 1`
    results wait, which bounds memory."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[Result]] = deque()
        try:
            for part in slices:
                pending.append(pool.submit(compute, part))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            # A failed batch or a consumer that stopped: the batches not started are dropped.
            for future in pending:
                future.cancel()


class LocalEngine:
    """The embedded engine: threads of this process (`pipeline.engines.Engine`)."""

    name = LOCAL

    def map_slices(
        self,
        source: Path,
        columns: list[str] | None,
        slices: Sequence[BatchSlice],
        function: Callable[[pa.RecordBatch], Result],
        workers: int,
    ) -> Iterator[Result]:
        # The slice functions run in polars, numba and regexes that release the GIL for most
        # of their time: threads, no worker start-up.
        return _ordered_in_threads(slices, lambda part: function(read_slice(source, columns, part)), workers)

    def map_batches(
        self,
        source: Path,
        target: Path,
        function: BatchFunction,
        schema: pa.Schema,
        workers: int,
        batch_rows: int,
        label: str,
        columns: list[str] | None,
        options: Mapping[str, Any],
    ) -> int:
        parquet = pq.ParquetFile(source)
        total_rows = parquet.metadata.num_rows
        slices = batch_slices(parquet, batch_rows)
        done = 0

        def compute(part: BatchSlice) -> pa.RecordBatch:
            return function(read_slice(source, columns, part)).cast(schema)

        def report(batch: pa.RecordBatch) -> None:
            nonlocal done
            done += batch.num_rows
            writer.write_batch(batch)
            advance(batch.num_rows)

        with parquet_writer(target, schema, options) as writer, progress.rows(label, total_rows) as advance:
            _in_threads(slices, compute, report, workers)
        return done

    def shuffle(
        self,
        map_function: Callable[[Item], list[Part]],
        items: Sequence[Item],
        reduce_function: Callable[[list[Part]], Result],
        partitions: int | None = None,
    ) -> list[Result]:
        mapped = [map_function(item) for item in items]
        return [reduce_function([parts[p] for parts in mapped]) for p in range(partitions or 1)]


def engine() -> Engine:
    """The engine `ABSTRACTS_ENGINE` selects (`pipeline.engines`).

    Raises:
        ConfigError: an unknown engine, or Ray selected but not installed.
    """
    if engine_name() != RAY:
        return LocalEngine()
    try:
        from pipeline.engines.ray_engine import RayEngine
    except ImportError as exc:
        raise ConfigError(
            f"ABSTRACTS_ENGINE=ray, but Ray cannot be imported ({exc}): install the extra "
            "(`pip install -e '.[ray]'`) or unset ABSTRACTS_ENGINE"
        ) from None
    return RayEngine()
