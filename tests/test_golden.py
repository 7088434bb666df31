"""Golden values: the numbers the pipeline's outputs are made of, pinned to values computed
once from the code that made the published releases.

A one-token change to a constant of the MinHash kernels (shingling, permutations, band-key
mixing), the text fold and hash, the split assignment or the version rule changes these, and
with them every release's ids, splits, clusters or version: this test fails instead of the
next release changing silently. After a deliberate change, regenerate with
`UPDATE_GOLDEN=1 pytest tests/test_golden.py` and say in the CHANGELOG why the outputs moved.

Texts: the first five abstracts of `../shared/corpora/scitldr_train_abstracts.jsonl` (SciTLDR,
see its README), copied into `tests/data/kernels/golden.json` with the values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pipeline.kernels.fingerprint import blake2b_64, fmix64, hex_digests
from pipeline.kernels.minhash import band_keys, permutation_constants, shingle_hashes, signatures
from pipeline.kernels.text import fold_plain_texts
from pipeline.params import DedupParams, SplitParams
from pipeline.stages.split.core import assign_split, salted_digests
from pipeline.versions import next_version

GOLDEN = Path(__file__).parent / "data" / "kernels" / "golden.json"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "scitldr_train_abstracts.jsonl"
IDS = [
    "2301.00006", "2301.00007", "hep-th/9901001", "math.GT/0309136", "1706.03762", "2201.12288",
    "txt-6beafc45e4606fcf", "txt-0000000000000000", "0704.0001", "2412.99999", "cs/0112017", "",
]  # fmt: skip
EXTRA_TEXTS = ["", "a", "One two three four.", "Ünïcödé — “quoted” text…", "x" * 300]
VERSION_CASES: list[tuple[tuple[int, int, int] | None, bool, bool]] = [
    (None, False, False), (None, True, True), ((1, 0, 0), False, False), ((1, 0, 0), False, True),
    ((1, 0, 0), True, False), ((1, 0, 0), True, True), ((2, 3, 4), False, True), ((2, 3, 4), True, False),
    ((2, 3, 4), False, False),
]  # fmt: skip


def _texts() -> list[str]:
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if "texts" in stored:
        return list(stored["texts"])
    with CORPUS.open(encoding="utf-8") as handle:
        return [json.loads(next(handle))["abstract"] for _ in range(5)] + EXTRA_TEXTS


def compute() -> dict[str, Any]:
    texts = _texts()
    dedup = DedupParams()
    shingles, offsets = shingle_hashes(pa.array(texts, pa.large_string()), dedup.shingle_words)
    num_perm = dedup.bands * dedup.rows_per_band
    signature = signatures(shingles, offsets, num_perm, dedup.seed)
    keys = band_keys(
        pa.array(texts, pa.large_string()), dedup.shingle_words, dedup.bands, dedup.rows_per_band, dedup.seed
    )
    multipliers, increments = permutation_constants(4, dedup.seed)
    folded, plain = fold_plain_texts(pa.array(texts, pa.large_string()))
    split = SplitParams()
    return {
        "texts": texts,
        "shingle_counts": np.diff(offsets).tolist(),
        "shingle_hashes_head": [shingles[offsets[i] : offsets[i] + 4].tolist() for i in range(len(texts))],
        "signatures_head": signature[:, :6].tolist(),
        "band_keys": keys.tolist(),
        "permutations": [multipliers.tolist(), increments.tolist()],
        "fmix64": [int(fmix64(np.uint64(v))) for v in (0, 1, 2**32, 2**63, 2**64 - 1)],
        "folded": [None if f is None else str(f) for f in folded.to_pylist()],
        "plain": plain.tolist(),
        "blake2b_64": hex_digests(blake2b_64(pa.array(texts))).to_pylist(),
        "split_digests": salted_digests(IDS, split.seed).tolist(),
        "splits": assign_split(IDS, split),
        "next_versions": [list(next_version(p, breaking=b, additive=a)) for p, b, a in VERSION_CASES],
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(compute(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return dict(json.loads(GOLDEN.read_text(encoding="utf-8")))


@pytest.mark.parametrize(
    "key",
    [
        "shingle_counts", "shingle_hashes_head", "signatures_head", "band_keys", "permutations", "fmix64",
        "folded", "plain", "blake2b_64", "split_digests", "splits", "next_versions",
    ],
)  # fmt: skip
def test_value_matches_the_golden_file(golden: dict[str, Any], key: str) -> None:
    assert compute()[key] == golden[key]


def test_the_golden_split_assignment_covers_every_split(golden: dict[str, Any]) -> None:
    # A table where every id lands in one split would not pin the cumulative bounds.
    assert set(golden["splits"]) == {"train", "validation", "test"}


def test_the_version_rule_table() -> None:
    # Spelled out, not only pinned: the rule is part of the dataset's promise to its users.
    assert next_version(None, breaking=True, additive=True) == (1, 0, 0)
    assert next_version((1, 4, 2), breaking=True, additive=True) == (2, 0, 0)
    assert next_version((1, 4, 2), breaking=False, additive=True) == (1, 5, 0)
    assert next_version((1, 4, 2), breaking=False, additive=False) == (1, 4, 3)
