from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from pipeline.kernels.fingerprint import blake2b_64, hex_digests, utf8_buffers

# Lengths around BLAKE2b's 128-byte blocks, multi-byte UTF-8, and the empty string.
STRINGS = (
    ["", "é-ü/1234567", "\U0001f600" * 40] + ["x" * n for n in range(300)] + ["é" * n for n in (63, 64, 65)]
)


def reference(strings: list[str], prefix: bytes = b"") -> list[int]:
    return [
        int.from_bytes(hashlib.blake2b(prefix + s.encode("utf-8"), digest_size=8).digest(), "little")
        for s in strings
    ]


def test_blake2b_64_is_hashlib_blake2b_with_an_8_byte_digest() -> None:
    assert blake2b_64(pa.array(STRINGS)).tolist() == reference(STRINGS)
    assert blake2b_64(pa.array(STRINGS), prefix=b"20261123:").tolist() == reference(STRINGS, b"20261123:")
    # A prefix that fills most of a block moves every block boundary.
    assert blake2b_64(pa.array(STRINGS), prefix=b"p" * 120).tolist() == reference(STRINGS, b"p" * 120)


def test_blake2b_64_reads_chunked_sliced_and_null_strings() -> None:
    chunked = pa.chunked_array([STRINGS[:10], STRINGS[10:]])
    assert blake2b_64(chunked).tolist() == reference(STRINGS)
    assert blake2b_64(pa.array(STRINGS).slice(5, 20)).tolist() == reference(STRINGS[5:25])
    assert blake2b_64(pa.array(["a", None])).tolist() == reference(["a", ""])


def test_hex_digests_are_hashlib_hexdigests() -> None:
    digests = blake2b_64(pa.array(STRINGS))
    expected = [hashlib.blake2b(s.encode("utf-8"), digest_size=8).hexdigest() for s in STRINGS]
    assert hex_digests(digests).to_pylist() == expected
    assert hex_digests(np.zeros(0, dtype=np.uint64)).to_pylist() == []


def test_an_empty_array_has_no_digests() -> None:
    _, offsets = utf8_buffers(pa.array([], pa.string()))
    assert offsets.tolist() == [0]
    assert blake2b_64(pa.array([], pa.string())).tolist() == []
