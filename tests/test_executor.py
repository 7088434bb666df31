from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.executor import BatchSlice, batch_slices, map_batches, read_slice

OUT_SCHEMA = pa.schema(
    [pa.field("n", pa.int64()), pa.field("upper", pa.string()), pa.field("batch", pa.int64())]
)


def shout(batch: pa.RecordBatch, tag: int) -> pa.RecordBatch:
    """A row-local function that also records its batch's first row, to show the cutting."""
    first = batch.column("n")[0].as_py() if batch.num_rows else -1
    return pa.RecordBatch.from_arrays(
        [batch.column("n"), pc.utf8_upper(batch.column("text")), pa.array([first + tag] * batch.num_rows)],
        schema=OUT_SCHEMA,
    )


def source(tmp_path: Path, groups: list[int]) -> Path:
    path = tmp_path / "in.parquet"
    start = 0
    schema = pa.schema([("n", pa.int64()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for size in groups:
            numbers = list(range(start, start + size))
            writer.write_table(pa.table({"n": numbers, "text": [f"row {i}" for i in numbers]}, schema=schema))
            start += size
    return path


def test_row_groups_are_cut_into_equal_parts_of_at_most_batch_rows(tmp_path: Path) -> None:
    parquet = pq.ParquetFile(source(tmp_path, [10, 3, 0, 7]))
    assert batch_slices(parquet, 4) == [
        BatchSlice(0, 0, 3),
        BatchSlice(0, 3, 3),
        BatchSlice(0, 6, 4),
        BatchSlice(1, 0, 3),
        BatchSlice(2, 0, 0),
        BatchSlice(3, 0, 3),
        BatchSlice(3, 3, 4),
    ]
    part = read_slice(tmp_path / "in.parquet", ["text"], BatchSlice(3, 3, 4))
    assert part.column_names == ["text"] and part.column(0).to_pylist() == [f"row {i}" for i in range(16, 20)]
    assert read_slice(tmp_path / "in.parquet", None, BatchSlice(2, 0, 0)).num_rows == 0


def test_output_is_in_order_and_byte_identical_for_any_worker_count(tmp_path: Path) -> None:
    path = source(tmp_path, [500, 120, 380])
    outputs = []
    for workers in (1, 2, 3):
        target = tmp_path / f"out-{workers}.parquet"
        shouting = functools.partial(shout, tag=0)
        rows = map_batches(path, target, shouting, OUT_SCHEMA, workers, 200, "test")
        assert rows == 1000
        outputs.append(target.read_bytes())
    assert len(set(outputs)) == 1
    table = pq.read_table(tmp_path / "out-2.parquet")
    assert table.column("n").to_pylist() == list(range(1000))
    assert table.column("upper")[999].as_py() == "ROW 999"
    # Batches follow the row groups: 500 -> 3 parts, 120 -> 1, 380 -> 2.
    assert sorted(set(table.column("batch").to_pylist())) == [0, 166, 333, 500, 620, 810]


def fail_on_row_500(batch: pa.RecordBatch) -> pa.RecordBatch:
    if 500 in batch.column("n").to_pylist():
        raise ValueError("row 500 is bad")
    return shout(batch, tag=0)


def test_a_failing_batch_fails_the_map_and_leaves_no_output(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with pytest.raises(ValueError, match="row 500 is bad"):
        map_batches(
            source(tmp_path, [500, 120, 380]),
            target,
            fail_on_row_500,
            OUT_SCHEMA,
            2,
            200,
            "t",
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "in.parquet"]
