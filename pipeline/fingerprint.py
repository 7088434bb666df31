"""blake2b digests of Arrow strings, shared by `clean` (text hashes) and `release_diff` (row index).

blake2b, not polars' own hash: a digest written to a file must stay the same across Python,
polars and Arrow versions. The bytes are read as slices of the array's UTF-8 buffer, so no
Python str is built per row, which on millions of abstracts costs more than the hashing.
"""

from __future__ import annotations

import hashlib
import itertools

import pyarrow as pa


def utf8_digests(strings: pa.Array | pa.ChunkedArray, digest_size: int = 8) -> list[bytes]:
    """The blake2b digest of each string's UTF-8 bytes (a null hashes as the empty string)."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    strings = strings.cast(pa.large_string())
    _, offsets_buffer, data_buffer = strings.buffers()
    if offsets_buffer is None:  # an empty array may come without buffers
        return []
    offsets = (
        memoryview(offsets_buffer).cast("q")[strings.offset : strings.offset + len(strings) + 1].tolist()
    )
    utf8 = memoryview(b"" if data_buffer is None else data_buffer)
    blake2b = hashlib.blake2b
    return [
        blake2b(utf8[start:end], digest_size=digest_size).digest()
        for start, end in itertools.pairwise(offsets)
    ]
