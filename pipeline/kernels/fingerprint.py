"""Arrow strings as bytes: the numpy view of a string array's buffers (`utf8_buffers`, read by
the compiled loops of `minhash`, `clean_kernels` and `validate`) and 8-byte blake2b digests of
each string (`blake2b_64`), shared by `clean` (text hashes), `split` (split assignment) and
`release_diff` (row index).

blake2b, not polars' own hash: a digest written to a file must stay the same across Python,
polars and Arrow versions. It is computed by a compiled loop over the UTF-8 buffer, so no
Python object is built per row, which on millions of abstracts costs more than the hashing.
"""

from __future__ import annotations

from typing import TypeAlias

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

U64: TypeAlias = npt.NDArray[np.uint64]
I64: TypeAlias = npt.NDArray[np.int64]


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


@numba.njit(cache=True, inline="always")
def fmix64(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """murmur3's 64-bit finaliser: spreads every input bit over the output. The cheap byte
    hashes of `minhash` (FNV-1a) and `clean_kernels` (rotate-xor) leave a word's last bytes
    in its low bits alone without it."""
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


# BLAKE2b (RFC 7693): initial values and message schedule of its 12 rounds.
_BLAKE2B_IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
_BLAKE2B_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    ],
    dtype=np.int64,
)
_ONE = np.uint64(1)
_THREE = np.uint64(3)
_SEVEN = np.uint64(7)
_EIGHT = np.uint64(8)
# Parameter block word 0 for an 8-byte digest without key: digest length, fanout 1, depth 1.
_BLAKE2B_8_PARAMS = np.uint64(0x01010008)


@numba.njit(cache=True, inline="always")
def _blake2b_mix(
    a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64, y: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:  # pragma: no cover - compiled
    # BLAKE2b's G function; rotations right by 32, 24, 16 and 63 bits.
    a = a + b + x
    d ^= a
    d = (d >> np.uint64(32)) | (d << np.uint64(32))
    c = c + d
    b ^= c
    b = (b >> np.uint64(24)) | (b << np.uint64(40))
    a = a + b + y
    d ^= a
    d = (d >> np.uint64(16)) | (d << np.uint64(48))
    c = c + d
    b ^= c
    b = (b >> np.uint64(63)) | (b << np.uint64(1))
    return a, b, c, d


@numba.njit(cache=True, nogil=True)
def _blake2b_64_kernel(
    prefix: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    offsets: I64,
    iv: U64,
    sigma: I64,
) -> U64:  # pragma: no cover - compiled
    # hashlib.blake2b(prefix + string, digest_size=8) of each string, as the little-endian
    # number of its 8 digest bytes (the first state word).
    out = np.empty(len(offsets) - 1, dtype=np.uint64)
    h = np.empty(8, dtype=np.uint64)
    m = np.empty(16, dtype=np.uint64)
    # Unsigned positions: numba checks a signed index for a negative value on every access.
    n_prefix = np.uint64(len(prefix))
    for row in range(len(offsets) - 1):
        start = np.uint64(offsets[row])
        length = n_prefix + (np.uint64(offsets[row + 1]) - start)
        h[:] = iv
        h[0] ^= _BLAKE2B_8_PARAMS
        blocks = max(_ONE, (length + np.uint64(127)) >> np.uint64(7))  # the empty message: one block
        for block in range(blocks):
            first = np.uint64(block) << np.uint64(7)
            last = min(length, first + np.uint64(128))
            m[:] = 0
            # The block's bytes as 16 little-endian words: the prefix's byte by byte, then the
            # string's eight at a time while whole words remain, then the rest byte by byte.
            k = first
            while k < last and k < n_prefix:
                m[(k - first) >> _THREE] |= np.uint64(prefix[k]) << (((k - first) & _SEVEN) << _THREE)
                k += _ONE
            while k + _EIGHT <= last and (k - first) & _SEVEN == 0:
                at = start + k - n_prefix
                word = np.uint64(0)
                for byte in range(8):
                    word |= np.uint64(data[at + np.uint64(byte)]) << np.uint64(8 * byte)
                m[(k - first) >> _THREE] = word
                k += _EIGHT
            while k < last:
                m[(k - first) >> _THREE] |= np.uint64(data[start + k - n_prefix]) << (
                    ((k - first) & _SEVEN) << _THREE
                )
                k += _ONE
            v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
            v8, v9, v10, v11 = iv[0], iv[1], iv[2], iv[3]
            v12 = iv[4] ^ last  # bytes hashed so far (the high counter word stays 0)
            v13 = iv[5]
            v14 = ~iv[6] if block == blocks - _ONE else iv[6]
            v15 = iv[7]
            for r in range(12):
                s = sigma[r]
                v0, v4, v8, v12 = _blake2b_mix(v0, v4, v8, v12, m[s[0]], m[s[1]])
                v1, v5, v9, v13 = _blake2b_mix(v1, v5, v9, v13, m[s[2]], m[s[3]])
                v2, v6, v10, v14 = _blake2b_mix(v2, v6, v10, v14, m[s[4]], m[s[5]])
                v3, v7, v11, v15 = _blake2b_mix(v3, v7, v11, v15, m[s[6]], m[s[7]])
                v0, v5, v10, v15 = _blake2b_mix(v0, v5, v10, v15, m[s[8]], m[s[9]])
                v1, v6, v11, v12 = _blake2b_mix(v1, v6, v11, v12, m[s[10]], m[s[11]])
                v2, v7, v8, v13 = _blake2b_mix(v2, v7, v8, v13, m[s[12]], m[s[13]])
                v3, v4, v9, v14 = _blake2b_mix(v3, v4, v9, v14, m[s[14]], m[s[15]])
            h[0] ^= v0 ^ v8
            h[1] ^= v1 ^ v9
            h[2] ^= v2 ^ v10
            h[3] ^= v3 ^ v11
            h[4] ^= v4 ^ v12
            h[5] ^= v5 ^ v13
            h[6] ^= v6 ^ v14
            h[7] ^= v7 ^ v15
        out[row] = h[0]
    return out


def blake2b_64(strings: pa.Array | pa.ChunkedArray, prefix: bytes = b"") -> U64:
    """hashlib.blake2b(prefix + s, digest_size=8) of each string s's UTF-8 bytes (a null hashes
    as the empty string), the 8 digest bytes read as a little-endian number.

    A compiled loop over the array's UTF-8 buffer: hashlib costs a Python call per string,
    several seconds for millions of rows; the loop matches it byte for byte (tested).
    """
    data, offsets = utf8_buffers(strings)
    salt = np.frombuffer(prefix, dtype=np.uint8)
    digests: U64 = _blake2b_64_kernel(salt, data, offsets, _BLAKE2B_IV, _BLAKE2B_SIGMA)
    return digests


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_digests(digests: U64) -> pa.LargeStringArray:
    """Each `blake2b_64` digest as hashlib's `hexdigest()`: 16 lower-case hex digits of its bytes."""
    digest_bytes = digests.astype("<u8").view(np.uint8).reshape(-1, 8)
    digits = np.empty((len(digests), 16), dtype=np.uint8)
    digits[:, 0::2] = _HEX_DIGITS[digest_bytes >> 4]
    digits[:, 1::2] = _HEX_DIGITS[digest_bytes & 15]
    offsets = np.arange(0, 16 * len(digests) + 1, 16, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(len(digests), pa.py_buffer(offsets), pa.py_buffer(digits))
