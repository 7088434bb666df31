"""Hostile text in a title, an abstract and a rejected line, through the real commands that
render it (as `dvc.yaml` calls them, on a copy of the built seed project): the review page, its
Markdown summary for a PR comment, the dataset card and the Data Docs pages show it as text. No
tag from the data reaches the markup, `{{ 7*7 }}` is not evaluated, a Markdown link in the data
is no link, and the card's YAML header still parses with its keys.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO_ROOT
from forkserver import StageServer

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
TITLE = (
    '<script>alert("title")</script> "><img src=x onerror=alert(1)> {{ 7*7 }} [click me](javascript:alert(2))'
)
ABSTRACT = (
    "---\ntitle: injected\nlicense: none\n---\n"
    '<script>alert("abstract")</script> "><img src=x onerror=alert(3)> {{ 7*7 }} {% if true %}yes{% endif %} '
    "[a link](https://evil.example/) We study how a small change to the training objective of a language "
    "model changes what it learns from noisy labels, and show on three benchmarks that it helps."
)
REJECTED = '<script>alert("reject")</script> "><img src=x onerror=alert(4)> {{ 7*7 }}'
# Markup that must never appear as markup in a rendered page.
LIVE = [
    re.compile(r"<script>alert\("),
    re.compile(r"<img src=x", re.IGNORECASE),
    re.compile(r"onerror=alert\(\d\)>"),
    re.compile(r'href="javascript:', re.IGNORECASE),
    re.compile(r'href="https://evil\.example'),
]


def replace_file(path: Path, write: object) -> None:
    tmp = path.with_name(path.name + ".edit")
    write(tmp)  # type: ignore[operator]
    os.replace(tmp, path)  # a new inode: release/ hard-links the candidate's files


@pytest.fixture(scope="module")
def hostile_project(
    built_seed_project: Path, tmp_path_factory: pytest.TempPathFactory, stage_server: StageServer
) -> Path:
    root = tmp_path_factory.mktemp("escaping") / "project"
    shutil.copytree(built_seed_project, root, symlinks=True)
    shard = root / "build" / "release" / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[0] |= {"title": TITLE, "abstract": ABSTRACT}
    replace_file(shard, lambda tmp: pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp))
    rejects = root / "reports" / "rejects.jsonl"
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    lines[0]["content"] = REJECTED
    rejects.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for stage in ("validate", "card", "release_diff", "review"):
        result = stage_server.run(STAGES[stage]["cmd"], root)
        assert result.returncode == 0, f"{stage}: {result.stderr[-3000:]}"
    return root


def assert_inert(text: str, where: str) -> None:
    for pattern in LIVE:
        assert not pattern.search(text), f"{where}: live markup from the data: {pattern.pattern}"


def test_review_page_shows_hostile_text_as_text(hostile_project: Path) -> None:
    page = (hostile_project / "reports" / "review.html").read_text(encoding="utf-8")
    assert_inert(page, "review.html")
    assert "&lt;script&gt;alert(" in page, "the hostile text is not on the page at all"
    assert "{{ 7*7 }}" in page


def test_review_markdown_summary_is_inert(hostile_project: Path, stage_server: StageServer) -> None:
    result = stage_server.run(STAGES["review"]["cmd"] + " --markdown", hostile_project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_inert(result.stdout, "review --markdown")
    assert "<script" not in result.stdout


def test_card_shows_hostile_text_as_text_and_its_header_parses(
    hostile_project: Path, built_seed_project: Path
) -> None:
    def header(card: str) -> dict[str, object]:
        match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
        assert match, card[:300]
        return dict(yaml.safe_load(match.group(1)))

    card = (hostile_project / "build" / "release" / "README.md").read_text(encoding="utf-8")
    original = header((built_seed_project / "build" / "release" / "README.md").read_text(encoding="utf-8"))
    hostile = header(card)
    # Sizes differ (the edited shard is compressed differently); every key and value else is kept.
    assert set(hostile) == set(original), "the hostile row changed the card's YAML header"
    assert {k: v for k, v in hostile.items() if k != "dataset_info"} == {
        k: v for k, v in original.items() if k != "dataset_info"
    }
    body = card[card.index("\n---\n", 4) + 5 :]
    assert_inert(body, "README.md")
    assert "<script" not in body and "<img" not in body
    assert "\n---\ntitle: injected" not in body, "a YAML block from the data starts a line of the card"
    # A link needs an unescaped `](`: the card escapes the brackets of text from the data.
    assert not re.search(r"(?<!\\)\]\((?:javascript:|https://evil)", body), "a link from the data"
    assert "&lt;script&gt;alert(" in body, "the example row is not in the card"
    assert "7\\*7" in body or "7*7" in body
    assert json.loads((hostile_project / "build" / "release" / "croissant.json").read_text())


def test_data_docs_show_hostile_text_as_text(hostile_project: Path) -> None:
    """validate ran on the hostile release; no page carries live markup from it."""
    pages = sorted((hostile_project / "reports" / "data_docs").glob("*.html"))
    assert pages
    text = {page.name: page.read_text(encoding="utf-8") for page in pages}
    for name, html in text.items():
        assert_inert(html, name)
    # Where a page shows the values (an expectation that failed on them), they are escaped text.
    for html in text.values():
        if "alert(" in html:
            assert "&lt;script&gt;" in html or "&lt;img" in html
