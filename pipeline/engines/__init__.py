"""Where the row-local work of a stage runs: the embedded local engine or a Ray cluster.

The engine is chosen by the environment, never by `params.yaml`: no stage's output depends on
it (the outputs are byte-identical for either engine and any worker count), so it must not be
a DVC dependency that reruns stages when it changes.

- `ABSTRACTS_ENGINE` unset or `local`: the embedded engine (`pipeline.executor`), threads of
  the stage's process; nothing starts beyond them.
- `ABSTRACTS_ENGINE=ray`: Ray tasks (`pipeline.engines.ray_engine`, install the `ray` extra).
  With `RAY_ADDRESS` set each stage joins that cluster; without it each stage starts a Ray
  instance of its own on this machine and stops it at the end.

An engine maps a function over the row batches of a parquet file and returns the results in
input order, and runs shuffles (map parts by key, reduce each partition), so the files the
stages write do not depend on which engine computed them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.executor import BatchSlice

ENGINE_VARIABLE = "ABSTRACTS_ENGINE"
LOCAL = "local"
RAY = "ray"
ENGINES = (LOCAL, RAY)

Item = TypeVar("Item")
Part = TypeVar("Part")
Result = TypeVar("Result")


class Engine(Protocol):
    """What a stage asks of an engine."""

    name: str

    def map_slices(
        self,
        source: Path,
        columns: list[str] | None,
        slices: Sequence[BatchSlice],
        function: Callable[[pa.RecordBatch], Result],
        workers: int,
    ) -> Iterator[Result]:
        """`function` of every slice of `source` (read with `columns`), in the slices' order.

        `function` must be picklable (a module-level function or a `functools.partial` of one)
        and its result too. The local engine runs it on `workers` threads; Ray on as many
        tasks at once as the cluster has CPUs.
        """
        ...

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
        """`function` of every batch of `source` written to `target` in order (see
        `pipeline.executor.map_batches`); returns the rows written."""
        ...

    def shuffle(
        self,
        map_function: Callable[[Item], list[Part]],
        items: Sequence[Item],
        reduce_function: Callable[[list[Part]], Result],
        partitions: int | None = None,
    ) -> list[Result]:
        """A shuffle: `map_function` of every item gives one part per partition; partition
        p's reduce is `reduce_function` of the p-th parts of all items, in item order. Returns
        the reduce results in partition order. `partitions` defaults to the engine's
        parallelism (Ray: the cluster's CPUs)."""
        ...


def engine_name(environ: Mapping[str, str] = os.environ) -> str:
    """The engine `ABSTRACTS_ENGINE` selects (`local` when unset or empty).

    Raises:
        ConfigError: an engine this package does not have.
    """
    name = environ.get(ENGINE_VARIABLE, "").strip().lower() or LOCAL
    if name not in ENGINES:
        raise ConfigError(
            f"{ENGINE_VARIABLE}={environ[ENGINE_VARIABLE]!r}: unknown engine; "
            f"use one of {', '.join(ENGINES)} (or unset it for the local engine)"
        )
    return name
