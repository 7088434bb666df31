from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.pairs import cleaned_table as cleaned
from pipeline.io.writers import write_parquet
from pipeline.kernels.minhash import ShingleSets
from pipeline.params import DedupParams
from pipeline.stages.dedup.core import kept_abstracts, read_shingle_sets, run_dedup


def dedup(tmp_path: Path, rows: list) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    write_parquet(cleaned(rows), tmp_path / "clean.parquet")
    report = run_dedup(
        tmp_path / "clean.parquet",
        tmp_path / "dedup.parquet",
        tmp_path / "minhash.parquet",
        tmp_path / "dups.parquet",
        tmp_path / "dedup.json",
        DedupParams(),
    )
    return pl.read_parquet(tmp_path / "dedup.parquet"), pl.read_parquet(tmp_path / "dups.parquet"), report


def test_same_id_keeps_highest_version_then_richer_source(tmp_path: Path) -> None:
    kept, dups, report = dedup(
        tmp_path,
        [
            ("a.txt:1", "abstract_lines", "2201.12288", 1, "Version one text."),
            ("t.txt:5", "viewer_table", "2201.12288", 2, "Version two text."),
            ("t.txt:9", "viewer_table", "2201.00001", None, "Other paper."),
            ("s.jsonl:1", "arxiv_snapshot", "2201.00001", None, "Other paper, snapshot."),
        ],
    )
    assert kept.select("row", "id", "source", "duplicate_count").rows() == [
        (1, "2201.12288", "t.txt:5", 1),
        (3, "2201.00001", "s.jsonl:1", 1),
    ]
    # `row` finds the kept record's abstract in the cleaned file.
    assert kept_abstracts(tmp_path / "clean.parquet", tmp_path / "dedup.parquet").to_pylist() == [
        "Version two text.",
        "Other paper, snapshot.",
    ]
    assert dups.select("source", "id", "method").rows() == [
        ("a.txt:1", "2201.12288", "same_id"),
        ("t.txt:9", "2201.00001", "same_id"),
    ]
    assert (report["rows_in"], report["rows_out"]) == (4, 2)
    assert report["folded_by_method"] == {"same_id": 2, "exact": 0, "near": 0, "published": 0}
    # Equal lengths: the higher version wins the first pair, the longer text the second.
    assert report["keep_reasons"]["higher_version"] == 1
    assert report["keep_reasons"]["longer"] == 1


def test_exact_text_folds_into_the_row_with_an_arxiv_id(tmp_path: Path) -> None:
    kept, dups, _ = dedup(
        tmp_path,
        [
            ("a.txt:1", "abstract_lines", None, None, "We study X."),
            ("b.txt:2", "abstract_lines", None, None, "we study x"),
            ("t.txt:3", "viewer_table", "2301.00002", 1, "We  study X!"),
            ("a.txt:4", "abstract_lines", None, None, "Something else entirely."),
        ],
    )
    assert kept.select("id", "source", "duplicate_count").rows()[0] == ("2301.00002", "t.txt:3", 2)
    assert kept["id"][1].startswith("txt-")
    assert kept.height == 2
    assert sorted(dups.select("source", "id", "method", "similarity").rows()) == [
        ("a.txt:1", "2301.00002", "exact", 1.0),
        ("b.txt:2", "2301.00002", "exact", 1.0),
    ]
    # Every input record is either kept or in the duplicates report.
    assert kept.height + dups.height == 4
    assert kept["duplicate_count"].sum() == dups.height


LONG = (
    "We propose a simple method for training sparse mixture of experts language models that routes "
    "each token to a single expert chosen by a learned gate, and we show that it matches dense "
    "models of the same compute on language modelling benchmarks while using a fraction of the "
    "energy during inference on commodity accelerators across several model scales."
)


def test_near_duplicate_keeps_the_longer_text_and_the_arxiv_id(tmp_path: Path) -> None:
    near = LONG.replace("a fraction of", "only a small fraction of")
    kept, dups, report = dedup(
        tmp_path,
        [
            ("a.txt:1", "abstract_lines", None, None, near),
            ("t.txt:2", "viewer_table", "2301.00003", 1, LONG),
            ("a.txt:3", "abstract_lines", None, None, "A different paper about graph neural networks."),
        ],
    )
    assert report["folded_by_method"] == {"same_id": 0, "exact": 0, "near": 1, "published": 0}
    # The text-only copy is longer, so its abstract is kept; the id comes from the copy with one.
    assert kept.select("id", "source", "arxiv_id", "duplicate_count").rows()[0] == (
        "2301.00003",
        "a.txt:1",
        "2301.00003",
        1,
    )
    folded = dups.select("source", "arxiv_id", "id", "kept_source", "method", "similarity", "reason").row(0)
    assert folded[:5] == ("t.txt:2", "2301.00003", "2301.00003", "a.txt:1", "near")
    assert 0.7 <= folded[5] < 1.0
    assert folded[6] == "longer"


def test_same_topic_but_different_text_is_kept(tmp_path: Path) -> None:
    other = (
        "We study dense transformer language models and find that routing is unnecessary when "
        "the learning rate schedule is tuned, which we show on language modelling benchmarks "
        "with several model scales and careful ablations of the optimiser."
    )
    kept, dups, _ = dedup(
        tmp_path,
        [("a.txt:1", "abstract_lines", None, None, LONG), ("a.txt:2", "abstract_lines", None, None, other)],
    )
    assert kept.height == 2
    assert dups.height == 0


def test_output_is_identical_for_any_worker_count(tmp_path: Path) -> None:
    rows = [(f"a.txt:{i}", "abstract_lines", None, None, f"{LONG} Variant {i % 40}.") for i in range(300)]
    outputs = []
    for workers in (1, 2):
        work = tmp_path / str(workers)
        work.mkdir()
        write_parquet(cleaned(rows), work / "clean.parquet")
        params = DedupParams(workers=workers, batch_rows=64)
        run_dedup(
            work / "clean.parquet",
            work / "d.parquet",
            work / "m.parquet",
            work / "x.parquet",
            work / "r.json",
            params,
        )
        outputs.append(
            [(work / name).read_bytes() for name in ("d.parquet", "m.parquet", "x.parquet", "r.json")]
        )
    assert outputs[0] == outputs[1]


def test_shingle_sets_read_back_match_those_of_the_texts(tmp_path: Path) -> None:
    rows = [(f"a.txt:{i}", "abstract_lines", None, None, f"{LONG} Variant number {i}.") for i in range(50)]
    write_parquet(cleaned(rows), tmp_path / "clean.parquet")
    wanted = np.array([7, 3, 49, 3, 0], dtype=np.int64)
    abstracts = pq.read_table(tmp_path / "clean.parquet", columns=["abstract"])["abstract"].to_pylist()
    texts = {int(row): abstracts[row] for row in wanted}
    sets = read_shingle_sets(tmp_path / "clean.parquet", wanted, shingle_words=5)
    assert sets.rows.tolist() == sorted(texts) == [0, 3, 7, 49]
    expected = ShingleSets.of_texts([texts[r] for r in sorted(texts)], np.array(sorted(texts)), 5)
    for row in sorted(texts):
        assert np.array_equal(sets.get(row), expected.get(row))


def test_run_restores_the_arrow_memory_pool(tmp_path: Path) -> None:
    before = pa.default_memory_pool().backend_name
    dedup(tmp_path, [("a.txt:1", "abstract_lines", None, None, LONG)])
    assert pa.default_memory_pool().backend_name == before


def test_quality_on_labelled_pairs(tmp_path: Path, seed_build: Path) -> None:
    """Labelled near-duplicate and same-topic pairs from the shared corpus and the seed release."""
    from benchmarks.pairs import build_rows, dedup_rows, load_corpus, score

    seed_rows = kept_abstracts(seed_build / "build" / "clean.parquet", seed_build / "build" / "dedup.parquet")
    seed_rows = seed_rows.to_pylist()
    rows, positives = build_rows(load_corpus() + seed_rows)
    result = score(rows, positives, dedup_rows(rows, tmp_path, DedupParams()))
    print(result)
    assert result["positives_jaccard_ge_0_8"] > 300
    assert result["precision"] >= 0.99
    assert result["recall_jaccard_ge_0_8"] >= 0.95
