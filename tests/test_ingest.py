from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, copy_into

from pipeline.contracts import RECORD_SCHEMA
from pipeline.errors import BadInputError
from pipeline.io.build_files import read_raw_texts
from pipeline.params import IngestParams
from pipeline.stages.ingest.core import run_ingest
from pipeline.stages.ingest.sniff import sniff_format
from pipeline.stages.ingest.text_dumps import BLOCK_PARSERS, PY_WHITESPACE, Reject, TextBlocks


def ingest(
    raw_dir: Path, params: IngestParams | None = None, sources: str | None = None
) -> tuple[pl.DataFrame, list[dict], dict]:
    """Run the stage on `raw_dir`, with `sources` as the text of sources.yaml (None: no file)."""
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
        params or IngestParams(),
        sources_path,
    )
    records = pl.read_parquet(out / "records.parquet")
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return records, rejects, report


def test_viewer_table_rows_span_lines_and_keep_ids(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "table.txt")
    records, rejects, report = ingest(raw_dir)
    assert records["format"].unique().to_list() == ["viewer_table"]
    assert records.select("source", "raw_id", "arxiv_id", "arxiv_version").rows() == [
        ("table.txt:4", "2201.12288v2", "2201.12288", 2),
        ("table.txt:6", "hep-th/9901001", "hep-th/9901001", None),
        ("table.txt:7", "2303.11366", "2303.11366", None),
    ]
    assert records["raw_text"][0] == "We propose a method for\nlearning things that works. |"
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (1, "table_header"),
        (2, "table_header"),
        (3, "table_header"),
        (10, "stray_line"),
    ]
    assert report["totals"] == {
        "files": 1,
        "sources": 1,
        "lines": 10,
        "blank_lines": 1,
        "records_read": 7,
        "records": 3,
        "rejects": 4,
    }
    assert report["sources"] == {
        "table.txt": {
            "format": "viewer_table",
            "license": None,
            "files": 1,
            "records_read": 7,
            "records": 3,
            "rejects": 4,
        }
    }


def test_abstract_lines_reject_stray_and_empty_lines(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "lines.txt")
    records, rejects, report = ingest(raw_dir)
    assert records["source"].to_list() == ["lines.txt:1", "lines.txt:4"]
    assert records["raw_text"][1] == "Abstract: Second abstract about diffusion models."
    assert [(r["line"], r["reason"], r["content"]) for r in rejects] == [
        (2, "stray_line", "Shammie"),
        (5, "empty_abstract", "Abstract:"),
    ]
    assert report["rejects_by_reason"] == {"empty_abstract": 1, "stray_line": 1}


def test_arxiv_snapshot_takes_latest_version(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "snapshot.jsonl")
    records, rejects, _ = ingest(raw_dir)
    assert records.select("source", "arxiv_id", "arxiv_version").rows() == [
        ("snapshot.jsonl:1", "0704.0001", 2),
        ("snapshot.jsonl:2", "2201.12288", 1),
    ]
    assert records["raw_text"][0].startswith("  A fully differential calculation")
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "empty_abstract"), (4, "invalid_json")]


GENERIC_SOURCES = """
sources:
  - name: generic
    paths: ["generic.*"]
    license: CC0-1.0
    field: {abstract: text, id: paper}
"""


def test_generic_jsonl_csv_parquet_use_the_sources_field_mapping(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "generic.jsonl", ingest_data / "generic.csv")
    pq.write_table(
        pa.table({"paper": ["2305.00001v3", None], "text": ["A parquet abstract.", "Second row."]}),
        raw_dir / "generic.parquet",
    )
    records, rejects, report = ingest(raw_dir, sources=GENERIC_SOURCES)
    assert report["records_by_format"] == {"csv": 2, "jsonl": 2, "parquet": 2}
    by_source = {row["source"]: row for row in records.to_dicts()}
    assert by_source["generic.csv:2"]["raw_text"] == "A csv abstract\nthat spans two lines."
    assert by_source["generic.csv:2"]["arxiv_id"] == "2101.00190"
    assert by_source["generic.csv:4"]["raw_id"] is None
    assert by_source["generic.parquet:1"]["arxiv_version"] == 3
    assert by_source["generic.jsonl:2"]["raw_id"] is None
    assert set(records["source_name"]) == {"generic"}
    assert set(records["license"]) == {"CC0-1.0"}
    assert [(r["source_name"], r["file"], r["locator"], r["reason"]) for r in rejects] == [
        ("generic", "generic.jsonl", "line 3", "empty_abstract")
    ]
    assert report["sources"]["generic"] == {
        "format": "csv, jsonl, parquet",
        "license": "CC0-1.0",
        "files": 3,
        "records_read": 7,
        "records": 6,
        "rejects": 1,
    }


def test_a_source_without_its_abstract_field_is_an_error_naming_it(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "generic.csv")
    with pytest.raises(
        BadInputError,
        match=r"source 'generic.csv' yielded no records; its 2 records were rejected "
        r"\(no_abstract_field: 2\), the first at generic.csv row 1; .*field: \{abstract",
    ):
        ingest(raw_dir)


def test_bom_crlf_and_trailing_whitespace(raw_dir: Path) -> None:
    (raw_dir / "dump.txt").write_bytes(b"\xef\xbb\xbfAbstract: One.  \r\n\r\nAbstract: Two.\r\n")
    records, rejects, report = ingest(raw_dir)
    assert records["raw_text"].to_list() == ["Abstract: One.", "Abstract: Two."]
    assert rejects == []
    assert report["totals"]["blank_lines"] == 1


def test_declared_format(raw_dir: Path) -> None:
    (raw_dir / "odd.dat").write_text('{"id": "2101.00001", "abstract": "Declared."}\n')
    declared = "sources:\n  - {name: odd, paths: odd.dat, format: arxiv_snapshot}\n"
    records, _, _ = ingest(raw_dir, sources=declared)
    assert records.select("format", "arxiv_id", "source_name").rows() == [
        ("arxiv_snapshot", "2101.00001", "odd")
    ]


def test_sniffing(ingest_data: Path) -> None:
    assert sniff_format(ingest_data / "table.txt", "table.txt") == "viewer_table"
    assert sniff_format(ingest_data / "lines.txt", "lines.txt") == "abstract_lines"
    assert sniff_format(ingest_data / "snapshot.jsonl", "snapshot.jsonl") == "arxiv_snapshot"
    assert sniff_format(ingest_data / "generic.jsonl", "generic.jsonl") == "jsonl"
    assert sniff_format(ingest_data / "generic.csv", "generic.csv") == "csv"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"bad.txt: file is empty"),
        (b"   \n\n", r"bad.txt: file is empty"),
        (b"Abstract: fine\nAbstract: caf\xe9\n", r"bad.txt:2: not valid UTF-8 \(byte 0xe9 at column 14\)"),
        (b"Lorem ipsum dolor\nsit amet\n", r"bad.txt:1: cannot tell the format .*sources.yaml"),
    ],
)
def test_bad_input_fails_with_file_and_line_and_writes_nothing(
    raw_dir: Path, content: bytes, message: str
) -> None:
    (raw_dir / "bad.txt").write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        ingest(raw_dir)
    out = raw_dir.parent / "out"
    assert not out.exists() or list(out.iterdir()) == []


def test_empty_raw_directory(raw_dir: Path) -> None:
    with pytest.raises(BadInputError, match=r"no raw dumps found"):
        ingest(raw_dir)


def test_a_declared_path_matching_nothing_is_an_error(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "lines.txt")
    with pytest.raises(BadInputError, match=r"sources\[0\] \(gone\).paths: 'gone/\*.txt' matches no file"):
        ingest(raw_dir, sources="sources:\n  - {name: gone, paths: ['gone/*.txt']}\n")


def test_seed_dumps_account_for_every_line(raw_dir: Path) -> None:
    copy_into(raw_dir, *sorted((REPO_ROOT / "raw").iterdir()))
    records, rejects, report = ingest(raw_dir)
    assert report["records_by_format"] == {"abstract_lines": 26, "viewer_table": 95}
    assert {
        "source_name": "002_be42207742929f79.txt",
        "file": "002_be42207742929f79.txt",
        "line": 1,
        "locator": "line 1",
        "format": "abstract_lines",
        "reason": "stray_line",
        "content": "Shammie",
    } in rejects
    for name, stats in report["files"].items():
        assert stats["lines"] == sum(1 for _ in (raw_dir / name).open(encoding="utf-8")), name
    # Non-blank lines = lines inside records + rejected lines, file by file.
    table = records.filter(pl.col("file") == "001_003d3115494660d1.txt")
    lines_in_records = sum(text.count("\n") + 1 for text in table["raw_text"])
    assert lines_in_records + report["files"]["001_003d3115494660d1.txt"]["rejects"] == 327


def test_broken_link_is_an_error_not_a_silent_skip(raw_dir: Path, ingest_data: Path) -> None:
    copy_into(raw_dir, ingest_data / "lines.txt")
    (raw_dir / "gone.txt").symlink_to(raw_dir / "missing.txt")
    with pytest.raises(BadInputError, match=r"gone.txt: cannot read .*broken link"):
        ingest(raw_dir)


def test_lines_are_classified_with_python_semantics(raw_dir: Path) -> None:
    # Python's `\s`, `\d`, IGNORECASE and str.rstrip() differ from Arrow's and Rust's on these.
    (raw_dir / "table.txt").write_text(
        "stringlengths 9\n"
        "\u0130d\n"  # `İd` folds to `id` under Python's IGNORECASE: a header
        "2201.12288v2\x1c| First row\n"  # \x1c is whitespace to Python's `\s`
        "spans two lines. |\x1c\n"  # ... and to str.rstrip(), so this line ends in `|`
        "\u0662\u0662\u0660\u0661.\u0661\u0662\u0662\u0668\u0668 | Eastern digits. |\n"
        "2303.11366 |  |\n"
        "the cases in the text\n",
        encoding="utf-8",
    )
    declared = "sources:\n  - {name: table, paths: table.txt, format: viewer_table}\n"
    records, rejects, _ = ingest(raw_dir, sources=declared)
    assert records.select("source", "raw_id", "arxiv_version", "raw_text").rows() == [
        ("table.txt:3", "2201.12288v2", 2, "First row\nspans two lines. |"),
        ("table.txt:5", "\u0662\u0662\u0660\u0661.\u0661\u0662\u0662\u0668\u0668", None, "Eastern digits. |"),
    ]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (1, "table_header"),
        (2, "table_header"),
        (6, "empty_abstract"),
        (7, "stray_line"),
    ]


def test_python_whitespace_is_what_str_strip_removes() -> None:
    assert "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()) == PY_WHITESPACE


@pytest.mark.parametrize("name", ["table.txt", "lines.txt"])
def test_block_boundaries_do_not_change_the_parse(tmp_path: Path, ingest_data: Path, name: str) -> None:
    # A BOM, CRLF, blank lines and a last line without a newline, in blocks as small as a byte.
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + (ingest_data / name).read_bytes().replace(b"\n", b"\r\n")[:-2])
    parser = BLOCK_PARSERS[sniff_format(path, name)]

    def parse(block_bytes: int) -> tuple[list[dict], list[Reject], int, int, int]:
        blocks = TextBlocks(path, name, block_bytes)
        results = list(parser(blocks))
        records = pa.concat_tables([table for table, _, _ in results]).to_pylist()
        rejects = [reject for _, file_rejects, _ in results for reject in file_rejects]
        return records, rejects, sum(n for _, _, n in results), blocks.lines, blocks.blank_lines

    whole = parse(1 << 20)
    assert whole[0] and whole[3] == len((ingest_data / name).read_text().splitlines())
    for block_bytes in (1, 2, 5, 17, 64):
        assert parse(block_bytes) == whole, block_bytes


def test_raw_texts_of_some_rows_across_row_groups(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dump.txt").write_text(
        "".join(f"Abstract: Text number {i}.\n" for i in range(2500)), encoding="utf-8"
    )
    run_ingest(
        raw,
        tmp_path / "in.parquet",
        tmp_path / "rejects.jsonl",
        tmp_path / "ingest.json",
        IngestParams(batch_rows=1000),
    )
    assert pq.read_schema(tmp_path / "in.parquet").equals(RECORD_SCHEMA)
    assert pq.ParquetFile(tmp_path / "in.parquet").metadata.num_row_groups == 3
    texts = read_raw_texts(tmp_path / "in.parquet", [2499, 0, 1024, 1999, 2000])
    assert texts == {row: f"Abstract: Text number {row}." for row in (0, 1024, 1999, 2000, 2499)}
    assert read_raw_texts(tmp_path / "in.parquet", []) == {}
