"""The atomic writers: whole files or nothing, and the modes a shared checkout can read."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.io.writers import atomic_directory, atomic_path, write_json, write_parquet


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_mode_of_a_plain_open_not_mkstemps_0600(tmp_path: Path) -> None:
    # The process's umask is read once; under the usual 022 files are 0644, directories 0755.
    with umask(0o022):
        plain = tmp_path / "plain"
        plain.write_text("x")
        plain_dir = tmp_path / "plain-dir"
        plain_dir.mkdir()
        write_json({"a": 1}, tmp_path / "report.json")
        write_parquet(pa.table({"a": [1]}), tmp_path / "table.parquet")
        with atomic_directory(tmp_path / "data") as directory:
            (directory / "shard.parquet").write_bytes(b"x")
    assert mode(tmp_path / "report.json") == mode(tmp_path / "table.parquet") == mode(plain)
    assert mode(tmp_path / "data") == mode(plain_dir)
    assert mode(tmp_path / "report.json") & 0o044 and mode(tmp_path / "data") & 0o055


def test_a_failed_block_leaves_the_old_output_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    write_json({"old": True}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stage failed")
    directory = tmp_path / "data"
    with atomic_directory(directory) as staging:
        (staging / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(directory) as staging:
        (staging / "b").write_text("new")
        raise RuntimeError("stage failed")
    assert target.read_text() == '{\n  "old": true\n}\n'
    assert sorted(p.name for p in directory.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "report.json"]
