"""The filter stage: every rule drops real rows it must drop and keeps real rows it must keep.

Fixtures are real texts (tests/data/filter/README.md names where each comes from).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.contracts import CLEAN_SCHEMA, FILTERED_SCHEMA
from pipeline.errors import BadInputError, ConfigError
from pipeline.kernels.measures import measure
from pipeline.params import FilterParams, parse_params
from pipeline.policy import identify
from pipeline.stages.filter.core import (
    LOWERCASED_SOURCE,
    RULE_NAMES,
    brackets_balanced,
    judge,
    truncation,
)
from pipeline.stages.filter.run import run_filter

DATA = Path(__file__).parent / "data" / "filter"
PARAMS = FilterParams()


def _one_line(text: str) -> str:
    """A raw text as clean leaves it: single spaces between words, no line breaks."""
    return " ".join(text.split())


def _snapshot() -> dict[str, dict[str, object]]:
    lines = (DATA / "arxiv_snapshot.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return {row["id"]: row for row in rows}


def _scitldr() -> dict[str, str]:
    lines = (DATA / "scitldr_abstracts.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["paper_id"]: row["abstract"] for row in map(json.loads, lines)}


def _rss(name: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((DATA / "arxiv-rss-json" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _french() -> str:
    page = (DATA / "pasquier2013b_index.md").read_text(encoding="utf-8")
    match = re.search(r'^abstract = "(.*)"$', page, re.M)
    assert match is not None
    return match.group(1)


def frame(
    texts: list[str],
    categories: list[list[str] | None] | None = None,
    flags: list[list[str]] | None = None,
) -> pl.DataFrame:
    """CLEAN_SCHEMA-like rows holding `texts` (with a `categories` column when given)."""
    columns: dict[str, object] = {
        "source": [f"fixture.txt:{i + 1}" for i in range(len(texts))],
        "file": ["fixture.txt"] * len(texts),
        "arxiv_id": [None] * len(texts),
        "abstract": texts,
        "flags": flags if flags is not None else [[] for _ in texts],
    }
    schema: dict[str, pl.DataType] = {"arxiv_id": pl.String(), "flags": pl.List(pl.String())}
    if categories is not None:
        columns["categories"] = categories
        schema["categories"] = pl.List(pl.String())
    return pl.DataFrame(columns, schema_overrides=schema)


def reasons_of(texts: list[str], params: FilterParams = PARAMS, **kwargs: object) -> list[list[str]]:
    verdicts = judge(frame(texts, **kwargs), params)  # type: ignore[arg-type]
    return [verdicts.reasons.get(row, []) for row in range(len(texts))]


def details_of(texts: list[str], params: FilterParams = PARAMS, **kwargs: object) -> list[str]:
    verdicts = judge(frame(texts, **kwargs), params)  # type: ignore[arg-type]
    return [verdicts.details.get(row, "") for row in range(len(texts))]


# --- real English abstracts that no rule may drop --------------------------------------------


def test_no_rule_drops_a_real_english_abstract() -> None:
    """74 SciTLDR abstracts (28 of them without terminal punctuation, several with math,
    `(h, R, t)` and `$[0,1)$`) and the two ML abstracts of the arXiv sample all pass."""
    texts = list(_scitldr().values())
    snapshot = _snapshot()
    ml = [_one_line(str(snapshot[i]["abstract"])) for i in ("0704.0047", "0704.0050")]
    assert reasons_of(texts + ml) == [[] for _ in texts + ml]


# --- placeholder ------------------------------------------------------------------------------


def test_placeholder_drops_real_withdrawal_and_no_abstract_notices() -> None:
    snapshot = _snapshot()
    withdrawn = _one_line(str(snapshot["0704.0156"]["abstract"]))
    no_abstract = _one_line(str(snapshot["0704.0071"]["abstract"]))
    assert withdrawn == "This paper has been withdrawn by the authors."
    reasons = reasons_of([withdrawn, no_abstract])
    assert [r[0] for r in reasons] == ["placeholder", "placeholder"]
    assert details_of([withdrawn])[0] == "notice 'This paper has been withdrawn'"


@pytest.mark.parametrize(
    "notice",
    [
        # Phrasings of arXiv withdrawal comments and of dumps without an abstract.
        "This paper has been withdrawn by the author due to a crucial error in equation 3.",
        "The paper is withdrawn because of an error in Theorem 2.",
        "This paper as been withdrawn",
        "Withdrawn by the authors due to an incomplete approval process",
        "arXiv admin note: this submission has been withdrawn by arXiv administrators",
        "The authors have withdrawn this paper.",
        "Erratum to: Deep residual learning for image recognition",
        "Abstract not available.",
        "No abstract available.",
        "N/A",
        "[No abstract]",
    ],
)
def test_placeholder_drops_each_phrasing(notice: str) -> None:
    assert reasons_of([notice])[0][0] == "placeholder"


def test_placeholder_keeps_a_long_abstract_that_mentions_a_withdrawal() -> None:
    """Only a short text can be a notice: a real abstract quoting one is kept."""
    abstract = next(iter(_scitldr().values()))
    text = "This paper has been withdrawn from many benchmarks, we note. " + abstract
    assert "placeholder" not in reasons_of([text])[0]


# --- too_short / too_long ---------------------------------------------------------------------


def test_too_short_drops_a_real_two_sentence_abstract_and_says_how_short() -> None:
    text = _one_line(str(_snapshot()["0704.0014"]["abstract"]))
    assert reasons_of([text]) == [["too_short"]]
    assert details_of([text]) == [f"{len(text)} chars, {len(text.split())} words (min 200 chars, 20 words)"]
    # The floor is a param.
    assert reasons_of([text], dataclasses.replace(PARAMS, min_chars=100, min_words=10)) == [[]]


def test_too_long_drops_abstracts_run_into_the_body() -> None:
    texts = list(_scitldr().values())
    body = " ".join(texts[:8])
    assert len(body) > PARAMS.max_chars
    assert reasons_of([body, texts[0]]) == [["too_long"], []]
    assert details_of([body])[0].endswith("(max 5000 chars, 1000 words)")


# --- truncated --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("2301.00006", "ends inside a word ('infe', as of"),
        ("2301.00016", "ends inside a word ('physiolog', as of"),
        ("2301.00277", "ends inside a word ('justif', as of"),
        ("2301.00452", "ends inside a word ('improveme', as of"),
        ("2301.00051", "ends after 'of', without terminal punctuation"),
        ("2301.00389", "ends after 'between', without terminal punctuation"),
        ("2301.00489", "ends after 'an', without terminal punctuation"),
        ("2301.00068", "ends inside a word ('se')"),
    ],
)
def test_truncated_drops_real_abstracts_cut_by_a_scraper(name: str, why: str) -> None:
    text = _rss(name)["abstract"]
    assert reasons_of([text])[0] == ["truncated"]
    assert details_of([text])[0].startswith(why)


def test_truncated_keeps_real_ends_and_unsure_ends() -> None:
    # A full stop; a URL with its full stop; "... for accurate and fast", which may be an end.
    texts = [_rss(name)["abstract"] for name in ("2301.00200", "2301.00508", "2301.00270")]
    assert reasons_of(texts) == [[], [], []]
    # Real ends without terminal punctuation: a URL, a rare word ("biological plausibility").
    assert truncation("ML ideas in terms of their biological plausibility", 3.0) is None
    assert truncation("code at sites.google.com/view/action-generalization/", 3.0) is None


def test_truncated_drops_an_ellipsis_end() -> None:
    text = _rss("2301.00200")["abstract"].rstrip(".") + "..."
    assert reasons_of([text])[0] == ["truncated"]
    assert truncation(text, 3.0) == "ends with '...'"


# --- not_english ------------------------------------------------------------------------------


def test_not_english_drops_real_french_and_chinese_abstracts() -> None:
    chinese = _rss("2301.00006")["translated_abstract"]
    texts = [_french(), chinese]
    assert [r[0] for r in reasons_of(texts)] == ["not_english", "not_english"]
    french_detail, chinese_detail = details_of(texts)
    assert french_detail.startswith("py3langid: fr ")
    assert chinese_detail.startswith("py3langid: zh ")


def test_not_english_keeps_all_caps_and_lower_cased_english() -> None:
    abstracts = list(_scitldr().values())[:10]
    texts = [a.upper() for a in abstracts] + [a.lower() for a in abstracts]
    assert reasons_of(texts) == [[] for _ in texts]
    # The identifier itself is case-insensitive, not just spared by the function-word count.
    assert all(identify(a.upper())[0] == "en" for a in abstracts)


def test_not_english_keeps_math_heavy_english() -> None:
    snapshot = _snapshot()
    texts = [_one_line(str(snapshot[i]["abstract"])) for i in ("0704.0002", "0704.0005", "0704.0010")]
    assert ["not_english" in r for r in reasons_of(texts)] == [False, False, False]


def test_an_unsure_identifier_keeps_the_row_and_counts_it() -> None:
    # The French paper's title (same file): short, so the identifier is less than sure.
    title = "Extraction de motifs fréquents dans des arbres attribués"
    label, probability = identify(title)
    assert label == "fr" and probability < 0.999
    sure = judge(frame([title]), dataclasses.replace(PARAMS, language_min_confidence=probability))
    assert "not_english" in sure.reasons[0] and sure.language_unsure == 0
    unsure = judge(frame([title]), dataclasses.replace(PARAMS, language_min_confidence=0.999))
    assert "not_english" not in unsure.reasons[0] and unsure.language_unsure == 1
    assert unsure.language_scored == 1


# --- off_topic --------------------------------------------------------------------------------


def test_off_topic_drops_physics_and_math_and_keeps_ml() -> None:
    snapshot = _snapshot()
    ids = ["0704.0001", "0704.0002", "0704.0047", "0704.0050"]
    texts = [_one_line(str(snapshot[i]["abstract"])) for i in ids]
    categories: list[list[str] | None] = [str(snapshot[i]["categories"]).split() for i in ids]
    reasons = reasons_of(texts, categories=categories)
    assert [("off_topic" in r) for r in reasons] == [True, True, False, False]
    assert details_of(texts, categories=categories)[0] == "categories hep-ph; none on filter.topics"


def test_off_topic_passes_rows_without_categories_and_fields_of_study() -> None:
    text = next(iter(_scitldr().values()))
    categories: list[list[str] | None] = [None, [], ["Computer Science", "Medicine"], ["cs.lg"], ["Medicine"]]
    reasons = reasons_of([text] * 5, categories=categories)
    assert reasons == [[], [], [], [], ["off_topic"]]
    # No `categories` column at all (a cleaned file from before the column): every row passes.
    assert reasons_of([text]) == [[]]


# --- markup_junk ------------------------------------------------------------------------------


def test_markup_junk_drops_a_real_page_and_a_real_script() -> None:
    page = _one_line((DATA / "cra_index.html").read_text(encoding="utf-8"))
    script = _one_line((DATA / "analytics.js").read_text(encoding="utf-8"))
    texts = [page, script]
    assert [r[0] for r in reasons_of(texts)] == ["markup_junk", "markup_junk"]
    page_detail, script_detail = details_of(texts)
    assert "<!--" in page_detail and "page boilerplate" in page_detail
    assert "function(){" in script_detail


def test_markup_junk_keeps_physics_arrows_and_math() -> None:
    """`D0 --> K- e+ nue` is a decay, `<` and `{` are math: no markup."""
    snapshot = _snapshot()
    texts = [_one_line(str(snapshot[i]["abstract"])) for i in ("0704.0020", "0704.0005", "0704.0002")]
    assert ["markup_junk" in r for r in reasons_of(texts)] == [False, False, False]


# --- mostly_non_text --------------------------------------------------------------------------


def test_mostly_non_text_drops_a_list_of_ids_and_keeps_math() -> None:
    # A list of ids and counts (a release diff report) scraped as if it were an abstract.
    table = _one_line((DATA / "release_diff.json").read_text(encoding="utf-8"))
    snapshot = _snapshot()
    # The most symbol-heavy abstract of the 200 of the arXiv sample (16% digits and symbols).
    math = _one_line(str(snapshot["0704.0200"]["abstract"]))
    reasons = reasons_of([table, math])
    assert reasons[0][0] == "mostly_non_text"
    assert "mostly_non_text" not in reasons[1]
    assert re.fullmatch(r"digits and symbols \d+% of \d+ chars \(max 30%\)", details_of([table])[0])


# --- every rule has a reason and a param ------------------------------------------------------


def test_every_rule_is_reported_and_its_params_exist() -> None:
    from pipeline.stages.filter.core import RULES

    assert RULE_NAMES == (
        "placeholder",
        "markup_junk",
        "mostly_non_text",
        "not_english",
        "off_topic",
        "too_short",
        "too_long",
        "truncated",
    )
    fields = {f.name for f in dataclasses.fields(FilterParams)}
    for rule in RULES:
        assert rule.reason and rule.params
        assert set(rule.params) <= fields


# --- flags ------------------------------------------------------------------------------------


def test_brackets_ignore_math_intervals_and_complexity() -> None:
    scitldr = _scitldr()
    for paper in ("SkxbDsR9Ym", "rkeNfp4tPr", "rkg8FJBYDS", "H1l0O6EYDH", "HkxGaeHKvB"):
        assert brackets_balanced(scitldr[paper]), paper
    assert brackets_balanced("runs in O(n log n) time and O(log n) memory on [0, 1) and (0, 1].")
    assert brackets_balanced("we propose a) a bound and b) an algorithm ($f(x) \\in [0,1)$).")
    assert not brackets_balanced("the loss (which we bound is convex.")
    assert not brackets_balanced("the loss which we bound] is convex.")


def test_filter_clears_clean_false_bracket_flag_and_adds_lowercased_source() -> None:
    scitldr = _scitldr()
    # Clean flags SkxbDsR9Ym: "(h, R, t) and" looks like a list item "t) " to its count.
    texts = [scitldr["SkxbDsR9Ym"], scitldr["BJDEbngCZ"].lower(), "The loss (which we bound is convex. " * 6]
    flags = [["unbalanced_brackets", "url"], ["non_english"], []]
    verdicts = judge(frame(texts, flags=flags), PARAMS)
    assert verdicts.flags.to_list() == [["url"], [LOWERCASED_SOURCE], ["unbalanced_brackets"]]
    assert verdicts.flags_cleared == {"unbalanced_brackets": 1, "non_english": 1}
    assert verdicts.flags_added == {"unbalanced_brackets": 1, "non_english": 0, LOWERCASED_SOURCE: 1}


# --- measures ---------------------------------------------------------------------------------


def test_measures_count_like_polars_and_validate() -> None:
    texts = [*list(_scitldr().values())[:20], _french(), _rss("2301.00006")["translated_abstract"], ""]
    m = measure(pa.array(texts, pa.string()))
    series = pl.Series(texts)
    assert m.chars.tolist() == series.str.len_chars().to_list()
    assert m.words.tolist() == [t.count(" ") + 1 if t else 0 for t in texts]
    assert m.round_balance.tolist() == [t.count("(") - t.count(")") for t in texts]
    sample = measure(pa.array(["The cat sat on THE mat, für x1 and it's ok."]))
    # The, on, THE, and, it: "für" and "x1" are no function words.
    assert sample.function_words.tolist() == [5]


# --- the stage --------------------------------------------------------------------------------


def _cleaned_file(path: Path, texts: list[str], sources: list[str]) -> Path:
    rows = len(texts)
    known = {"source", "file", "line", "format", "raw_id", "arxiv_id", "arxiv_version"}
    known |= {"abstract", "clean_rules", "flags", "text_hash"}
    # The paper's metadata and provenance columns: null, as for a text dump.
    metadata = {f.name: [None] * rows for f in CLEAN_SCHEMA if f.name not in known}
    table = pa.table(
        {
            **metadata,
            "source": sources,
            "file": [s.rsplit(":", 1)[0] for s in sources],
            "line": list(range(1, rows + 1)),
            "format": ["jsonl"] * rows,
            "raw_id": [None] * rows,
            "arxiv_id": [f"0704.{i:04d}" for i in range(rows)],
            "arxiv_version": [1] * rows,
            "abstract": texts,
            "clean_rules": [[] for _ in texts],
            "flags": [["unbalanced_brackets"] if i == 0 else [] for i in range(rows)],
            "text_hash": [f"{i:016x}" for i in range(rows)],
        },
        schema=CLEAN_SCHEMA,
    )
    pq.write_table(table, path, row_group_size=3)
    return path


def test_run_filter_writes_kept_filtered_and_counts_that_add_up(tmp_path: Path) -> None:
    scitldr = list(_scitldr().values())
    snapshot = _snapshot()
    texts = [
        scitldr[0],
        _one_line(str(snapshot["0704.0156"]["abstract"])),
        scitldr[1],
        _french(),
        scitldr[2],
        _rss("2301.00006")["abstract"],
        scitldr[3],
    ]
    sources = ["a.jsonl:1", "a.jsonl:2", "a.jsonl:3", "b.jsonl:1", "b.jsonl:2", "b.jsonl:3", "b.jsonl:4"]
    cleaned = _cleaned_file(tmp_path / "clean.parquet", texts, sources)
    out, filtered_path, report_path = (
        tmp_path / name for name in ("filter.parquet", "filtered.parquet", "f.json")
    )
    report = run_filter(cleaned, out, filtered_path, report_path, dataclasses.replace(PARAMS, batch_rows=2))

    kept = pq.read_table(out)
    assert kept.schema.equals(CLEAN_SCHEMA)
    assert kept.column("source").to_pylist() == ["a.jsonl:1", "a.jsonl:3", "b.jsonl:2", "b.jsonl:4"]
    # The first row's flag was clean's false alarm: the filter's file holds the re-judged flags.
    assert kept.column("flags").to_pylist()[0] == []
    filtered = pq.read_table(filtered_path)
    assert filtered.schema.equals(FILTERED_SCHEMA)
    assert filtered.column("source").to_pylist() == ["a.jsonl:2", "b.jsonl:1", "b.jsonl:3"]
    assert filtered.column("reason").to_pylist() == ["placeholder", "not_english", "truncated"]
    assert filtered.column("id").to_pylist() == ["0704.0001", "0704.0003", "0704.0005"]
    assert filtered.column("abstract").to_pylist() == [texts[1], texts[3], texts[5]]
    assert all(filtered.column("detail").to_pylist())

    assert json.loads(report_path.read_text()) == report
    assert (report["rows"], report["kept"], report["filtered"]) == (7, 4, 3)
    assert sum(rule["filtered"] for rule in report["rules"].values()) == 3
    assert report["rules"]["placeholder"]["examples"] == ["a.jsonl:2"]
    assert report["sources"] == {
        "a.jsonl": {"rows": 3, "kept": 2, "filtered": 1, "by_rule": {"placeholder": 1}},
        "b.jsonl": {"rows": 4, "kept": 2, "filtered": 2, "by_rule": {"not_english": 1, "truncated": 1}},
    }
    assert report["flags"]["cleared"]["unbalanced_brackets"] == 1


def test_run_filter_on_a_missing_or_foreign_file_is_one_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "filter.parquet"
    with pytest.raises(BadInputError, match=r"cleaned parquet not found; run `abstracts clean` first"):
        run_filter(tmp_path / "nope.parquet", out, tmp_path / "f.parquet", tmp_path / "f.json", PARAMS)
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"source": ["x:1"]}), foreign)
    with pytest.raises(BadInputError, match=r"missing column\(s\) file, arxiv_id, abstract, flags"):
        run_filter(foreign, out, tmp_path / "f.parquet", tmp_path / "f.json", PARAMS)
    assert not out.exists()


def test_filter_params_are_checked() -> None:
    params = parse_params({"filter": {"min_chars": 100, "topics": ["cs.LG"]}})
    assert params.filter.min_chars == 100 and params.filter.topics == ("cs.LG",)
    with pytest.raises(ConfigError, match=r"filter\.min_word: unknown key"):
        parse_params({"filter": {"min_word": 3}})
    with pytest.raises(ConfigError, match=r"filter\.language_min_confidence must be between 0 and 1"):
        parse_params({"filter": {"language_min_confidence": 2}})


def test_run_filter_output_does_not_depend_on_batches_or_threads(tmp_path: Path) -> None:
    scitldr = _scitldr()
    texts = [scitldr["SkxbDsR9Ym"], _french(), *list(scitldr.values())[:5], scitldr["BJDEbngCZ"].lower()]
    sources = [f"a.jsonl:{i + 1}" for i in range(len(texts))]
    cleaned = _cleaned_file(tmp_path / "clean.parquet", texts, sources)
    tables = []
    for workers, batch_rows in ((1, 1), (2, 3), (2, 50)):
        out = tmp_path / f"out-{workers}-{batch_rows}.parquet"
        params = dataclasses.replace(PARAMS, workers=workers, batch_rows=batch_rows)
        run_filter(cleaned, out, tmp_path / "f.parquet", tmp_path / "f.json", params)
        tables.append(pq.read_table(out))
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])
    flags = tables[0].column("flags").to_pylist()
    assert flags[0] == [] and flags[-1] == [LOWERCASED_SOURCE]


def test_abstracts_filter_reports_a_missing_input_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    missing = tmp_path / "clean.parquet"
    paths = {
        "--in": missing,
        "--out": tmp_path / "o",
        "--filtered": tmp_path / "f",
        "--report": tmp_path / "r",
    }
    code = main(["filter", *(part for flag, path in paths.items() for part in (flag, str(path)))])
    assert code == BadInputError.exit_code
    err = capsys.readouterr().err
    assert f"abstracts filter: error: {missing}: cleaned parquet not found" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "sentence",
    [
        "Prior work was replaced by a learned module in our pipeline.",
        "The method needs no abstract syntax tree of the program.",
        "Patients withdrawn from the study were excluded from the analysis.",
    ],
)
def test_placeholder_keeps_sentences_that_only_sound_like_a_notice(sentence: str) -> None:
    abstract = next(iter(_scitldr().values()))
    short = " ".join(abstract.split()[:40]) + " " + sentence
    assert "placeholder" not in reasons_of([short])[0]
