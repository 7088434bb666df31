from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.kernels.minhash import (
    SEPARATORS,
    ShingleSets,
    band_keys,
    candidate_pairs,
    keys_from_arrow,
    keys_to_arrow,
    read_band_keys,
    shingle_hashes,
    signatures,
)

MASK = 2**64 - 1
MIX = 0x9E3779B97F4A7C15


def finalise(x: int) -> int:
    x ^= x >> 33
    x = x * 0xFF51AFD7ED558CCD & MASK
    x ^= x >> 33
    x = x * 0xC4CEB9FE1A85EC53 & MASK
    return x ^ x >> 33


def word_hash(word: str) -> int:
    value = 0xCBF29CE484222325
    for byte in word.encode("utf-8"):
        value = (value ^ byte) * 0x100000001B3 & MASK
    return finalise(value)


def reference_shingles(text: str, n: int) -> list[int]:
    """The documented definition, in plain Python: lower case, split at separator runs, n-grams."""
    words = [w for w in re.split("[" + re.escape(SEPARATORS) + "]+", text.lower()) if w] or [""]
    width = min(n, len(words))
    shingles = []
    for first in range(len(words) - width + 1):
        value = word_hash(words[first])
        for word in words[first + 1 : first + width]:
            value = (value * MIX & MASK) ^ word_hash(word)
        shingles.append(value)
    return shingles


TEXTS = [
    "We propose a new method, which (unlike [3]) works.",
    "Deep  nets\u2014the \u201cbig\u201d ones\u2019 weights: ÉCOLE café",
    "short text",
    "",
    "...",
    "Ω-nets are \u2013 as we show \u2013 fast; x/y|z!?{a}",
    "\u00e2\u0080 bytes E2 80 as text: \u2022 bullet \u20ac euro",
]


@pytest.mark.parametrize("n", [1, 3, 5])
def test_shingle_hashes_follow_the_documented_definition(n: int) -> None:
    shingles, offsets = shingle_hashes(pa.array(TEXTS), n)
    assert offsets[0] == 0 and offsets[-1] == len(shingles) and len(offsets) == len(TEXTS) + 1
    for row, text in enumerate(TEXTS):
        assert shingles[offsets[row] : offsets[row + 1]].tolist() == reference_shingles(text, n), text


def test_sliced_and_chunked_arrays_give_the_same_shingles() -> None:
    whole = pa.array(["padding row", *TEXTS])
    expected = shingle_hashes(TEXTS, 5)
    for texts in (whole.slice(1), pa.chunked_array([whole.slice(1, 3), whole.slice(4)])):
        shingles, offsets = shingle_hashes(texts, 5)
        assert shingles.tolist() == expected[0].tolist() and offsets.tolist() == expected[1].tolist()


def test_shingle_sets_are_sorted_and_distinct() -> None:
    sets = ShingleSets.of_texts(["a b a b a b a b"], np.array([0]), 2).get(0)
    assert sets.tolist() == sorted(set(reference_shingles("a b a b a b a b", 2)))


def corpus(rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{i}" for i in rng.integers(0, 5000, 120)) for _ in range(rows)]


def test_signature_agreement_estimates_jaccard() -> None:
    base = corpus(40, 1)
    rng = np.random.default_rng(2)
    pairs = []
    for text in base:
        words = text.split()
        keep = int(rng.integers(40, 116))
        pairs.append((text, " ".join(words[:keep] + [f"x{i}" for i in range(len(words) - keep)])))
    texts = [t for pair in pairs for t in pair]
    matrix = signatures(*shingle_hashes(texts, 5), num_perm=256, seed=7)
    sets = ShingleSets.of_texts(texts, np.arange(len(texts)), 5)
    for i in range(len(pairs)):
        a, b = sets.get(2 * i), sets.get(2 * i + 1)
        true = len(np.intersect1d(a, b)) / len(np.union1d(a, b))
        estimate = float(np.mean(matrix[2 * i] == matrix[2 * i + 1]))
        # Standard error of the estimate is sqrt(J(1-J)/256) <= 0.031: 4.5 of them.
        assert abs(estimate - true) < 0.14, (true, estimate)


def test_band_keys_are_deterministic_and_seeded() -> None:
    texts = corpus(20, 3)
    keys = band_keys(texts, 5, 20, 5, seed=42)
    assert keys.shape == (20, 20) and keys.dtype == np.uint64
    assert np.array_equal(keys, band_keys(pa.array(texts), 5, 20, 5, seed=42))
    assert not np.array_equal(keys, band_keys(texts, 5, 20, 5, seed=43))
    # Case and punctuation do not change a text's shingles, so not its keys either.
    loud = [t.upper().replace(" ", ", ") for t in texts]
    assert np.array_equal(keys, band_keys(loud, 5, 20, 5, seed=42))
    # Unrelated texts share no band.
    assert all(len(set(keys[i]) & set(keys[j])) == 0 for i in range(20) for j in range(i))


def test_near_duplicates_share_a_band_and_empty_input_has_no_keys() -> None:
    text = corpus(1, 4)[0]
    words = text.split()
    edited = " ".join([*words[:60], "changed", *words[61:]])  # Jaccard about 0.92
    keys = band_keys([text, edited], 5, 20, 5, seed=42)
    assert set(keys[0]) & set(keys[1])
    assert band_keys([], 5, 20, 5, seed=42).shape == (0, 20)


def test_candidate_pairs_are_each_buckets_smallest_row_with_the_others() -> None:
    rng = np.random.default_rng(5)
    # Keys equal in their low 22 bits but not above, so the slice counting must look further.
    distinct = rng.integers(0, 2**63, 30, dtype=np.uint64)
    distinct[:10] = (distinct[:10] >> np.uint64(22) << np.uint64(22)) | np.uint64(5)
    keys = distinct[rng.integers(0, 30, (2000, 4))]
    keys[::3] = rng.integers(0, 2**63, (667, 4), dtype=np.uint64)
    rows = np.sort(rng.choice(2000, 1500, replace=False))
    expected = set()
    for band in range(4):
        buckets: dict[int, list[int]] = {}
        for row in rows.tolist():
            buckets.setdefault(int(keys[row, band]), []).append(row)
        expected |= {(members[0], other) for members in buckets.values() for other in members[1:]}
    pairs = candidate_pairs(rows[::-1].copy(), keys)
    assert len(expected) > 1000
    assert pairs.tolist() == sorted(map(list, expected))


def test_band_keys_survive_chunks_row_groups_and_batches(tmp_path: Path) -> None:
    """Keys read back chunk by chunk and row group by row group land at their own rows."""
    keys = (np.arange(30 * 4, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)).reshape(30, 4)
    column = keys_to_arrow(keys)
    chunked = pa.chunked_array([column.slice(0, 7), column.slice(7, 1), column.slice(8, 22)])
    assert np.array_equal(keys_from_arrow(chunked, 4), keys)
    path = tmp_path / "keys.parquet"
    pq.write_table(pa.table({"band_keys": column}), path, row_group_size=7)
    assert pq.ParquetFile(path).metadata.num_row_groups == 5
    assert np.array_equal(read_band_keys(path, 4), keys)


def test_similarity_of_a_row_past_the_last_held_one_is_a_key_error() -> None:
    sets = ShingleSets.of_texts(
        ["one two three four five six", "one two three four five seven"], np.array([3, 5]), 2
    )
    assert sets.similarity(np.array([[3, 5]]))[0] == pytest.approx(4 / 6)
    with pytest.raises(KeyError, match="without its shingle set"):
        sets.similarity(np.array([[3, 9]]))
    with pytest.raises(KeyError):
        sets.get(9)
