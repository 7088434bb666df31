"""A labelled set of near-duplicate and same-topic pairs, and dedup precision/recall on it.

Positives: real abstracts (SciTLDR corpus and the seed dumps' release rows) and variants made by
word substitutions, deletions and insertions at several rates, plus sentence-level edits (a
sentence dropped, a sentence appended). Negatives: different abstracts on the same topic, taken
as each abstract's nearest neighbour by word overlap. The truth is independent of the pipeline:
the word 5-gram Jaccard similarity is computed here with plain Python sets.

Precision: of the pairs dedup folds (a folded row and the row it folded into), the share that
come from the same original. Recall: of the variant pairs with 5-gram Jaccard >= 0.8, the share
that end in the same row.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline.params import DedupParams

CORPUS = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "scitldr_train_abstracts.jsonl"
)
EDIT_RATES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)


def words(text: str) -> list[str]:
    return re.sub(r"[^\w]+", " ", text.lower()).split()


def shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    """Word n-gram Jaccard similarity, computed independently of the pipeline."""

    def grams(text: str) -> set[tuple[str, ...]]:
        w = words(text)
        return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}

    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def load_corpus(path: Path = CORPUS) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["abstract"] for line in handle]


def edit_words(text: str, rate: float, vocabulary: list[str], rng: random.Random) -> str:
    tokens = text.split(" ")
    edits = max(1, round(len(tokens) * rate))
    for _ in range(edits):
        index = rng.randrange(len(tokens))
        kind = rng.randrange(3)
        if kind == 0:
            tokens[index] = rng.choice(vocabulary)
        elif kind == 1 and len(tokens) > 10:
            del tokens[index]
        else:
            tokens.insert(index, rng.choice(vocabulary))
    return " ".join(tokens)


def sentence_edit(text: str, rng: random.Random) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", text)
    if len(sentences) > 4 and rng.random() < 0.5:
        del sentences[rng.randrange(1, len(sentences))]
        return " ".join(sentences)
    return text + " Code and data are released to the community."


@dataclass(frozen=True)
class Row:
    key: str  # unique row key (becomes the record's source)
    origin: int  # index of the original abstract: same origin = same paper
    text: str


def same_paper_groups(originals: list[str], threshold: float = 0.5) -> list[int]:
    """Group id per original: the corpora hold a few papers twice (a resubmission, or a seed
    abstract that is also in SciTLDR); originals sharing 5-grams with Jaccard >= `threshold` are
    one paper. An inverted index of 5-grams keeps this from being quadratic."""
    index: dict[tuple[str, ...], list[int]] = {}
    for i, text in enumerate(originals):
        w = words(text)
        for gram in {tuple(w[k : k + 5]) for k in range(max(1, len(w) - 4))}:
            index.setdefault(gram, []).append(i)
    group = list(range(len(originals)))

    def find(x: int) -> int:
        while group[x] != x:
            group[x] = group[group[x]]
            x = group[x]
        return x

    # A stock phrase ("in this paper we") links hundreds of abstracts; one paper's copies share
    # many rare 5-grams too, so skipping common ones loses nothing and avoids quadratic work.
    pairs = {
        (a, b)
        for members in index.values()
        if 1 < len(members) <= 20
        for a in members
        for b in members
        if a < b
    }
    for a, b in sorted(pairs):
        if shingle_jaccard(originals[a], originals[b]) >= threshold:
            group[max(find(a), find(b))] = min(find(a), find(b))
    return [find(i) for i in range(len(originals))]


def build_rows(originals: list[str], seed: int = 7) -> tuple[list[Row], list[tuple[str, str, float]]]:
    """Rows to deduplicate and the labelled positive pairs (key, key, true 5-gram Jaccard)."""
    rng = random.Random(seed)
    vocabulary = sorted({w for text in originals[:300] for w in text.split(" ") if w.isalpha()})
    paper = same_paper_groups(originals)
    rows = [Row(f"orig:{i}", paper[i], text) for i, text in enumerate(originals)]
    positives: list[tuple[str, str, float]] = []
    for i, text in enumerate(originals):
        if i % 2:  # half the originals get variants; the rest stay single
            continue
        rate = EDIT_RATES[(i // 2) % len(EDIT_RATES)]
        variant = edit_words(text, rate, vocabulary, rng) if i % 3 else sentence_edit(text, rng)
        key = f"variant:{i}"
        rows.append(Row(key, paper[i], variant))
        positives.append((f"orig:{i}", key, shingle_jaccard(text, variant)))
    return rows, positives


def same_topic_negatives(originals: list[str], limit: int = 300) -> list[tuple[int, int, float]]:
    """Pairs of different abstracts with the highest word overlap (nearest neighbours)."""
    bags = [set(words(t)) for t in originals]
    pairs = []
    for i in range(min(limit, len(bags))):
        best = max(
            (j for j in range(len(bags)) if j != i),
            key=lambda j: len(bags[i] & bags[j]) / len(bags[i] | bags[j]),
        )
        pairs.append((i, best, shingle_jaccard(originals[i], originals[best])))
    return pairs


def score(
    rows: list[Row], positives: list[tuple[str, str, float]], kept_of: dict[str, str]
) -> dict[str, float | int]:
    """Precision of folded pairs and recall of positives with Jaccard >= 0.8.

    `kept_of` maps every row key to the key of the row it ended in (itself when kept).
    """
    origin = {row.key: row.origin for row in rows}
    folded = [(key, kept) for key, kept in kept_of.items() if key != kept]
    correct = sum(1 for key, kept in folded if origin[key] == origin[kept])
    strong = [(a, b) for a, b, similarity in positives if similarity >= 0.8]
    found = sum(1 for a, b in strong if kept_of[a] == kept_of[b])
    return {
        "rows": len(rows),
        "folded_pairs": len(folded),
        "precision": correct / len(folded) if folded else 1.0,
        "positives_jaccard_ge_0_8": len(strong),
        "recall_jaccard_ge_0_8": found / len(strong) if strong else 1.0,
    }


def cleaned_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """A table in the clean stage's schema, as if cleaning changed nothing.

    rows: (source `file:line`, format, arxiv_id, arxiv_version, abstract), optionally followed by
    a mapping of other CLEAN_SCHEMA columns (paper metadata, `flags`); the rest are null.
    """
    from pipeline.contracts import CLEAN_SCHEMA
    from pipeline.stages.clean.core import normalised_text, text_hashes

    texts = [r[4] for r in rows]
    extra: list[dict[str, Any]] = [dict(r[5]) if len(r) > 5 else {} for r in rows]
    normalised = pl.DataFrame({"t": texts}).select(normalised_text(pl.col("t")))["t"].to_list()
    columns: dict[str, list[Any]] = {
        "source": [r[0] for r in rows],
        "file": [r[0].rsplit(":", 1)[0] for r in rows],
        "line": [int(r[0].rsplit(":", 1)[1]) for r in rows],
        "format": [r[1] for r in rows],
        "raw_id": [r[2] for r in rows],
        "arxiv_id": [r[2] for r in rows],
        "arxiv_version": [r[3] for r in rows],
        "abstract": texts,
        "clean_rules": [[] for _ in rows],
        "flags": [[] for _ in rows],
        "text_hash": text_hashes(normalised),
    }
    for name in CLEAN_SCHEMA.names:
        default = columns.get(name, [None] * len(rows))
        columns[name] = [e.get(name, value) for e, value in zip(extra, default, strict=True)]
    return pa.table(columns, schema=CLEAN_SCHEMA)


def dedup_rows(rows: list[Row], workdir: Path, params: DedupParams) -> dict[str, str]:
    """Run the real dedup stage on `rows` (as text-only records); map each key to its kept key."""
    from pipeline.io.writers import write_parquet
    from pipeline.stages.dedup.core import run_dedup

    table = cleaned_table(
        [(f"{row.key}:{i + 1}", "jsonl", None, None, row.text) for i, row in enumerate(rows)]
    )
    workdir.mkdir(parents=True, exist_ok=True)
    write_parquet(table, workdir / "clean.parquet")
    run_dedup(
        workdir / "clean.parquet",
        workdir / "dedup.parquet",
        workdir / "minhash.parquet",
        workdir / "duplicates.parquet",
        workdir / "dedup.json",
        params,
    )
    key_of = {f"{row.key}:{i + 1}": row.key for i, row in enumerate(rows)}
    kept_of = {key_of[s]: key_of[s] for s in pl.read_parquet(workdir / "dedup.parquet")["source"].to_list()}
    folded = pl.read_parquet(workdir / "duplicates.parquet").select("source", "kept_source").rows()
    kept_of.update({key_of[source]: key_of[kept] for source, kept in folded})
    return kept_of
