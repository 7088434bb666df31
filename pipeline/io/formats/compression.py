"""Transparent, streaming decompression by file suffix: `.gz`, `.bz2`, `.xz`, `.zst`."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path

import pyarrow as pa

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


def logical_name(name: str) -> str:
    """The file name without its compression suffix (`works.jsonl.gz` -> `works.jsonl`)."""
    for suffix in COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def open_binary(path: Path) -> io.BufferedIOBase:
    """The file's decompressed bytes as a stream (read as it is consumed, never whole)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    if suffix == ".zst":
        # Arrow's zstd stream: no extra dependency, and it streams like the standard library's.
        stream = pa.CompressedInputStream(pa.OSFile(str(path), "rb"), "zstd")
        return io.BufferedReader(_ArrowRaw(stream))
    return path.open("rb")


def decompression_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt compressed file raises while it is read."""
    return (OSError, EOFError, lzma.LZMAError, pa.ArrowInvalid, pa.ArrowIOError)


class _ArrowRaw(io.RawIOBase):
    """An Arrow input stream as a raw Python stream, so the standard readers can wrap it."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        size = len(data)
        memoryview(buffer)[:size] = data
        return size

    def close(self) -> None:
        self._stream.close()
        super().close()
