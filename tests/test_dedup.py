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


# A real ACL Anthology abstract (2020.acl-main.703, BART), cut and damaged the ways RSS scrapes
# and HTML exports damage it.
BART = (
    "We present BART, a denoising autoencoder for pretraining sequence-to-sequence models. BART is "
    "trained by (1) corrupting text with an arbitrary noising function, and (2) learning a model to "
    "reconstruct the original text. It uses a standard Tranformer-based neural machine translation "
    "architecture which, despite its simplicity, can be seen as generalizing BERT (due to the "
    "bidirectional encoder), GPT (with the left-to-right decoder), and other recent pretraining schemes. "
    "We evaluate a number of noising approaches, finding the best performance by both randomly "
    "shuffling the order of sentences and using a novel in-filling scheme, where spans of text are "
    "replaced with a single mask token."
)


def test_the_complete_clean_copy_wins_over_a_truncated_or_damaged_preferred_one(tmp_path: Path) -> None:
    truncated = BART[: BART.index("and using a novel")] + "…"
    damaged = BART.replace("BART is trained", 'BART is <a href="https://x.org">trained</a>').replace(
        "denoising", 'd\\"{e}noising'
    )
    kept, dups, report = dedup(
        tmp_path,
        [
            # The preferred formats carry the bad copies.
            ("rss.jsonl:1", "arxiv_snapshot", "1910.13461", 2, truncated, {"flags": ["truncated"]}),
            ("viewer.txt:4", "viewer_table", "1910.13461", 1, damaged, {"flags": ["html_residue"]}),
            ("acl.jsonl:7", "jsonl", None, None, BART),
        ],
    )
    assert kept.select("id", "source", "arxiv_id", "arxiv_version", "duplicate_count").rows() == [
        ("1910.13461", "acl.jsonl:7", "1910.13461", 2, 2)
    ]
    assert kept_abstracts(tmp_path / "clean.parquet", tmp_path / "dedup.parquet").to_pylist() == [BART]
    reasons = dict(zip(dups["source"], dups["reason"], strict=True))
    assert reasons == {"rss.jsonl:1": "complete", "viewer.txt:4": "fewer_defects"}
    assert dict(zip(dups["source"], dups["kept_source"], strict=True)) == {
        "rss.jsonl:1": "acl.jsonl:7",
        "viewer.txt:4": "acl.jsonl:7",
    }
    assert report["keep_reasons"]["complete"] == 1 and report["keep_reasons"]["fewer_defects"] == 1


def _ids(**given: str) -> dict[str, str | None]:
    kinds = ("acl_anthology", "openreview", "semantic_scholar", "pmlr", "openalex", "dblp")
    return {kind: given.get(kind) for kind in kinds}


def test_metadata_is_merged_from_three_sources(tmp_path: Path) -> None:
    import datetime

    arxiv = {
        "source_name": "arxiv",
        "title": "BART: Denoising Sequence-to-Sequence Pre-training",
        "categories": ["cs.CL", "cs.LG"],
        "published": datetime.date(2019, 10, 29),
        "year": 2019,
        "license": "CC-BY-4.0",
    }
    acl = {
        "source_name": "acl_anthology",
        "title": "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language Generation, "
        "Translation, and Comprehension",
        "authors": ["Mike Lewis", "Yinhan Liu", "Naman Goyal"],
        "venue": "ACL 2020",
        "year": 2020,
        "published": datetime.date(2020, 7, 1),
        "doi": "10.18653/v1/2020.acl-main.703",
        "source_ids": _ids(acl_anthology="2020.acl-main.703"),
        "license": "CC-BY-4.0",
    }
    s2 = {
        "source_name": "s2",
        "authors": ["M. Lewis"],
        "venue": "Annual Meeting of the Association for Computational Linguistics",
        "year": 2020,
        "doi": "10.18653/v1/2020.acl-main.703",
        "source_ids": _ids(semantic_scholar="395de0bd3837fdf4b4b5e5f04835bcc69c279481"),
        "url": "https://www.semanticscholar.org/paper/395de0bd3837fdf4b4b5e5f04835bcc69c279481",
        "license": "ODC-BY-1.0",
    }
    shorter = BART[: BART.index(" We evaluate")]
    kept, dups, report = dedup(
        tmp_path,
        [
            # arXiv: shorter abstract (the first sentences), linked to S2 by the arXiv id.
            ("arxiv.jsonl:3", "arxiv_snapshot", "1910.13461", 1, shorter + " It works well.", arxiv),
            # ACL: the complete abstract, linked to S2 by the DOI only.
            ("acl.xml:9", "jsonl", None, None, BART, acl),
            ("s2.jsonl:2", "jsonl", "1910.13461", None, shorter, s2),
        ],
    )
    assert kept.height == 1
    row = kept.row(0, named=True)
    assert (row["id"], row["source"], row["duplicate_count"]) == ("1910.13461", "acl.xml:9", 2)
    # Each field from the best copy that has it: ACL's abstract is the best, then arXiv's (longer).
    assert row["title"] == acl["title"]
    assert row["authors"] == acl["authors"]
    assert row["venue"] == "ACL 2020"
    assert row["doi"] == "10.18653/v1/2020.acl-main.703"
    assert row["categories"] == ["cs.CL", "cs.LG"]
    assert row["url"] == s2["url"]
    assert row["year"] == 2020
    # The earliest date; the union of ids and sources; the kept copy's licence.
    assert row["published"] == datetime.date(2019, 10, 29)
    assert row["source_ids"] == _ids(
        acl_anthology="2020.acl-main.703", semantic_scholar="395de0bd3837fdf4b4b5e5f04835bcc69c279481"
    )
    assert row["sources"] == ["acl_anthology", "arxiv", "s2"]
    assert row["license"] == "CC-BY-4.0"
    assert "doi:10.18653/v1/2020.acl-main.703" in row["member_keys"]
    assert (
        "acl_anthology:2020.acl-main.703" in row["member_keys"] and "arxiv:1910.13461" in row["member_keys"]
    )
    # The folded copies keep their own ids in the audit.
    audit = {r["source"]: r for r in dups.iter_rows(named=True)}
    assert audit["s2.jsonl:2"]["doi"] == "10.18653/v1/2020.acl-main.703"
    assert audit["s2.jsonl:2"]["source_ids"]["semantic_scholar"] == "395de0bd3837fdf4b4b5e5f04835bcc69c279481"
    assert audit["arxiv.jsonl:3"]["arxiv_id"] == "1910.13461"
    assert {r["id"] for r in audit.values()} == {"1910.13461"}
    assert {r["method"] for r in audit.values()} == {"same_id"}
    # 2019 and 2020 are one year apart: no conflict.
    assert report["conflicts"]["doi"] == report["conflicts"]["year"] == 0
    assert report["conflicts"]["rows"] == []


def test_conflicting_dois_and_years_are_counted(tmp_path: Path) -> None:
    _, _, report = dedup(
        tmp_path,
        [
            ("a.jsonl:1", "jsonl", "1910.13461", None, BART, {"doi": "10.1/a", "year": 2019}),
            ("b.jsonl:1", "jsonl", "1910.13461", None, BART + " More.", {"doi": "10.1/b", "year": 2021}),
        ],
    )
    assert report["conflicts"]["doi"] == 1 and report["conflicts"]["year"] == 1
    assert report["conflicts"]["doi_examples"] == [["10.1/a", "10.1/b"]]
    assert report["conflicts"]["year_examples"] == [[2019, 2021]]
    # Each conflict is listed by the id of the row the copies became, for the review page.
    assert report["conflicts"]["rows"] == [
        {
            "id": "1910.13461",
            "kind": "doi",
            "values": ["10.1/a", "10.1/b"],
            "sources": ["a.jsonl", "b.jsonl"],
        },
        {"id": "1910.13461", "kind": "year", "values": [2019, 2021], "sources": ["a.jsonl", "b.jsonl"]},
    ]


def test_a_real_venue_list_folds_no_two_papers_by_an_id_they_do_not_share(tmp_path: Path) -> None:
    """The ICLR 2014 list's `dblp` cells hold one (empty) dblp profile per author, `;`-joined:
    not a paper key, so papers with as many authors must not share it as an id."""
    import shutil

    from conftest import DATA

    from pipeline.params import CleanParams, IngestParams
    from pipeline.stages.clean.core import run_clean
    from pipeline.stages.ingest.core import run_ingest

    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(DATA / "samples" / "papercopilot-json" / "iclr2014.json", raw)
    out = tmp_path / "out"
    run_ingest(
        raw, out / "ingested.parquet", out / "rejects.jsonl", out / "ingest.json", IngestParams(), None
    )
    ingested = pl.read_parquet(out / "ingested.parquet")
    assert ingested["source_ids"].struct.field("dblp").null_count() == 69
    assert ingested["source_ids"].struct.field("openreview").n_unique() == 69
    run_clean(out / "ingested.parquet", out / "clean.parquet", out / "clean.json", CleanParams())
    report = run_dedup(
        out / "clean.parquet",
        out / "dedup.parquet",
        out / "minhash.parquet",
        out / "duplicates.parquet",
        out / "dedup.json",
        DedupParams(),
    )
    assert (report["rows_in"], report["rows_out"]) == (69, 69)
    assert sum(report["folded_by_method"].values()) == 0
