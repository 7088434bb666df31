"""One compiled pass over a batch's UTF-8 bytes: the per-row counts the filter rules compare
(and the validate stage compares again on the release, `pipeline.policy`).

Characters, space-separated words, common English function words (case-insensitive), ASCII
upper-case and lower-case letters, and ASCII digits and symbols, counted in one loop over the
Arrow buffers (no Python object per row). Regexes over the whole text cost far more for the
function words alone; this loop counts everything in a fraction of that (see the filter
section of the README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numba
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pipeline.kernels.fingerprint import utf8_buffers

I64: TypeAlias = npt.NDArray[np.int64]
U64: TypeAlias = npt.NDArray[np.uint64]
Bytes: TypeAlias = npt.NDArray[np.uint8]

# The commonest English words of at most 5 letters: their share of an abstract's words tells
# English prose from other languages (about 25-30% in English abstracts, under 5% in German,
# French, Spanish, Dutch or Polish ones, whose own function words are not on the list).
FUNCTION_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "we",
    "for",
    "that",
    "with",
    "on",
    "by",
    "this",
    "are",
    "as",
    "an",
    "from",
    "be",
    "our",
    "which",
    "can",
    "it",
    "or",
    "these",
    "has",
    "have",
    "their",
    "not",
    "at",
]


def _word_code(word: str) -> int:
    """A word of ASCII letters as the kernel folds it: one byte per letter, the last lowest.

    A word of more than 8 letters keeps its last 8, so it cannot equal a word on the list.
    """
    code = 0
    for letter in word:
        code = (code << 8) | ord(letter)
    return code


# A hash table of the function words' codes: slot `(code * _MULTIPLIER) >> _SHIFT` holds the
# code, and no two words share a slot (checked when it is built), so a lookup is one multiply
# and one compare; a binary search per word made the loop 3 times slower.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(64 - 12)


def _function_table() -> U64:
    table = np.zeros(1 << 12, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for word in FUNCTION_WORDS:
            code = np.uint64(_word_code(word))
            slot = int((code * _MULTIPLIER) >> _SHIFT)
            if table[slot]:
                raise AssertionError(f"two function words share a hash slot: {word!r}")
            table[slot] = code
    return table


_FUNCTION_TABLE = _function_table()

# Byte classes: 1 ASCII upper-case letter, 2 lower-case letter, 3 digit, 4 symbol (neither
# letter, digit, space nor prose punctuation), 5 space or prose punctuation, 0 not ASCII.
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[:128] = 4
_CLASS[ord("A") : ord("Z") + 1] = 1
_CLASS[ord("a") : ord("z") + 1] = 2
_CLASS[ord("0") : ord("9") + 1] = 3
for _char in " \t\n\r.,;:!?'\"()-":
    _CLASS[ord(_char)] = 5

_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_EIGHT = np.uint64(8)
_LOWER_BIT = np.uint64(0x20)


@numba.njit(cache=True, nogil=True)
def _measure_kernel(
    data: Bytes, offsets: I64, classes: Bytes, table: U64, multiplier: np.uint64, shift: np.uint64
) -> npt.NDArray[np.int64]:  # pragma: no cover - compiled
    # Branch-free: a branch per letter (is this the end of a word?) mispredicts at every
    # word boundary, and made the loop twice as slow on abstracts.
    rows = len(offsets) - 1
    out = np.zeros((8, rows), dtype=np.int64)
    for row in range(rows):
        start = np.uint64(offsets[row])
        end = np.uint64(offsets[row + 1])
        chars = 0
        spaces = 0
        hits = 0
        upper = 0
        lower = 0
        symbols = 0
        round_balance = 0
        square_balance = 0
        # The current word's letters (lower-cased), and whether it holds a digit or a byte
        # past ASCII ("x1", "für"), which no function word does.
        code = _ZERO
        bad = _ZERO
        for i in range(start, end):
            byte = np.uint64(data[i])
            kind = classes[byte]
            separator = kind >= 4
            chars += (byte & np.uint64(0xC0)) != np.uint64(0x80)
            upper += kind == 1
            lower += kind == 2
            symbols += (kind == 3) | (kind == 4)
            spaces += byte == np.uint64(32)
            round_balance += int(byte == np.uint64(40)) - int(byte == np.uint64(41))
            square_balance += int(byte == np.uint64(91)) - int(byte == np.uint64(93))
            hits += (
                separator & (code != _ZERO) & (bad == _ZERO) & (table[(code * multiplier) >> shift] == code)
            )
            letter = np.uint64((kind == 1) | (kind == 2))
            code = ((code << _EIGHT) | (byte | _LOWER_BIT)) * letter
            bad = (bad | np.uint64((kind == 0) | (kind == 3))) * (_ONE - np.uint64(separator))
        hits += (code != _ZERO) & (bad == _ZERO) & (table[(code * multiplier) >> shift] == code)
        out[0, row] = chars
        out[1, row] = spaces + 1 if end > start else 0
        out[2, row] = hits
        out[3, row] = upper
        out[4, row] = lower
        out[5, row] = symbols
        out[6, row] = round_balance
        out[7, row] = square_balance
    return out


@dataclass(frozen=True)
class Measures:
    """Per-row counts of a batch of abstracts (numpy arrays, one value per row)."""

    # Unicode code points (what polars' `len_chars` counts).
    chars: I64
    # Spaces + 1, the word count validate uses (clean leaves single spaces between words).
    words: I64
    # Words (maximal runs of ASCII letters) that are on `FUNCTION_WORDS`, any case.
    function_words: I64
    # ASCII upper-case and lower-case letters.
    upper: I64
    lower: I64
    # ASCII digits and symbols other than prose punctuation (.,;:!?'"()-).
    non_text: I64
    # "(" minus ")", and "[" minus "]".
    round_balance: I64
    square_balance: I64


def measure(texts: pa.Array | pa.ChunkedArray) -> Measures:
    """The counts of every text of `texts` (a null reads as the empty string)."""
    data, offsets = utf8_buffers(texts)
    counts = _measure_kernel(data, offsets, _CLASS, _FUNCTION_TABLE, _MULTIPLIER, _SHIFT)
    return Measures(*(counts[i] for i in range(8)))
