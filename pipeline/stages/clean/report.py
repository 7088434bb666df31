"""`clean.json`: per rule, rows changed, rows skipped as unsafe and before/after windows with
the evidence that decided each repair; per flag, count and example sources; per metadata
field (title, authors), rows changed by the markup rules.

The windows replay the rules on the example rows' raw texts (read back from the ingested
file, row for row the cleaned one). Every decision a rule makes depends on the row alone (its
text, title and authors) and the params, so the replay decides as the run did.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from pipeline.io.build_files import read_raw_texts
from pipeline.params import CleanParams
from pipeline.stages.clean.core import (
    _ACRONYM_THEN_LOWER,
    _FLAGGED,
    _LOWER_THEN_UPPER,
    EXAMPLE_CONTEXT,
    EXAMPLES_PER_RULE,
    FLAGS,
    RULES,
    Tally,
    _glued_token,
    _name_token,
    _names_column,
    _zipf,
    derived_from,
)

# What decides each regex rule's repairs: the shape it matched (the dictionary rules' evidence
# is worked out per token by `_token_evidence`).
RULE_EVIDENCE = {
    "markup": "HTML/XML: <tex-math> to $...$, paired inline tags dropped (text kept), entities decoded",
    "latex": "text-mode LaTeX converted by pylatexenc (only known text commands; maths verbatim)",
    "unicode": "NFC; fixed-width spaces to spaces; invisible and control characters removed",
    "structure_labels": "a section label glued to a known word that follows it",
    "strip_prefix": "a leading Abstract label followed by punctuation, or ABSTRACT",
    "table_residue": "table bars at the end of the text",
    "whitespace": "runs of whitespace",
    "footnotes": "a footnote mark (111, 222, ...) glued to a word or sentence end, or its footnote text",
    "dangling_link": "a last sentence about code or data that ends where its URL was cut",
    "empty_citation": "brackets left empty, or a space before punctuation, by a removed citation",
}


def _common_ends(before: str, after: str) -> tuple[int, int]:
    """The lengths of the common prefix and of the common suffix (not overlapping it)."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    return start, end


def _window(before: str, after: str) -> dict[str, str]:
    """The changed span of `before` -> `after` with `EXAMPLE_CONTEXT` characters around it."""
    start, end = _common_ends(before, after)
    low = max(0, start - EXAMPLE_CONTEXT)

    # A rule that changed several places shows the first one; the window stays short.
    def high(text: str) -> int:
        return min(len(text) - end, start + EXAMPLE_CONTEXT) + EXAMPLE_CONTEXT

    return {"before": before[low : high(before)], "after": after[low : high(after)]}


def _whole_change(before: str, after: str) -> tuple[str, str]:
    """The whole changed span of each text with context, both cut at the same places of the
    common prefix and suffix: the shown window of a long change can end in the middle of a
    word on one side only ("employing" / "employin"), which is no change the rule made."""
    start, end = _common_ends(before, after)
    low = max(0, start - EXAMPLE_CONTEXT)
    return (
        before[low : len(before) - end + EXAMPLE_CONTEXT],
        after[low : len(after) - end + EXAMPLE_CONTEXT],
    )


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.,'\u2019-]*[A-Za-z0-9]|[A-Za-z0-9]")


def _changed_words(before: str, after: str) -> tuple[list[str], list[str]]:
    old, new = _WORD.findall(before), _WORD.findall(after)
    return [w for w in old if w not in new], [w for w in new if w not in old]


def _zipfs(words: list[str]) -> str:
    return ", ".join(f"'{w}' {_zipf(w):.1f}" for w in words)


_MIXED = re.compile(f"{_LOWER_THEN_UPPER}|{_ACRONYM_THEN_LOWER}")


def _decision(token: str, params: CleanParams) -> str | None:
    """`glued_words`' repair of `token`, decided as the rule decides it, or None if it keeps it."""
    lower_or_mixed = token.islower() or _MIXED.fullmatch(token) is not None
    fixed = _glued_token(token, params) if lower_or_mixed else _name_token(token, params)
    return None if fixed in (token, _FLAGGED) else fixed


def _token_evidence(rule: str, before: str, after: str, params: CleanParams) -> str:
    """Which evidence decided a dictionary rule's repair in this window."""
    gone, new = _changed_words(before, after)
    if not gone:
        return "no word changed"
    if rule == "dehyphenate":
        broken = " ".join(gone)
        joined = f"'{broken}' -> '{' '.join(new)}': the joined word is in wordfreq (Zipf {_zipfs(new)})"
        if "- " in before:
            # `_dehyphenate_token` joins across a line break whatever its halves are.
            return f"{joined}; a hyphen before a line break inside a word"
        return f"{joined}; the halves are not both words (Zipf {_zipfs(re.split(r'[- ]+', broken))})"
    notes = []
    for token in gone:
        if "." in token or "," in token:
            notes.append(f"'{token}': a full stop or comma glued to the next word")
            continue
        # The rule's own decision for the token gives its parts; the words new in the window
        # are a fallback only (a part may also stand elsewhere in the text, "that").
        decided = _decision(token, params)
        parts = decided.split(" ") if decided else list(dict.fromkeys(w for w in new if w in token)) or new
        derived = derived_from(token, params)
        notes.append(
            f"'{token}' is not in wordfreq (Zipf {_zipf(token):.1f}), nor in clean.terms, nor seen "
            f"as-is {params.term_min_repeats}+ times in the abstract or in its title/authors; "
            f"split into {' + '.join(repr(p) for p in parts)} (Zipf {_zipfs(parts)})"
            + (f"; derived from '{derived}'" if derived else "")
        )
    return "; ".join(notes)


def _rule_examples(
    raw: list[str], names: list[str | None] | None, name: str, params: CleanParams
) -> list[dict[str, str]]:
    """Before/after windows of rule `name` alone, replaying the rules before it on `raw`."""
    texts = pl.Series(raw, dtype=pl.String)
    evidence = pl.Series(names, dtype=pl.String) if names is not None else None
    for rule in RULES:
        fixed = rule.apply(texts, params, evidence).texts
        if rule.name == name:
            pairs = list(zip(texts.to_list(), fixed.to_list(), strict=True))
            windows = [_window(b, a) for b, a in pairs]
            for window, (b, a) in zip(windows, pairs, strict=True):
                if name in ("dehyphenate", "glued_words"):
                    window["evidence"] = _token_evidence(name, *_whole_change(b, a), params)
                else:
                    window["evidence"] = RULE_EVIDENCE[name]
            return windows
        texts = fixed
    raise KeyError(name)


def _example_names(ingested: Path, rows: list[int]) -> dict[int, str | None] | None:
    """The title and author names of `rows` of the ingested file, if it has those columns."""
    columns = [c for c in ("title", "authors") if c in pq.read_schema(ingested).names]
    if not columns or not rows:
        return None
    frame = pl.read_parquet(ingested, columns=columns).with_row_index("_row")
    frame = frame.filter(pl.col("_row").is_in(rows))
    names = _names_column(frame)
    assert names is not None
    return dict(zip(frame["_row"].to_list(), names.to_list(), strict=True))


def summarise(
    cleaned: Path, ingested: Path, params: CleanParams, tally: Tally | None = None
) -> dict[str, Any]:
    """Per-rule and per-flag counts, with a few before/after examples, from the cleaned file
    (and the raw texts of the example rows from the ingested file, row for row the same);
    `tally` holds what the batches counted beside their rows (skips, metadata fields)."""
    tally = tally or Tally()
    frame = pl.read_parquet(cleaned, columns=["source", "clean_rules", "flags"]).with_row_index("_row")
    wanted: dict[str, pl.DataFrame] = {}
    for rule in RULES:
        wanted[rule.name] = frame.filter(pl.col("clean_rules").list.contains(rule.name))
    example_rows = sorted({r for hits in wanted.values() for r in hits["_row"].head(EXAMPLES_PER_RULE)})
    source_of = dict(zip(frame["_row"].to_list(), frame["source"].to_list(), strict=True))
    raw = read_raw_texts(ingested, example_rows, {r: source_of[r] for r in example_rows})
    names = _example_names(ingested, example_rows)
    rules: dict[str, Any] = {}
    for rule in RULES:
        hits = wanted[rule.name].head(EXAMPLES_PER_RULE)
        rows = hits["_row"].to_list()
        windows = _rule_examples(
            [raw[r] for r in rows], None if names is None else [names[r] for r in rows], rule.name, params
        )
        rules[rule.name] = {
            "rows_changed": wanted[rule.name].height,
            "skipped_unsafe": tally.skipped.get(rule.name, 0),
            "skipped_examples": [source for _, _, source in tally.skipped_sources.get(rule.name, [])],
            "examples": [
                {"source": source, **window} for source, window in zip(hits["source"], windows, strict=True)
            ],
        }
    flags: dict[str, int] = {}
    flag_examples: dict[str, list[str]] = {}
    exploded = frame.select("source", "flags").explode("flags").drop_nulls()
    for name in FLAGS:
        sources = exploded.filter(pl.col("flags") == name)["source"]
        flags[name] = sources.len()
        flag_examples[name] = sources.head(EXAMPLES_PER_RULE).to_list()
    # `flags` stays a name -> count mapping (the card reads it); sources are kept beside it.
    return {
        "rows": frame.height,
        "rows_changed": frame.filter(pl.col("clean_rules").list.len() > 0).height,
        "rules": rules,
        "fields_changed": dict(sorted(tally.fields.items())),
        "flags": flags,
        "flag_examples": flag_examples,
    }
