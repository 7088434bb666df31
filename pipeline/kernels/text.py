"""Compiled (numba) loops over Arrow string buffers for the two byte-level steps of `clean`
that polars spent the most time on: the distinct space-separated pieces of a batch and where
each occurs (where the glued-word rule looks for candidate tokens, and which texts hold them),
and the folded text of rows of ASCII and general punctuation (which the exact-duplicate hash
is taken of).

Both read the UTF-8 buffer and offsets of a string array (`fingerprint.utf8_buffers`) and
return new buffers: no Python object is made per row or per word, which is where polars
spent its time on these two steps.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TypeAlias

import numba
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from pipeline.kernels.fingerprint import I64, fmix64, utf8_buffers

Bytes: TypeAlias = npt.NDArray[np.uint8]
I32: TypeAlias = npt.NDArray[np.int32]
Flags: TypeAlias = npt.NDArray[np.bool_]

_SPACE = 32
# Unsigned loop indices: numba checks a signed index for a negative value (Python's
# wraparound) on every access, which made the byte loops up to twice as slow.
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_THREE = np.uint64(3)
_EIGHT = np.uint64(8)
_SIXTEEN = np.uint64(16)
# Byte -> its folded form: ASCII digits and lower-case letters as themselves, upper-case
# letters lowered, anything else 0 (a separator). Only used on `_foldable_rows_kernel`'s rows,
# where every byte past ASCII belongs to a general punctuation character.
_ASCII_FOLD = np.zeros(256, dtype=np.uint8)
_ASCII_FOLD[ord("0") : ord("9") + 1] = np.arange(ord("0"), ord("9") + 1)
_ASCII_FOLD[ord("a") : ord("z") + 1] = np.arange(ord("a"), ord("z") + 1)
_ASCII_FOLD[ord("A") : ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1)


def _punctuation_separators() -> Flags:
    """Which of U+2000-U+207F (UTF-8 E2 80 xx and E2 81 xx) `clean._fold` treats as separators.

    Curly quotes, dashes, ellipses and the other assigned characters of the General
    Punctuation block up to U+206F are neither letters nor digits, and so is every character
    of their NFKC form: folding turns each into part of a separator run, as it does an ASCII
    comma. Unassigned code points and the super- and subscripts from U+2070 are not.
    """
    separators = np.zeros(128, dtype=np.bool_)
    for code in range(0x2000, 0x2070):
        char = chr(code)
        if unicodedata.category(char) == "Cn":
            continue
        if all(unicodedata.category(c)[0] not in "LN" for c in char + unicodedata.normalize("NFKC", char)):
            separators[code - 0x2000] = True
    return separators


_PUNCTUATION_SEPARATORS = _punctuation_separators()


@numba.njit(cache=True, nogil=True)
def _foldable_rows_kernel(
    data: Bytes, offsets: I64, separators: Flags
) -> Flags:  # pragma: no cover - compiled
    rows = len(offsets) - 1
    foldable = np.empty(rows, dtype=np.bool_)
    for row in range(rows):
        start = np.uint64(offsets[row])
        end = np.uint64(offsets[row + 1])
        seen = np.uint8(0)
        for i in range(start, end):
            seen |= data[i]
        foldable[row] = seen < 128
        if foldable[row]:
            continue
        # Past ASCII, only three-byte characters E2 80 xx / E2 81 xx that fold to separators.
        at = start
        while at < end:
            byte = data[at]
            if byte < 128:
                at += _ONE
                continue
            if (
                byte == 0xE2
                and at + _TWO < end
                and (data[at + _ONE] == 0x80 or data[at + _ONE] == 0x81)
                and 0x80 <= data[at + _TWO] <= 0xBF
                and separators[((data[at + _ONE] & 1) << 6) | (data[at + _TWO] & 0x3F)]
            ):
                at += _THREE
                continue
            break
        foldable[row] = at >= end
    return foldable


@numba.njit(cache=True, nogil=True)
def _plain_fold_kernel(
    data: Bytes, offsets: I64, foldable: Flags, fold: Bytes
) -> tuple[Bytes, I64]:  # pragma: no cover - compiled
    rows = len(offsets) - 1
    out = np.empty(len(data) + 1, dtype=np.uint8)
    out_offsets = np.empty(rows + 1, dtype=np.int64)
    n = np.uint64(0)
    for row in range(rows):
        out_offsets[row] = n
        if not foldable[row]:
            continue  # folded by the caller (Unicode classes): an empty string here
        start = n
        previous_in_word = _ONE  # no space before the first word
        # Branch-free: a mispredicted branch per separator cost more than the extra stores.
        for i in range(np.uint64(offsets[row]), np.uint64(offsets[row + 1])):
            folded = fold[data[i]]
            in_word = np.uint64(folded != 0)
            out[n] = _SPACE
            n += in_word & (_ONE - previous_in_word) & np.uint64(n > start)
            out[n] = folded
            n += in_word
            previous_in_word = in_word
    out_offsets[rows] = n
    return out[:n], out_offsets


def fold_plain_texts(texts: pa.Array | pa.ChunkedArray) -> tuple[pa.LargeStringArray, Flags]:
    """Each text lower-cased, with every run of non-alphanumerics made one space and none at
    either end, for the texts whose characters are ASCII or general punctuation (curly quotes,
    dashes); and which rows those were (the others come back empty).

    For those texts this is exactly `clean._fold` of their NFKC form: NFKC changes no ASCII
    text, in ASCII `\\p{L}` and `\\p{N}` are the letters and digits, and the punctuation folds
    into separators (`_punctuation_separators`).
    """
    data, offsets = utf8_buffers(texts)
    foldable = _foldable_rows_kernel(data, offsets, _PUNCTUATION_SEPARATORS)
    folded, folded_offsets = _plain_fold_kernel(data, offsets, foldable, _ASCII_FOLD)
    array = pa.LargeStringArray.from_buffers(
        len(foldable), pa.py_buffer(folded_offsets), pa.py_buffer(folded)
    )
    return array, foldable


@numba.njit(cache=True, nogil=True)
def _distinct_pieces_kernel(
    data: Bytes, offsets: I64, capacity: int
) -> tuple[Bytes, I64, I32, I64, bool]:  # pragma: no cover - compiled
    # Open addressing with linear probing, at most half full: past that the caller retries with
    # twice the capacity (growing in the loop made every lookup slower). A slot holds its
    # piece's first 16 bytes as two integers and its length: for the short pieces (nearly all)
    # comparing those is comparing the piece, without reading the bytes again. A longer piece
    # keeps its hash in place of bytes 8-16 and is compared byte by byte against `arena`, where
    # each distinct piece is copied once.
    mask = np.uint64(capacity - 1)
    slot_low = np.zeros(capacity, dtype=np.uint64)
    slot_high = np.zeros(capacity, dtype=np.uint64)
    slot_lengths = np.zeros(capacity, dtype=np.int32)
    slot_ids = np.full(capacity, -1, dtype=np.int32)
    arena = np.empty(1 << 16, dtype=np.uint8)
    arena_offsets = np.zeros(capacity // 2 + 1, dtype=np.int64)
    rows = len(offsets) - 1
    # Which distinct piece each piece of each row is: a piece takes at least its separator.
    occurrences = np.empty(len(data) + rows, dtype=np.int32)
    occurrence_offsets = np.empty(rows + 1, dtype=np.int64)
    seen = 0
    count = 0
    for row in range(rows):
        occurrence_offsets[row] = seen
        end = np.uint64(offsets[row + 1])
        piece = np.uint64(offsets[row])
        h = np.uint64(0)
        low = np.uint64(0)
        high = np.uint64(0)
        for i in range(piece, end + _ONE):
            if i < end and data[i] != _SPACE:
                byte = np.uint64(data[i])
                # Rotate-xor: one cycle per byte; `fmix64` makes up for it (and slots compare).
                h = ((h << np.uint64(5)) | (h >> np.uint64(59))) ^ byte
                at = i - piece
                if at < _EIGHT:
                    low |= byte << (at << _THREE)
                elif at < _SIXTEEN:
                    high |= byte << ((at - _EIGHT) << _THREE)
                continue
            length = np.int64(i - piece)
            key = fmix64(h ^ np.uint64(length))
            if length > 16:
                high = key
            slot = key & mask
            while True:
                known = slot_ids[slot]
                if known < 0:
                    if 2 * (count + 1) > capacity:
                        return arena[:0], arena_offsets[:1], occurrences[:0], occurrence_offsets[:1], False
                    at = arena_offsets[count]
                    if at + length > len(arena):
                        grown = np.empty(2 * len(arena) + length, dtype=np.uint8)
                        grown[:at] = arena[:at]
                        arena = grown
                    arena[at : at + length] = data[np.int64(piece) : np.int64(i)]
                    slot_ids[slot] = count
                    slot_low[slot] = low
                    slot_high[slot] = high
                    slot_lengths[slot] = length
                    occurrences[seen] = count
                    count += 1
                    arena_offsets[count] = at + length
                    break
                if slot_low[slot] == low and slot_high[slot] == high and slot_lengths[slot] == length:
                    same = True
                    if length > 16:
                        at = arena_offsets[known]
                        for k in range(length):
                            if arena[at + k] != data[piece + np.uint64(k)]:
                                same = False
                                break
                    if same:
                        occurrences[seen] = known
                        break
                slot = (slot + np.uint64(1)) & mask
            seen += 1
            piece = i + _ONE
            h = np.uint64(0)
            low = np.uint64(0)
            high = np.uint64(0)
    occurrence_offsets[rows] = seen
    pieces = arena[: arena_offsets[count]].copy()
    return pieces, arena_offsets[: count + 1].copy(), occurrences[:seen].copy(), occurrence_offsets, True


# Slots for about 30,000 distinct pieces: a 50,000-row batch of abstracts holds about 20,000.
_PIECE_SLOTS = 1 << 16


@dataclass(frozen=True)
class Pieces:
    """The distinct pieces of a batch of texts split at single spaces, and where they occur.

    `values` holds each distinct piece once (the empty piece included), in order of first
    occurrence; `occurrences` the index in `values` of every piece of every text, text after
    text, and `occurrence_offsets` where each text's pieces start in it.
    """

    values: pl.Series
    occurrences: I32
    occurrence_offsets: I64

    @classmethod
    def of(cls, texts: pl.Series) -> Pieces:
        """The pieces of `texts` (a null text has one piece, the empty one). A piece is a run
        of bytes between spaces, so it is valid UTF-8 like its text."""
        data, offsets = utf8_buffers(texts.to_arrow())
        capacity = _PIECE_SLOTS
        while True:
            pieces, piece_offsets, occurrences, occurrence_offsets, complete = _distinct_pieces_kernel(
                data, offsets, capacity
            )
            if complete:
                break
            capacity *= 2
        array = pa.LargeStringArray.from_buffers(
            len(piece_offsets) - 1, pa.py_buffer(piece_offsets), pa.py_buffer(pieces)
        )
        values = pl.from_arrow(array)
        assert isinstance(values, pl.Series)
        return cls(values.alias(texts.name), occurrences, occurrence_offsets)

    def texts_holding(self, wanted: pl.Series) -> pl.Series:
        """Per text, whether one of its pieces is `wanted` (a boolean per distinct piece)."""
        hits = np.flatnonzero(wanted.to_numpy()[self.occurrences])
        texts = len(self.occurrence_offsets) - 1
        holding = np.zeros(texts, dtype=np.bool_)
        holding[np.searchsorted(self.occurrence_offsets, hits, side="right") - 1] = True
        return pl.Series(holding)
