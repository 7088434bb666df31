from __future__ import annotations

import html
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.contracts import RECORD_SCHEMA
from pipeline.params import CleanParams, IngestParams
from pipeline.stages.clean.core import (
    _LEFT,
    _RIGHT,
    CLEAN_SCHEMA,
    RULES,
    _bounded,
    _contains_bounded,
    _is_bounded,
    _may_normalise,
    _padded,
    _rewrite_rows,
    clean_batch,
    run_clean,
)
from pipeline.stages.clean.report import _rule_examples
from pipeline.stages.ingest.core import run_ingest

REPO = Path(__file__).resolve().parent.parent
SCITLDR = REPO.parent / "shared" / "corpora" / "scitldr_train_abstracts.jsonl"
DATA = Path(__file__).resolve().parent / "data" / "clean"


_TEXT_DUMP_COLUMNS = ("source", "file", "line", "format", "raw_id", "arxiv_id", "arxiv_version", "raw_text")


def records(*texts: str) -> pa.RecordBatch:
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {
            "source": [f"t.txt:{i + 1}" for i in range(n)],
            "file": ["t.txt"] * n,
            "line": list(range(1, n + 1)),
            "format": ["abstract_lines"] * n,
            "raw_id": [None] * n,
            "arxiv_id": [None] * n,
            "arxiv_version": [None] * n,
            "raw_text": list(texts),
            # The metadata columns ingest adds (null for a text dump).
            **{name: [None] * n for name in RECORD_SCHEMA.names[8:]},
        },
        schema=RECORD_SCHEMA,
    )


def clean_one(text: str) -> dict[str, Any]:
    out = clean_batch(records(text), CleanParams(min_chars=10))
    assert out.schema == CLEAN_SCHEMA
    row: dict[str, Any] = out.to_pylist()[0]
    return row


@pytest.mark.parametrize(
    ("raw", "clean", "rules"),
    [
        ("Abstract:We study X.", "We study X.", ["strip_prefix"]),
        ("ABSTRACT We study X.", "We study X.", ["strip_prefix"]),
        ("Abstract reasoning is hard.", "Abstract reasoning is hard.", []),
        ("We study X. |", "We study X.", ["table_residue"]),
        ("We study X. | |", "We study X.", ["table_residue"]),
        ("We study\nX  and Y.", "We study X and Y.", ["whitespace"]),
        ("We study\u00a0X\u200b.", "We study X.", ["unicode"]),
        ("words (\x18~600 sentences).", "words (~600 sentences).", ["unicode"]),
        ("language (NLU) . We", "language (NLU). We", ["empty_citation"]),
        ("as in ( ) prior work , we", "as in prior work, we", ["empty_citation"]),
        ("on .NET and 0.5 .", "on .NET and 0.5.", ["empty_citation"]),
        ("large models (e.g., , ) and (see ; ) work.", "large models and work.", ["empty_citation"]),
        (
            "Prior work (see Section 3) and (e.g., BERT) (e.g.) .",
            "Prior work (see Section 3) and (e.g., BERT).",
            ["empty_citation"],
        ),
        # dehyphenate: a word broken at a line end is rejoined; compounds are kept.
        ("The approach incor-porates a detector.", "The approach incorporates a detector.", ["dehyphenate"]),
        (
            "The approach incor-\nporates a detector.",
            "The approach incorporates a detector.",
            ["whitespace", "dehyphenate"],
        ),
        ("The approach incor- porates a detector.", "The approach incorporates a detector.", ["dehyphenate"]),
        ("A state-of-the-art, task-specific, zero-shot GPT-4 model.", None, []),
        ("We re-use non-linear co-ordinate data- and model-parallel nets.", None, []),
        # footnotes
        ("The debut of ChatGPT111 drawn attention.", "The debut of ChatGPT drawn attention.", ["footnotes"]),
        ("We win.111Code is available at", "We win.", ["footnotes"]),
        ("We win.111Code is available at We also test.", "We win. We also test.", ["footnotes"]),
        ("We win.111Samples are online.We also test.", "We win. We also test.", ["footnotes"]),
        ("Data for 1.3B models.111", "Data for 1.3B models.", ["footnotes"]),
        ("Yao\u2020 and Li\u2217 propose X.", "Yao and Li propose X.", ["footnotes"]),
        ("We win.00footnotetext:\u2217Work done at X AI. More.", "We win. More.", ["footnotes"]),
        ("The Si(111) surface and ResNet-111 models.", None, []),
        # dangling_link
        ("We win. The Python code is available at", "We win.", ["dangling_link"]),
        ("We win. Our codes and data are available at Github :", "We win.", ["dangling_link"]),
        ("We win. Audio samples can be heard athttps://", "We win.", ["dangling_link"]),
        ("We win. Please visit our page:", "We win.", ["dangling_link"]),
        ("We look at the problem we start from", None, []),
        ("We win. Audio samples are available at our demo", "We win.", ["dangling_link"]),
        ("We win. Source code and audio examples are available online", "We win.", ["dangling_link"]),
        # glued_words
        ("We proposeReflexion, a framework.", "We propose Reflexion, a framework.", ["glued_words"]),
        (
            "Results show thatHyDEsignificantly helps.",
            "Results show that HyDE significantly helps.",
            ["glued_words"],
        ),
        ("A hotword isusually used.", "A hotword is usually used.", ["glued_words"]),
        # a sentence or a name glued to the next word; names, paths and compounds kept
        ("We win.We also lose (e.g.BERT).", "We win. We also lose (e.g. BERT).", ["glued_words"]),
        (
            "On the ImageNetbenchmark, T5is fast.",
            "On the ImageNet benchmark, T5 is fast.",
            ["glued_words"],
        ),
        ("Toavoid this, we win.", "To avoid this, we win.", ["glued_words"]),
        (
            "Tasks (e.g.,arithmetic) and i.e.,the rest.",
            "Tasks (e.g., arithmetic) and i.e., the rest.",
            ["glued_words"],
        ),
        ("In this paper,we win,lose,or draw.", "In this paper, we win, lose, or draw.", ["glued_words"]),
        # a two-letter word between commas: its letters belong to two matches, so two rounds
        ("Turn it on,up,off again.", "Turn it on, up, off again.", ["glued_words"]),
        ("Pairs (s,a), 1,000 rows, CO2,NO2 and x,y.", None, []),
        ("UltraFeedback, LibriSpeech, seq2slate, U.S.Army, arXiv.Org and github.com/Org/Repo.", None, []),
        (
            "Benchmarks focused onshorttexts, such as X.",
            "Benchmarks focused on short texts, such as X.",
            ["glued_words"],
        ),
        ("ChatGPT, GPT-4, LLaMA, BERT, HumanEval at 48kHz, nDCG, iPhone, DeepNorm.", None, []),
        ("We use softmax, pretraining, timesteps, miniImageNet, signSGD and fastText.", None, []),
        # LaTeX is converted; the path and the hyphenated compound are left alone.
        (
            "See \\textit{ours} at github.com/antoyang/x and leaveone-out.",
            "See ours at github.com/antoyang/x and leaveone-out.",
            ["latex"],
        ),
    ],
)
def test_rules(raw: str, clean: str | None, rules: list[str]) -> None:
    row = clean_one(raw)
    assert row["abstract"] == (raw if clean is None else clean)
    assert row["clean_rules"] == rules


def test_flags_and_hash() -> None:
    row = clean_one("Short and cut")
    assert row["flags"] == ["truncated"]
    assert clean_one("See https://x.org for code.")["flags"] == ["url"]
    assert clean_one("A link was cut (see and the end.")["flags"] == ["unbalanced_brackets"]
    assert clean_one("We show a) that X and b) that Y (see Z), 1) this and 2) that.")["flags"] == []
    assert clean_one("We introduceiris, a data-efficient agent.")["flags"] == ["possible_glued_word"]
    german = (
        "Wir stellen ein neues Verfahren zur Zusammenfassung vor, das auf grossen Sprachmodellen "
        "beruht und in vielen Aufgaben bessere Ergebnisse liefert als bisherige Ansätze ohne Training."
    )
    assert clean_one(german)["flags"] == ["non_english"]
    # Case, punctuation and spacing do not change the text hash used for exact duplicates.
    assert clean_one("We Study X, and Y.")["text_hash"] == clean_one("we study x and y")["text_hash"]
    assert clean_one("We study X.")["text_hash"] != clean_one("We study Y.")["text_hash"]
    # The hash folds Unicode compatibility forms and non-ASCII punctuation like ASCII text.
    assert clean_one("\ufb01ne \u2013 tuning.")["text_hash"] == clean_one("fine tuning")["text_hash"]


@pytest.fixture(scope="module")
def seed_rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The real seed dumps, ingested and cleaned."""
    tmp = tmp_path_factory.mktemp("seed")
    run_ingest(REPO / "raw", tmp / "in.parquet", tmp / "rejects.jsonl", tmp / "ingest.json", IngestParams())
    batch = pq.read_table(tmp / "in.parquet").combine_chunks().to_batches()[0]
    raw_texts = batch.column("raw_text").to_pylist()
    cleaned = clean_batch(batch, CleanParams()).to_pylist()
    return [{**row, "raw_text": raw} for row, raw in zip(cleaned, raw_texts, strict=True)]


def seed_row(rows: list[dict[str, Any]], snippet: str) -> dict[str, Any]:
    found = [row for row in rows if snippet in row["raw_text"]]
    assert len(found) == 1, f"{snippet!r} is in {len(found)} seed rows"
    return found[0]


@pytest.mark.parametrize(
    ("snippet", "rule", "present", "absent"),
    [
        ("incor-porates", "dehyphenate", "approach incorporates the", "incor-"),
        ("isusually", "glued_words", "hotword is usually used", "isusually"),
        ("proposeReflexion", "glued_words", "We propose Reflexion, a", "proposeReflexion"),
        ("thatHyDEsignificantly", "glued_words", "show that HyDE significantly outperforms", "thatHyDE"),
        ("onshorttexts", "glued_words", "focused on short texts", "onshorttexts"),
        ("ChatGPT111", "footnotes", "the debut of ChatGPT drawn", "ChatGPT111"),
        ("available online111", "footnotes", "magnitude.", "111"),
        ("scales111Code", "footnotes", "different model scales", "Code is available"),
        ("ja) .111No models", "footnotes", "languages (e.g. sw, ko, ja).", "No models were trained"),
        ("00footnotetext", "footnotes", "with information retrieval.", "Samaya"),
        ("agents.111Our code and data are available at Github", "footnotes", "science agents.", "Github"),
        ("speed.111Code available at,", "footnotes", "fast generation speed.", "GeDi-guided"),
        ("we release our code and models at |", "dangling_link", "without lookahead search.", "release our"),
        ("The Python code is available at |", "dangling_link", "bridge inference.", "Python code"),
        ("available at Github : |", "footnotes", "closed-source models.", "Github"),
        ("heard athttps://", "dangling_link", "conditioning.", "heard"),
        ("Please visit our page: |", "dangling_link", "conditional sampling.", "visit"),
        ("(NLU) . However", "empty_citation", "understanding (NLU). However", "(NLU) ."),
        ("from Reddit. |", "table_residue", "answer from Reddit.", "|"),
        ("e.g.InstructGPT", "glued_words", "(e.g. InstructGPT)", "e.g.InstructGPT"),
        ("network.The", "glued_words", "network. The", "network.The"),
        ("ImageNetbenchmark", "glued_words", "ImageNet benchmark", "ImageNetbenchmark"),
        ("DeepNetfor", "glued_words", "DeepNet for", "DeepNetfor"),
        ("computation.CoCoNetenabled", "glued_words", "computation. CoCoNet enabled", "CoCoNetenabled"),
        ("Toavoid", "glued_words", "To avoid", "Toavoid"),
        ("(e.g.,arithmetic reasoning)", "glued_words", "(e.g., arithmetic reasoning)", "e.g.,arithmetic"),
        ("adapters,no", "glued_words", "unlike adapters, no additional", "adapters,no"),
        ("Moreover,CoLT5can", "glued_words", "Moreover, CoLT5 can effectively", "CoLT5can"),
        ("thePreconditioner\u2019s", "glued_words", "in the Preconditioner\u2019s eigenbasis", "thePrecon"),
    ],
)
def test_seed_repairs(
    seed_rows: list[dict[str, Any]], snippet: str, rule: str, present: str, absent: str
) -> None:
    row = seed_row(seed_rows, snippet)
    assert rule in row["clean_rules"], row["source"]
    assert present in row["abstract"], row["source"]
    assert absent not in row["abstract"], row["source"]


def test_seed_names_and_compounds_are_kept(seed_rows: list[dict[str, Any]]) -> None:
    text = " ".join(row["abstract"] for row in seed_rows)
    for name in ("ChatGPT", "GPT-4", "HumanEval", "DeepNorm", "state-of-the-art", "zero-shot", "nDCG", "kHz"):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w])", text), name
    assert seed_row(seed_rows, "we introduceiris")["flags"].count("possible_glued_word") == 1


def _without_markup(text: str) -> str:
    """Text with its HTML/XML and text-mode LaTeX markup taken out, accents and dashes folded:
    what a markup-to-text conversion may change (worked out here independently of clean)."""
    text = html.unescape(re.sub(r"</?[A-Za-z][^<>]*>", "", text))
    text = re.sub(r"\\(LaTeX|TeX|L|l|o|O|ss)(?![A-Za-z])(?:\{\})?", r"\1", text)
    text = text.translate(
        str.maketrans({"\u0141": "L", "\u0142": "l", "\u00d8": "O", "\u00f8": "o", "\u00df": "ss"})
    )
    text = re.sub(r"\\[\'\"`^~=.](?=[{A-Za-z\\])|\\[uvHckrdbt](?=\{)", "", text)
    text = re.sub(r"\\(?:[A-Za-z]+\s*|([%&$#_{}]))", lambda m: m.group(1) or "", text)
    text = text.replace("{", "").replace("}", "").replace("~", " ")
    text = (
        text.replace("---", "\u2014").replace("--", "\u2013").replace("``", "\u201c").replace("''", "\u201d")
    )
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _visible(text: str) -> str:
    """Text up to whitespace, Unicode normalisation, markup and line-break hyphens (layout, not words)."""
    text = unicodedata.normalize("NFC", _without_markup(text))
    text = re.sub(r"[\u00ad\u200b-\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)
    text = re.sub(r"(?<=\w)-\s+(?=\w)", "", text)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r" ([,.;:])", r"\1", text).strip()


def test_precision_on_clean_real_abstracts() -> None:
    """No real abstract changes beyond whitespace, Unicode and markup, bar reviewed damage."""
    texts = [json.loads(line)["abstract"] for line in SCITLDR.read_text(encoding="utf-8").splitlines()]
    reviewed = {
        int(line.split("\t")[0])
        for line in (DATA / "scitldr_reviewed_repairs.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    rows = [
        {**row, "raw_text": raw}
        for row, raw in zip(clean_batch(records(*texts), CleanParams()).to_pylist(), texts, strict=True)
    ]
    changed = [
        (i + 1, row) for i, row in enumerate(rows) if _visible(row["raw_text"]) != _visible(row["abstract"])
    ]
    for line, row in changed:
        before, after = _visible(row["raw_text"]).split(" "), _visible(row["abstract"]).split(" ")
        diff = [(b, a) for b, a in zip(before, after, strict=False) if b != a][:1]
        status = "reviewed" if line in reviewed else "UNREVIEWED"
        print(f"scitldr line {line} {status}: {row['clean_rules']} {diff}")
    unreviewed = [line for line, _ in changed if line not in reviewed]
    assert unreviewed == []
    # The reviewed damage is still repaired: the list cannot silently go stale.
    assert reviewed <= {line for line, _ in changed}


# Fragments of real damage and real text; hypothesis glues them with spaces, newlines or nothing.
_FRAGMENTS = [
    "Abstract:",
    "ABSTRACT",
    "We",
    "propose",
    "proposeReflexion",
    "isusually",
    "onshorttexts",
    "incor-",
    "porates",
    "incor- porates",
    "state-of-the-art",
    "GPT-4",
    "ChatGPT111",
    "online111",
    ".111Code",
    "is available at",
    "at:",
    "Github :",
    "|",
    " ,",
    " .",
    "( )",
    "(e.g., , )",
    "(see ;",
    "e.g.,",
    "adapters,no",
    "paper,we",
    "i.e.",
    "\u00a0",
    "\u200b",
    "\u2020",
    "footnotetext:",
    "code",
    "data",
    ".",
    ",",
    "(",
    ")",
    "the",
    "of",
    "model",
    "111",
    "HyDE",
    "significantly",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_FRAGMENTS), st.sampled_from(["", " ", "\n", ". "])), max_size=25))
# Found by hypothesis: one spaced leading mark per pass left the label for a fourth pass.
@example(pieces=[("\u2020", " "), ("\u2020", " "), ("\u2020", ""), ("Abstract:", "")])
def test_cleaning_is_idempotent(pieces: list[tuple[str, str]]) -> None:
    text = "".join(fragment + glue for fragment, glue in pieces)
    once = clean_one(text)
    twice = clean_one(once["abstract"])
    assert twice["abstract"] == once["abstract"]
    assert twice["clean_rules"] == []


def test_report_has_counts_and_windows(tmp_path: Path) -> None:
    texts = ["Abstract: We proposeReflexion , a new agent. |", "Wir stellen ein Verfahren vor."] * 3
    pq.write_table(pa.Table.from_batches([records(*texts)]), tmp_path / "in.parquet")
    report = run_clean(tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "r.json", CleanParams())
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert set(report["rules"]) == {rule.name for rule in RULES}
    glued = report["rules"]["glued_words"]
    assert glued["rows_changed"] == 3
    example = glued["examples"][0]
    assert {k: example[k] for k in ("source", "before", "after")} == {
        "source": "t.txt:1",
        "before": "We proposeReflexion, a new agent.",
        "after": "We propose Reflexion, a new agent.",
    }
    # The deciding evidence: the glued token is unknown, its parts are words.
    assert "'proposeReflexion' is not in wordfreq" in example["evidence"]
    assert "'propose' 4.0" in example["evidence"]
    assert all("skipped_unsafe" in entry for entry in report["rules"].values())
    assert report["flags"]["too_short"] == 6
    assert report["flag_examples"]["too_short"] == [f"t.txt:{i}" for i in range(1, 6)]
    assert report["flags"]["non_english"] == 0


def test_report_evidence_names_only_the_tokens_the_rule_changed(tmp_path: Path) -> None:
    # Two repairs far apart: the shown window is cut inside the change, one character later on
    # the side that gained a space, which cut "employing" to "employin" on that side only.
    text = (
        "However, not all tokens are equally important, especially for longer documents. We "
        "proposeCoLT5, a long-input Transformer model that builds on this intuition by employing "
        "conditional computation. We show thatCoLT5achieves stronger performance than the others."
    )
    pq.write_table(pa.Table.from_batches([records(text)]), tmp_path / "in.parquet")
    report = run_clean(tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "r.json", CleanParams())
    example = report["rules"]["glued_words"]["examples"][0]
    assert "'proposeCoLT5' is not in wordfreq" in example["evidence"]
    assert "employ" not in example["evidence"]
    # The parts are the rule's own split, though "that" also stands elsewhere in the text.
    assert "split into 'that' + 'CoLT5' + 'achieves'" in example["evidence"]


def test_report_evidence_of_a_join_across_a_line_break() -> None:
    # Both halves are words ("data", "set"): across a line break the rule joins them anyway.
    [example] = _rule_examples(["The data- set we release is large."], None, "dehyphenate", CleanParams())
    assert example["after"] == "The dataset we release is large."
    assert "a hyphen before a line break" in example["evidence"]
    assert "not both words" not in example["evidence"]


def test_output_is_identical_for_any_worker_count(tmp_path: Path) -> None:
    texts = [f"Abstract: Paper {i} studies\nthing {i % 7} . |" for i in range(500)]
    pq.write_table(pa.Table.from_batches([records(*texts)]), tmp_path / "in.parquet")
    outputs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"out{workers}.parquet"
        run_clean(
            tmp_path / "in.parquet",
            out,
            tmp_path / f"r{workers}.json",
            CleanParams(workers=workers, batch_rows=64),
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    report = (tmp_path / "r1.json").read_text()
    assert (tmp_path / "r2.json").read_text() == report
    frame = pl.read_parquet(tmp_path / "out1.parquet")
    assert frame.height == 500
    assert frame["abstract"][3] == "Paper 3 studies thing 3."


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_normalisation_skips_only_normalised_characters(form: Literal["NFC", "NFKC"]) -> None:
    """Rows without a character `_may_normalise` matches are left as they are: `form` would too."""
    codes = [c for c in range(0x80, 0x30000) if not 0xD800 <= c <= 0xDFFF]
    matched = pl.Series([chr(c) for c in codes]).str.contains(_may_normalise(form))
    exempt = [chr(c) for c, hit in zip(codes, matched, strict=True) if not hit]
    assert "\u00e9" in exempt and "\u2019" in exempt and "\u0301" not in exempt
    # No exempt character is the second half of a canonical composition ...
    seconds = set()
    for code in range(0x110000):
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            seconds.add(chr(int(parts[1], 16)))
    assert not seconds & set(exempt)
    # ... nor changes under polars' own tables, alone or after any ASCII character.
    texts = pl.Series([c for c in exempt] + [chr(a) + c for c in exempt for a in range(0x20, 0x7F)])
    assert texts.str.normalize(form).equals(texts)
    assert all(unicodedata.combining(c) == 0 and unicodedata.normalize(form, c) == c for c in exempt)


_TOKEN_PARTS = [
    "ab",
    "ab- cd",
    "abcd",
    "xab",
    "Ab",
    "b",
    "- ",
    " ",
    ", ",
    ".",
    "(",
    ")",
    "[",
    "]",
    "\u201c",
    '"',
]
_TOKEN_TEXT = st.lists(st.sampled_from(_TOKEN_PARTS), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKEN_TEXT, min_size=1, max_size=6))
def test_bounded_tokens_are_found_and_rewritten_like_the_padded_patterns(texts: list[str]) -> None:
    """The regex and the partial second pass give what Aho-Corasick over every pattern gives."""
    series = pl.Series(texts, dtype=pl.String)
    changes = {"ab": "a b", "ab- cd": "abcd", "b": "bb"}
    patterns, replacements = _bounded(list(changes), list(changes.values()))
    padded = _padded(series)
    assert _contains_bounded(series, list(changes)).to_list() == padded.str.contains_any(patterns).to_list()
    twice = padded
    for _ in range(2):
        twice = twice.str.replace_many(patterns, replacements, leftmost=True)
    rewritten, _ = _rewrite_rows(series, changes, _contains_bounded(series, list(changes)))
    assert rewritten.to_list() == [t[1:-1] for t in twice.to_list()]


@settings(max_examples=300, deadline=None)
@given(_TOKEN_TEXT)
def test_is_bounded_is_the_padded_patterns_test(text: str) -> None:
    """`dehyphenate` tests a match's bounds in Python: as `_bounded`'s patterns on the padded text."""
    padded = f" {text} "
    for token in ("ab", "b", "ab- cd"):
        for start in (m.start() for m in re.finditer(f"(?={re.escape(token)})", text)):
            expected = any(
                padded.startswith(left + token + right, start) for left in _LEFT for right in _RIGHT
            )
            assert _is_bounded(text, start, start + len(token)) == expected
