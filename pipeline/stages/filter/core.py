"""Stage `filter`: the curation policy. Which cleaned rows are released, and why the rest are not.

Reads: the cleaned parquet (`build/clean.parquet`, CLEAN_SCHEMA). Writes: the kept rows, in
order and with the same columns (`build/filter.parquet`, dedup's input), every dropped row
with its reason (`reports/filtered.parquet`, FILTERED_SCHEMA) and `filter.json` (counts per
rule and per source file). Params: `filter`.

Each rule of `RULES` has a name, the reason it exists and the params it reads. A row failing
any rule is dropped, never repaired: its `reason` is the first rule it failed (in `RULES`
order), `reasons` all of them, `detail` what the first one measured. The functions here are
pure (a polars frame of CLEAN_SCHEMA rows in, verdicts out); `run.run_filter` does the files.

The filter also re-judges three of clean's warning flags on the rows it keeps, so the flags
downstream (dedup, split, validate) are right: `unbalanced_brackets` ignores math and interval
notation (`[0, 1)`, `O(n log n)`, `$...$`), `non_english` is the language identifier's verdict
(a kept row is English, or the identifier was unsure), and an abstract whose source lower-cased
it gets the warning flag `lowercased_source`. `clean.parquet` keeps clean's own flags.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from pipeline.contracts import FILTERED_SCHEMA
from pipeline.kernels.measures import Measures, measure
from pipeline.params import FilterParams
from pipeline.policy import (
    LANGUAGE_IDENTIFIER,
    language_verdicts,
    placeholder_notice,
    placeholder_rows,
)

Mask = npt.NDArray[np.bool_]

# Flags of clean's the filter decides again on its kept rows (see the module docstring).
REJUDGED_FLAGS = ("unbalanced_brackets", "non_english")
LOWERCASED_SOURCE = "lowercased_source"
# Letters below which an abstract without capitals is too short to say its source lowered it.
LOWERCASED_MIN_LETTERS = 100


@dataclass(frozen=True)
class Rule:
    """A named reason not to release a row."""

    name: str
    # Why the rule exists: printed in filter.json, the review page and the card.
    reason: str
    # The `filter` params the rule reads.
    params: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    Rule(
        "placeholder",
        "A notice in place of an abstract (withdrawn paper, erratum, 'no abstract', 'abstract "
        "not available'): no content to learn from, and a withdrawn paper must not be shipped.",
        ("placeholder_max_words",),
    ),
    Rule(
        "markup_junk",
        "Script, style or web-page boilerplate (JavaScript, CSS, HTML tags, 'please enable "
        "JavaScript') that clean could not turn into prose: the scraper kept the page, not the abstract.",
        ("markup_min_weight",),
    ),
    Rule(
        "mostly_non_text",
        "Mostly digits and symbols (a table, a list of numbers, an encoding dump): not prose.",
        ("max_non_text_share",),
    ),
    Rule(
        "not_english",
        "The dataset is of English abstracts: the language identifier (py3langid, whole text, "
        "lower-cased so that capitals do not matter) is sure the text is in another language.",
        ("english_sure_share", "language_min_confidence"),
    ),
    Rule(
        "off_topic",
        "None of the row's categories or fields of study is an ML-related one (a physics or "
        "medicine paper in an ML dataset); rows without categories pass.",
        ("topics",),
    ),
    Rule(
        "too_short",
        "Fewer characters or words than an abstract has: a title, a fragment or a stub.",
        ("min_chars", "min_words"),
    ),
    Rule(
        "too_long",
        "More characters or words than an abstract has: the scrape ran into the paper's body.",
        ("max_chars", "max_words"),
    ),
    Rule(
        "truncated",
        "The text stops in the middle: it ends with '...', with a connecting punctuation mark or "
        "word ('the', 'of', ',') or inside a word, without terminal punctuation.",
        ("truncated_max_zipf",),
    ),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


@dataclass(frozen=True)
class Verdicts:
    """The filter's decision on every row of a batch."""

    # Rows that pass every rule.
    kept: Mask
    # Per dropped row (by row number): the rules it failed, in `RULES` order.
    reasons: dict[int, list[str]]
    # Per dropped row: what its first failed rule measured.
    details: dict[int, str]
    # Every row's flags after re-judging (see the module docstring).
    flags: pl.Series
    # Rows the language identifier scored, and those whose non-English answer it was unsure of.
    language_scored: int
    language_unsure: int
    # Rows whose flags the filter changed, by flag: cleared (clean's, found wrong) and added.
    flags_cleared: dict[str, int]
    flags_added: dict[str, int]

    @property
    def flags_changed(self) -> bool:
        return any(self.flags_cleared.values()) or any(self.flags_added.values())


@dataclass(frozen=True)
class Context:
    """One batch as the rules see it."""

    texts: pl.Series
    measures: Measures
    # One list of categories per row (null: none known), or None when the input has no column.
    categories: pl.Series | None
    params: FilterParams


# A rule's test: the rows it drops, and a function naming what it measured on given rows.
RuleResult = tuple[Mask, Callable[[list[int]], list[str]]]


# --- placeholder ---------------------------------------------------------------------------

# The grammar of notices is `pipeline.policy`'s (validate checks the release with it too).


def _placeholder(ctx: Context) -> RuleResult:
    found = placeholder_rows(ctx.texts, ctx.measures.words, ctx.params.placeholder_max_words)

    def detail(rows: list[int]) -> list[str]:
        out = []
        for text in ctx.texts.gather(rows).to_list():
            notice = placeholder_notice(text)
            out.append(f"notice {notice!r}" if notice is not None else "notice")
        return out

    return found, detail


# --- markup_junk ---------------------------------------------------------------------------

# (weight, marker): a tag or a page's boilerplate sentence is junk alone; a code construct
# (which an abstract about software may quote once) only together with another marker.
_MARKUP_MARKERS: tuple[tuple[int, str, re.Pattern[str]], ...] = tuple(
    (weight, name, re.compile(pattern))
    for weight, name, pattern in (
        (2, "<script>", r"(?i)<\s*/?\s*script\b"),
        (2, "<style>", r"(?i)<\s*/?\s*style\b"),
        (2, "<!--", r"<!--"),
        (
            2,
            "page boilerplate",
            r"(?i)\b(?:please\s+)?enable\s+javascript|javascript\s+is\s+(?:disabled|required|"
            r"not\s+enabled)|your\s+browser\s+does\s+not\s+support|skip\s+to\s+(?:main\s+)?content|"
            r"(?:this|our)\s+(?:site|website)\s+uses\s+cookies|accept\s+(?:all\s+)?cookies",
        ),
        (
            1,
            "html tag",
            r"(?i)</?(?:div|span|p|br|a|img|table|tr|td|li|ul|iframe|meta|link|head|body|html)\b[^>]*>",
        ),
        (1, "function(){", r"\bfunction\s*\w*\s*\([^)]*\)\s*\{"),
        (1, "var x =", r"\b(?:var|let|const)\s+[A-Za-z_$][\w$]*\s*=(?!=)"),
        (
            1,
            "document./window.",
            r"\b(?:document|window)\.(?:getElementById|querySelector|write|cookie|location|"
            r"addEventListener|createElement|onload)\b",
        ),
        (1, "css rule", r"\{\s*[a-z-]+\s*:\s*[^;{}]+;\s*\}?"),
        (1, "&entity;", r"&(?:nbsp|amp|lt|gt|quot|#\d+);"),
    )
)
# Rows holding none of these cannot match a marker: the regexes run on the others only. A
# bare "<" or "{" is in every tenth abstract (math), "function" and "let" in many more; "){"
# opens a function body. Matched with their case (one pass; ignoring case made it slower).
_MARKUP_HINTS = [
    *("<!--", "</", "/>", "<!DOCTYPE", "<!doctype", "<SCRIPT", "<p>", "<p ", "<a "),
    *(f"<{tag}" for tag in ("script", "style", "div", "span", "br", "img", "table", "tr", "td", "li", "ul")),
    *(f"<{tag}" for tag in ("iframe", "meta", "link", "head", "body", "html")),
    *("JavaScript", "javascript", "Javascript", "JAVASCRIPT", "browser", "cookies", "Skip to", "skip to"),
    *("&nbsp;", "&amp;", "&lt;", "&gt;", "&quot;", "&#"),
    *("){", ") {", "var ", "const ", "document.", "window.", ";}", "; }"),
]


def _markup_hits(text: str) -> list[tuple[int, str]]:
    return [(weight, name) for weight, name, pattern in _MARKUP_MARKERS if pattern.search(text)]


def _markup_junk(ctx: Context) -> RuleResult:
    hinted = (
        ctx.texts.str.contains_any(_MARKUP_HINTS, ascii_case_insensitive=True).fill_null(False).to_numpy()
    )
    found = np.zeros(len(ctx.texts), dtype=np.bool_)
    rows = np.flatnonzero(hinted)
    texts = ctx.texts.gather(rows).to_list() if len(rows) else []
    for row, text in zip(rows.tolist(), texts, strict=True):
        found[row] = sum(weight for weight, _ in _markup_hits(text)) >= ctx.params.markup_min_weight

    def detail(rows: list[int]) -> list[str]:
        return [
            "markers " + ", ".join(name for _, name in _markup_hits(text))
            for text in ctx.texts.gather(rows).to_list()
        ]

    return found, detail


# --- mostly_non_text -----------------------------------------------------------------------


def _mostly_non_text(ctx: Context) -> RuleResult:
    m = ctx.measures
    share = m.non_text / np.maximum(m.chars, 1)
    found = share > ctx.params.max_non_text_share

    def detail(rows: list[int]) -> list[str]:
        return [
            f"digits and symbols {share[r]:.0%} of {m.chars[r]} chars "
            f"(max {ctx.params.max_non_text_share:.0%})"
            for r in rows
        ]

    return found, detail


# --- not_english ---------------------------------------------------------------------------


def _not_english(ctx: Context) -> tuple[Mask, Callable[[list[int]], list[str]], int, int]:
    m, p = ctx.measures, ctx.params
    verdicts = language_verdicts(
        ctx.texts, m.chars, m.words, m.function_words, p.english_sure_share, p.language_min_confidence
    )
    answers = verdicts.answers

    def detail(rows: list[int]) -> list[str]:
        return [f"{LANGUAGE_IDENTIFIER}: {answers[r][0]} {answers[r][1]:.3f}" for r in rows]

    return verdicts.not_english, detail, verdicts.scored, verdicts.unsure


# --- off_topic -----------------------------------------------------------------------------


def _off_topic(ctx: Context) -> RuleResult:
    if ctx.categories is None:
        return np.zeros(len(ctx.texts), dtype=np.bool_), lambda rows: []
    allowed = [topic.casefold() for topic in ctx.params.topics]
    frame = pl.DataFrame({"c": ctx.categories})
    categories = pl.col("c").list.eval(pl.element().str.to_lowercase())
    found = (
        frame.select(
            (pl.col("c").list.len() > 0).fill_null(False)
            & ~categories.list.eval(pl.element().is_in(allowed)).list.any().fill_null(False)
        )
        .to_series()
        .to_numpy()
    )

    def detail(rows: list[int]) -> list[str]:
        return [
            "categories " + ", ".join(cats or []) + "; none on filter.topics"
            for cats in ctx.categories.gather(rows).to_list()  # type: ignore[union-attr]
        ]

    return found, detail


# --- too_short / too_long ------------------------------------------------------------------


def _too_short(ctx: Context) -> RuleResult:
    m, p = ctx.measures, ctx.params
    found = (m.chars < p.min_chars) | (m.words < p.min_words)

    def detail(rows: list[int]) -> list[str]:
        return [
            f"{m.chars[r]} chars, {m.words[r]} words (min {p.min_chars} chars, {p.min_words} words)"
            for r in rows
        ]

    return found, detail


def _too_long(ctx: Context) -> RuleResult:
    m, p = ctx.measures, ctx.params
    found = (m.chars > p.max_chars) | (m.words > p.max_words)

    def detail(rows: list[int]) -> list[str]:
        return [
            f"{m.chars[r]} chars, {m.words[r]} words (max {p.max_chars} chars, {p.max_words} words)"
            for r in rows
        ]

    return found, detail


# --- truncated -----------------------------------------------------------------------------

# What a complete abstract may end with: terminal punctuation, a closing bracket or quote.
_TERMINAL = ".!?)]}\"'\u201d\u2019\u00bb"
_ELLIPSIS = re.compile(r"(?:\.\.\.|\u2026)\s*$")
# Words a sentence does not end on: the text stopped before what they introduce.
_CONTINUING_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "of",
        "and",
        "or",
        "nor",
        "but",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "by",
        "from",
        "into",
        "onto",
        "via",
        "than",
        "as",
        "that",
        "which",
        "whose",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "has",
        "have",
        "had",
        "can",
        "could",
        "may",
        "might",
        "will",
        "would",
        "should",
        "must",
        "do",
        "does",
        "its",
        "their",
        "our",
        "his",
        "her",
        "my",
        "your",
        "this",
        "these",
        "those",
        "such",
        "both",
        "either",
        "each",
        "every",
        "any",
        "some",
        "no",
        "not",
        "very",
        "between",
        "among",
        "within",
        "without",
        "across",
        "over",
        "under",
        "about",
        "through",
        "towards",
        "toward",
        "during",
        "per",
        "upon",
        "whether",
        "while",
        "whereas",
        "if",
        "because",
        "although",
        "though",
        "since",
        "unlike",
        "like",
    ]
)
# Two-letter words a sentence may end on; any other ("... a se", "... patients co") is cut.
_TWO_LETTER_ENDS = frozenset(["up", "us", "it", "go", "do", "so", "me", "ok"])
_CONTINUING_MARKS = ",;:-\u2013\u2014(&+=<"


@functools.cache
def _zipf(word: str) -> float:
    import wordfreq

    return float(wordfreq.zipf_frequency(word, "en"))


# The commonest English words (wordfreq), sorted: a cut word is the beginning of one of them.
_COMMON_WORDS = 100_000


@functools.cache
def _common_words() -> list[str]:
    import wordfreq

    return sorted(word for word in wordfreq.top_n_list("en", _COMMON_WORDS) if word.isalpha())


def _begins_commoner_word(fragment: str) -> str | None:
    """The commonest word that `fragment` is the beginning of, if ten times as common as it."""
    words = _common_words()
    start = bisect.bisect_right(words, fragment)
    longer = [word for word in words[start : start + 500] if word.startswith(fragment)]
    commonest = max(longer, key=_zipf, default=None)
    return commonest if commonest is not None and _zipf(commonest) >= _zipf(fragment) + 1 else None


def truncation(text: str, max_zipf: float) -> str | None:
    """How `text` stops in the middle, or None when its end may be a real end.

    Without terminal punctuation, a text that ends on a common content word ("... on
    different model scales") is kept: its source most likely dropped the final full stop, and
    clean flags it `truncated` as a warning. An end that cannot close a sentence is dropped:
    a connecting mark or word ("... the reusability of"), or a lower-case word rarer than
    `max_zipf` (wordfreq Zipf) that begins a word ten times as common: a word cut short ("...
    to infe", "... users physiolog"), where a rare word of its own ("... biological
    plausibility") stays.
    """
    end = text.rstrip()
    if not end:
        return None
    if _ELLIPSIS.search(end):
        return "ends with '...'"
    if end[-1] in _TERMINAL:
        return None
    if end[-1] in _CONTINUING_MARKS:
        return f"ends with {end[-1]!r}, without terminal punctuation"
    last = end.rsplit(None, 1)[-1]
    if last.lower() in _CONTINUING_WORDS:
        return f"ends after {last!r}, without terminal punctuation"
    if re.fullmatch(r"[a-z]{2}", last) and last not in _TWO_LETTER_ENDS:
        return f"ends inside a word ({last!r}), without terminal punctuation"
    if re.fullmatch(r"[a-z]+", last) and _zipf(last) < max_zipf:
        whole = _begins_commoner_word(last)
        if whole is not None:
            return f"ends inside a word ({last!r}, as of {whole!r}), without terminal punctuation"
    return None


def _truncated(ctx: Context) -> RuleResult:
    # The few rows not ending in terminal punctuation are looked at one by one.
    tails = ctx.texts.str.strip_chars_end().str.slice(-3)
    open_end = (
        pl.DataFrame({"t": tails})
        .select(
            pl.col("t").str.contains(r"(?:\.\.\.|\u2026)$")
            | ~pl.col("t").str.contains(r"[.!?)\]}\"'\u201d\u2019\u00bb]$")
        )
        .to_series()
        .fill_null(False)
        .to_numpy()
    )
    found = np.zeros(len(ctx.texts), dtype=np.bool_)
    why: dict[int, str] = {}
    rows = np.flatnonzero(open_end)
    texts = ctx.texts.gather(rows).to_list() if len(rows) else []
    for row, text in zip(rows.tolist(), texts, strict=True):
        reason = truncation(text, ctx.params.truncated_max_zipf)
        if reason is not None:
            found[row] = True
            why[row] = reason

    return found, lambda rows: [why[r] for r in rows]


# --- flags ---------------------------------------------------------------------------------

# `$...$`, `$$...$$`, `\(...\)` and `\[...\]`: brackets inside math are math's own.
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)
# Half-open intervals and the like: `[0, 1)`, `(0, 1]`, `]0, 1[`, `[a, b)`, `(-\infty, 0]`.
_INTERVAL = re.compile(
    r"[\[(\]]\s*[-+\u2212]?[\w.\\\u221e]{1,16}\s*[,;]\s*[-+\u2212]?[\w.\\\u221e]{1,16}\s*[\])\[]"
)
# A list item written "a) ...", "2) ...", "iv) ...": a closing bracket nobody opened.
_BRACKET = re.compile(r"[()\[\]]")
_ENUMERATOR_BEFORE = re.compile(r"(?:^|[\s(/,;:{])(?:[a-zA-Z]|\d{1,2}|[ivxIVX]{1,4})$")


def brackets_balanced(text: str) -> bool:
    """Whether the round and square brackets of `text` pair up, outside math and intervals."""
    text = _INTERVAL.sub(" ", _MATH.sub(" ", text))
    stack: list[str] = []
    for match in _BRACKET.finditer(text):
        char, i = match.group(), match.start()
        if char in "([":
            stack.append(char)
            continue
        opener = "(" if char == ")" else "["
        if stack and stack[-1] == opener:
            stack.pop()
        elif not (char == ")" and not stack and _ENUMERATOR_BEFORE.search(text[max(0, i - 6) : i])):
            return False
    return not stack


def _rejudged_flags(ctx: Context, flags: pl.Series) -> tuple[pl.Series, dict[str, int], dict[str, int]]:
    """Every row's flags with `REJUDGED_FLAGS` decided again and `lowercased_source` added,
    and how many rows lost and gained each flag."""
    texts = ctx.texts
    m = ctx.measures
    checks = pl.DataFrame({"f": flags}).select(
        flagged=pl.col("f").list.contains("unbalanced_brackets").fill_null(False),
        had_rejudged=pl.col("f").list.eval(pl.element().is_in(REJUDGED_FLAGS)).list.any().fill_null(False),
    )
    counts_differ = (m.round_balance != 0) | (m.square_balance != 0) | checks["flagged"].to_numpy()
    lowercased = (m.upper == 0) & (m.lower >= LOWERCASED_MIN_LETTERS)
    unbalanced = np.zeros(len(texts), dtype=np.bool_)
    rows = np.flatnonzero(counts_differ)
    for row, text in zip(rows.tolist(), texts.gather(rows).to_list() if len(rows) else [], strict=True):
        unbalanced[row] = not brackets_balanced(text)
    changed = np.flatnonzero(checks["had_rejudged"].to_numpy() | unbalanced | lowercased)
    cleared = dict.fromkeys(REJUDGED_FLAGS, 0)
    added = dict.fromkeys((*REJUDGED_FLAGS, LOWERCASED_SOURCE), 0)
    if not len(changed):
        return flags, cleared, {}
    values: list[list[str]] = []
    for row, old in zip(changed.tolist(), flags.gather(changed).to_list(), strict=True):
        # A flag that stays keeps its place, so a row whose flags hold is left as it was.
        holds = {"unbalanced_brackets": bool(unbalanced[row]), "non_english": False}
        new = [f for f in old if holds.get(f, True)]
        if unbalanced[row] and "unbalanced_brackets" not in new:
            new.append("unbalanced_brackets")
        if lowercased[row] and LOWERCASED_SOURCE not in new:
            new.append(LOWERCASED_SOURCE)
        for name in REJUDGED_FLAGS:
            cleared[name] += name in old and name not in new
        for name in added:
            added[name] += name in new and name not in old
        values.append(new)
    # polars cannot scatter lists: the new lists are appended and every row gathered.
    index = np.arange(len(flags), dtype=np.int64)
    index[changed] = len(flags) + np.arange(len(changed))
    combined = pl.concat([flags, pl.Series(values, dtype=flags.dtype)])
    return combined.gather(index), cleared, added


# --- the whole batch -----------------------------------------------------------------------


def judge(frame: pl.DataFrame, params: FilterParams, arrow_texts: pa.Array | None = None) -> Verdicts:
    """Every rule on every row of `frame` (CLEAN_SCHEMA columns; `categories` optional).

    `arrow_texts` is the `abstract` column as Arrow, when the caller has it: polars would copy
    its own strings to give them to the compiled loop.
    """
    texts = frame["abstract"]
    ctx = Context(
        texts=texts,
        measures=measure(texts.to_arrow() if arrow_texts is None else arrow_texts),
        categories=frame["categories"] if "categories" in frame.columns else None,
        params=params,
    )
    found_english, detail_english, scored, unsure = _not_english(ctx)
    results: dict[str, RuleResult] = {
        "placeholder": _placeholder(ctx),
        "markup_junk": _markup_junk(ctx),
        "mostly_non_text": _mostly_non_text(ctx),
        "not_english": (found_english, detail_english),
        "off_topic": _off_topic(ctx),
        "too_short": _too_short(ctx),
        "too_long": _too_long(ctx),
        "truncated": _truncated(ctx),
    }
    dropped = np.zeros(len(frame), dtype=np.bool_)
    reasons: dict[int, list[str]] = {}
    first: dict[str, list[int]] = {name: [] for name in RULE_NAMES}
    for name in RULE_NAMES:
        hits = results[name][0]
        for row in np.flatnonzero(hits).tolist():
            if row not in reasons:
                first[name].append(row)
                reasons[row] = []
            reasons[row].append(name)
        dropped |= hits
    details: dict[int, str] = {}
    for name, hit_rows in first.items():
        if hit_rows:
            details.update(zip(hit_rows, results[name][1](hit_rows), strict=True))
    flags, cleared, added = _rejudged_flags(ctx, frame["flags"])
    return Verdicts(~dropped, reasons, details, flags, scored, unsure, cleared, added)


def filtered_rows(frame: pl.DataFrame, verdicts: Verdicts) -> pa.Table:
    """The dropped rows of `frame` as FILTERED_SCHEMA rows (see pipeline.contracts)."""
    dropped = np.flatnonzero(~verdicts.kept)
    part = frame.select("source", "arxiv_id", "abstract")[dropped]
    return pa.table(
        {
            "source": part["source"].to_arrow(),
            "id": part["arxiv_id"].to_arrow(),
            "arxiv_id": part["arxiv_id"].to_arrow(),
            "reason": pa.array([verdicts.reasons[r][0] for r in dropped.tolist()], pa.string()),
            "reasons": pa.array([verdicts.reasons[r] for r in dropped.tolist()], pa.list_(pa.string())),
            "detail": pa.array([verdicts.details[r] for r in dropped.tolist()], pa.string()),
            "abstract": part["abstract"].to_arrow(),
        }
    ).cast(FILTERED_SCHEMA)


def kept_rows(batch: pa.RecordBatch, verdicts: Verdicts) -> pa.RecordBatch:
    """The kept rows of `batch`: its columns, `flags` replaced by the re-judged flags."""
    if verdicts.flags_changed:
        index = batch.schema.get_field_index("flags")
        field = batch.schema.field("flags")
        batch = batch.set_column(index, field, verdicts.flags.to_arrow().cast(field.type))
    # Most batches keep every row: filtering would copy their texts for nothing.
    return batch if verdicts.kept.all() else batch.filter(pa.array(verdicts.kept))
