"""The Ray engine: the stages' pure batch functions as Ray tasks, results collected in order.

Each task reads its own slice of the parquet input (so the driver never holds the input and
decoding runs on the workers) and returns its result through Ray's object store (Arrow data
travels as shared memory on a node, zero-copy). The driver takes the results in input order
and writes them, so a file is byte-identical to the local engine's for any number of workers.
Tasks read their input by path: on a cluster of several machines the project directory must
be on a file system every node mounts at the same path (see the README's Ray section).

A task takes one CPU and runs its polars and Arrow code on one thread: the cluster's
parallelism is its tasks, as many at once as it has CPUs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from pipeline.errors import ConfigError
from pipeline.executor import BatchSlice, batch_slices, read_slice
from pipeline.io.writers import parquet_writer

Item = TypeVar("Item")
Part = TypeVar("Part")
Result = TypeVar("Result")

# Tasks in flight per CPU of the cluster: each CPU has its next slice queued while the driver
# collects in order; more would only hold more results in the object store.
IN_FLIGHT_PER_CPU = 2

# Read by polars when a worker first imports it: one thread per task, one task per CPU.
WORKER_ENVIRONMENT = {"POLARS_MAX_THREADS": "1"}


def _apply(
    function: Callable[[pa.RecordBatch], Result], source: str, columns: list[str] | None, part: BatchSlice
) -> Result:
    pa.set_cpu_count(1)
    return function(read_slice(Path(source), columns, part))


def _call(function: Callable[[Item], list[Part]], item: Item) -> list[Part]:
    pa.set_cpu_count(1)
    return function(item)


def _reduce(function: Callable[[list[Part]], Result], *parts: Part) -> Result:
    pa.set_cpu_count(1)
    return function(list(parts))


def connect() -> None:
    """Join the cluster at `RAY_ADDRESS`, or start a Ray instance on this machine without it.

    Raises:
        ConfigError: nothing answers at `RAY_ADDRESS`.
    """
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS", "").strip()
    options: dict[str, Any] = {
        "runtime_env": {"env_vars": WORKER_ENVIRONMENT},
        "logging_level": logging.WARNING,
        "log_to_driver": False,
    }
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(address="local", include_dashboard=False, **options)
    except ConnectionError as exc:
        raise ConfigError(
            f"RAY_ADDRESS={address!r}: no Ray cluster answers there ({exc}); start one "
            "(`ray start --head`) or unset RAY_ADDRESS to run a Ray instance on this machine"
        ) from None
    context: Any = ray.get_runtime_context()
    print(f"engine: ray at {context.gcs_address}, {_cluster_cpus()} CPUs", file=sys.stderr)


def _cluster_cpus() -> int:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("CPU", 1)))


class RayEngine:
    """`pipeline.engines.Engine` on a Ray cluster (`connect`ed on first use)."""

    name = "ray"

    def map_slices(
        self,
        source: Path,
        columns: list[str] | None,
        slices: Sequence[BatchSlice],
        function: Callable[[pa.RecordBatch], Result],
        workers: int,
    ) -> Iterator[Result]:
        """`function` of every slice, in order, as Ray tasks; `workers` is the local engine's
        knob and is not used (the cluster's CPUs decide)."""
        connect()
        task: Any = ray.remote(num_cpus=1)(_apply)
        shared = ray.put(function)
        limit = IN_FLIGHT_PER_CPU * _cluster_cpus()
        # Workers may run in another directory: they get the absolute path.
        path = str(Path(source).resolve())
        pending: deque[Any] = deque()
        try:
            for part in slices:
                pending.append(task.remote(shared, path, columns, part))
                if len(pending) >= limit:
                    yield ray.get(pending.popleft())
            while pending:
                yield ray.get(pending.popleft())
        finally:
            for reference in pending:
                ray.cancel(reference)

    def map_batches(
        self,
        source: Path,
        target: Path,
        function: Callable[[pa.RecordBatch], pa.RecordBatch],
        schema: pa.Schema,
        workers: int,
        batch_rows: int,
        label: str,
        columns: list[str] | None,
        options: Mapping[str, Any],
    ) -> int:
        parquet = pq.ParquetFile(source)
        total = parquet.metadata.num_rows
        done = 0
        with parquet_writer(target, schema, options) as writer:
            for batch in self.map_slices(
                source, columns, batch_slices(parquet, batch_rows), function, workers
            ):
                writer.write_batch(batch.cast(schema))
                done += batch.num_rows
                print(f"{label}: {done:,}/{total:,} rows (ray)", file=sys.stderr)
        return done

    def shuffle(
        self,
        map_function: Callable[[Item], list[Part]],
        items: Sequence[Item],
        reduce_function: Callable[[list[Part]], Result],
        partitions: int | None = None,
    ) -> list[Result]:
        """Map tasks put their parts in the object store (one object per partition); each
        reduce task receives the objects of its partition only."""
        connect()
        # At least two: one return value would be the list itself, not its one part.
        count = max(2, partitions or _cluster_cpus())
        mapper: Any = ray.remote(num_cpus=1, num_returns=count)(_call)
        reducer: Any = ray.remote(num_cpus=1)(_reduce)
        shared_map, shared_reduce = ray.put(map_function), ray.put(reduce_function)
        mapped = [mapper.remote(shared_map, item) for item in items]
        results: list[Result] = ray.get(
            [reducer.remote(shared_reduce, *[parts[p] for parts in mapped]) for p in range(count)]
        )
        return results
