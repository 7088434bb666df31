"""Each format read end to end by the ingest stage, on real samples (tests/data/ingest/real) and
fixtures written to the formats' public documentation (tests/data/ingest/docs), and each
format's malformed sample (tests/data/ingest/malformed): a reject or one error naming the file
and the record."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
import lzma
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATA

from pipeline.errors import BadInputError
from pipeline.params import IngestParams
from pipeline.stages.ingest.core import run_ingest
from pipeline.stages.ingest.sniff import sniff_format

REAL = DATA / "ingest" / "real"
DOCS = DATA / "ingest" / "docs"
MALFORMED = DATA / "ingest" / "malformed"


def ingest(raw_dir: Path, sources: str | None = None) -> tuple[pl.DataFrame, list[dict], dict]:
    out = raw_dir.parent / "out"
    sources_path = None
    if sources is not None:
        sources_path = raw_dir.parent / "sources.yaml"
        sources_path.write_text(sources, encoding="utf-8")
    report = run_ingest(
        raw_dir,
        out / "records.parquet",
        out / "rejects.jsonl",
        out / "ingest.json",
        IngestParams(),
        sources_path,
    )
    records = pl.read_parquet(out / "records.parquet")
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return records, rejects, report


def put(raw_dir: Path, source: Path, name: str | None = None) -> Path:
    target = raw_dir / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy(source, target)
    return target


def test_acl_anthology_papers_inherit_their_volume_and_keep_inline_markup_as_text(raw_dir: Path) -> None:
    put(raw_dir, REAL / "acl" / "2021.repl4nlp.xml")
    records, rejects, report = ingest(raw_dir)
    assert len(records) == 32 and rejects == []
    first = records.row(0, named=True)
    assert first["format"] == "acl_xml"
    assert first["raw_id"] == "2021.repl4nlp-1.1"
    assert first["source_ids"]["acl_anthology"] == "2021.repl4nlp-1.1"
    assert first["doi"] == "10.18653/v1/2021.repl4nlp-1.1"
    assert first["url"] == "https://aclanthology.org/2021.repl4nlp-1.1"
    assert first["authors"][:2] == ["Irene Li", "Prithviraj Sen"]
    assert first["year"] == 2021
    assert (
        first["venue"] == "Proceedings of the 6th Workshop on Representation Learning for NLP (RepL4NLP-2021)"
    )
    assert first["license"] == "CC-BY-4.0"
    assert first["locator"] == "paper[1]"
    assert first["source"] == f"2021.repl4nlp.xml:{first['line']}"
    # `<i>TACMA</i>` and `<url>...</url>` give their text, the sentence around them intact.
    tacma = records.filter(pl.col("raw_text").str.contains("TACMA")).row(0, named=True)["raw_text"]
    assert "we propose TACMA, a temporal-aware" in tacma
    assert "available at https://github.com/CrowdsourcingMining/TACMA." in tacma
    assert "<" not in "".join(records["raw_text"])
    assert report["sources"]["2021.repl4nlp.xml"]["records_read"] == 32


def test_acl_tex_math_becomes_dollar_math(raw_dir: Path) -> None:
    (raw_dir / "tiny.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<collection id="2099.test"><volume id="1">'
        "<meta><booktitle>Test Volume</booktitle><year>2099</year></meta>"
        '<paper id="3"><title>On <fixed-case>BERT</fixed-case></title>'
        "<abstract>Costs <tex-math>O(n^2)</tex-math> time &amp; <b>less</b>.</abstract></paper>"
        "</volume></collection>\n",
        encoding="utf-8",
    )
    records, _, _ = ingest(raw_dir)
    assert records.select("raw_text", "title", "raw_id", "year").rows() == [
        ("Costs $O(n^2)$ time & less.", "On BERT", "2099.test-1.3", 2099)
    ]


def test_papercopilot_json_array(raw_dir: Path) -> None:
    put(raw_dir, REAL / "papercopilot" / "colt2014.json")
    records, rejects, report = ingest(raw_dir)
    assert report["sources"]["colt2014.json"] == {
        "format": "json_array",
        "license": None,
        "files": 1,
        "records_read": 61,
        "records": 59,
        "rejects": 2,
    }
    first = records.row(0, named=True)
    assert first["locator"] == "$[0]"
    assert first["authors"] == ["Yudong Chen", "Xinyang Yi", "Constantine Caramanis"]
    assert first["url"] == "https://proceedings.mlr.press/v35/chen14.html"
    assert first["source_ids"]["pmlr"] == "v35/chen14"
    # The two papers without an abstract (a preface, an open problem) are rejects, with their place.
    assert {(r["reason"], r["locator"][:2]) for r in rejects} == {("empty_abstract", "$[")}


def test_arxiv_rss_json_objects_folder_is_one_source_and_titles_lose_their_suffix(raw_dir: Path) -> None:
    put(raw_dir, REAL / "arxiv-rss", "arxiv-rss")
    records, rejects, report = ingest(raw_dir)
    assert rejects == []
    assert list(report["sources"]) == ["arxiv-rss/23/01"]
    assert report["sources"]["arxiv-rss/23/01"]["files"] == 3
    row = records.filter(pl.col("arxiv_id") == "2301.00597").row(0, named=True)
    assert row["format"] == "json_object"
    assert row["arxiv_version"] == 3
    assert row["title"] == (
        "Fairness Guaranteed and Auction-based x-haul and Cloud Resource Allocation in Multi-tenant O-RANs."
    )
    assert row["url"] == "http://arxiv.org/abs/2301.00597"
    assert row["locator"] == "$"


def test_pmlr_bibtex_entries_inherit_the_proceedings_header(raw_dir: Path) -> None:
    put(raw_dir, REAL / "pmlr" / "acml17.bib")
    records, rejects, _ = ingest(raw_dir)
    assert len(records) == 41
    assert [(r["reason"], r["locator"]) for r in rejects] == [("no_abstract_field", "entry[1] preface")]
    pan = records.filter(pl.col("raw_id") == "pan17").row(0, named=True)
    assert pan["authors"] == ["Hengyue Pan", "Hui Jiang"]
    assert pan["venue"] == "Proceedings of the Ninth Asian Conference on Machine Learning"
    assert pan["year"] == 2017
    assert pan["published"] == dt.date(2017, 11, 11)
    assert pan["source_ids"]["pmlr"] == "v77/pan17"
    assert pan["line"] == 23
    # LaTeX stays for clean.
    assert any("$" in text for text in records["raw_text"])


def test_arxiv_oai_pmh_arxiv_and_oai_dc(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "arxiv_oai.xml")
    put(raw_dir, DOCS / "arxiv_oai_dc.xml")
    records, rejects, _ = ingest(raw_dir)
    assert [(r["file"], r["locator"], r["reason"]) for r in rejects] == [
        ("arxiv_oai.xml", "record[2]", "deleted_record")
    ]
    first = records.row(0, named=True)
    assert first["arxiv_id"] == "0704.0001"
    assert first["authors"] == ["C. Balázs", "E. L. Berger", "P. M. Nadolsky", "C. -P. Yuan"]
    assert (
        first["title"]
        == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    )
    assert first["doi"] == "10.1103/physrevd.76.013009"
    assert first["published"] == dt.date(2007, 4, 2)
    assert first["categories"] == ["hep-ph"]
    assert first["license"] == "CC0-1.0"
    dc = records.filter(pl.col("file") == "arxiv_oai_dc.xml").row(0, named=True)
    assert dc["authors"] == ["Hyeonsu Lee", "Hye Won Chung"]
    assert dc["raw_text"].strip().startswith("Crowdsourcing has emerged")
    assert "Comment:" not in dc["raw_text"]


def test_arxiv_oai_pmh_arxiv_raw(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "arxiv_oai_raw.xml")
    records, rejects, report = ingest(raw_dir)
    assert rejects == [] and report["files"]["arxiv_oai_raw.xml"]["format"] == "arxiv_oai"
    raw = records.row(0, named=True)
    assert (raw["arxiv_id"], raw["arxiv_version"]) == ("1304.4214", 2)
    assert raw["authors"] == ["Igor A. Zaliznyak", "John M. Tranquada"]
    # The first version's RFC 2822 date is the published date.
    assert (raw["published"], raw["year"]) == (dt.date(2013, 4, 15), 2013)
    assert raw["title"] == "Neutron Scattering and Its Application to Strongly Correlated Systems"
    assert raw["categories"] == ["cond-mat.str-el"]
    assert raw["raw_text"].startswith("Neutron scattering is a powerful probe")


def test_arxiv_api_atom(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "arxiv_api.atom")
    records, rejects, _ = ingest(raw_dir)
    assert rejects == []
    assert records.select("arxiv_id", "arxiv_version", "year", "doi", "venue").rows() == [
        ("2301.00006", 2, 2022, None, None),
        ("1706.03762", 7, 2017, "10.48550/arxiv.1706.03762", "NeurIPS 2017"),
    ]
    assert records["categories"].to_list()[0] == ["cs.LG", "cs.HC"]
    assert records["locator"].to_list() == ["entry[1]", "entry[2]"]


def test_openalex_abstract_is_rebuilt_from_the_inverted_index(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "openalex_works.jsonl")
    records, rejects, report = ingest(raw_dir)
    assert report["files"]["openalex_works.jsonl"]["format"] == "openalex"
    assert records["raw_text"].to_list() == [
        "The dominant sequence transduction models are based on complex recurrent or convolutional "
        "neural networks.",
        "We introduce a new language representation model called BERT.",
    ]
    attention, bert = records.rows(named=True)
    assert attention["arxiv_id"] == "1706.03762"
    assert attention["source_ids"]["openalex"] == "W2626778328"
    assert attention["authors"] == ["Ashish Vaswani", "Noam Shazeer"]
    assert bert["source_ids"]["acl_anthology"] == "N19-1423"
    assert bert["doi"] == "10.18653/v1/n19-1423"
    assert [(r["locator"], r["reason"]) for r in rejects] == [("line 2", "empty_abstract")]


OPENALEX_WORK = REAL / "openalex" / "work.json"
OPENALEX_PAGE = REAL / "openalex" / "openalex_works.json"


def test_openalex_single_work_from_the_api_is_mapped_with_no_declaration(raw_dir: Path) -> None:
    put(raw_dir, OPENALEX_WORK)
    records, rejects, report = ingest(raw_dir)
    assert rejects == [] and report["files"]["work.json"]["format"] == "openalex"
    work = records.row(0, named=True)
    assert work["raw_text"].startswith(
        "Despite growing interest in Open Access (OA) to scholarly literature,"
    )
    assert work["raw_text"].endswith("as a way to inform OA policy and practice.")
    assert work["title"] == (
        "The state of OA: a large-scale analysis of the prevalence and impact of Open Access articles"
    )
    assert work["authors"][:2] == ["Heather Piwowar", "Jason Priem"] and len(work["authors"]) == 9
    assert (work["year"], work["published"], work["venue"]) == (2018, dt.date(2018, 2, 13), "PeerJ")
    assert work["doi"] == "10.7717/peerj.4375"
    assert work["source_ids"]["openalex"] == "W2741809807"
    assert work["categories"] == [
        "scientometrics and bibliometrics research",
        "Academic Publishing and Open Access",
        "Research Data Management Practices",
    ]
    assert (work["license"], work["locator"], work["source"]) == ("CC0-1.0", "$", "work.json:1")


def test_an_openalex_api_page_gives_each_work_of_its_results(raw_dir: Path) -> None:
    # The real page's three works carry no abstract (`"abstract_inverted_index": null`): each is
    # a reject with its position in the page; beside a work with one, the folder is one source.
    put(raw_dir, OPENALEX_PAGE, "openalex/page_1.json")
    put(raw_dir, OPENALEX_WORK, "openalex/W2741809807.json")
    records, rejects, report = ingest(raw_dir)
    assert report["files"]["openalex/page_1.json"]["format"] == "openalex"
    assert [(r["file"], r["locator"], r["reason"], r["source_name"]) for r in rejects] == [
        ("openalex/page_1.json", f"$.results[{index}]", "empty_abstract", "openalex") for index in range(3)
    ]
    assert '"doi": "https://doi.org/10.1038/s41586-021-03534-y"' in rejects[0]["content"]
    assert records["source_ids"].to_list()[0]["openalex"] == "W2741809807"
    assert report["sources"]["openalex"]["records_read"] == 4


def test_a_page_whose_works_have_no_abstract_is_one_error_naming_the_first(raw_dir: Path) -> None:
    put(raw_dir, OPENALEX_PAGE)
    with pytest.raises(
        BadInputError, match=r"empty_abstract: 3\), the first at openalex_works.json \$.results\[0\]"
    ):
        ingest(raw_dir)


def test_openalex_arrays_pretty_pages_and_page_lines(raw_dir: Path) -> None:
    work = json.loads(OPENALEX_WORK.read_text(encoding="utf-8"))
    other = {**work, "id": "https://openalex.org/W1", "doi": None, "ids": {}}
    page = json.loads(OPENALEX_PAGE.read_text(encoding="utf-8"))
    (raw_dir / "array.json").write_text(json.dumps([work, other], indent=2), encoding="utf-8")
    (raw_dir / "pretty_page.json").write_text(
        json.dumps({**page, "results": [work]}, indent=2), encoding="utf-8"
    )
    # The API's pages saved one per line, compressed: each page's works numbered in the file.
    lines = "".join(json.dumps({**page, "results": [work, other]}) + "\n" for _ in range(2))
    (raw_dir / "pages.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    records, rejects, report = ingest(raw_dir)
    assert rejects == []
    assert {name: report["files"][name]["format"] for name in report["files"]} == dict.fromkeys(
        ("array.json", "pages.jsonl.gz", "pretty_page.json"), "openalex"
    )
    assert records.select("source", "locator").rows() == [
        ("array.json:1", "$[0]"),
        ("array.json:2", "$[1]"),
        ("pages.jsonl.gz:1", "line 1 results[0]"),
        ("pages.jsonl.gz:2", "line 1 results[1]"),
        ("pages.jsonl.gz:3", "line 2 results[0]"),
        ("pages.jsonl.gz:4", "line 2 results[1]"),
        ("pretty_page.json:1", "$.results[0]"),
    ]
    assert set(records["title"]) == {work["title"]}
    assert records["source_ids"].to_list()[1]["openalex"] == "W1"


def test_a_cut_openalex_page_is_one_error_naming_the_work(raw_dir: Path) -> None:
    # The real page cut inside its second work.
    (raw_dir / "cut_page.json").write_bytes(OPENALEX_PAGE.read_bytes()[:70_000])
    with pytest.raises(BadInputError, match=r"cut_page.json: \$.results\[1\]: not valid JSON .*after work 0"):
        ingest(raw_dir)


def test_semantic_scholar_api_datasets_and_s2orc_lines(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "s2_papers.jsonl")
    records, rejects, report = ingest(raw_dir)
    assert report["files"]["s2_papers.jsonl"]["format"] == "semantic_scholar"
    assert report["sources"]["s2_papers.jsonl"]["license"] == "ODC-By-1.0"
    api, dataset, s2orc = records.rows(named=True)
    assert api["arxiv_id"] == "1706.03762"
    assert api["source_ids"]["semantic_scholar"] == "204e3073870fae3d05bcbc2f6a8e263d9b72e776"
    assert api["source_ids"]["dblp"] == "conf/nips/VaswaniSPUJGKP17"
    assert dataset["categories"] == ["Computer Science", "Linguistics"]
    assert dataset["doi"] == "10.18653/v1/n19-1423"
    assert s2orc["authors"] == ["Kyle Lo", "Lucy Lu Wang"]
    assert s2orc["source_ids"]["acl_anthology"] == "2020.acl-main.447"
    assert [(r["locator"], r["reason"]) for r in rejects] == [("line 4", "empty_abstract")]


def test_space_padded_csv_with_bom_and_quoted_newlines(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "arxiv_export.csv")
    records, rejects, _ = ingest(raw_dir)
    assert records.select("raw_id", "arxiv_id", "arxiv_version", "title", "authors", "published").rows() == [
        ("2301.00006v2", "2301.00006", 2, "Recovering Top-Two Answers", ["Hyeonsu Lee", "Hye Won Chung"],
         dt.date(2022, 12, 29)),
        ("http://arxiv.org/abs/1706.03762v7", "1706.03762", 7, "Attention Is All You Need",
         ["Ashish Vaswani"], dt.date(2017, 6, 12)),
    ]  # fmt: skip
    assert records["raw_text"][0] == "Crowdsourcing has emerged as an effective platform\nfor labeling data."
    assert records["locator"].to_list() == ["row 1", "row 2"]
    assert [(r["locator"], r["line"], r["reason"], r["detail"]) for r in rejects] == [
        ("row 3", 5, "wrong_cell_count", "3 cells, the header has 5")
    ]


def test_tsv_with_its_own_header_names_mapped_per_source(raw_dir: Path) -> None:
    put(raw_dir, DOCS / "papers.tsv")
    put(raw_dir, DOCS / "arxiv_export.csv")
    sources = "sources:\n  - {name: tsv, paths: papers.tsv, field: {title: paper_title, id: paper_id}}\n"
    records, _, report = ingest(raw_dir, sources)
    tsv = records.filter(pl.col("source_name") == "tsv")
    assert tsv.select("raw_id", "title", "year").rows() == [
        ("2301.00006", "Recovering Top-Two Answers", 2022),
        ("W04-1013", "ROUGE", 2004),
    ]
    # The CSV beside it keeps its own (default) mapping.
    assert report["sources"]["arxiv_export.csv"]["records"] == 2


def test_parquet_with_nested_columns_and_field_paths(raw_dir: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "paper": [{"abstract": "A parquet abstract.", "ids": {"arxiv": "2101.00001v4"}}],
                "authors": [[{"first": "Ada", "last": "Lovelace"}, {"first": "Alan", "last": "Turing"}]],
                "versions": [[{"version": "v1"}, {"version": "v4"}]],
            }
        ),
        raw_dir / "nested.parquet",
    )
    sources = (
        "sources:\n  - name: nested\n    paths: nested.parquet\n    license: CC-BY-4.0\n"
        "    field: {abstract: paper.abstract, arxiv_id: paper.ids.arxiv, authors: 'authors[].last'}\n"
        "    defaults: {venue: Test Venue, year: 2021}\n"
    )
    records, _, _ = ingest(raw_dir, sources)
    row = records.row(0, named=True)
    assert (row["raw_text"], row["arxiv_id"], row["arxiv_version"]) == (
        "A parquet abstract.",
        "2101.00001",
        4,
    )
    assert row["authors"] == ["Lovelace", "Turing"]
    assert (row["venue"], row["year"], row["license"], row["locator"]) == (
        "Test Venue",
        2021,
        "CC-BY-4.0",
        "row 1",
    )


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress), (".zst", None)],
)
def test_compressed_files_are_read_transparently(raw_dir: Path, suffix: str, compress: object) -> None:
    data = (DOCS / "openalex_works.jsonl").read_bytes()
    target = raw_dir / f"works.jsonl{suffix}"
    if compress is None:
        with pa.CompressedOutputStream(str(target), "zstd") as stream:
            stream.write(data)
    else:
        target.write_bytes(compress(data))  # type: ignore[operator]
    records, _, report = ingest(raw_dir)
    assert report["files"][target.name]["format"] == "openalex"
    assert len(records) == 2


def test_compressed_xml_and_text_dumps(raw_dir: Path, ingest_data: Path) -> None:
    (raw_dir / "acl.xml.gz").write_bytes(gzip.compress((REAL / "acl" / "2021.repl4nlp.xml").read_bytes()))
    (raw_dir / "lines.txt.gz").write_bytes(gzip.compress((ingest_data / "lines.txt").read_bytes()))
    _, _, report = ingest(raw_dir)
    assert report["records_by_format"] == {"abstract_lines": 2, "acl_xml": 32}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cut.xml", r"cut.xml:41: malformed XML"),
        ("oai_cut.xml", r"oai_cut.xml:27: malformed XML"),
        ("cut.atom", r"cut.atom:27: malformed XML"),
        ("cut_array.json", r"cut_array.json: \$\[1\]: not valid JSON .*after item 0"),
        ("broken_object.json", r"broken_object.json:4: not valid JSON \(Expecting ',' delimiter"),
        ("not_parquet.parquet", r"not_parquet.parquet: not a readable parquet file"),
        ("corrupt.jsonl.gz", r"corrupt.jsonl.gz: cannot be (read or )?decompressed"),
    ],
)
def test_a_broken_file_is_one_error_naming_it_and_the_record(raw_dir: Path, name: str, message: str) -> None:
    put(raw_dir, MALFORMED / name)
    with pytest.raises(BadInputError, match=message):
        ingest(raw_dir)
    assert not (raw_dir.parent / "out" / "records.parquet").exists()


def test_broken_records_are_rejects_naming_file_and_record(raw_dir: Path) -> None:
    for name in ("bad_lines.jsonl", "broken.bib", "cells.csv"):
        put(raw_dir, MALFORMED / name)
    records, rejects, report = ingest(raw_dir)
    assert [(r["file"], r["locator"], r["reason"]) for r in rejects] == [
        ("bad_lines.jsonl", "line 2", "invalid_json"),
        ("bad_lines.jsonl", "line 3", "not_an_object"),
        ("bad_lines.jsonl", "line 4", "empty_abstract"),
        ("broken.bib", "entry[2]", "malformed_bibtex"),
        ("cells.csv", "row 2", "wrong_cell_count"),
    ]
    assert rejects[3]["line"] == 8 and "closing `}`" in rejects[3]["detail"]
    assert records["raw_id"].to_list() == ["2101.00001", "good17", "after17", "2101.00001"]
    for source in report["sources"].values():
        assert source["records"] + source["rejects"] == source["records_read"]


def test_sniffing_every_format() -> None:
    expected = {
        REAL / "acl" / "2021.repl4nlp.xml": "acl_xml",
        REAL / "papercopilot" / "colt2014.json": "json_array",
        REAL / "pmlr" / "acml17.bib": "bibtex",
        REAL / "arxiv-rss" / "23" / "01" / "2301.00006.json": "json_object",
        DOCS / "arxiv_oai.xml": "arxiv_oai",
        DOCS / "arxiv_api.atom": "arxiv_atom",
        DOCS / "openalex_works.jsonl": "openalex",
        OPENALEX_WORK: "openalex",
        OPENALEX_PAGE: "openalex",
        DOCS / "s2_papers.jsonl": "semantic_scholar",
        DOCS / "arxiv_export.csv": "csv",
        DOCS / "papers.tsv": "tsv",
        DATA / "samples" / "arxiv-oai-pmh" / "arxiv-physics-hep-th.xml": "arxiv_oai",
        DATA / "samples" / "arxiv-api-atom" / "xiv-arxiv_response.xml": "arxiv_atom",
        DATA / "samples" / "s2orc-jsonl" / "sample.jsonl.gz": "semantic_scholar",
    }
    assert {path: sniff_format(path, path.name) for path in expected} == expected


def test_a_header_only_csv_renamed_txt_is_still_a_table(raw_dir: Path) -> None:
    (raw_dir / "export.txt").write_text(
        "id\tabstract\n2101.00001\tA tab-separated abstract.\n", encoding="utf-8"
    )
    records, _, _ = ingest(raw_dir)
    assert records.select("format", "arxiv_id").rows() == [("tsv", "2101.00001")]


SNAPSHOT_EDGES = [
    {
        "id": "0704.0001",
        "title": "Calculation of prompt\n  diphoton  production",
        "abstract": "  A text.\n",
        "authors": "C. Balázs, E. L. Berger",
        "authors_parsed": [["Balázs", "C.", ""], ["Berger", "E. L.", "Jr"]],
        "categories": "hep-ph hep-ex hep-ph",
        "doi": "10.1103/PhysRevD.76.013009",
        "journal-ref": "Phys.Rev.D76:013009,2007",
        "versions": [
            {"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"},
            {"version": "v2", "created": "x"},
        ],
    },
    {"id": "hep-th/9901001v3", "title": "Old style", "abstract": "B text.", "versions": []},
    {"id": "https://arxiv.org/abs/2301.00006v2", "title": "URL id", "abstract": "C text."},
    {"id": "2301.00597", "title": "Fair O-RANs. (arXiv:2301.00597v3 [cs.NI] UPDATED)", "abstract": "D text."},
    {
        "id": "2301.00001",
        "title": "String authors",
        "abstract": "E text.",
        "authors": "Ada Lovelace and Alan Turing",
    },
    {"id": "2301.00002", "title": "Comma categories", "abstract": "F text.", "categories": "cs.LG, stat.ML"},
    {"title": "No id, arXiv DOI", "abstract": "G text.", "doi": "https://doi.org/10.48550/arXiv.2301.00003"},
    {
        "id": "2301.00004",
        "title": "ISO date",
        "abstract": "H text.",
        "versions": [{"version": " v4 ", "created": "2023-01-02T10:00:00Z"}],
        "doi": "not a doi",
    },
    {"id": "2301.00005", "title": " ", "abstract": " \t "},
    {"id": "2301.00007", "title": "No abstract key"},
    {"id": "", "abstract": "I text.", "authors_parsed": [[], ["", "", ""], ["Solo"]], "categories": ""},
]


@pytest.mark.parametrize("broken", [False, True])
def test_snapshot_blocks_map_like_the_per_record_mapping(raw_dir: Path, broken: bool) -> None:
    lines = [json.dumps(record, ensure_ascii=False) for record in SNAPSHOT_EDGES]
    if broken:
        # A line Arrow cannot parse: the whole block goes through the per-record mapping.
        lines.insert(3, '{"id": 17, "abstract": "a number id"}')
    (raw_dir / "snapshot.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    by_blocks, rejects_blocks, _ = ingest(raw_dir, "sources:\n  - {name: s, paths: snapshot.jsonl}\n")
    # A field override sends every record through the per-record mapping.
    by_records, rejects_records, _ = ingest(
        raw_dir, "sources:\n  - {name: s, paths: snapshot.jsonl, field: {abstract: abstract}}\n"
    )
    assert by_blocks.to_dicts() == by_records.to_dicts()
    assert rejects_blocks == rejects_records
    assert [r["reason"] for r in rejects_blocks] == ["empty_abstract", "no_abstract_field"]
    first = by_blocks.row(0, named=True)
    assert first["authors"] == ["C. Balázs", "E. L. Berger Jr"]
    assert first["categories"] == ["hep-ph", "hep-ex"]
    assert first["title"] == "Calculation of prompt diphoton production"
    assert (first["arxiv_version"], first["published"], first["year"]) == (2, dt.date(2007, 4, 2), 2007)
    assert first["raw_text"] == "  A text.\n"


def test_the_seven_kinds_of_real_dumps_ingest_with_no_declaration(raw_dir: Path) -> None:
    put(raw_dir, REAL / "acl" / "2021.repl4nlp.xml", "acl/2021.repl4nlp.xml")
    put(raw_dir, REAL / "papercopilot" / "colt2014.json", "venues/colt2014.json")
    put(raw_dir, REAL / "pmlr" / "acml17.bib", "pmlr/acml17.bib")
    put(raw_dir, DATA / "samples" / "s2orc-jsonl" / "sample.jsonl.gz", "s2/metadata_0.jsonl.gz")
    put(raw_dir, REAL / "arxiv-rss", "rss")
    put(raw_dir, DATA / "samples" / "arxiv-api-csv" / "arxiv_papers.csv", "exports/arxiv_api.csv")
    # No real space-padded CSV was found; this one follows the arXiv API export's columns.
    put(raw_dir, DOCS / "arxiv_export.csv", "exports/padded.csv")
    put(raw_dir, DOCS / "papers.tsv", "exports/papers.tsv")
    records, rejects, report = ingest(raw_dir)
    assert {name: (s["format"], s["records"]) for name, s in report["sources"].items()} == {
        "acl/2021.repl4nlp.xml": ("acl_xml", 32),
        "exports/arxiv_api.csv": ("csv", 5),
        "exports/padded.csv": ("csv", 2),
        "exports/papers.tsv": ("tsv", 2),
        "pmlr/acml17.bib": ("bibtex", 41),
        "rss/23/01": ("json_object", 3),
        "s2/metadata_0.jsonl.gz": ("semantic_scholar", 488),
        "venues/colt2014.json": ("json_array", 59),
    }
    assert len(records) == sum(s["records"] for s in report["sources"].values())
    assert len(rejects) == sum(s["rejects"] for s in report["sources"].values())
    assert records["title"].null_count() == 0
    assert {r["source_name"] for r in rejects} <= set(report["sources"])


# Real files of the arXiv OAI-PMH, arXiv API Atom and S2ORC formats (tests/data/samples, see its
# SOURCES.md), each ingested with no declaration.
SAMPLES = DATA / "samples"
OAI_SAMPLE = SAMPLES / "arxiv-oai-pmh" / "arxiv-physics-hep-th.xml"
ATOM_SAMPLES = SAMPLES / "arxiv-api-atom"
S2ORC_SAMPLE = SAMPLES / "s2orc-jsonl" / "sample.jsonl.gz"


def test_a_real_arxiv_oai_pmh_list_records_page(raw_dir: Path) -> None:
    put(raw_dir, OAI_SAMPLE)
    records, rejects, report = ingest(raw_dir)
    assert rejects == [] and report["files"][OAI_SAMPLE.name]["format"] == "arxiv_oai"
    assert records.select("locator", "arxiv_id", "year", "published", "doi", "venue").rows() == [
        ("record[1]", "1412.8323", 2014, dt.date(2014, 12, 29), None, None),
        ("record[2]", "1507.07790", 2015, dt.date(2015, 7, 28), "10.1088/1751-8121/aa9c53",
         "J. Phys. A: Math. Theor. 51 (2018) 035201"),
        ("record[3]", "1607.01710", 2016, dt.date(2016, 7, 6), "10.1002/andp.201700188", None),
    ]  # fmt: skip
    first, _, third = records.rows(named=True)
    # arXiv wraps long titles over two lines; the wrap is not part of the title.
    assert first["title"] == "Toolbox for reconstructing quantum theory from rules on information acquisition"
    assert first["authors"] == ["Philipp A Hoehn"]
    assert first["categories"] == ["quant-ph", "gr-qc", "hep-th", "math-ph", "math.MP", "physics.hist-ph"]
    assert first["raw_text"].startswith("We develop an operational approach for reconstructing")
    assert first["raw_text"].endswith("yields a novel formulation\nof quantum theory in terms of questions.")
    assert third["authors"] == [
        "R. A. C. Correa", "D. M. Dantas", "P. H. R. S. Moraes", "A. de Souza Dutra", "C. A. S. Almeida",
    ]  # fmt: skip
    assert (third["url"], third["license"]) == ("https://arxiv.org/abs/1607.01710", "CC0-1.0")


def test_real_arxiv_api_atom_responses(raw_dir: Path) -> None:
    put(raw_dir, ATOM_SAMPLES, "atom")
    records, rejects, report = ingest(raw_dir)
    assert rejects == []
    assert {name: file["format"] for name, file in report["files"].items()} == {
        "atom/xiv-arxiv_response.xml": "arxiv_atom",
        "atom/zoia-arxiv_response.xml": "arxiv_atom",
    }
    assert records.select("source", "arxiv_id", "arxiv_version", "published", "doi", "venue").rows() == [
        ("atom/xiv-arxiv_response.xml:10", "2510.14968", 1, dt.date(2025, 10, 16), None, None),
        ("atom/xiv-arxiv_response.xml:56", "2510.14827", 1, dt.date(2025, 10, 16), None, None),
        ("atom/zoia-arxiv_response.xml:10", "1601.00001", 1, dt.date(2015, 12, 26), "10.1063/1.4944470",
         "J. Chem. Phys. 144, 124107 (2016)"),
    ]  # fmt: skip
    rdd, _, probe = records.rows(named=True)
    assert rdd["title"] == (
        "RDD: Retrieval-Based Demonstration Decomposer for Planner Alignment in Long-Horizon Tasks"
    )
    assert rdd["authors"] == ["Mingxuan Yan", "Yuping Wang", "Zechun Liu", "Jiachen Li"]
    assert rdd["categories"] == ["cs.RO", "cs.AI", "cs.CV", "cs.LG", "cs.SY", "eess.SY"]
    assert rdd["raw_text"].startswith("To tackle long-horizon tasks, recent hierarchical")
    # LaTeX escapes stay for clean.
    assert probe["raw_text"].startswith('We extend the Landauer-B\\"uttiker probe formalism')
    assert (probe["year"], probe["url"]) == (2015, "http://arxiv.org/abs/1601.00001v1")


def test_a_real_s2orc_metadata_sample(raw_dir: Path) -> None:
    put(raw_dir, S2ORC_SAMPLE)
    records, rejects, report = ingest(raw_dir)
    source = report["sources"]["sample.jsonl.gz"]
    assert (source["format"], source["license"]) == ("semantic_scholar", "ODC-By-1.0")
    # Half of S2ORC's metadata rows carry `"abstract": null`: each is a reject with its line.
    assert (source["records_read"], source["records"], source["rejects"]) == (1000, 488, 512)
    assert {r["reason"] for r in rejects} == {"empty_abstract"}
    assert rejects[0]["locator"] == "line 1"
    robust = records.filter(pl.col("line") == 221).row(0, named=True)
    assert robust["title"] == "Distributionally Robust Counterpart in Markov Decision Processes"
    assert robust["authors"] == ["Pengqian Yu", "Huan Xu"]
    assert (robust["arxiv_id"], robust["year"]) == ("1501.07418", 2016)
    assert robust["doi"] == "10.1109/tac.2015.2495174"
    assert robust["venue"] == "IEEE Transactions on Automatic Control"
    assert robust["categories"] == ["Mathematics", "Computer Science"]
    assert robust["source_ids"]["semantic_scholar"] == "18980380"
    assert robust["url"] == "https://api.semanticscholar.org/CorpusID:18980380"
    assert robust["raw_text"].startswith("This technical note studies Markov decision processes")
    # Old-style arXiv ids as S2ORC gives them.
    assert records.filter(pl.col("line") == 251)["arxiv_id"].to_list() == ["hep-th/0110182"]
    assert records["title"].null_count() == 0 and records["source_ids"].null_count() == 0


@pytest.mark.parametrize(
    ("sample", "cut", "message"),
    [
        (OAI_SAMPLE, 4000, r"cut.xml:\d+: malformed XML in record\[2\]"),
        (ATOM_SAMPLES / "xiv-arxiv_response.xml", 3500, r"cut.xml:59: malformed XML in entry\[2\]"),
    ],
)
def test_a_cut_real_arxiv_xml_file_is_one_error_naming_the_record(
    raw_dir: Path, sample: Path, cut: int, message: str
) -> None:
    (raw_dir / "cut.xml").write_bytes(sample.read_bytes()[:cut])
    with pytest.raises(BadInputError, match=message):
        ingest(raw_dir)
    assert not (raw_dir.parent / "out" / "records.parquet").exists()


def test_a_cut_line_of_the_real_s2orc_sample_is_a_reject_naming_it(raw_dir: Path) -> None:
    lines = gzip.decompress(S2ORC_SAMPLE.read_bytes()).splitlines(keepends=True)
    # Line 22 (a paper with an abstract) cut in half, as a truncated transfer leaves it.
    (raw_dir / "cut.jsonl").write_bytes(b"".join([*lines[20:21], lines[21][:300] + b"\n", *lines[220:221]]))
    records, rejects, _ = ingest(raw_dir)
    assert [(r["locator"], r["reason"]) for r in rejects] == [
        ("line 1", "empty_abstract"),
        ("line 2", "invalid_json"),
    ]
    assert rejects[1]["content"].startswith('{"paper_id": "77491955"')
    assert records["arxiv_id"].to_list() == ["1501.07418"]


CSV_SAMPLE = SAMPLES / "arxiv-api-csv" / "arxiv_papers.csv"


def test_a_real_arxiv_api_csv_export_with_its_own_header_names(raw_dir: Path) -> None:
    # `Title,Authors,Summary,PDF Link,Extracted Text`: the default names match whatever the
    # header's case and separators; quoted cells hold the API's wrapped lines; rows end in CRLF.
    put(raw_dir, CSV_SAMPLE)
    records, rejects, report = ingest(raw_dir)
    assert rejects == [] and report["files"]["arxiv_papers.csv"]["format"] == "csv"
    assert records.select("locator", "line", "arxiv_id", "arxiv_version").rows() == [
        ("row 1", 2, "2505.03738", 1),
        ("row 2", 29, "2505.03725", 1),
        ("row 3", 54, "2505.03724", 1),
        ("row 4", 76, "2505.03721", 1),
        ("row 5", 102, "2505.03717", 1),
    ]
    amo = records.row(0, named=True)
    assert amo["title"] == "AMO: Adaptive Motion Optimization for Hyper-Dexterous Humanoid Whole-Body Control"
    assert amo["authors"] == [
        "Jialong Li", "Xuxin Cheng", "Tianshu Huang", "Shiqi Yang", "Ri-Zhao Qiu", "Xiaolong Wang",
    ]  # fmt: skip
    assert amo["url"] == "http://arxiv.org/pdf/2505.03738v1"
    assert amo["raw_text"].startswith("Humanoid robots derive much of their dexterity from hyper-dexterous\n")
    assert amo["raw_text"].endswith("underscoring the system's\nversatility and robustness.")
    # The PDF's extracted text is no field of the record's columns.
    assert all("arXiv:2505" not in text for text in records["raw_text"])
    assert records["raw_text"][4].startswith("The classical low-rank matrix recovery problem")


def test_a_declared_header_name_is_taken_as_written(raw_dir: Path) -> None:
    put(raw_dir, CSV_SAMPLE)
    sources = "sources:\n  - {name: export, paths: arxiv_papers.csv, field: {abstract: Extracted Text}}\n"
    records, _, _ = ingest(raw_dir, sources)
    assert records["raw_text"][0].startswith("arXiv:2505.03738v1  [cs.RO]")


@pytest.mark.parametrize(("cut", "row"), [(3000, "row 2"), (5200, "row 3")])
def test_a_real_csv_cut_inside_a_quoted_cell_rejects_the_cut_row(raw_dir: Path, cut: int, row: str) -> None:
    # The csv module would close the cut cell silently and keep a shortened abstract or text.
    (raw_dir / "cut.csv").write_bytes(CSV_SAMPLE.read_bytes()[:cut])
    records, rejects, _ = ingest(raw_dir)
    assert [(r["locator"], r["reason"]) for r in rejects] == [(row, "unclosed_quote")]
    assert "cut short" in rejects[0]["detail"]
    assert len(records) == int(row.split()[1]) - 1
