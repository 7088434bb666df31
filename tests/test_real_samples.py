"""Real dumps through the whole pipeline: every real sample format (ACL Anthology XML, a JSON array
per venue, PMLR BibTeX, a folder of arXiv RSS JSON objects) and a real sample of the arXiv
metadata snapshot, put undeclared into raw/ of a copy of the project; one `dvc repro` with the
real DVC CLI, then the reports checked: nothing lost, every drop with a reason, metadata kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import DATA, copy_project

SAMPLES = DATA / "samples"
# Raw folder -> the files put in it (see tests/data/samples/SOURCES.md).
RAW_FILES: dict[str, list[Path]] = {
    "acl-anthology-xml": [SAMPLES / "acl-anthology-xml" / "2021.conll.xml"],
    "papercopilot-json": [SAMPLES / "papercopilot-json" / "iclr2014.json"],
    "pmlr-bibtex": [DATA / "ingest" / "real" / "pmlr" / "acml17.bib"],
    "arxiv-rss-json/23/01": sorted(
        [
            *(SAMPLES / "arxiv-rss-json" / "23" / "01").glob("*.json"),
            *(DATA / "filter" / "arxiv-rss-json").glob("*.json"),
            *(DATA / "ingest" / "real" / "arxiv-rss" / "23" / "01").glob("*.json"),
        ]
    ),
    "arxiv-snapshot": [DATA / "filter" / "arxiv_snapshot.jsonl"],
    "arxiv-oai-pmh": [SAMPLES / "arxiv-oai-pmh" / "arxiv-physics-hep-th.xml"],
    "arxiv-api-atom": sorted((SAMPLES / "arxiv-api-atom").glob("*.xml")),
    "arxiv-api-csv": [SAMPLES / "arxiv-api-csv" / "arxiv_papers.csv"],
    "s2orc": [SAMPLES / "s2orc-jsonl" / "sample.jsonl.gz"],
}
SNAPSHOT = "arxiv-snapshot/arxiv_snapshot.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    target = copy_project(tmp_path_factory.mktemp("real") / "ml-abstracts", exclude=("raw/",))
    for folder, files in RAW_FILES.items():
        (target / "raw" / folder).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, target / "raw" / folder / file.name)
    # No declaration: dropping real files into raw/ must just work.
    (target / "sources.yaml").write_text("sources: []\n", encoding="utf-8")
    env = dict(os.environ)
    # The stages call the `abstracts` script installed beside this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["dvc", "repro"], cwd=target, env=env, capture_output=True, text=True, check=False
    )
    return target, result


@pytest.fixture(scope="module")
def repo(built: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    target, result = built
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return target


def test_dvc_repro_exits_zero_on_every_real_format(
    built: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    target, result = built
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((target / "reports" / "ingest.json").read_text())
    assert {name: source["format"] for name, source in report["sources"].items()} == {
        "acl-anthology-xml/2021.conll.xml": "acl_xml",
        "arxiv-rss-json/23/01": "json_object",
        SNAPSHOT: "arxiv_snapshot",
        "papercopilot-json/iclr2014.json": "json_array",
        "pmlr-bibtex/acml17.bib": "bibtex",
        "arxiv-oai-pmh/arxiv-physics-hep-th.xml": "arxiv_oai",
        "arxiv-api-atom/xiv-arxiv_response.xml": "arxiv_atom",
        "arxiv-api-atom/zoia-arxiv_response.xml": "arxiv_atom",
        "arxiv-api-csv/arxiv_papers.csv": "csv",
        "s2orc/sample.jsonl.gz": "semantic_scholar",
    }
    assert {name: source["records_read"] for name, source in report["sources"].items()} == {
        "acl-anthology-xml/2021.conll.xml": 52,
        "arxiv-rss-json/23/01": 40,
        SNAPSHOT: 14,
        "papercopilot-json/iclr2014.json": 69,
        # 41 papers and the volume's `@Proceedings` header, a reject.
        "pmlr-bibtex/acml17.bib": 42,
        "arxiv-oai-pmh/arxiv-physics-hep-th.xml": 3,
        "arxiv-api-atom/xiv-arxiv_response.xml": 2,
        "arxiv-api-atom/zoia-arxiv_response.xml": 1,
        "arxiv-api-csv/arxiv_papers.csv": 5,
        "s2orc/sample.jsonl.gz": 1000,
    }
    assert (target / "release" / "README.md").is_file()


def _source_names(repo: Path) -> dict[str, str]:
    """Record provenance (`<file>:<line>`) -> its source name."""
    records = pl.read_parquet(repo / "build" / "ingested.parquet", columns=["source", "source_name"])
    return dict(records.iter_rows())


def test_every_record_read_is_released_folded_filtered_or_rejected(repo: Path) -> None:
    reports = repo / "reports"
    ingest = json.loads((reports / "ingest.json").read_text())
    names = _source_names(repo)
    release = pl.read_parquet(repo / "release" / "data")
    filtered = pl.read_parquet(reports / "filtered.parquet")
    folded = pl.read_parquet(reports / "duplicates.parquet")
    rejects = [json.loads(line) for line in (reports / "rejects.jsonl").read_text().splitlines()]
    counts: dict[str, dict[str, int]] = {
        name: {"released": 0, "folded": 0, "filtered": 0, "rejected": 0} for name in ingest["sources"]
    }
    for source in release["source"]:
        counts[names[source]]["released"] += 1
    for source in filtered["source"]:
        counts[names[source]]["filtered"] += 1
    for source_name in folded["source_name"]:
        counts[source_name]["folded"] += 1
    for reject in rejects:
        counts[reject["source_name"]]["rejected"] += 1
    for name, source in ingest["sources"].items():
        assert sum(counts[name].values()) == source["records_read"], (name, counts[name])
        assert counts[name]["rejected"] == source["rejects"]
    # Each record in exactly one place.
    placed = [*release["source"], *filtered["source"], *folded["source"]]
    assert len(placed) == len(set(placed)) == len(names)
    assert all(reject["reason"] and reject["locator"] for reject in rejects)


def test_every_filtered_row_has_a_reason_and_detail(repo: Path) -> None:
    filtered = pl.read_parquet(repo / "reports" / "filtered.parquet")
    assert filtered.height > 0
    assert filtered.filter(
        pl.col("reason").is_null()
        | (pl.col("reason") == "")
        | pl.col("detail").is_null()
        | (pl.col("detail") == "")
    ).is_empty()


def test_the_snapshots_physics_and_math_rows_are_filtered_off_topic(repo: Path) -> None:
    names = _source_names(repo)
    records = pl.read_parquet(repo / "build" / "ingested.parquet", columns=["source", "categories"])
    filtered = pl.read_parquet(repo / "reports" / "filtered.parquet")
    reason = dict(filtered.select("source", "reason").iter_rows())
    snapshot = records.filter(pl.col("source").map_elements(names.get, return_dtype=pl.String) == SNAPSHOT)
    ml = {"cs.LG", "stat.ML", "cs.AI", "cs.CL", "cs.CV", "cs.NE", "cs.IR", "cs.RO", "cs.MA"}
    off_topic = [s for s, cats in snapshot.iter_rows() if not ml & set(cats)]
    assert len(off_topic) >= 10
    # Off topic, unless an earlier rule (a placeholder, a withdrawal notice) dropped it first.
    assert all(source in reason for source in off_topic)
    assert sum(reason[source] == "off_topic" for source in off_topic) >= len(off_topic) - 2
    for source, cats in snapshot.iter_rows():
        if ml & set(cats):
            assert reason.get(source) != "off_topic"


@pytest.mark.parametrize(
    ("source", "columns"),
    [
        ("acl-anthology-xml/2021.conll.xml", ("title", "authors", "year", "venue")),
        ("papercopilot-json/iclr2014.json", ("title", "authors")),
        ("pmlr-bibtex/acml17.bib", ("title", "authors", "year", "venue")),
        ("arxiv-rss-json/23/01", ("title", "arxiv_id", "url")),
        (SNAPSHOT, ("title", "authors", "year", "categories")),
    ],
)
def test_the_release_keeps_the_metadata_each_source_carries(
    repo: Path, source: str, columns: tuple[str, ...]
) -> None:
    release = pl.read_parquet(repo / "release" / "data")
    rows = release.filter(pl.col("sources").list.contains(source))
    assert rows.height > 0
    for column in columns:
        assert rows[column].null_count() == 0, column
    assert rows.filter(pl.col("title").str.contains(r"\(arXiv:")).is_empty()


def test_the_card_and_croissant_list_every_sources_licence(repo: Path) -> None:
    croissant = json.loads((repo / "release" / "croissant.json").read_text(encoding="utf-8"))
    release = pl.read_parquet(repo / "release" / "data", columns=["license"])
    licences = set(release["license"].fill_null("NOASSERTION"))
    # ACL Anthology CC BY 4.0, arXiv CC0, the undeclared venue lists and CSV, at least.
    assert {"CC-BY-4.0", "CC0-1.0", "NOASSERTION"} <= licences
    urls = {
        "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
        "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
        "ODC-By-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    }
    assert croissant["license"] == [urls.get(name, name) for name in sorted(licences)]
    card = (repo / "release" / "README.md").read_text(encoding="utf-8")
    table = card.split("| source | format | licence |", 1)[1].split("\n\n", 1)[0]
    ingest = json.loads((repo / "reports" / "ingest.json").read_text())
    for name, source in ingest["sources"].items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        licence = source["license"] or "NOASSERTION"
        assert (cells[2], int(cells[3])) == (licence, source["records_read"]), row
