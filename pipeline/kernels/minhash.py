"""Word-shingle MinHash LSH shared by `dedup` (near duplicates) and `split` (leak check).

Shingles are word n-grams of the lower-cased text without punctuation. Tokenising, hashing,
MinHash and the exact Jaccard of candidate pairs run in compiled (numba) loops over Arrow
buffers and flat arrays: no Python object per word or per row. A word's hash is 64-bit FNV-1a
of its UTF-8 bytes with a murmur3 finaliser, and an n-gram's hash combines its words' hashes;
all are defined here, so the band keys depend on no library's hash function. The MinHash
values are 2-independent multiply-shift hashes of the shingle hashes (Dietzfelbinger 1996),
one per permutation, with multipliers derived from `seed` by splitmix64. A signature is cut
into `bands` bands of `rows` values and each band is hashed to one 64-bit key. Two texts are
candidates when any band key is equal; every candidate pair is then verified with the exact
Jaccard similarity of the shingle sets. With b bands of r rows a pair of similarity s becomes
a candidate with probability 1 - (1 - s^r)^b (Leskovec, Rajaraman, Ullman, Mining of Massive
Datasets, ch. 3.4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numba
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.kernels.fingerprint import I64, U64, fmix64, utf8_buffers

# Strings to shingle: an Arrow string array, a polars Series or plain str.
Texts: TypeAlias = pa.Array | pa.ChunkedArray | pl.Series | Iterable[str]
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads bits when combining hashes
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)

# Punctuation that separates words, as a byte table: 1 for an ASCII separator; 2 for the last
# byte of a three-byte UTF-8 separator E2 80 xx (curly quotes, en and em dash). Clean has
# already normalised the text (NFC, single spaces), so this is all the folding shingles need.
_SEPARATOR_TEXT = " ,.;:()[]{}\"'!?/|\n\t"
_SEPARATOR_WIDE = "\u201c\u201d\u2018\u2019\u2013\u2014"
SEPARATORS = _SEPARATOR_TEXT + _SEPARATOR_WIDE
_SEPARATOR_BYTES = np.zeros(256, dtype=np.uint8)
_SEPARATOR_BYTES[list(_SEPARATOR_TEXT.encode("ascii"))] = 1
assert all(c.encode("utf-8")[:2] == b"\xe2\x80" for c in _SEPARATOR_WIDE)
_SEPARATOR_BYTES[[c.encode("utf-8")[2] for c in _SEPARATOR_WIDE]] = 2


@numba.njit(cache=True, nogil=True)
def _shingle_kernel(
    data: npt.NDArray[np.uint8],
    offsets: I64,
    shingle_words: int,
    separators: npt.NDArray[np.uint8],
) -> tuple[U64, I64]:  # pragma: no cover - compiled
    rows = len(offsets) - 1
    # A word takes at least one byte and one separator: len(data) // 2 + 1 words per text at most.
    shingles = np.empty(len(data) // 2 + rows + 1, dtype=np.uint64)
    shingle_offsets = np.empty(rows + 1, dtype=np.int64)
    words = np.empty(len(data) // 2 + 2, dtype=np.uint64)
    count = 0
    for row in range(rows):
        shingle_offsets[row] = count
        end = offsets[row + 1]
        n_words = 0
        word = _FNV_OFFSET
        in_word = False
        i = offsets[row]
        while i < end:
            byte = data[i]
            width = separators[byte]
            if byte == 0xE2 and i + 2 < end and data[i + 1] == 0x80 and separators[data[i + 2]] == 2:
                width = 3
            if width == 1 or width == 3:
                if in_word:
                    words[n_words] = fmix64(word)
                    n_words += 1
                    in_word = False
                i += width
            else:
                if not in_word:
                    word = _FNV_OFFSET
                    in_word = True
                word = (word ^ np.uint64(byte)) * _FNV_PRIME
                i += 1
        if in_word:
            words[n_words] = fmix64(word)
            n_words += 1
        if n_words == 0:  # no words: one shingle, the empty word
            words[0] = fmix64(_FNV_OFFSET)
            n_words = 1
        # A text shorter than `shingle_words` words has one shingle: all its words.
        width = min(shingle_words, n_words)
        for first in range(n_words - width + 1):
            value = words[first]
            for j in range(1, width):
                value = value * _MIX ^ words[first + j]
            shingles[count] = value
            count += 1
    shingle_offsets[rows] = count
    return shingles[:count].copy(), shingle_offsets


@numba.njit(cache=True, nogil=True)
def _signature_kernel(
    shingles: U64, offsets: I64, multipliers: U64, increments: U64
) -> U64:  # pragma: no cover - compiled
    rows = len(offsets) - 1
    signatures = np.empty((rows, len(multipliers)), dtype=np.uint64)
    for row in range(rows):
        minimum = signatures[row]
        minimum[:] = _ALL_ONES
        for s in range(offsets[row], offsets[row + 1]):
            key = fmix64(shingles[s]) >> np.uint64(32)
            for p in range(len(multipliers)):
                value = (multipliers[p] * key + increments[p]) >> np.uint64(32)
                if value < minimum[p]:
                    minimum[p] = value
    return signatures


def _arrow_strings(
    texts: Texts,
) -> pa.Array | pa.ChunkedArray:
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        return texts
    if isinstance(texts, pl.Series):
        return texts.to_arrow()
    return pa.array(list(texts), pa.large_string())


def shingle_hashes(texts: Texts, shingle_words: int) -> tuple[U64, I64]:
    """Hashes of the word n-grams of each text, flat, with row offsets (len(texts) + 1).

    Words are the lower-cased text split at runs of `SEPARATORS`. A text shorter than
    `shingle_words` words has one shingle: all its words; a text without words, one shingle.
    """
    lowered = pc.utf8_lower(_arrow_strings(texts))
    data, offsets = utf8_buffers(lowered)
    return _shingle_kernel(data, offsets, shingle_words, _SEPARATOR_BYTES)


def _splitmix64(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) % 2**64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return state, z ^ (z >> 31)


def permutation_constants(num_perm: int, seed: int) -> tuple[U64, U64]:
    """Odd multipliers and increments of the `num_perm` hash functions (splitmix64 of `seed`)."""
    values = []
    state = seed % 2**64
    for _ in range(2 * num_perm):
        state, value = _splitmix64(state)
        values.append(value)
    multipliers = np.array(values[:num_perm], dtype=np.uint64) | np.uint64(1)
    increments = np.array(values[num_perm:], dtype=np.uint64)
    return multipliers, increments


def signatures(shingles: U64, offsets: I64, num_perm: int, seed: int) -> U64:
    """MinHash signatures, shape (rows, num_perm): per hash function, the least value over the shingles.

    Two rows agree in one position with probability about their shingles' Jaccard similarity.
    """
    multipliers, increments = permutation_constants(num_perm, seed)
    return _signature_kernel(shingles, offsets, multipliers, increments)


def band_keys(
    texts: Texts,
    shingle_words: int,
    bands: int,
    rows: int,
    seed: int,
) -> U64:
    """LSH band keys, shape (len(texts), bands)."""
    shingles, offsets = shingle_hashes(texts, shingle_words)
    matrix = signatures(shingles, offsets, bands * rows, seed).reshape(len(offsets) - 1, bands, rows)
    keys = np.zeros((len(offsets) - 1, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(rows):
            keys = keys * _MIX ^ matrix[:, :, column]
    return keys


def keys_to_arrow(keys: U64) -> pa.ListArray:
    """Band keys as an Arrow list column, one list of `bands` keys per row."""
    offsets = pa.array(np.arange(0, keys.size + 1, keys.shape[1], dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(keys.reshape(-1), pa.uint64()))


def keys_from_arrow(column: pa.ChunkedArray | pa.Array, bands: int) -> U64:
    """Band keys as one (rows, bands) array, copied chunk by chunk (no combined Arrow copy)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    keys = np.empty((sum(len(c) for c in chunks), bands), dtype=np.uint64)
    offset = 0
    for chunk in chunks:
        values = chunk.flatten().to_numpy(zero_copy_only=False)
        keys[offset : offset + len(chunk)] = values.reshape(-1, bands)
        offset += len(chunk)
    return keys


def read_band_keys(path: Path, bands: int) -> U64:
    """The `band_keys` column of a parquet file as one array, read one row group at a time."""
    # Without pre-buffering: its buffers bypass the memory pool callers set (see pipeline.stages.dedup.core).
    parquet = pq.ParquetFile(path, pre_buffer=False)
    keys = np.empty((parquet.metadata.num_rows, bands), dtype=np.uint64)
    offset = 0
    for batch in parquet.iter_batches(columns=["band_keys"], batch_size=100_000):
        keys[offset : offset + batch.num_rows] = keys_from_arrow(batch.column(0), bands)
        offset += batch.num_rows
    return keys


# Bits of a band key counted per round in `_rows_sharing_keys`: 4M counters, 32 MB.
_KEY_BITS = 22


def _rows_sharing_keys(column: U64) -> I64:
    """Positions (ascending) whose key is shared with another position, plus a few that are not.

    Counting 22-bit slices of the keys is several times cheaper than hashing or sorting the
    full keys; a key whose slice is unique in any round cannot be shared.
    """
    positions = np.arange(len(column), dtype=np.int64)
    values = column
    for shift in range(0, 64, _KEY_BITS):
        bins = ((values >> np.uint64(shift)) & np.uint64((1 << _KEY_BITS) - 1)).astype(np.intp)
        shared = np.bincount(bins, minlength=1 << _KEY_BITS)[bins] > 1
        positions, values = positions[shared], values[shared]
    return positions


def candidate_pairs(rows: I64, keys: U64) -> I64:
    """Pairs (a, b), a < b, of `rows` that share at least one band key; unique and sorted.

    `keys` holds the band keys of every row of the table (indexed by row number), so callers
    need not copy the keys of a subset.

    Each bucket contributes star pairs (its smallest row with every other member), which is
    enough for connected components while keeping a large bucket linear, not quadratic.
    """
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    found = [np.zeros((0, 2), dtype=np.int64)]
    for band in range(keys.shape[1]):
        column = keys[rows, band]
        # Most keys are unique: only the few positions that may share one are sorted.
        positions = _rows_sharing_keys(column)
        values = column[positions]
        order = np.argsort(values, kind="stable")
        values, positions = values[order], positions[order]
        # Positions ascend within a bucket (stable sort), so a bucket's first is its smallest.
        first = np.ones(len(positions), dtype=np.bool_)
        first[1:] = values[1:] != values[:-1]
        smallest = positions[first][np.cumsum(first) - 1]
        found.append(np.stack([rows[smallest[~first]], rows[positions[~first]]], axis=1))
    pairs: I64 = np.unique(np.concatenate(found), axis=0)
    return pairs


# One shuffle partition's share of the band keys: (band, row, key), flat and aligned.
BandKeyPart: TypeAlias = tuple[npt.NDArray[np.int16], I64, U64]


def partition_band_keys(keys: U64, rows: I64, partitions: int) -> list[BandKeyPart]:
    """The map side of `candidate_pairs` as a shuffle: each (band, row, key) of `rows` (whose
    band keys are `keys`, one row each) to partition `key % partitions`. Equal keys of a band
    meet in one partition, so each partition finds its buckets on its own."""
    bands = keys.shape[1]
    flat_keys = keys.reshape(-1)
    flat_rows = np.repeat(np.asarray(rows, dtype=np.int64), bands)
    flat_bands = np.tile(np.arange(bands, dtype=np.int16), len(rows))
    target = flat_keys % np.uint64(partitions)
    parts: list[BandKeyPart] = []
    for partition in range(partitions):
        mine = target == np.uint64(partition)
        parts.append((flat_bands[mine], flat_rows[mine], flat_keys[mine]))
    return parts


def bucket_pairs(parts: list[BandKeyPart]) -> I64:
    """The reduce side: the star pairs (smallest row, other row) of every bucket of equal
    (band, key) in the parts of one partition; unique and sorted. The union over the
    partitions, made unique, is `candidate_pairs` of the same rows."""
    bands = np.concatenate([part[0] for part in parts]) if parts else np.zeros(0, np.int16)
    rows = np.concatenate([part[1] for part in parts]) if parts else np.zeros(0, np.int64)
    keys = np.concatenate([part[2] for part in parts]) if parts else np.zeros(0, np.uint64)
    order = np.lexsort((rows, keys, bands))
    bands, rows, keys = bands[order], rows[order], keys[order]
    first = np.ones(len(rows), dtype=np.bool_)
    first[1:] = (bands[1:] != bands[:-1]) | (keys[1:] != keys[:-1])
    smallest = rows[first][np.cumsum(first) - 1]
    found = np.stack([smallest[~first], rows[~first]], axis=1)
    pairs: I64 = np.unique(np.concatenate([np.zeros((0, 2), dtype=np.int64), found]), axis=0)
    return pairs


@numba.njit(cache=True, nogil=True)
def _distinct_sorted_kernel(shingles: U64, offsets: I64) -> tuple[U64, I64]:  # pragma: no cover - compiled
    distinct = np.empty_like(shingles)
    distinct_offsets = np.empty_like(offsets)
    count = 0
    for row in range(len(offsets) - 1):
        distinct_offsets[row] = count
        values = np.sort(shingles[offsets[row] : offsets[row + 1]])
        for i in range(len(values)):
            if i == 0 or values[i] != values[i - 1]:
                distinct[count] = values[i]
                count += 1
    distinct_offsets[len(offsets) - 1] = count
    return distinct[:count].copy(), distinct_offsets


@numba.njit(cache=True, nogil=True)
def _jaccard_kernel(
    hashes: U64, offsets: I64, first: I64, second: I64
) -> npt.NDArray[np.float64]:  # pragma: no cover - compiled
    similarity = np.empty(len(first), dtype=np.float64)
    for k in range(len(first)):
        i, i_end = offsets[first[k]], offsets[first[k] + 1]
        j, j_end = offsets[second[k]], offsets[second[k] + 1]
        union = (i_end - i) + (j_end - j)
        common = 0
        while i < i_end and j < j_end:  # merge of two sorted, distinct runs
            if hashes[i] == hashes[j]:
                common += 1
                i += 1
                j += 1
            elif hashes[i] < hashes[j]:
                i += 1
            else:
                j += 1
        union -= common
        similarity[k] = common / union if union else 1.0
    return similarity


@dataclass(frozen=True)
class ShingleSets:
    """The distinct shingle hashes of some rows, flat: row `rows[i]`'s sorted set is
    `hashes[offsets[i]:offsets[i + 1]]`. One array for all rows, not one object per row."""

    rows: I64
    hashes: U64
    offsets: I64

    @staticmethod
    def of_texts(
        texts: Texts,
        rows: I64,
        shingle_words: int,
    ) -> ShingleSets:
        """The sets of `texts`, the texts of `rows` (sorted, distinct)."""
        hashes, offsets = _distinct_sorted_kernel(*shingle_hashes(texts, shingle_words))
        return ShingleSets(np.asarray(rows, dtype=np.int64), hashes, offsets)

    @staticmethod
    def concat(parts: list[ShingleSets]) -> ShingleSets:
        """One structure of parts holding increasing rows."""
        if not parts:
            return ShingleSets(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(1, np.int64))
        starts = np.cumsum([0] + [len(p.hashes) for p in parts[:-1]])
        return ShingleSets(
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.hashes for p in parts]),
            np.concatenate([[0]] + [p.offsets[1:] + start for p, start in zip(parts, starts, strict=True)]),
        )

    def get(self, row: int) -> U64:
        i = int(np.searchsorted(self.rows, row))
        if i == len(self.rows) or self.rows[i] != row:
            raise KeyError(row)
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    def similarity(self, pairs: I64) -> npt.NDArray[np.float64]:
        """Exact Jaccard similarity of each pair (a, b) of rows (both must be held)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        index = np.searchsorted(self.rows, pairs)
        if len(pairs) and not np.array_equal(self.rows[np.minimum(index, len(self.rows) - 1)], pairs):
            raise KeyError("pair of a row without its shingle set")
        return _jaccard_kernel(self.hashes, self.offsets, index[:, 0].copy(), index[:, 1].copy())
