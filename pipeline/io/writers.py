"""Atomic, deterministic writers shared by every stage.

Each writer goes to a temporary file beside the target and renames it into place, so a
failed stage never leaves a half-written output for DVC or a user to pick up.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# Fixed writer settings: the same table always gives the same bytes.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3}


def build_file_options(
    schema: pa.Schema, repeated: Collection[str] = (), hashes: Collection[str] = ()
) -> dict[str, Any]:
    """Writer settings for a build file (a DVC out that only the next stage reads).

    These favour write speed over size: zstd level 1, and dictionaries and min/max statistics
    only for the `repeated` columns (few distinct values) and non-string columns: a
    dictionary of unique abstracts is built, then thrown away, and statistics of free text
    help no reader. The `hashes` columns hold random values that no codec shrinks: they are
    stored plain, uncompressed, which costs a few percent of bytes and saves the codec's CPU.
    """

    def path(field: pa.Field) -> str:
        # A list's values are a column of their own, named by its path in the file.
        return f"{field.name}.list.element" if pa.types.is_list(field.type) else field.name

    compressed = [path(field) for field in schema if field.name not in hashes]
    kept = [
        path(field)
        for field in schema
        if field.name not in hashes and (field.name in repeated or not pa.types.is_string(field.type))
    ]
    return {
        "compression": {
            **dict.fromkeys(compressed, "zstd"),
            **{path(schema.field(h)): "none" for h in hashes},
        },
        "compression_level": dict.fromkeys(compressed, 1),
        "use_dictionary": kept,
        "write_statistics": kept,
    }


@functools.cache
def _umask() -> int:
    # os.umask only reads by setting: set it straight back (read once per process).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shared_mode(directory: bool = False) -> int:
    """The mode `open()` or `mkdir()` gives a new file or directory (0666 or 0777 less the
    umask). mkstemp and mkdtemp create 0600 and 0700, which another user of a shared checkout
    or a CI cache could not read once renamed into place."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(shared_mode())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `target` only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        tmp.chmod(shared_mode(directory=True))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(obj: Any, target: Path) -> None:
    """Write `obj` as sorted, indented JSON with a final newline (stable for `dvc.lock`)."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(rows: list[dict[str, Any]], target: Path) -> None:
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def write_parquet(table: pa.Table, target: Path, row_group_rows: int = 100_000) -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_rows, **PARQUET_OPTIONS)


@contextlib.contextmanager
def parquet_writer(
    target: Path, schema: pa.Schema, options: Mapping[str, Any] = PARQUET_OPTIONS
) -> Iterator[pq.ParquetWriter]:
    """A streaming parquet writer whose file appears at `target` only if the block succeeds."""
    with atomic_path(target) as tmp:
        writer = pq.ParquetWriter(tmp, schema, **options)
        try:
            yield writer
        finally:
            writer.close()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (release files can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
