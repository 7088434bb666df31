"""Source declarations (sources.yaml) and field mapping of the ingest stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import DATA, REPO_ROOT

from pipeline.errors import BadInputError, ConfigError
from pipeline.params import IngestParams
from pipeline.stages.ingest.core import run_ingest
from pipeline.stages.ingest.mapping import authors, parse_path, resolve
from pipeline.stages.ingest.sources import load_sources

REAL = DATA / "ingest" / "real"


def ingest(raw_dir: Path, sources: str | None) -> tuple[pl.DataFrame, list[dict], dict]:
    out = raw_dir.parent / "out"
    path = None
    if sources is not None:
        path = raw_dir.parent / "sources.yaml"
        path.write_text(sources, encoding="utf-8")
    report = run_ingest(
        raw_dir, out / "r.parquet", out / "rejects.jsonl", out / "ingest.json", IngestParams(), path
    )
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return pl.read_parquet(out / "r.parquet"), rejects, report


def test_the_repository_declares_the_seeds() -> None:
    decls = load_sources(REPO_ROOT / "sources.yaml")
    assert {d.name: d.format for d in decls} == {
        "seed-abstract-lines": "abstract_lines",
        "seed-viewer-table": "viewer_table",
    }


def test_seeds_by_their_declarations(raw_dir: Path) -> None:
    for path in sorted((REPO_ROOT / "raw").iterdir()):
        shutil.copy(path, raw_dir / path.name)
    records, _, report = ingest(raw_dir, (REPO_ROOT / "sources.yaml").read_text())
    assert {name: (s["records"], s["rejects"], s["license"]) for name, s in report["sources"].items()} == {
        "seed-abstract-lines": (26, 1, "NOASSERTION"),
        "seed-viewer-table": (95, 3, "NOASSERTION"),
    }
    assert records["locator"][0] == "line 1"


def test_a_folder_declaration_takes_every_file_under_it(raw_dir: Path) -> None:
    shutil.copytree(REAL / "arxiv-rss", raw_dir / "rss")
    shutil.copy(REAL / "pmlr" / "acml17.bib", raw_dir / "acml17.bib")
    records, _, report = ingest(
        raw_dir,
        "sources:\n  - {name: rss, paths: rss, license: CC0-1.0, defaults: {venue: arXiv}}\n"
        "  - {name: acml-2017, paths: '*.bib'}\n",
    )
    assert report["sources"]["rss"]["files"] == 3
    assert set(records.filter(pl.col("source_name") == "rss")["venue"]) == {"arXiv"}
    # A default never overrides a value the record has.
    assert set(records.filter(pl.col("source_name") == "acml-2017")["venue"]) == {
        "Proceedings of the Ninth Asian Conference on Machine Learning"
    }


def test_a_file_matched_by_two_declarations_is_an_error(raw_dir: Path) -> None:
    shutil.copy(REAL / "pmlr" / "acml17.bib", raw_dir / "acml17.bib")
    with pytest.raises(BadInputError, match=r"acml17.bib: matched by two sources, 'a' and 'b'"):
        ingest(raw_dir, "sources:\n  - {name: a, paths: '*.bib'}\n  - {name: b, paths: 'acml*'}\n")


def test_an_unrecognised_file_is_an_error_naming_it(raw_dir: Path) -> None:
    (raw_dir / "notes.md").write_text("# Some notes\n\nNothing here is a record.\n")
    with pytest.raises(BadInputError, match=r"notes.md:1: cannot tell the format"):
        ingest(raw_dir, None)


def test_an_unknown_xml_root_is_an_error_naming_it(raw_dir: Path) -> None:
    (raw_dir / "other.xml").write_text("<?xml version='1.0'?>\n<rss><channel/></rss>\n")
    with pytest.raises(BadInputError, match=r"other.xml:1: XML with root <rss> is not a known format"):
        ingest(raw_dir, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: [{paths: a}]", r"sources\[0\].name: required"),
        ("sources: [{name: a}]", r"sources\[0\] \(a\).paths: required"),
        ("sources: [{name: a, paths: x, format: xml}]", r"sources\[0\] \(a\).format: unknown format 'xml'"),
        ("sources: [{name: a, paths: x, licence: MIT}]", r"sources\[0\].licence: unknown key"),
        ("sources: [{name: a, paths: x, license: 'CC BY'}]", r"license: 'CC BY' is not an SPDX id"),
        ("sources: [{name: a, paths: x, field: {abstrakt: t}}]", r"field.abstrakt: unknown column"),
        (
            "sources: [{name: a, paths: x, field: {abstract: 'a[x]'}}]",
            r"field.abstract: bad field path 'a\[x\]'",
        ),
        (
            "sources: [{name: a, paths: x, defaults: {abstract: t}}]",
            r"defaults.abstract: not a column with a",
        ),
        (
            "sources: [{name: a, paths: x}, {name: a, paths: y}]",
            r"sources\[1\] \(a\).name: 'a' is declared twice",
        ),
        ("sources: {a: 1}", r"sources: expected a list"),
        ("[1", r"not valid YAML"),
    ],
)
def test_bad_declarations_name_the_entry_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_sources(path)


def test_field_paths() -> None:
    record = {
        "authors": [{"last": "Lo", "first": "Kyle"}, {"last": "Wang"}],
        "versions": [{"version": "v1"}, {"version": "v3"}],
        "journal": {"name": "TACL"},
    }
    assert resolve(record, parse_path("authors[].last", "k")) == ["Lo", "Wang"]
    assert resolve(record, parse_path("versions[-1].version", "k")) == "v3"
    assert resolve(record, parse_path("versions[0].version", "k")) == "v1"
    assert resolve(record, parse_path("versions[5].version", "k")) is None
    assert resolve(record, parse_path("journal.name", "k")) == "TACL"
    assert resolve(record, parse_path("journal.missing.deeper", "k")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "Yudong Chen; Xinyang Yi; Constantine Caramanis",
            ["Yudong Chen", "Xinyang Yi", "Constantine Caramanis"],
        ),
        ("Hyeonsu Lee, Hye Won Chung and Ada Lovelace", ["Hyeonsu Lee", "Hye Won Chung", "Ada Lovelace"]),
        ([["Balázs", "C.", ""], ["Yuan", "C. -P.", "Jr"]], ["C. Balázs", "C. -P. Yuan Jr"]),
        ([{"given": "Ada", "family": "Lovelace"}], ["Ada Lovelace"]),
        ([{"first": "Lucy", "middle": ["Lu"], "last": "Wang", "suffix": ""}], ["Lucy Lu Wang"]),
        ("", None),
    ],
)
def test_author_forms(value: object, expected: list[str] | None) -> None:
    assert authors(value) == expected


def test_minified_one_object_json_files_are_one_folder_source(raw_dir: Path) -> None:
    (raw_dir / "papers").mkdir()
    for number in (1, 2):
        record = {
            "title": f"Paper {number}",
            "abstract": f"Abstract {number}.",
            "link": f"http://arxiv.org/abs/2301.0000{number}",
        }
        (raw_dir / "papers" / f"{number}.json").write_text(json.dumps(record), encoding="utf-8")
    records, _, report = ingest(raw_dir, None)
    assert list(report["sources"]) == ["papers"]
    assert records.select("format", "arxiv_id").rows() == [
        ("json_object", "2301.00001"),
        ("json_object", "2301.00002"),
    ]
