"""Compiled (numba) loops over Arrow string buffers for the two byte-level steps of `clean`
that polars spends the most time on: the distinct space-separated pieces of a batch (where
the glued-word rule looks for candidate tokens) and the folded text of ASCII rows (which the
exact-duplicate hash is taken of).

Both read the UTF-8 buffer and offsets of a string array (`fingerprint.utf8_buffers`) and
return new buffers: no Python object is made per row or per word. On 100,000 benchmark
abstracts they take about half the CPU time of the polars expressions they replace
(`split(" ").explode().unique()`; `to_lowercase` and a Unicode-class `replace_all`).
"""

from __future__ import annotations

from typing import TypeAlias

import numba
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from pipeline.fingerprint import utf8_buffers

Bytes: TypeAlias = npt.NDArray[np.uint8]
I64: TypeAlias = npt.NDArray[np.int64]
Flags: TypeAlias = npt.NDArray[np.bool_]

_SPACE = 32
# Byte -> its folded form: ASCII digits and lower-case letters as themselves, upper-case
# letters lowered, anything else 0 (a separator). Only used on rows without non-ASCII bytes.
_ASCII_FOLD = np.zeros(256, dtype=np.uint8)
_ASCII_FOLD[ord("0") : ord("9") + 1] = np.arange(ord("0"), ord("9") + 1)
_ASCII_FOLD[ord("a") : ord("z") + 1] = np.arange(ord("a"), ord("z") + 1)
_ASCII_FOLD[ord("A") : ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1)


@numba.njit(cache=True, nogil=True)
def _ascii_rows_kernel(data: Bytes, offsets: I64) -> Flags:  # pragma: no cover - compiled
    rows = len(offsets) - 1
    ascii = np.empty(rows, dtype=np.bool_)
    for row in range(rows):
        seen = np.uint8(0)
        for i in range(offsets[row], offsets[row + 1]):
            seen |= data[i]
        ascii[row] = seen < 128
    return ascii


@numba.njit(cache=True, nogil=True)
def _ascii_fold_kernel(
    data: Bytes, offsets: I64, ascii: Flags, fold: Bytes
) -> tuple[Bytes, I64]:  # pragma: no cover - compiled
    rows = len(offsets) - 1
    out = np.empty(len(data) + 1, dtype=np.uint8)
    out_offsets = np.empty(rows + 1, dtype=np.int64)
    n = 0
    for row in range(rows):
        out_offsets[row] = n
        if not ascii[row]:
            continue  # folded by the caller (Unicode classes): an empty string here
        start = n
        previous_in_word = True  # no space before the first word
        # Branch-free: a mispredicted branch per separator cost more than the extra stores.
        for i in range(offsets[row], offsets[row + 1]):
            folded = fold[data[i]]
            in_word = folded != 0
            out[n] = _SPACE
            n += in_word & (not previous_in_word) & (n > start)
            out[n] = folded
            n += in_word
            previous_in_word = in_word
    out_offsets[rows] = n
    return out[:n], out_offsets


def ascii_fold(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.LargeStringArray, Flags]:
    """Each ASCII text lower-cased, with every run of non-alphanumerics made one space and none
    at either end; and which rows were ASCII (the others come back empty).

    For an ASCII text this is exactly `clean._fold` (NFKC changes no ASCII text, and in ASCII
    `\\p{L}` and `\\p{N}` are the letters and digits).
    """
    data, offsets = utf8_buffers(texts)
    ascii = _ascii_rows_kernel(data, offsets)
    folded, folded_offsets = _ascii_fold_kernel(data, offsets, ascii, _ASCII_FOLD)
    array = pa.LargeStringArray.from_buffers(len(ascii), pa.py_buffer(folded_offsets), pa.py_buffer(folded))
    return array, ascii


@numba.njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    # murmur3's fmix64: the rotate-xor piece hash alone leaves its last bytes in the low bits.
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


@numba.njit(cache=True, nogil=True)
def _distinct_pieces_kernel(
    data: Bytes, offsets: I64, capacity: int
) -> tuple[Bytes, I64, bool]:  # pragma: no cover - compiled
    # Open addressing with linear probing, at most half full: past that the caller retries with
    # twice the capacity (growing in the loop made every lookup slower). Each distinct piece is
    # copied once into `arena`, where comparing a repeat against it stays in cache (its first
    # occurrence may be far back in `data`).
    mask = np.uint64(capacity - 1)
    slot_keys = np.zeros(capacity, dtype=np.uint64)
    slot_ids = np.full(capacity, -1, dtype=np.int64)
    arena = np.empty(1 << 16, dtype=np.uint8)
    arena_offsets = np.zeros(capacity // 2 + 1, dtype=np.int64)
    count = 0
    for row in range(len(offsets) - 1):
        end = offsets[row + 1]
        piece = offsets[row]
        h = np.uint64(0)
        for i in range(piece, end + 1):
            if i < end and data[i] != _SPACE:
                # Rotate-xor: one cycle per byte; `_mix` and the byte comparison make up for it.
                h = ((h << np.uint64(5)) | (h >> np.uint64(59))) ^ np.uint64(data[i])
                continue
            length = i - piece
            key = _mix(h ^ np.uint64(length))
            slot = key & mask
            while True:
                known = slot_ids[slot]
                if known < 0:
                    if 2 * (count + 1) > capacity:
                        return arena[:0], arena_offsets[:1], False
                    at = arena_offsets[count]
                    if at + length > len(arena):
                        grown = np.empty(2 * len(arena) + length, dtype=np.uint8)
                        grown[:at] = arena[:at]
                        arena = grown
                    arena[at : at + length] = data[piece:i]
                    slot_ids[slot] = count
                    slot_keys[slot] = key
                    count += 1
                    arena_offsets[count] = at + length
                    break
                if slot_keys[slot] == key:
                    at = arena_offsets[known]
                    if arena_offsets[known + 1] - at == length:
                        same = True
                        for k in range(length):
                            if arena[at + k] != data[piece + k]:
                                same = False
                                break
                        if same:
                            break
                slot = (slot + np.uint64(1)) & mask
            piece = i + 1
            h = np.uint64(0)
    return arena[: arena_offsets[count]].copy(), arena_offsets[: count + 1].copy(), True


# Slots for about 30,000 distinct pieces: a 50,000-row batch of abstracts holds about 20,000.
_PIECE_SLOTS = 1 << 16


def distinct_pieces(texts: pl.Series) -> pl.Series:
    """The distinct pieces of `texts` split at single spaces (the empty piece included), in
    order of first occurrence: the set `texts.str.split(" ").explode().unique()` gives, without
    nulls. A piece is a run of bytes between spaces, so it is valid UTF-8 like its text."""
    data, offsets = utf8_buffers(texts.to_arrow())
    capacity = _PIECE_SLOTS
    while True:
        pieces, piece_offsets, complete = _distinct_pieces_kernel(data, offsets, capacity)
        if complete:
            break
        capacity *= 2
    array = pa.LargeStringArray.from_buffers(
        len(piece_offsets) - 1, pa.py_buffer(piece_offsets), pa.py_buffer(pieces)
    )
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series.alias(texts.name)
