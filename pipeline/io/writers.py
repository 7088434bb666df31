"""Atomic, deterministic writers shared by every stage.

Each writer goes to a temporary file beside the target and renames it into place, so a
failed stage never leaves a half-written output for DVC or a user to pick up.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import shutil
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


# Temporary names carry the writing process's id (`.<target>.<pid>.<random>.<kind>`), so a
# later run can tell a leftover of a killed run (its process is gone) from a live writer's file.
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.[^.]+\.(?:tmp|new|old)\w*")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def temp_name(target: str, kind: str = "tmp") -> str:
    """A fresh name beside `target` for this process's temporary file or tree (`kind`: tmp, new, old)."""
    return f".{target}.{os.getpid()}.{os.urandom(4).hex()}.{kind}"


def remove_stale_temporaries(directory: Path, target: str | None = None) -> list[Path]:
    """Remove the temporary files and trees in `directory` (of `target` only, when given) that a
    killed run left behind: those whose writing process no longer exists. Returns what was
    removed. A SIGKILL runs no cleanup, so the next writer of the same directory does it."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = _TEMP_NAME.fullmatch(path.name)
        if match is None or (target is not None and match["target"] != target):
            continue
        if _alive(int(match["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# renameat2(2) flag: swap two paths in one step (Linux 3.15+, glibc 2.28+).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically; False where the system cannot (then nothing changed)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(second))


def swap_directory(new: Path, target: Path) -> None:
    """Put the tree `new` at `target` in one step and remove the tree it replaces.

    Readers see the old tree or the new one, never a mix nor a half-removed one: where the
    system can, the two are exchanged atomically; elsewhere the old tree is renamed aside first
    (a crash between the two renames leaves it there, under a temporary name the next run
    removes, and `target` missing rather than half-written).
    """
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)
        return
    aside = target.parent / temp_name(target.name, "old")
    os.replace(target, aside)
    os.replace(new, target)
    shutil.rmtree(aside)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    Temporary files of `target` that a killed run left behind are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    tmp = target.parent / temp_name(target.name)
    tmp.touch(mode=0o600, exist_ok=False)
    try:
        yield tmp
        tmp.chmod(shared_mode())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `target` (`swap_directory`) only if the
    block succeeds. Temporary trees of `target` that a killed run left behind are removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    tmp = target.parent / temp_name(target.name)
    tmp.mkdir(mode=0o700)
    try:
        yield tmp
        tmp.chmod(shared_mode(directory=True))
        swap_directory(tmp, target)
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
