"""The release review page: structure, escaping, sampling caps, Markdown summary, and a real browser.

Inputs are the seed build (every stage up to validation); the escaping tests add hostile rows
(an abstract that is a `<script>`, an HTML file name, a failing expectation) to a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import DATA, REPO_ROOT, requested_urls

from pipeline.cli import build_parser, main
from pipeline.errors import BadInputError, ConfigError
from pipeline.params import PublishParams, ReviewParams, load_params, parse_params
from pipeline.stages.review.core import (
    Review,
    data_docs_links,
    diff_windows,
    expectation_label,
    read_diff,
    render_markdown,
    run_review,
    verdict_of,
)

HOSTILE = '<script>document.title="pwned"</script> A scraped abstract with <b>tags</b> & "quotes".'
HOSTILE_FILE = "<img src=x onerror=alert(1)>.txt"
SECTIONS = [
    "summary",
    "funnel",
    "cleaning",
    "filtered",
    "duplicates",
    "removals",
    "distributions",
    "validation",
]


class PageParser(HTMLParser):
    """Collects what a browser's parser sees: tags with attributes, section ids, and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def section_ids(self) -> list[str]:
        return [str(a.get("id")) for t, a in self.tags if t == "section"]


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def review_paths(root: Path) -> list[str]:
    return [
        "--reports",
        str(root / "reports"),
        "--clean",
        str(root / "build" / "clean.parquet"),
        "--ingested",
        str(root / "build" / "ingested.parquet"),
        "--release-data",
        str(root / "release" / "data"),
        "--out",
        str(root / "reports" / "review.html"),
    ]


def review_of(root: Path, out: Path, params: ReviewParams) -> Review:
    """`run_review` on a build directory laid out like the repository."""
    return run_review(
        root / "reports",
        root / "build" / "clean.parquet",
        root / "build" / "ingested.parquet",
        root / "release" / "data",
        out,
        params,
    )


@pytest.fixture
def build_copy(seed_build: Path, tmp_path: Path) -> Path:
    """A private copy of the seed build that a test may change."""
    target = tmp_path / "build_copy"
    shutil.copytree(seed_build, target)
    return target


def add_hostile_rows(root: Path) -> None:
    """Put HTML-looking text into every kind of input the page shows."""
    clean_path = root / "build" / "clean.parquet"
    clean = pl.read_parquet(clean_path)
    row = clean.row(0, named=True) | {
        "source": "evil.txt:1",
        "file": "evil.txt",
        "abstract": HOSTILE,
        "clean_rules": ["strip_prefix"],
        "flags": ["url", "<flag>"],
    }
    pl.concat([clean, pl.DataFrame([row], schema=clean.schema)]).write_parquet(clean_path)
    ingested_path = root / "build" / "ingested.parquet"
    ingested = pl.read_parquet(ingested_path)
    raw = ingested.row(0, named=True) | {
        "source": "evil.txt:1",
        "file": "evil.txt",
        "raw_text": "Abstract: " + HOSTILE,
    }
    pl.concat([ingested, pl.DataFrame([raw], schema=ingested.schema)]).write_parquet(ingested_path)
    # The page shows each rule's examples as the clean stage recorded them.
    clean_report_path = root / "reports" / "clean.json"
    clean_report = json.loads(clean_report_path.read_text())
    example = {"source": "evil.txt:1", "before": "Abstract: " + HOSTILE, "after": HOSTILE}
    clean_report["rules"]["strip_prefix"]["examples"].insert(0, example)
    clean_report_path.write_text(json.dumps(clean_report))

    shard = next((root / "release" / "data").glob("train-*.parquet"))
    release = pq.read_table(shard)
    extra = {"id": "2301.00001", "arxiv_id": "2301.00001", "arxiv_version": 1}
    extra |= {"abstract": HOSTILE, "source": "evil.txt:1", "duplicate_count": 1}
    pq.write_table(pa.concat_tables([release, pa.Table.from_pylist([extra], schema=release.schema)]), shard)

    duplicates_path = root / "reports" / "duplicates.parquet"
    duplicates = pl.read_parquet(duplicates_path)
    folded = {"source": "evil.txt:1", "id": "2301.00001", "kept_source": "evil.txt:1"}
    folded |= {"method": "<near>", "similarity": 0.93}
    pl.concat([duplicates, pl.DataFrame([folded], schema=duplicates.schema)]).write_parquet(duplicates_path)

    with (root / "reports" / "rejects.jsonl").open("a", encoding="utf-8") as out:
        out.write(
            json.dumps({"file": HOSTILE_FILE, "line": 2, "reason": "stray_line", "content": HOSTILE}) + "\n"
        )
    ingest = json.loads((root / "reports" / "ingest.json").read_text())
    ingest["files"][HOSTILE_FILE] = {"format": "abstract_lines", "lines": 2, "records": 1, "rejects": 1}
    ingest["rejects_by_reason"]["stray_line"] = ingest["rejects_by_reason"].get("stray_line", 0) + 1
    (root / "reports" / "ingest.json").write_text(json.dumps(ingest))

    validation = json.loads((root / "reports" / "validation.json").read_text())
    validation["results"].append(
        {
            "suite": "<suite>",
            "expectation": "expect_column_values_to_not_match_regex",
            "kwargs": {"column": "abstract", "regex": "<script"},
            "severity": "warning",
            "success": False,
            "observed_value": HOSTILE,
            "unexpected_count": 1,
            "failing_rows": [{"id": "<i>2301.00001</i>", "source": "evil.txt:1"}],
        }
    )
    (root / "reports" / "validation.json").write_text(json.dumps(validation))
    shutil.copy(DATA / "review" / "release_diff.json", root / "reports" / "release_diff.json")


def test_cli_writes_every_section_in_order_and_prints_markdown(
    build_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--params", str(REPO_ROOT / "params.yaml"), "review", *review_paths(build_copy), "--markdown"]
    )
    assert code == 0
    page = (build_copy / "reports" / "review.html").read_text(encoding="utf-8")
    assert (build_copy / "reports" / "review.html").stat().st_mode & 0o777 == 0o644
    parsed = parse(page)
    assert parsed.section_ids == SECTIONS
    validation = json.loads((build_copy / "reports" / "validation.json").read_text())
    expected, _ = verdict_of(validation)
    verdict = [a for t, a in parsed.tags if a.get("id") == "verdict"]
    assert verdict and verdict[0]["class"] == f"verdict {expected}"
    text = " ".join(parsed.text)
    split = json.loads((build_copy / "reports" / "split.json").read_text())
    ingest = json.loads((build_copy / "reports" / "ingest.json").read_text())
    clean = json.loads((build_copy / "reports" / "clean.json").read_text())
    for name in [*ingest["files"], *ingest["rejects_by_reason"], *clean["rules"], *clean["flags"]]:
        assert name in text
    # The seed build's release_diff.json is a first release's: every row added.
    assert "Diff: first release, nothing published before" in text and "reports are stale" not in text
    # Self-contained: no script, no stylesheet link, every image inline, no URL at all.
    assert not [t for t, _ in parsed.tags if t in ("script", "link", "iframe", "object")]
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) == 3
    assert all(str(src).startswith("data:image/png;base64,") for src in images)
    # Abstracts may quote URLs as text; no attribute may point anywhere but inside the page.
    linked = [v for _, attrs in parsed.tags for k, v in attrs.items() if k in ("href", "src", "action")]
    assert [v for v in linked if not str(v).startswith(("data:image/png;base64,", "#", "data_docs/"))] == []
    style = page[page.index("<style>") : page.index("</style>")]
    assert "url(" not in style and "@import" not in style
    for result in validation["results"]:
        assert expectation_label(result) in text

    markdown = capsys.readouterr().out
    icon = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌"}[expected]
    assert markdown.startswith(f"### {icon} Release review: {expected}")
    for name, rows in split["rows"].items():
        assert f"| {name} | {rows:,} |" in markdown
    rows = sum(split["rows"].values())
    assert f"Diff: first release, nothing published before: {rows:,} added, 0 removed, 0 merged" in markdown
    failed = [r for r in validation["results"] if not r["success"]]
    if failed:
        assert all(f"`{expectation_label(r)}`" in markdown for r in failed)
    else:
        assert "Failed expectations: none." in markdown


def test_each_rule_shows_its_unsafe_skips_and_the_evidence_of_its_examples(build_copy: Path) -> None:
    """The cleaning section answers #20's "why": per rule, the rows it changed and the rows it
    left alone as unsafe, and beside each example the evidence that decided it (clean.json)."""
    assert main(["--params", str(REPO_ROOT / "params.yaml"), "review", *review_paths(build_copy)]) == 0
    text = " ".join(parse((build_copy / "reports" / "review.html").read_text(encoding="utf-8")).text)
    rules = json.loads((build_copy / "reports" / "clean.json").read_text())["rules"]
    assert any(entry["skipped_unsafe"] for entry in rules.values()), "the seeds should skip some spot"
    for name, entry in rules.items():
        counts = f"{entry['rows_changed']:,} row(s), {entry['skipped_unsafe']:,} skipped as unsafe"
        assert counts in text, name
        for example in entry["examples"][:1]:
            assert example["evidence"] and example["evidence"] in text, (name, example["evidence"])


def publish_box(page: str) -> str:
    """The "what will be published" box of a page (it holds no nested div)."""
    start = page.index('<div id="publish"')
    return page[start : page.index("</div>", start) + len("</div>")]


def test_publish_box_names_version_tag_files_repo_and_command(build_copy: Path) -> None:
    shutil.copy(DATA / "review" / "release_diff.json", build_copy / "reports" / "release_diff.json")
    code = main(["--params", str(REPO_ROOT / "params.yaml"), "review", *review_paths(build_copy)])
    assert code == 0
    page = (build_copy / "reports" / "review.html").read_text(encoding="utf-8")
    box = parse(publish_box(page))
    text = "".join(box.text)
    ids = {str(a.get("id")): a for _, a in box.tags if a.get("id")}
    assert {"publish", "publish-tag", "publish-repo", "publish-command"} <= set(ids)
    repo_id = load_params(REPO_ROOT / "params.yaml").publish.repo_id
    assert "What will be published" in text
    assert "Version 1.1.0, tag v1.1.0, to the Hub dataset " + repo_id + "." in text
    assert "abstracts publish --dry-run" in text
    files = sorted(p for p in (build_copy / "release" / "data").rglob("*") if p.is_file())
    assert files
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{path.as_posix()}{path.stat().st_size:,}{digest}" in text
    # The box is in the summary, before the funnel: a reviewer sees it with the verdict.
    assert page.index('<div id="publish"') < page.index('<section id="funnel">')


def test_publish_box_escapes_and_says_when_no_tag_is_proposed(build_copy: Path) -> None:
    (build_copy / "reports" / "validation.json").unlink()  # FAIL: validation never ran
    (build_copy / "reports" / "release_diff.json").unlink()  # no version proposed
    out = build_copy / "reports" / "review.html"
    paths = (
        build_copy / "reports",
        build_copy / "build" / "clean.parquet",
        build_copy / "build" / "ingested.parquet",
        build_copy / "release" / "data",
    )
    hostile = PublishParams(repo_id='<b>org&"q"/name<i>')
    review = run_review(*paths, out, ReviewParams(), None, None, hostile)
    assert review.publish is not None and review.publish.tag is None
    raw = publish_box(out.read_text(encoding="utf-8"))
    assert "<b>" not in raw and "<i>" not in raw and "&lt;b&gt;org&amp;&quot;q&quot;/name&lt;i&gt;" in raw
    text = "".join(parse(raw).text)
    assert 'to the Hub dataset <b>org&"q"/name<i>.' in text
    assert "tag none (no release version proposed)" in text
    assert "Validation failed: publishing refuses this build" in text
    # Without publish params (a caller that does not publish), the page has no box.
    run_review(*paths, out, ReviewParams())
    assert 'id="publish"' not in out.read_text(encoding="utf-8")


def test_data_is_escaped_and_shown_as_text(build_copy: Path) -> None:
    add_hostile_rows(build_copy)
    params = ReviewParams(examples_per_rule=500, rows_per_flag=500, clusters=100, rejects_per_reason=100)
    out = build_copy / "reports" / "review.html"
    review = review_of(build_copy, out, params)
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<b>tags" not in page and "<img src=x" not in page and "<i>2301" not in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    parsed = parse(page)
    assert {t for t, _ in parsed.tags} <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "section", "div", "p", "strong",
        "table", "thead", "tbody", "tr", "th", "td", "code", "span", "br", "details", "summary", "del",
        "ins", "figure", "figcaption", "img", "a",
    }  # fmt: skip
    text = "".join(parsed.text)
    # The browser shows the hostile text literally: in the flag list, the cluster, the rejects...
    assert text.count('document.title="pwned"') >= 4
    assert HOSTILE_FILE in text and "<suite>" in text and "<i>2301.00001</i>" in text
    assert f"{HOSTILE_FILE}:2" in text  # the rejected line, with its file and line number
    # ... and in the strip_prefix sample, where only the removed prefix is marked.
    sample = next(s for s in review.rule_samples["strip_prefix"] if s.source == "evil.txt:1")
    assert (sample.before, sample.after) == ("Abstract: " + HOSTILE, HOSTILE)
    assert "<del>Abstract: </del>&lt;script&gt;document.title=&quot;" in page
    # The release now holds a row that split.json does not know of: the page says so.
    assert review.notes and "rerun `dvc repro`" in review.notes[0]
    # The diff from the publish step and a failed warning.
    assert review.verdict in ("WARN", "FAIL")
    assert review.version == "1.1.0" and review.previous_version == "v1.0.0"
    assert review.diff is not None and review.diff["added"][0] == 3
    assert "&lt;script&gt;document.title=&#x27;diff-pwned&#x27;" in page
    markdown = render_markdown(review)
    assert "Diff against v1.0.0: 3 added, 0 removed, 0 merged, 0 changed, 0 moved." in markdown
    assert "| &lt;suite&gt; | `expect_column_values_to_not_match_regex(abstract)` | warning | 1 |" in markdown


def test_page_is_byte_identical_on_rerun(build_copy: Path, tmp_path: Path) -> None:
    review_of(build_copy, tmp_path / "a.html", ReviewParams())
    review_of(build_copy, tmp_path / "b.html", ReviewParams())
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()


def test_samples_are_capped_and_spread_over_raw_files(build_copy: Path, tmp_path: Path) -> None:
    params = ReviewParams(examples_per_rule=2, rows_per_flag=3, clusters=1, folded_per_cluster=1)
    review = review_of(build_copy, tmp_path / "review.html", params)
    clean = pl.read_parquet(build_copy / "build" / "clean.parquet")
    flag = max(review.flag_counts, key=lambda name: review.flag_counts[name])
    flagged = clean.filter(pl.col("flags").list.contains(flag))
    assert review.flag_counts[flag] == flagged.height > 3
    assert all(len(rows) <= 3 for rows in review.flag_samples.values())
    assert all(len(rows) <= 2 for rows in review.rule_samples.values())
    flagged_files = flagged["file"].unique().to_list()
    shown_files = {s.source.rsplit(":", 1)[0] for s in review.flag_samples[flag]}
    assert len(shown_files) == min(3, len(flagged_files))
    assert len(review.clusters) == 1 and len(review.clusters[0].folded) == 1
    # Each rule sample shows that rule's own change, not the other rules' (whitespace: only spaces).
    isolated = [s for s in review.rule_samples["whitespace"] if s.tags == ("whitespace",)]
    assert isolated
    for sample in isolated:
        assert sample.before.split() == sample.after.split() and sample.before != sample.after


def test_filtered_rows_are_in_the_funnel_and_sampled_per_rule_as_text(build_copy: Path) -> None:
    """Real rows the filter drops (tests/data/filter: arXiv 0704.0156 and 0704.0071, and a web
    page in place of an abstract), capped per rule by `review.filtered_per_rule`."""
    from conftest import add_filtered_records

    web_page = " ".join((DATA / "filter" / "cra_index.html").read_text(encoding="utf-8").split())
    add_filtered_records(
        build_copy,
        [
            ("0704.0156", "This paper has been withdrawn by the authors."),
            (
                "0704.0071",
                "No abstract given; compares pairs of languages from World Atlas of Language Structures.",
            ),
            (None, web_page),
        ],
    )
    filtered = pl.read_parquet(build_copy / "reports" / "filtered.parquet")
    assert filtered["reason"].to_list() == ["placeholder", "placeholder", "markup_junk"]
    out = build_copy / "reports" / "review.html"
    review = review_of(build_copy, out, ReviewParams(filtered_per_rule=1))
    assert [r["id"] for r in review.filtered_samples["placeholder"]] == ["0704.0156"]
    assert len(review.filtered_samples["markup_junk"]) == 1 and review.filtered_samples["too_short"] == []
    page = out.read_text(encoding="utf-8")
    assert "<noscript" not in page and "<link" not in page
    parsed = parse(page)
    assert parsed.section_ids == SECTIONS
    text = "".join(parsed.text)
    funnel = page[page.index('<section id="funnel">') : page.index('<section id="cleaning">')]
    assert "<tr><td>rows filtered: placeholder</td><td class=n>2</td></tr>" in funnel
    assert "<tr><td>rows filtered: markup_junk</td><td class=n>1</td></tr>" in funnel
    assert "<tr><td>rows after filter</td><td class=n>121</td></tr>" in funnel
    section = "".join(
        parse(page[page.index('<section id="filtered">') : page.index('<section id="duplicates">')]).text
    )
    assert "3 of 124 cleaned row(s) dropped by the filter" in section
    assert (
        "Rule placeholder: 2 row(s), 1 shown" in section and "Rule markup_junk: 1 row(s), 1 shown" in section
    )
    first = filtered.row(0, named=True)
    assert f"0704.0156{first['source']}placeholder{first['detail']}This paper has been withdrawn" in section
    assert "0704.0071" not in section
    # The web page is shown as text, escaped by the template, cut at review.text_chars.
    assert "<!DOCTYPE html> <html lang=" in text
    assert "&lt;!DOCTYPE html&gt; &lt;html lang=&quot;en&quot;&gt;" in page


def test_published_rows_gone_and_metadata_conflicts_are_listed(build_copy: Path) -> None:
    diff_path = build_copy / "reports" / "release_diff.json"
    diff = json.loads(diff_path.read_text(encoding="utf-8"))
    diff["previous"] = "v1.0.0"
    diff["removals"] = [
        {"id": "2101.00001", "reason": "not in this build <b>gone</b>", "into": None},
        {"id": "2101.00002", "reason": "merged", "into": "2101.00003"},
    ]
    diff_path.write_text(json.dumps(diff), encoding="utf-8")
    dedup_path = build_copy / "reports" / "dedup.json"
    dedup = json.loads(dedup_path.read_text(encoding="utf-8"))
    dedup["conflicts"] |= {"doi": 3, "year": 1}
    dedup["conflicts"]["rows"] = [
        {"id": "1910.13461", "kind": "doi", "values": ["10.1/a", "10.1/<b>"], "sources": ["acl", "s2"]},
        {"id": "1910.13461", "kind": "year", "values": [2019, 2021], "sources": ["acl", "s2"]},
    ]
    dedup_path.write_text(json.dumps(dedup), encoding="utf-8")
    out = build_copy / "reports" / "review.html"
    review = review_of(build_copy, out, ReviewParams(removed_rows=1))
    assert review.removals_total == 2 and len(review.removals) == 1
    page = out.read_text(encoding="utf-8")
    assert "<b>" not in page
    removals = "".join(
        parse(page[page.index('<section id="removals">') : page.index('<section id="distributions">')]).text
    )
    assert "2 published row(s) are not in this build (v1.0.0); 1 listed." in removals
    assert "2101.00001removednot in this build <b>gone</b>" in removals
    assert "2101.00002" not in removals and "and 1 more in reports/release_diff.json" in removals
    review_of(build_copy, out, ReviewParams())
    page = out.read_text(encoding="utf-8")
    removals = "".join(
        parse(page[page.index('<section id="removals">') : page.index('<section id="distributions">')]).text
    )
    assert "2101.00002mergedmerged into 2101.00003" in removals and "more in" not in removals
    duplicates = "".join(
        parse(page[page.index('<section id="duplicates">') : page.index('<section id="removals">')]).text
    )
    assert "3 with two or more DOIs, 1 with years two or more apart" in duplicates
    assert "1910.13461doi10.1/a, 10.1/<b>acl, s2" in duplicates
    assert "1910.13461year2019, 2021acl, s2" in duplicates
    assert "2 more in reports/dedup.json" in duplicates


def test_seed_page_says_nothing_was_filtered_gone_or_in_conflict(build_copy: Path, tmp_path: Path) -> None:
    review_of(build_copy, tmp_path / "review.html", ReviewParams())
    text = "".join(parse((tmp_path / "review.html").read_text(encoding="utf-8")).text)
    assert "0 of 121 cleaned row(s) dropped by the filter" in text and "No row was filtered." in text
    assert "No published row is removed or merged." in text
    assert "0 with two or more DOIs, 0 with years two or more apart" in text


def test_verdict_from_validation_results() -> None:
    ok = {"success": True, "severity": "critical"}
    warn = {"success": False, "severity": "warning"}
    bad = {"success": False, "severity": "critical"}
    assert verdict_of({"results": [ok, ok]}) == ("PASS", "all 2 expectations passed")
    assert verdict_of({"results": [ok, warn]})[0] == "WARN"
    assert verdict_of({"results": [ok, warn, bad]}) == (
        "FAIL",
        "1 critical expectation(s) failed, 1 warning(s)",
    )
    assert verdict_of(None)[0] == "FAIL"


def test_diff_windows_mark_only_the_change_and_escape_it() -> None:
    before = (
        "We propose <b>X</b> , a method that works well on many benchmarks and other tasks in the long run ."
    )
    after = (
        "We propose <b>X</b>, a method that works well on many benchmarks and other tasks in the long run."
    )
    # Context is counted in tokens (words, spaces, punctuation marks) either side of a change.
    windows = diff_windows(before, after, context=4)
    assert windows == [
        ("&lt;/b&gt;<del>·</del>, a ", "&lt;/b&gt;, a "),
        (" long run<del>·</del>.", " long run."),
    ]
    assert len(diff_windows(before, after, context=4, limit=1)) == 1
    assert diff_windows("Abstract: <i>x</i>", "<i>x</i>") == [
        ("<del>Abstract: </del>&lt;i&gt;x&lt;/i&gt;", "&lt;i&gt;x&lt;/i&gt;")
    ]


def test_missing_report_names_the_file_and_exits_3(
    build_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (build_copy / "reports" / "dedup.json").unlink()
    with pytest.raises(BadInputError, match=r"dedup\.json: report not found; run `dvc repro`"):
        review_of(build_copy, build_copy / "review.html", ReviewParams())
    code = main(["--params", str(REPO_ROOT / "params.yaml"), "review", *review_paths(build_copy)])
    assert code == 3
    assert "dedup.json: report not found" in capsys.readouterr().err
    assert not (build_copy / "reports" / "review.html").exists()


def test_review_params_are_checked() -> None:
    assert parse_params({"review": {"clusters": 3}}).review.clusters == 3
    with pytest.raises(ConfigError, match=r"review\.clusters must be between 0 and 1000, got -1"):
        parse_params({"review": {"clusters": -1}})
    with pytest.raises(ConfigError, match=r"review\.sample: unknown key"):
        parse_params({"review": {"sample": 3}})


def test_dvc_stage_declares_what_the_command_reads_and_writes() -> None:
    stage = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["review"]
    argv = shlex.split(stage["cmd"])
    assert argv[:2] == ["abstracts", "review"]
    args = build_parser().parse_args(argv[1:])
    deps = set(stage["deps"])
    assert {str(args.clean), str(args.release_data), "pipeline/stages/review"} <= deps
    reports = {d for d in deps if d.startswith(f"{args.reports}/")}
    assert {f"{args.reports}/{name}" for name in ("ingest.json", "dedup.json", "split.json")} <= reports
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    assert outs == [str(args.out), str(args.summary)]
    # What the page and the summary read beyond the stage reports: the card stage's version and
    # the metrics stage's funnel.
    assert {f"{args.reports}/card.json", f"{args.reports}/plots/funnel.csv"} <= reports
    assert stage["params"] == ["review", "publish.repo_id"]


# ---------------------------------------------------------------------------------------------
# A real browser: headless Chromium driven through chromedriver (Debian packages).


def test_page_renders_in_headless_chromium_offline(
    build_copy: Path, tmp_path: Path, headless_browser: Any
) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    add_hostile_rows(build_copy)
    # A passing validation, whatever the seed data gives today, to check the PASS badge.
    validation = json.loads((build_copy / "reports" / "validation.json").read_text())
    validation["results"] = [r | {"success": True} for r in validation["results"] if r["suite"] != "<suite>"]
    validation |= {"success": True, "critical_failures": 0, "warnings": 0}
    (build_copy / "reports" / "validation.json").write_text(json.dumps(validation))
    page = build_copy / "reports" / "review.html"
    review_of(build_copy, page, ReviewParams(rows_per_flag=500))

    browser = headless_browser
    browser.get(page.as_uri())
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.is_displayed()
    assert verdict.text == "PASS"
    # The hostile abstract is on the page as text, and its script never ran.
    assert browser.title == "Release review: PASS"
    flagged = browser.find_element(By.ID, "cleaning").get_attribute("textContent") or ""
    assert 'document.title="pwned"' in flagged
    shot = tmp_path / "review.png"
    assert browser.save_screenshot(str(shot))
    rect = verdict.rect
    ratio = browser.execute_script("return window.devicePixelRatio")
    console = browser.get_log("browser")
    requested = requested_urls(browser)

    assert console == []
    assert page.as_uri() in requested  # the network log works: it saw the page itself
    # Only local schemes: the page itself, inline images, and the browser's own chrome:// pages.
    local = ("file:", "data:", "about:", "chrome:", "chrome-untrusted:")
    assert [url for url in requested if not url.startswith(local)] == []
    # The verdict badge is painted in the PASS green where the driver says it is.
    image = Image.open(shot).convert("RGB")
    x, y = int((rect["x"] + 4) * ratio), int((rect["y"] + 4) * ratio)
    red, green, blue = image.getpixel((x, y))  # type: ignore[misc]
    assert green > 110 and red < 80 and blue < 100, (red, green, blue)


def test_validation_links_into_data_docs(build_copy: Path) -> None:
    docs = build_copy / "reports" / "data_docs"
    # A site laid out as GX's own, in place of the pages the validate stage wrote.
    shutil.rmtree(docs, ignore_errors=True)
    (docs / "validations" / "schema").mkdir(parents=True)
    (docs / "index.html").write_text("<html></html>")
    (docs / "validations" / "schema" / "run.html").write_text("<html></html>")
    review = review_of(build_copy, build_copy / "reports" / "review.html", ReviewParams())
    assert review.data_docs[""] == "data_docs/index.html"
    schema = [key for key in review.data_docs if key.split(".")[0] == "schema"]
    assert schema and {review.data_docs[key] for key in schema} == {"data_docs/validations/schema/run.html"}
    page = (build_copy / "reports" / "review.html").read_text(encoding="utf-8")
    assert '<a id="data-docs" href="data_docs/index.html">' in page
    assert '<a href="data_docs/validations/schema/run.html">schema</a>' in page
    # A page per suite and table, as the validate stage names them, wins over a suite folder.
    (docs / "schema.rows.html").write_text("<html></html>")
    links = data_docs_links(docs, build_copy / "reports" / "review.html", ["schema.rows", "schema", "other"])
    assert links == {
        "": "data_docs/index.html",
        "schema.rows": "data_docs/schema.rows.html",
        "schema": "data_docs/validations/schema/run.html",
    }


def test_lengths_compare_with_a_previous_release(build_copy: Path, tmp_path: Path) -> None:
    previous = tmp_path / "previous"
    shutil.copytree(build_copy / "release" / "data", previous)
    out = tmp_path / "review.html"
    paths = (
        build_copy / "reports",
        build_copy / "build" / "clean.parquet",
        build_copy / "build" / "ingested.parquet",
        build_copy / "release" / "data",
    )
    review = run_review(*paths, out, ReviewParams(), previous)
    chars = review.distributions.chars
    assert review.distributions.previous_chars is not None
    assert sorted(review.distributions.previous_chars) == sorted(np.concatenate(list(chars.values())))
    assert "No previous release data" not in out.read_text(encoding="utf-8")
    (previous / "empty").mkdir()
    with pytest.raises(BadInputError, match=r"empty: no parquet files of the previous release"):
        run_review(*paths, out, ReviewParams(), previous / "empty")


def test_release_diff_of_a_first_release_and_of_none(tmp_path: Path) -> None:
    path = tmp_path / "release_diff.json"
    assert read_diff(path, 5) == (None, "1.0.0 (first release)", "no previous release")
    path.write_text(json.dumps({"version": "1.0.0", "previous": None, "added": ["a", "b"], "removed": []}))
    diff, version, previous = read_diff(path, 1)
    assert (version, previous) == ("1.0.0", "no previous release (first release)")
    assert diff is not None and diff["added"] == (2, ["a"]) and diff["moved"] == (0, [])
    path.write_text("{")
    with pytest.raises(BadInputError, match=r"release_diff\.json:1: invalid JSON"):
        read_diff(path, 1)


def test_templates_ship_as_package_data() -> None:
    """Every template the page loads is matched by pyproject's package-data, so a wheel has it."""
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["pipeline.stages.review"]
    package = REPO_ROOT / "pipeline" / "stages" / "review"
    templates = sorted(p.relative_to(package) for p in (package / "templates").iterdir())
    assert [t.name for t in templates] == ["diff.html.j2", "review.html.j2"]
    assert all(any(t.match(pattern) for pattern in patterns) for t in templates)


def test_summary_command_writes_the_markdown_of_the_page(build_copy: Path) -> None:
    """`abstracts review --summary` (the CI job summary and PR comment): the funnel, the checks,
    the diff counts and the next version, from the data the page is rendered from; and with the
    card stage's "unchanged" (a build equal to the last published release), nothing to publish
    on both."""
    reports = build_copy / "reports"
    (reports / "plots").mkdir(exist_ok=True)
    (reports / "plots" / "funnel.csv").write_text(
        "step,rows\nraw records,121\nafter filter,121\nafter dedup,118\nreleased,118\n", encoding="utf-8"
    )
    summary = build_copy / "summary.md"
    command = ["--params", str(REPO_ROOT / "params.yaml"), "review", *review_paths(build_copy)]
    assert main([*command, "--summary", str(summary)]) == 0
    text = summary.read_text(encoding="utf-8")
    validation = json.loads((reports / "validation.json").read_text(encoding="utf-8"))
    passed = sum(1 for r in validation["results"] if r["success"])
    assert text.startswith("### ") and "Next version: **1.0.0**." in text
    assert "| raw records | 121 |\n| after filter | 121 |\n| after dedup | 118 |\n| released | 118 |" in text
    assert f"Checks: {passed} of {len(validation['results'])} expectations passed (0 critical" in text
    assert "Diff: first release, nothing published before: 118 added, 0 removed" in text
    page = (reports / "review.html").read_text(encoding="utf-8")
    assert 'Next version: <strong id="version">1.0.0</strong>' in page

    card = {"status": "unchanged", "version": "1.0.0", "tag": "v1.0.0", "previous": "v1.0.0"}
    (reports / "card.json").write_text(json.dumps(card), encoding="utf-8")
    assert main([*command, "--summary", str(summary)]) == 0
    text = summary.read_text(encoding="utf-8")
    assert "Nothing to publish: this build is **v1.0.0** as published." in text
    assert "Next version" not in text
    page = (reports / "review.html").read_text(encoding="utf-8")
    assert 'Nothing to publish: this build is <strong id="version">1.0.0</strong> as published.' in page
    box = "".join(parse(publish_box(page)).text)
    assert "Nothing: this build is already published as v1.0.0 on " in box
