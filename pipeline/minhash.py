"""Word-shingle MinHash LSH shared by `dedup` (near duplicates) and `split` (leak check).

Shingles are word n-grams of the lower-cased text without punctuation, hashed with polars'
64-bit string hash (10x faster than hashing in Python; polars is pinned in pyproject.toml
because its hash is only stable within one version). Signatures come from `rensa`
(Rust MinHash); a signature is cut into `bands` bands of `rows` values and each band is hashed
to one 64-bit key. Two texts are candidates when any band key is equal; every candidate pair is
then verified with the exact Jaccard similarity of the shingle sets. With b bands of r rows a
pair of similarity s becomes a candidate with probability 1 - (1 - s^r)^b (Leskovec, Rajaraman,
Ullman, Mining of Massive Datasets, ch. 3.4).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import rensa

U64 = npt.NDArray[np.uint64]
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads bits when combining hashes
_HASH_SEED = 20261123


def _word_hashes(words: pl.Series) -> U64:
    """64-bit hash of every word (polars' hash: stable within the pinned polars version)."""
    return np.asarray(words.hash(seed=_HASH_SEED).to_numpy(), dtype=np.uint64)


# Punctuation that separates words. A literal multi-pattern replace is ~10x faster than a
# Unicode-class regex or NFKC on 2.7M abstracts, and clean has already normalised the text (NFC,
# single spaces), so this is all the folding shingles need.
_SEPARATORS = [*",.;:()[]{}\"'!?/|\n\t", "\u201c", "\u201d", "\u2018", "\u2019", "\u2013", "\u2014"]


def shingle_words_of(text: pl.Expr) -> pl.Expr:
    """The words a text is shingled from: lower case, punctuation removed, split on spaces."""
    return (
        text.str.to_lowercase()
        .str.replace_many(_SEPARATORS, [" "] * len(_SEPARATORS))
        .str.replace_all(" {2,}", " ")
        .str.strip_chars(" ")
        .str.split(" ")
    )


def shingle_hashes(texts: pl.Series, shingle_words: int) -> tuple[U64, U64]:
    """Hashes of the word n-grams of each text, flat, with row offsets (len(texts) + 1).

    A text shorter than `shingle_words` words has one shingle: all its words.
    """
    words = pl.DataFrame({"t": texts}).select(shingle_words_of(pl.col("t")).alias("w"))["w"]
    lengths = words.list.len().to_numpy().astype(np.int64)
    flat_words = words.explode().fill_null("")
    word_hashes = _word_hashes(flat_words) if len(flat_words) else np.zeros(0, dtype=np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    # Combine hashes of `shingle_words` consecutive words; the padding is never read for a valid
    # window because windows are only taken where a whole n-gram lies inside one text.
    padded = np.concatenate([word_hashes, np.zeros(shingle_words, dtype=np.uint64)])
    combined = padded[: len(word_hashes)].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, shingle_words):
            combined = combined * _MIX ^ padded[offset : offset + len(word_hashes)]
    windows = np.maximum(lengths - shingle_words + 1, 1)
    # Short texts: their window starts at their first word but must stop at their last word.
    short = np.flatnonzero(lengths < shingle_words)
    position_in_text = np.arange(len(word_hashes)) - np.repeat(starts, lengths)
    keep = position_in_text < np.repeat(windows, lengths)
    shingles = combined[keep]
    offsets = np.concatenate([[0], np.cumsum(windows)]).astype(np.uint64)
    if len(short):
        with np.errstate(over="ignore"):
            for row in short:
                value = np.uint64(0)
                for word in word_hashes[starts[row] : starts[row] + lengths[row]]:
                    value = value * _MIX ^ word
                shingles[offsets[row]] = value
    return shingles, offsets


def band_keys(texts: pl.Series, shingle_words: int, bands: int, rows: int, seed: int) -> U64:
    """LSH band keys, shape (len(texts), bands)."""
    if len(texts) == 0:
        return np.zeros((0, bands), dtype=np.uint64)
    shingles, offsets = shingle_hashes(texts, shingle_words)
    matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        shingles, offsets, num_perm=bands * rows, seed=seed
    )
    signatures = np.array(matrix.to_rows(), dtype=np.uint64).reshape(len(texts), bands, rows)
    keys = np.zeros((len(texts), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(rows):
            keys = keys * _MIX ^ signatures[:, :, column]
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
    # Without pre-buffering: its buffers bypass the memory pool callers set (see pipeline.dedup).
    parquet = pq.ParquetFile(path, pre_buffer=False)
    keys = np.empty((parquet.metadata.num_rows, bands), dtype=np.uint64)
    offset = 0
    for batch in parquet.iter_batches(columns=["band_keys"], batch_size=100_000):
        keys[offset : offset + batch.num_rows] = keys_from_arrow(batch.column(0), bands)
        offset += batch.num_rows
    return keys


def candidate_pairs(rows: npt.NDArray[np.int64], keys: U64) -> npt.NDArray[np.int64]:
    """Pairs (a, b), a < b, of `rows` that share at least one band key; unique and sorted.

    `keys` holds the band keys of every row of the table (indexed by row number), so callers
    need not copy the keys of a subset.

    Each bucket contributes star pairs (its smallest row with every other member), which is
    enough for connected components while keeping a large bucket linear, not quadratic.
    """
    found: list[npt.NDArray[np.int64]] = []
    for band in range(keys.shape[1]):
        frame = pl.DataFrame({"row": rows, "key": keys[rows, band]})
        # Most keys are unique; grouping only the repeated ones keeps this light at 2.7M rows.
        buckets = (
            frame.filter(pl.col("key").is_duplicated())
            .group_by("key")
            .agg(pl.col("row").min().alias("first"), pl.col("row"))
            .filter(pl.col("row").list.len() > 1)
            .explode("row")
            .filter(pl.col("row") != pl.col("first"))
        )
        if buckets.height:
            found.append(buckets.select("first", "row").to_numpy().astype(np.int64))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.unique(np.concatenate(found), axis=0)
    return pairs


def shingle_sets(texts: Iterable[str], shingle_words: int, chunk_rows: int = 20_000) -> list[U64]:
    """The distinct shingle hashes of each text (sorted), for exact Jaccard.

    Texts are shingled `chunk_rows` at a time so that memory stays bounded.
    """
    texts = list(texts)
    if len(texts) > chunk_rows:
        return [
            shingles
            for start in range(0, len(texts), chunk_rows)
            for shingles in shingle_sets(texts[start : start + chunk_rows], shingle_words, chunk_rows)
        ]
    series = pl.Series(texts, dtype=pl.String)
    shingles, offsets = shingle_hashes(series, shingle_words)
    counts = offsets[1:].astype(np.int64) - offsets[:-1].astype(np.int64)
    owner = np.repeat(np.arange(len(series)), counts)
    # One sort for all texts: by owner, then hash; duplicates within a text are then adjacent.
    order = np.lexsort((shingles, owner))
    shingles, owner = shingles[order], owner[order]
    distinct = np.ones(len(shingles), dtype=bool)
    distinct[1:] = (shingles[1:] != shingles[:-1]) | (owner[1:] != owner[:-1])
    shingles, owner = shingles[distinct], owner[distinct]
    bounds = np.searchsorted(owner, np.arange(len(series) + 1))
    return [shingles[bounds[i] : bounds[i + 1]] for i in range(len(series))]


def jaccard(a: U64, b: U64) -> float:
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b, assume_unique=True)) / union if union else 1.0
