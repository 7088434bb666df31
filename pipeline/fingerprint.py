"""Arrow strings as bytes: the numpy view of a string array's buffers (`utf8_buffers`, read by
the compiled loops of `minhash` and `validate`) and blake2b digests of each string, shared by
`clean` (text hashes) and `release_diff` (row index).

blake2b, not polars' own hash: a digest written to a file must stay the same across Python,
polars and Arrow versions. The bytes are read as slices of the array's UTF-8 buffer, so no
Python str is built per row, which on millions of abstracts costs more than the hashing.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import numpy.typing as npt
import pyarrow as pa


def utf8_buffers(strings: pa.Array | pa.ChunkedArray) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The UTF-8 bytes and int64 row offsets of a string array, without copying when possible
    (a null reads as the empty string)."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    strings = strings.cast(pa.large_string())
    _, offsets_buffer, data_buffer = strings.buffers()
    if offsets_buffer is None:  # an empty array may come without buffers
        return np.zeros(0, dtype=np.uint8), np.zeros(len(strings) + 1, dtype=np.int64)
    start = strings.offset
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[start : start + len(strings) + 1]
    data = np.zeros(0, np.uint8) if data_buffer is None else np.frombuffer(data_buffer, dtype=np.uint8)
    return data, offsets


def utf8_digests(strings: pa.Array | pa.ChunkedArray, digest_size: int = 8) -> list[bytes]:
    """The blake2b digest of each string's UTF-8 bytes (a null hashes as the empty string)."""
    data, offsets = utf8_buffers(strings)
    utf8 = memoryview(data.data)
    blake2b = hashlib.blake2b
    return [
        blake2b(utf8[start:end], digest_size=digest_size).digest()
        for start, end in itertools.pairwise(offsets.tolist())
    ]
