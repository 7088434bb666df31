"""Stage `clean`: raw abstract text -> publishable text, with every repair named and counted.

Reads: the ingested records parquet. Writes: the cleaned parquet, row for row the ingested
one (its columns but `raw_text`, which stays in the ingested file at the same row, plus
`abstract`, `clean_rules`, `flags`, `text_hash`) and `clean.json` (per rule: rows changed and
before/after windows; per flag: count and example sources). Params: `clean` (workers, batch
size, length thresholds, word-frequency thresholds of the dictionary rules).

Rules run in a fixed order (`RULES`) over the text column of one Arrow batch. The regex rules
are vectorised polars expressions, run only on the rows a cheap prefilter selects. The two
dictionary rules (`dehyphenate`, `glued_words`) find candidate tokens with a regex, decide
each distinct candidate once against the `wordfreq` English word list, and rewrite only the
rows holding a candidate that changes. A rule that changed a row's text adds its name to that
row's `clean_rules`; problems no rule can fix safely become `flags`.
"""

from __future__ import annotations

import functools
import hashlib
import html
import math
import re
import string
import sys
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.contracts import CLEAN_SCHEMA
from pipeline.executor import map_slices
from pipeline.io.writers import build_file_options, parquet_writer, write_json
from pipeline.kernels.fingerprint import blake2b_64, hex_digests
from pipeline.kernels.text import Pieces, fold_plain_texts
from pipeline.params import CleanParams

EXAMPLES_PER_RULE = 5
# Characters of context kept on each side of a change in the report's before/after windows.
EXAMPLE_CONTEXT = 40

FLAGS = (
    "too_short",
    "too_long",
    "truncated",
    "unbalanced_brackets",
    "possible_glued_word",
    "non_english",
    "url",
    "html_residue",
    "latex_residue",
)


class Applied(NamedTuple):
    """What a rule returns: the repaired texts (same length and order), the rows to flag
    `possible_glued_word` (only `glued_words` says), and the rows where the rule left a spot
    alone because repairing it would have broken an invariant (`skipped_unsafe`)."""

    texts: pl.Series
    glued: pl.Series | None = None
    skipped: pl.Series | None = None


@dataclass(frozen=True)
class Rule:
    """A named repair over a batch's texts; `names` holds, per row, the title and author list
    (or null): words found there are names, evidence the dictionary rules use."""

    name: str
    apply: Callable[[pl.Series, CleanParams, pl.Series | None], Applied]


Superset = Callable[[pl.Series], pl.Series]


def _matching_rows(texts: pl.Series, prefilter: str, superset: Superset | None = None) -> pl.Series:
    """The indices of the rows matching `prefilter`. `superset`, if given, is a cheaper test
    (literal scans, byte counts) true on every such row; the regex then only runs on the rows
    it selects."""
    if superset is None:
        return texts.str.contains(prefilter).arg_true()
    rows = superset(texts).arg_true()
    return rows.filter(texts.gather(rows).str.contains(prefilter))


def _masked(
    texts: pl.Series,
    prefilter: str,
    repair: Callable[[pl.Expr], pl.Expr],
    superset: Superset | None = None,
) -> pl.Series:
    """Apply `repair` only to rows matching `prefilter` (found as `_matching_rows` finds them):
    most rows need no repair at all."""
    rows = _matching_rows(texts, prefilter, superset)
    if rows.is_empty():
        return texts
    if len(rows) == len(texts):  # e.g. every row of a dump behind an `Abstract:` label
        return pl.select(repair(pl.lit(texts))).to_series().alias(texts.name)
    fixed = pl.select(repair(pl.lit(texts.gather(rows)))).to_series()
    return texts.clone().scatter(rows, fixed)


def _regex_rule(
    prefilter: str, repair: Callable[[pl.Expr], pl.Expr], superset: Superset | None = None
) -> Callable[..., Any]:
    def apply(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
        return Applied(_masked(texts, prefilter, repair, superset))

    return apply


def _non_ascii(texts: pl.Series) -> pl.Series:
    """Rows holding a non-ASCII character (exactly those matching `[^\\x00-\\x7f]`)."""
    return (texts.str.len_bytes() != texts.str.len_chars()).fill_null(False)


def _any_literal(texts: pl.Series, literals: tuple[str, ...]) -> pl.Series:
    """Rows holding any of `literals`: one memchr-speed scan each, far cheaper than a regex."""
    text = pl.col("t")
    return (
        pl.DataFrame({"t": texts})
        .select(pl.any_horizontal(text.str.contains(lit, literal=True) for lit in literals).fill_null(False))
        .to_series()
    )


def _maybe_unicode(texts: pl.Series) -> pl.Series:
    # Every row `[^\t\n\r\x20-\x7e]` matches holds a byte outside printable ASCII.
    printable = pc.ascii_is_printable(texts.to_arrow())
    return (~pl.Series(printable, dtype=pl.Boolean)).fill_null(False) | _non_ascii(texts)


# The ASCII characters `\s` matches besides the space; the others are non-ASCII.
_ASCII_SPACES = ("\t", "\n", "\x0b", "\x0c", "\r")


def _maybe_whitespace(texts: pl.Series) -> pl.Series:
    # `[^\S ]|  |^ | $`: a non-space whitespace character, two spaces, or a space at either end.
    edge = (texts.str.starts_with(" ") | texts.str.ends_with(" ")).fill_null(False)
    return _non_ascii(texts) | _any_literal(texts, (*_ASCII_SPACES, "  ")) | edge


def _maybe_empty_citation(texts: pl.Series) -> pl.Series:
    # `_EMPTY_CITATION`: a space before the punctuation, or "(" before a space, a comma, a
    # semicolon, ")" or a lead-in; a literal alternation runs at memchr speed (Teddy).
    literals = r" ,| \.| ;| :|\(\)|\(,|\(;|\( |\(\t|\(\n|\(\x0b|\(\x0c|\(\r|\(e\.g\.|\(i\.e\.|\(cf\.|\(see"
    return texts.str.contains(literals).fill_null(False) | _non_ascii(texts)


# Blocks of the characters abstracts use besides ASCII: Latin, Greek, Cyrillic, punctuation,
# symbols, arrows, maths, presentation forms (ligatures).
_COMMON_BLOCKS = (
    (0x0080, 0x04FF),
    (0x2000, 0x23FF),
    (0x2500, 0x25FF),
    (0xFB00, 0xFB4F),
)


NormalForm = Literal["NFC", "NFKC"]


@functools.cache
def _may_normalise(form: NormalForm) -> str:
    """A regex matching every character that can make `form` (NFC, NFKC) change a text.

    A text of characters that are each their own normal form, with combining class 0 and never
    the second half of a composition, is normalised already: most rows need no normalisation.
    Only assigned characters of `_COMMON_BLOCKS` are exempted; Unicode's stability policy keeps
    them normalised in later Unicode versions. (The Unicode tables that polars uses may differ
    from Python's by version, not by these characters.)
    """
    stable = [
        code
        for low, high in _COMMON_BLOCKS
        for code in range(low, high + 1)
        if unicodedata.category(chr(code)) != "Cn"
        and unicodedata.combining(chr(code)) == 0
        and unicodedata.normalize(form, chr(code)) == chr(code)
    ]
    ranges: list[list[int]] = []
    for code in stable:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    exempt = "".join(rf"\x{{{low:x}}}-\x{{{high:x}}}" for low, high in ranges)
    return rf"[^\x00-\x7f{exempt}]"


def _normalise(texts: pl.Series, form: NormalForm) -> pl.Series:
    """`texts.str.normalize(form)`, run only on the rows it can change (the slow part)."""
    return _masked(texts, _may_normalise(form), lambda text: text.str.normalize(form), _non_ascii)


# NBSP and the other fixed-width spaces become plain spaces; zero-width characters, soft hyphens,
# stray BOMs and control characters (seen in the SciTLDR corpus) carry no text.
_ODD_SPACES = r"[\u00a0\u2000-\u200a\u202f\u205f\u3000]"
_INVISIBLE = r"[\u00ad\u200b-\u200d\u2060\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


def _unicode_rule(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    # NFC, then the spaces and invisible characters, each on the rows it can change.
    return Applied(
        _masked(_normalise(texts, "NFC"), f"{_ODD_SPACES}|{_INVISIBLE}", _unicode_spaces, _maybe_unicode)
    )


def _unicode_spaces(text: pl.Expr) -> pl.Expr:
    return text.str.replace_all(_ODD_SPACES, " ").str.replace_all(_INVISIBLE, "")


# ---- markup to text ----------------------------------------------------------------------------

# ACL Anthology XML keeps inline maths as `<tex-math>`; it becomes `$...$`, its content verbatim.
_TEX_MATH = re.compile(r"<tex-math>(.*?)</tex-math>", re.S)
# Inline tags around text: the text stays, the tags go (links keep their text). Sub- and
# superscripts would change what a number means ("10<sup>-3</sup>"), so they stay, counted.
_INLINE_TAGS = "a|b|i|em|strong|u|span|font|small|big|tt|code|var|cite|fixed-case|url|jats:[a-z-]+"
_PAIRED_TAG = re.compile(rf"<({_INLINE_TAGS})(?:\s[^<>]*)?>(.*?)</\1\s*>", re.S | re.I)
_BREAK_TAG = re.compile(r"</?(?:p|br|div)(?:\s[^<>]*)?/?>", re.I)
_SCRIPT_TAG = re.compile(r"</?(?:sub|sup)>", re.I)
# A named or numeric entity, with its semicolon ("AT&T" and "R&D" are text).
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_MAYBE_MARKUP = (
    r"<(?:tex-math|/?(?:"
    + _INLINE_TAGS
    + r"|p|br|div)[\s/>])|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);"
)


def _unescape(match: re.Match[str]) -> str:
    return html.unescape(match.group())


def markup_text(text: str) -> tuple[str, bool]:
    """HTML/XML markup to text: `<tex-math>` to `$...$`, paired inline tags dropped (their text
    kept), `<p>`/`<br>` to spaces, entities decoded. Also whether a spot was left as unsafe."""
    out = _TEX_MATH.sub(
        lambda m: "$" + _ENTITY.sub(_unescape, m.group(1)).strip().strip("$").strip() + "$", text
    )
    while True:
        inner = _PAIRED_TAG.sub(lambda m: m.group(2), out)
        if inner == out:
            break
        out = inner
    out = _BREAK_TAG.sub(" ", out)
    out = _ENTITY.sub(_unescape, out)
    return out, _SCRIPT_TAG.search(out) is not None


def _markup_rule(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    return _python_rule(texts, _MAYBE_MARKUP, markup_text, lambda part: _any_literal(part, ("<", "&")))


def _python_rule(
    texts: pl.Series, prefilter: str, repair: Callable[[str], tuple[str, bool]], superset: Superset
) -> Applied:
    """`repair` (text -> repaired text, unsafe spot left) on the rows `prefilter` finds."""
    rows = _matching_rows(texts, prefilter, superset)
    if rows.is_empty():
        return Applied(texts)
    fixed, unsafe = zip(*(repair(text) for text in texts.gather(rows).to_list()), strict=True)
    return Applied(
        texts.clone().scatter(rows, pl.Series(fixed, dtype=pl.String)),
        None,
        pl.Series([False] * len(texts)).scatter(rows, pl.Series(unsafe, dtype=pl.Boolean)),
    )


# Text-mode LaTeX that converts to Unicode without loss: accents, font and emphasis commands
# (their text kept), escaped specials, ligature letters, dashes and quotes. A row with any other
# command outside maths (`\cite`, `\ref`, `\url`, user macros) is left alone and counted.
_LATEX_ACCENTS = "'\"`^~=.uvHckrdbt"
_LATEX_SAFE = frozenset(
    [
        "emph",
        "textit",
        "textbf",
        "texttt",
        "textsc",
        "textrm",
        "textsf",
        "textsl",
        "textup",
        "textmd",
        "textnormal",
        "underline",
        "mbox",
        "em",
        "it",
        "bf",
        "sc",
        "rm",
        "tt",
        "sf",
        "sl",
        "ss",
        "o",
        "O",
        "ae",
        "AE",
        "aa",
        "AA",
        "l",
        "L",
        "i",
        "j",
        "oe",
        "OE",
        "ldots",
        "dots",
        "textendash",
        "textemdash",
        "textasciitilde",
        "textquotedblleft",
        "textquotedblright",
        "textquoteleft",
        "textquoteright",
    ]
)
_LATEX_MATH = re.compile(r"\$\$.*?\$\$|(?<!\\)\$.*?(?<!\\)\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)
_LATEX_COMMAND = re.compile(r"\\(?:([A-Za-z]+)|(.))")
_MAYBE_LATEX = r"\\[A-Za-z'\"`^~=.%&$#_{}]"


@functools.cache
def _latex_converter() -> Any:
    from pylatexenc.latex2text import LatexNodes2Text  # only rows with LaTeX need it

    return LatexNodes2Text(math_mode="verbatim")


@functools.cache
def _latex_symbol(source: str) -> str:
    """pylatexenc's Unicode for one accent or symbol command (`\\'{e}`, `\\ss`): each distinct
    one converted once. Its parser reads a text character by character in Python, too slow for
    whole texts at corpus scale, so it converts these pieces only."""
    return str(unicodedata.normalize("NFC", _latex_converter().latex_to_text(source)))


_LATEX_ACCENT = re.compile(
    r"\\([\'\"`^~=.uvHckrdbt])(?:\s*\{(\\?[A-Za-z])\}|(?<=[\'\"`^~=.])(\\?[A-Za-z])|\s+([A-Za-z]))"
)
_LATEX_NAMED = re.compile(
    r"\\(ss|o|O|ae|AE|aa|AA|l|L|i|j|oe|OE|ldots|dots|textendash|textemdash|textasciitilde|"
    r"textquotedblleft|textquotedblright|textquoteleft|textquoteright)(?![A-Za-z])(?:\{\})?"
)
_LATEX_ESCAPE = re.compile(r"\\([%&#_{}])")
_LATEX_FONT = re.compile(
    r"\\(?:emph|textit|textbf|texttt|textsc|textrm|textsf|textsl|textup|textmd|textnormal|underline|mbox)"
    r"\s*\{([^{}\\]*)\}"
)
_LATEX_SWITCH = re.compile(r"\{\\(?:em|it|bf|sc|rm|tt|sf|sl)(?![A-Za-z])\s*([^{}\\]*)\}")
_LATEX_BARE_SWITCH = re.compile(r"\\(?:em|it|bf|sc|rm|tt|sf|sl)(?![A-Za-z])\s*")
_LATEX_GROUP = re.compile(r"(?<!\\)\{([^{}\\]*)\}")
_LATEX_TIE = re.compile(r"(?<=\S)~(?=\S)")
_LATEX_ESCAPED_CHAR = "\x00"  # stands for an escaped brace while the groups are undone


def _undo(group: re.Pattern[str], text: str) -> str:
    """`text` with every match of `group` replaced by its first group, inner groups first."""
    while True:
        text, found = group.subn(r"\1", text)
        if not found:
            return text


def _accent(match: re.Match[str]) -> str:
    accent, braced, bare, spaced = match.groups()
    letter = braced or bare or spaced
    return _latex_symbol(f"\\{accent}{{{letter}}}")


def _latex_part(part: str) -> str | None:
    """Text-mode LaTeX of a text without maths to Unicode, or None where markup is left that
    the conversion does not know (a nested group, a command in a group)."""
    if "\\" in part:
        part = _LATEX_ACCENT.sub(_accent, part)
        part = _LATEX_NAMED.sub(lambda m: _latex_symbol("\\" + m.group(1)), part)
        part = _LATEX_ESCAPE.sub(
            lambda m: _LATEX_ESCAPED_CHAR + m.group(1) if m.group(1) in "{}" else m.group(1), part
        )
        part = _undo(_LATEX_FONT, part)
        if "{\\" in part:
            part = _undo(_LATEX_SWITCH, part)
        part = _LATEX_BARE_SWITCH.sub("", part)
    if "{" in part:
        part = _undo(_LATEX_GROUP, part)
    part = part.replace(_LATEX_ESCAPED_CHAR + "{", "{").replace(_LATEX_ESCAPED_CHAR + "}", "}")
    if "\\" in part or "{" in part or "}" in part:
        return None
    if "-" in part:
        part = part.replace("---", "\u2014").replace("--", "\u2013")
    if "`" in part or "''" in part:
        part = part.replace("``", "\u201c").replace("''", "\u201d")
    if "~" in part:
        part = _LATEX_TIE.sub(" ", part)
    return part


def latex_text(text: str) -> tuple[str, bool]:
    """Text-mode LaTeX to Unicode (accents and symbols by `pylatexenc`), maths kept verbatim;
    a row holding a command outside `_LATEX_SAFE`, or markup the conversion cannot undo, is
    returned as it is, marked unsafe."""
    if "TeX" in text:
        text = _LATEX_LOGO.sub(lambda m: m.group(1), text)
    if "$" in text and "{" in text:
        # Groups around maths ("\\textbf{180$\\times$}"): undone before the text is split at maths.
        text = _undo(_LATEX_GROUP_WITH_MATH, text)
    parts = _LATEX_MATH.split(text) if "$" in text or "\\(" in text or "\\[" in text else [text]
    maths = _LATEX_MATH.findall(text) if len(parts) > 1 else []
    converted = []
    for part in parts:
        for word, char in _LATEX_COMMAND.findall(part):
            if word and word not in _LATEX_SAFE and not (len(word) == 1 and word in _LATEX_ACCENTS):
                return text, True
            if char and char not in _LATEX_ACCENTS + "%&#_{}":
                return text, True
        body = _latex_part(part)
        if body is None or _ascii_letters(_LATEX_COMMAND_NAME.sub("", part)) != _ascii_letters(body):
            return text, True  # markup left, or a letter or digit lost or gained
        converted.append(body)
    out = converted[0] + "".join(m + part for m, part in zip(maths, converted[1:], strict=True))
    return out, False


_LATEX_LOGO = re.compile(r"\\(LaTeX|TeX)\b(?:\{\})?")
_LATEX_GROUP_WITH_MATH = re.compile(
    r"(?:\\(?:emph|textit|textbf|texttt|textsc|textrm|textsf|textsl|underline|mbox)\s*|(?<![\\$^_A-Za-z]))"
    r"\{(?:\\(?:em|it|bf|sc|rm|tt|sf|sl)(?![A-Za-z])\s*)?((?:[^{}$\\]|\$[^$]*\$)*\$[^$]*\$(?:[^{}$\\]|\$[^$]*\$)*)\}"
)
_LATEX_COMMAND_NAME = re.compile(r"\\[A-Za-z]+|\\.")
_NOT_ALNUM_BYTES = bytes(b for b in range(128) if not chr(b).isalnum())


def _ascii_letters(text: str) -> bytes:
    """The ASCII letters and digits of `text` with accents taken off (C speed: no regex)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    return text.encode("ascii", "ignore").translate(None, _NOT_ALNUM_BYTES)


_FONT_COMMANDS = (
    "emph|textit|textbf|texttt|textsc|textrm|textsf|textsl|textup|textmd|textnormal|underline|mbox"
)
_FONT_SWITCHES = "em|it|bf|sc|rm|tt|sf|sl"
# The text-mode commands the vectorised path knows; a row with any other backslash goes to
# `latex_text`. Symbol accents on one letter, fonts, escaped specials.
_SIMPLE_COMMAND = (
    r"\\(?:[\'\"`^~=.](?:\{[A-Za-z]\}|[A-Za-z])|(?:"
    + _FONT_COMMANDS
    + r")\s*\{|(?:"
    + _FONT_SWITCHES
    + r")(?-u:\b)|[%&#_])"
)


@functools.cache
def _accent_table() -> tuple[list[str], list[str]]:
    """Every symbol accent on every ASCII letter, in its LaTeX spellings, and its Unicode
    (pylatexenc's, each converted once): for one Aho-Corasick pass over the rows."""
    sources, targets = [], []
    for accent in "'\"`^~=.":
        for letter in string.ascii_letters:
            unicode = _latex_symbol(f"\\{accent}{{{letter}}}")
            for form in ("{\\%s{%s}}", "{\\%s%s}", "\\%s{%s}", "\\%s%s"):
                sources.append(form % (accent, letter))
                targets.append(unicode)
    return sources, targets


def _latex_vectorised(texts: pl.Series) -> tuple[pl.Series, pl.Series]:
    """`latex_text` for rows without maths whose only commands are `_SIMPLE_COMMAND`s, as polars
    expressions; also which rows it converted (the others come back as they were)."""
    text = pl.col("t")
    simple = (
        pl.DataFrame({"t": texts})
        .select(
            ~text.str.contains(r"[$]|\\[(\[{}]")
            & (text.str.count_matches("\\", literal=True) == text.str.count_matches(_SIMPLE_COMMAND))
        )
        .to_series()
    )
    done = pl.Series([False] * len(texts))
    rows = simple.arg_true()
    if rows.is_empty():
        return texts, done
    part = texts.gather(rows)
    accented = part.str.contains(r"\\[\'\"`^~=.]")
    if accented.any():
        sources, targets = _accent_table()
        hits = accented.arg_true()
        part = part.scatter(hits, part.gather(hits).str.replace_many(sources, targets))
    converted = text
    for _ in range(2):  # a font command inside another
        converted = converted.str.replace_all(r"\\(?:" + _FONT_COMMANDS + r")\s*\{([^{}\\]*)\}", "${1}")
        converted = converted.str.replace_all(
            r"\{\\(?:" + _FONT_SWITCHES + r")(?-u:\b)\s*([^{}\\]*)\}", "${1}"
        )
    converted = (
        converted.str.replace_all(r"\\(?:" + _FONT_SWITCHES + r")(?-u:\b)\s*", "")
        .str.replace_all(r"\\([%&#_])", "${1}")
        .str.replace_all(r"\{([^{}\\]*)\}", "${1}")
        .str.replace_all("---", "\u2014", literal=True)
        .str.replace_all("--", "\u2013", literal=True)
        .str.replace_all("``", "\u201c", literal=True)
        .str.replace_all("''", "\u201d", literal=True)
        .str.replace_all(r"(\S)~(\S)", "${1} ${2}")
        .str.replace_all(r"(\S)~(\S)", "${1} ${2}")
    )

    # Each replacement drops only a known command's name, braces or a tie, or puts pylatexenc's
    # character for an accent: no letter check (an NFKD pass cost more than all of them).
    original = texts.gather(rows)
    out = pl.DataFrame({"t": part}).select(converted).to_series()
    ok = ~out.str.contains(r"[\\{}]").fill_null(True)
    fixed = pl.select(pl.when(pl.lit(ok)).then(pl.lit(out)).otherwise(pl.lit(original))).to_series()
    return texts.clone().scatter(rows, fixed), done.scatter(rows, ok)


_MATH_SPANS = r"\$\$[^$]*\$\$|\$[^$]*\$|\\\((?:[^\\]|\\[^)])*\\\)|\\\[(?:[^\\]|\\[^\]])*\\\]"


def _latex_rule(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    # Most rows with LaTeX hold only accents, fonts and escaped specials outside maths: those
    # are converted as columns; the others (maths, rarer commands) by `latex_text`, row by row.
    rows = _matching_rows(texts, _MAYBE_LATEX, lambda part: _any_literal(part, ("\\",)))
    if rows.is_empty():
        return Applied(texts)
    # A row whose every command is inside maths ("$\\epsilon$") has no text-mode LaTeX.
    outside = texts.gather(rows).str.replace_all(_MATH_SPANS, "").str.contains(_MAYBE_LATEX).fill_null(False)
    rows = rows.filter(outside)
    if rows.is_empty():
        return Applied(texts)
    part = texts.gather(rows)
    fixed, done = _latex_vectorised(part)
    rest = (~done).arg_true()
    unsafe = pl.Series([False] * len(part))
    if not rest.is_empty():
        slow, slow_unsafe = zip(*(latex_text(text) for text in part.gather(rest).to_list()), strict=True)
        fixed = fixed.scatter(rest, pl.Series(slow, dtype=pl.String))
        unsafe = unsafe.scatter(rest, pl.Series(slow_unsafe, dtype=pl.Boolean))
    return Applied(
        texts.clone().scatter(rows, fixed), None, pl.Series([False] * len(texts)).scatter(rows, unsafe)
    )


# Section labels glued to the sentence after them ("ResultsWe", "METHODSThe"): a colon and a space.
_LABELS = (
    "Background|Introduction|Objectives?|Purpose|Aims?|Methods?|Methodology|Results|Conclusions?|"
    "Motivation|Findings|Significance|Context|Contributions?|Availability"
)
_GLUED_LABEL = re.compile(rf"(^|[.!?:] )({_LABELS}|(?:{_LABELS.upper()}))([A-Z][a-z]+)")
# "ABSTRACTIntroduction:" / "AbstractWe": a leading label glued to the first word.
_GLUED_ABSTRACT = re.compile(
    r"^\s*(?:ABSTRACT(?=[A-Z][a-z])|Abstract(?=(?:We|In|The|This|Our|Recent|Many|Most|It|As|To|For"
    r"|With|Although|While|Despite|Deep|Large|Neural|Machine)\b))"
)
_MAYBE_LABEL = (
    r"^\s*(?:ABSTRACT|Abstract)[A-Z][a-z]|(?:^|[.!?:] )(?:" + _LABELS + "|" + _LABELS.upper() + r")[A-Z][a-z]"
)


_SENTENCE_START_MIN_ZIPF = 5.5


def _labels_text(text: str, params: CleanParams) -> tuple[str, bool]:
    out = _GLUED_ABSTRACT.sub("", text)

    def label(match: re.Match[str]) -> str:
        lead, name, word = match.groups()
        # The sentence's first word must be a common one ("We", "The", "In"), not a name's
        # end ("MethodsNet").
        if _zipf(word) < _SENTENCE_START_MIN_ZIPF or _zipf(name + word) > 0 or _is_term(name + word, params):
            return match.group()
        return f"{lead}{name}: {word}"

    return _GLUED_LABEL.sub(label, out), False


def _labels_rule(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    return _python_rule(
        texts,
        _MAYBE_LABEL,
        functools.partial(_labels_text, params=params),
        lambda part: part.str.contains(_GLUED_LABEL_SCAN).fill_null(False),
    )


# Every glued label: a label's stem and a capital. Its literal stems make the regex engine scan
# with SIMD (an Aho-Corasick scan of label-and-capital literals cost ten times more).
_GLUED_LABEL_SCAN = (
    "(?:"
    + "|".join(
        variant
        for name in (
            "Background",
            "Introduction",
            "Objective",
            "Purpose",
            "Aim",
            "Method",
            "Result",
            "Conclusion",
            "Motivation",
            "Finding",
            "Significance",
            "Context",
            "Contribution",
            "Availability",
            "Abstract",
        )
        for variant in (name, name.upper())
    )
    + ")(?:s|ology)?[A-Z]"
)


def _strip_prefix(text: pl.Expr) -> pl.Expr:
    # Only a label followed by punctuation, or all caps: "Abstract reasoning is ..." is text.
    # Repeated labels ("Abstract: ABSTRACT ...") all go, so that cleaning twice changes nothing.
    return text.str.replace(r"^(?:\s*(?:[Aa]bstract\s*[:.\-\u2013\u2014]|ABSTRACT\b))+\s*", "")


def _table_residue(text: pl.Expr) -> pl.Expr:
    return text.str.replace(r"(?:\s*\|)+\s*$", "")


def _whitespace(text: pl.Expr) -> pl.Expr:
    # Same result as replacing every run of whitespace by one space, without replacing each
    # single space (the commonest run) by itself.
    return text.str.replace_all(r"\s\s+|[^\S ]", " ").str.strip_chars(" ")


# LaTeX renders footnote mark 1 as a superscript that scrapes as "111" (mark 2 as "222", ...),
# glued to the word or sentence end it follows; the footnote's text follows the mark directly.
_MARK = "(?:" + "|".join(str(d) * 3 for d in range(1, 10)) + ")"
# Punctuation before a mark must itself follow a non-digit: in "0.999" or "1,888" the digits
# are a number's, not a mark.
_MARK_AFTER = r"([A-Za-z)\]]|(?:^|[^0-9.,])[.,;:!?\u201d\"'])"
# A footnote sentence: starts upper case and ends at a full stop followed by a space, an upper
# case letter (the next sentence glued on) or the end; "1.3B" and "e.g.," do not end it.
# A footnote that only announced a link ("Code is available at") ends where the URL was,
# even when the next sentence follows without a full stop.
_FOOTNOTE_LINK = (
    r"[A-Z][^.!?]*?\b(?:available|released|provided|found|accessible|hosted)"
    r"(?:\s+(?:online|publicly))?\s+(?:at|from|on|via|here)(?:\s+Git[Hh]ub)?\s*:?(\s+[A-Z]|\s*$)"
)
_FOOTNOTE_TEXT = r"[A-Z](?:[^.!?]|[.!?][^\sA-Z])*(?:[.!?]|$)"


def _footnotes(text: pl.Expr) -> pl.Expr:
    return (
        # A leaked `\footnotetext` line ("00footnotetext:" and a mark, then "Work performed ...").
        text.str.replace_all(r"\d*footnotetext:\s*[\u2020\u2021\u2217*]?\s*(?:[^.!?]|[.!?]\S)*[.!?]?", " ")
        .str.replace_all(_MARK_AFTER + _MARK + _FOOTNOTE_LINK, "$1$2")
        .str.replace_all(_MARK_AFTER + _MARK + _FOOTNOTE_TEXT, "$1 ")
        .str.replace_all(_MARK_AFTER + _MARK + r"(\s|$)", "$1$2")
        # Dagger and asterisk operators are affiliation/equal-contribution marks, never text.
        .str.replace_all(r"([A-Za-z)\].,])[\u2020\u2021\u2217]+", "$1")
        # Leading marks, spaced or not ("† † †"): all in one pass, which the pass limit needs.
        .str.replace_all(r"^(?:[\u2020\u2021\u2217]+\s*)+", "")
        .str.replace_all(r"  +", " ")
        .str.strip_chars(" ")
    )


# A sentence that announced a link and lost it: it names code/data/a page and ends on the
# preposition or colon that led to the URL. Removed whole, with nothing else in it.
_LINK_WORDS = (
    r"(?i:code|codes|data|dataset|datasets|model|models|checkpoints?|weights|available|released?|"
    r"page|website|github|project|demo|samples|implementation|repository|visit)"
)
_DANGLING_END = (
    r"(?:\b(?:at|from|via|here|on|in|online)\s*:?|:|\bat\s*https?://|\bGit[Hh]ub\s*:?"
    r"|\b(?:at|on)\s+(?:our|the)\s+(?:demo|project|web|github)?\s*(?:page|site|website)?)\s*$"
)


def _dangling_link(text: pl.Expr) -> pl.Expr:
    return text.str.replace(
        r"(^|[.!?])\s*[^.!?]*\b" + _LINK_WORDS + r"\b[^.!?]*" + _DANGLING_END, "$1"
    ).str.strip_chars(" ")


# Brackets left with nothing but separators and a lead-in when their citations were removed:
# "( )", "(;)", "(e.g., , )", "(see , )".
_EMPTY_BRACKETS = r"\(\s*(?:(?:e\.g\.|i\.e\.|cf\.|see)\s*)?(?:[,;]\s*)*\)"
_EMPTY_CITATION = r" [,.;:]( |$)|" + _EMPTY_BRACKETS


def _empty_citation(text: pl.Expr) -> pl.Expr:
    # A removed citation or formula leaves a space before punctuation (" ,", " .") or an
    # empty pair of brackets; the punctuation must be followed by a space or the end so that
    # ".NET" or " .5" are left alone.
    # Never after another mark: "a, , b" would become "a,, b" (two marks run together).
    # Brackets go only where a space, a mark or the end follows them: "0.999( )0.999" without
    # them would be one new number.
    return (
        text.str.replace_all(r"(?:\s*" + _EMPTY_BRACKETS + r")+([\s,.;:?!]|$)", "$1")
        .str.replace_all(r"([^\s,.;:?!]) +([,.;:])( |$)", "$1$2$3")
        .str.replace_all(r"  +", " ")
    )


# Left alone (`skipped_unsafe`): a space before punctuation that follows another mark, and
# empty brackets glued to what follows them.
_MARKS_APART = r"[,.;:?!] +[,.;:](?: |$)|" + _EMPTY_BRACKETS + r"[^\s,.;:?!]"


def _empty_citation_rule(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    rows = _matching_rows(texts, _EMPTY_CITATION, _maybe_empty_citation)
    if rows.is_empty():
        return Applied(texts)
    part = texts.gather(rows)
    fixed = pl.select(_empty_citation(pl.lit(part))).to_series()
    # Spots left as they are (`_MARKS_APART`).
    unsafe = part.str.contains(_MARKS_APART).fill_null(False)
    return Applied(
        texts.clone().scatter(rows, fixed), None, pl.Series([False] * len(texts)).scatter(rows, unsafe)
    )


# ---- dictionary rules ---------------------------------------------------------------------------


@functools.cache
def _zipf_table() -> dict[str, float]:
    """wordfreq's English list (web, books, subtitles, Wikipedia...) as Zipf values (log10 per 1e9)."""
    import wordfreq  # imported here: only the dictionary rules need it

    # `get_frequency_dict` gives every word of a centibel bucket the same frequency: one
    # logarithm per bucket, not per word (same values, same order, later buckets win).
    table: dict[str, float] = {}
    for index, bucket in enumerate(wordfreq.get_frequency_list("en", wordlist="large")):
        table.update(dict.fromkeys(bucket, math.log10(wordfreq.cB_to_freq(-index)) + 9))
    return table


def _zipf(word: str) -> float:
    return _zipf_table().get(word.lower(), 0.0)


def _is_word(part: str, params: CleanParams) -> bool:
    return _zipf(part) >= params.word_min_zipf


@functools.cache
def _terms(params: CleanParams) -> frozenset[str]:
    """`clean.terms`, lower-cased: the maintained list of names and terms never split or joined."""
    return frozenset(term.lower() for term in params.terms)


def _is_term(token: str, params: CleanParams) -> bool:
    return token.lower() in _terms(params)


def _is_common_word(part: str, params: CleanParams) -> bool:
    """A word of 4+ letters at least as frequent as `clean.common_word_min_zipf`."""
    return len(part) >= 4 and _zipf(part) >= params.common_word_min_zipf


# Productive English suffixes: a token that is a known word plus one of these ("robustifying",
# "robust" + "ifying") is a derived word, whatever splits it also allows ("robust if ying").
_DERIVING_SUFFIXES = (
    "ifying",
    "ified",
    "ification",
    "ifies",
    "ify",
    "izing",
    "ized",
    "ization",
    "izes",
    "ising",
    "ised",
    "isation",
    "ness",
    "ment",
    "ments",
    "ably",
    "ability",
    "ingly",
    "edly",
    "ity",
    "ism",
    "ist",
    "ists",
    "ize",
    "ise",
    "ive",
    "ively",
    "ally",
    "less",
    "ing",
    "ings",
    "ed",
    "er",
    "ers",
    "ly",
)


def derived_from(token: str, params: CleanParams) -> str | None:
    """The known word that `token` derives from by a productive suffix, if any ("robust")."""
    lower = token.lower()
    for suffix in _DERIVING_SUFFIXES:
        stem = lower[: -len(suffix)]
        if lower.endswith(suffix) and len(stem) >= 4:
            for candidate in (stem, stem + "e", stem[:-1] if stem[-1:] == stem[-2:-1] else stem):
                if _zipf(candidate) >= params.common_word_min_zipf:
                    return candidate
    return None


def _is_function_word(part: str, params: CleanParams) -> bool:
    # The closed-class words ("the", "of", "is", "on") are the most frequent words of English;
    # a single letter other than "a" is too ambiguous ("iPhone", "kHz").
    return (len(part) <= 4 and (len(part) > 1 or part == "a")) and _zipf(
        part
    ) >= params.function_word_min_zipf


_HYPHENATED = r"\b[A-Za-z]+- ?[a-z]+\b"


@functools.cache
def _dehyphenate_token(token: str, params: CleanParams) -> str:
    left, right = (part.strip() for part in token.split("-", 1))
    joined = left + right
    if _is_term(left + "-" + right, params) or _is_term(joined, params):
        return token
    if not _is_word(joined, params):
        return token  # "state-of", "zero-shot", "data- and"
    if " " in token:
        return joined  # a hyphen before a line break inside a word
    # Without the break, only a joined word whose halves are not words: "re-use", "co-ordinate"
    # and "multi-lingual" are the author's spelling, "incor-porates" is not.
    if _is_word(left, params) or _is_word(right, params):
        return token
    return joined


def _dehyphenate(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    decide = functools.partial(_dehyphenate_token, params=params)
    found = texts.str.extract_all(_HYPHENATED)
    changes = _changes(found.explode().drop_nulls().unique().to_list(), decide)
    if not changes:
        return Applied(texts)
    # Each text's own matches say which texts to rewrite: no scan of every text for the
    # repaired tokens. Those texts are rewritten match by match: broken words are many (about
    # 850 distinct repairs in 100,000 benchmark rows), and `_bounded`'s patterns for all of
    # them made an Aho-Corasick automaton of some 66,000 patterns. A match that is bounded
    # has a non-word character or a text end on either side, where Python's `\b` and polars'
    # agree.
    rows = found.list.eval(pl.element().is_in(list(changes))).list.any().fill_null(False).arg_true()
    hyphenated = re.compile(_HYPHENATED)

    def rewrite(text: str) -> str:
        def repair(match: re.Match[str]) -> str:
            token = match.group()
            fixed = changes.get(token)
            if fixed is None or not _is_bounded(text, match.start(), match.end()):
                return token
            return fixed

        return hyphenated.sub(repair, text)

    fixed = pl.Series([rewrite(text) for text in texts.gather(rows).to_list()], dtype=pl.String)
    return Applied(texts.clone().scatter(rows, fixed))


# Three shapes of words glued by lost spacing around emphasis: a word before a name
# ("proposeReflexion", "theMuJoCo"), a word after an acronym ("HyDEsignificantly", "DDPGwithout"),
# and two or three lower-case words ("isusually", "onshorttexts").
_LOWER_THEN_UPPER = r"\b[a-z]{2,}[A-Z][A-Za-z0-9]*\b"
_ACRONYM_THEN_LOWER = r"\b[A-Za-z0-9]*[A-Z][A-Z0-9][a-z]{2,}\b"
_LONG_LOWER = r"(?-u:\b)[a-z]{12,}(?-u:\b)"
_ACRONYM_TAIL = re.compile(r"^(.*[A-Z][A-Z0-9])([a-z]{2,})$")
_FLAGGED = "\x00"  # decision marker: leave the token, flag the row
# Function words that double as English affixes ("in-exactly", "graph-on", "segment-or",
# "general-is-able", "a-typical"): a split may not put them where the affix would be.
_AFFIX_LIKE = frozenset(
    [
        "a",
        "an",
        "as",
        "at",
        "be",
        "he",
        "i",
        "in",
        "it",
        "me",
        "my",
        "one",
        "so",
        "we",
        "all",
        "can",
        "like",
        "will",
    ]
)
_NOT_FIRST = _AFFIX_LIKE | {"or", "up", "out"}
_NOT_LAST = _AFFIX_LIKE | {"is", "on", "or", "up", "out"}
# Word endings of verbs and adjectives that precede a product name in prose ("we propose X",
# "a model called X", "an effective X"); nouns such as "mini", "small", "sign", "pixel" start
# names ("miniImageNet", "smallNORB", "signSGD", "pixelCNN") and must not be split off.
_VERB_ENDINGS = ("ed", "ing", "ose", "uce", "ugh", "ide", "ve")
# English derivational affixes that are also words: "push-for-ward", "computation-ally" and
# "over-fitting" are one word, so such a part may not start or end a split.
_SUFFIX_WORDS = frozenset(
    [
        "ward",
        "wards",
        "ally",
        "able",
        "ably",
        "ness",
        "less",
        "ment",
        "ship",
        "wise",
        "like",
        "hood",
        "some",
        "ever",
    ]
)
_PREFIX_WORDS = frozenset(
    [
        "over",
        "under",
        "anti",
        "semi",
        "multi",
        "super",
        "inter",
        "intra",
        "hyper",
        "auto",
        "mini",
        "meta",
        "post",
        "para",
        "self",
    ]
)


def _split_tail(token: str, params: CleanParams) -> str | None:
    match = _ACRONYM_TAIL.match(token)
    if match is None:
        return None
    head, tail = match.groups()
    if _is_word(head[-1] + tail, params):
        return None  # "FACScan": "FACS can" or "FAC Scan"? Ambiguous, so left alone.
    if _is_function_word(tail, params) or (len(tail) >= 7 and _is_word(tail, params)):
        return f"{head} {tail}"
    return None


def _lower_splits(token: str, params: CleanParams) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(safe, other) splits of `token` into 2 or 3 words of English.

    A safe split goes through a function word in a place where it cannot be an affix; content
    parts have at least 4 letters.
    """

    def content(part: str) -> bool:
        return len(part) >= 4 and _is_word(part, params)

    def ok(part: str) -> bool:
        return _is_function_word(part, params) or content(part)

    def safe(parts: tuple[str, ...]) -> bool:
        function = [_is_function_word(p, params) for p in parts]
        if not any(function) or parts[-1] in _SUFFIX_WORDS or parts[0] in _PREFIX_WORDS:
            return False
        for i, part in enumerate(parts):
            if not function[i] or all(function):
                continue
            if i == 0 and part in _NOT_FIRST:
                return False
            if i == len(parts) - 1 and part in _NOT_LAST:
                return False
            if 0 < i < len(parts) - 1 and (part in _NOT_FIRST or part in _NOT_LAST):
                return False
        return True

    found: list[tuple[str, ...]] = []
    n = len(token)
    for i in range(1, n):
        if not ok(token[:i]):
            continue
        if ok(token[i:]):
            found.append((token[:i], token[i:]))
        for j in range(i + 1, n):
            if ok(token[i:j]) and ok(token[j:]):
                found.append((token[:i], token[i:j], token[j:]))
    return [s for s in found if safe(s)], [s for s in found if not safe(s)]


@functools.cache
def _glued_token(token: str, params: CleanParams) -> str:
    """The repaired token, the token itself (leave), or `_FLAGGED` (leave and flag the row)."""
    if token.lower() in _zipf_table() or _is_term(token, params):
        return token  # "iPhone", "YouTube", "softmax": any word the list knows is not glued
    if token.islower():
        if derived_from(token, params) is not None:
            return token  # "robustifying" is "robust" + "ifying", not "robust if ying"
        safe, other = _lower_splits(token, params)
        if safe:
            best = max(safe, key=lambda s: (min(_zipf(p) for p in s), -len(s), s))
            return " ".join(best)
        return _FLAGGED if other else token
    head = re.match(r"[a-z]*", token)
    assert head is not None
    prefix, rest = head.group(), token[head.end() :]
    if prefix and rest:
        function = _is_function_word(prefix, params) and prefix not in _NOT_FIRST
        # "tiered" (in "tieredImageNet") is an adjective: verbs before names are common words.
        verb = _is_common_word(prefix, params) and prefix.endswith(_VERB_ENDINGS)
        if function or verb:
            return f"{prefix} {_split_tail(rest, params) or rest}"
        return _FLAGGED if len(prefix) >= 3 and _is_word(prefix, params) else token
    return _split_tail(token, params) or token


@functools.cache
def _lower_pattern(params: CleanParams) -> str:
    """Lower-case tokens that start or end with a function word: every safe split does."""
    # A function word's Zipf value is at least `function_word_min_zipf`: only those, and words
    # whose lower case is another entry, need the full test.
    words = [
        w
        for w, z in _zipf_table().items()
        if (z >= params.function_word_min_zipf or not w.islower()) and w.isascii() and w.isalpha()
    ]
    function = sorted((w for w in words if _is_function_word(w, params)), key=lambda w: (-len(w), w))
    first = "|".join(w for w in function if w not in _NOT_FIRST)
    last = "|".join(w for w in function if w not in _NOT_LAST)
    return rf"(?-u:\b)(?:(?:{first})[a-z]{{2,}}|[a-z]{{2,}}(?:{last}))(?-u:\b)"


def _candidates(texts: pl.Series, pattern: str) -> pl.Series:
    return texts.str.extract_all(pattern).explode().drop_nulls().unique()


# Literals per regex alternation: keeps each compiled regex far below the regex size limit.
_ALTERNATION_CHUNK = 2_000
# Up to this many literals, a regex alternation finds them with a SIMD prefilter (Teddy), several
# times faster than Aho-Corasick (`str.contains_any`); with more, it can be several times slower.
_TEDDY_LITERALS = 64


def _contains_any(texts: pl.Series, literals: list[str]) -> pl.Series:
    """`texts.str.contains_any(literals)`, as a regex alternation where that is faster."""
    if len(literals) > _TEDDY_LITERALS:
        return texts.str.contains_any(literals).fill_null(False)
    found = pl.Series([False] * len(texts), dtype=pl.Boolean)
    for start in range(0, len(literals), _ALTERNATION_CHUNK):
        chunk = literals[start : start + _ALTERNATION_CHUNK]
        found = found | texts.str.contains("|".join(pl.escape_regex(lit) for lit in chunk)).fill_null(False)
    return found


# Characters that may bound a repaired token: prose, not identifiers, LaTeX commands, URLs or
# hyphenated compounds ("\\textit", "github.com/antoyang", "leaveone-out" are left alone).
# A possessive or closing single quote may follow a token ("thePreconditioner\u2019s").
_LEFT = (" ", "(", "[", "\u201c", "\u2018", '"')
_RIGHT = (" ", ", ", ". ", "; ", ": ", "? ", "! ", ")", "]", "\u201d", "\u2019", '"', "'")
# `_LEFT` and `_RIGHT` as regexes on the unpadded text: a padding space is a text end there.
_LEFT_REGEX = "|".join(
    "(?:^| )" + pl.escape_regex(left[1:]) if left.startswith(" ") else pl.escape_regex(left) for left in _LEFT
)
_RIGHT_REGEX = "|".join(
    pl.escape_regex(right[:-1]) + "(?: |$)" if right.endswith(" ") else pl.escape_regex(right)
    for right in _RIGHT
)


def _bounded(tokens: list[str], values: list[str]) -> tuple[list[str], list[str]]:
    """Every token between every pair of bounding characters, and the same for its value."""
    patterns, replacements = [], []
    for token, value in zip(tokens, values, strict=True):
        for left in _LEFT:
            for right in _RIGHT:
                patterns.append(left + token + right)
                replacements.append(left + value + right)
    return patterns, replacements


def _contains_bounded(texts: pl.Series, tokens: list[str]) -> pl.Series:
    """Rows of `texts` that, padded, hold one of the patterns of `_bounded(tokens, ...)`.

    A literal scan finds the rows holding a token (most hold it inside a longer word:
    "hypothesize" holds "thesize"); the exact regex runs on those rows only.
    """
    return _rows_bounded(texts, tokens, _contains_any(texts, tokens) if tokens else None)


def _rows_bounded(texts: pl.Series, tokens: list[str], maybe: pl.Series | None) -> pl.Series:
    # `_bounded`'s patterns as one regex on the unpadded text, run on the rows `maybe` selects.
    found = pl.Series([False] * len(texts), dtype=pl.Boolean)
    if not tokens or maybe is None or not maybe.any():
        return found
    hits = texts.filter(maybe)
    exact = pl.Series([False] * len(hits), dtype=pl.Boolean)
    for start in range(0, len(tokens), _ALTERNATION_CHUNK):
        words = "|".join(pl.escape_regex(t) for t in tokens[start : start + _ALTERNATION_CHUNK])
        exact = exact | hits.str.contains(f"(?:{_LEFT_REGEX})(?:{words})(?:{_RIGHT_REGEX})").fill_null(False)
    return found.scatter(maybe.arg_true(), exact)


def _is_bounded(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` is bounded as `_bounded`'s patterns require (a text end
    counts as a space, as in the padded text)."""
    padded_left = " " if start == 0 else text[start - 1]
    after = text[end : end + 1]
    padded_right = after + (text[end + 1 : end + 2] or " ") if after else " "
    return padded_left in _LEFT and (padded_right[0] in _RIGHT or padded_right in _RIGHT)


def _padded(texts: pl.Series) -> pl.Series:
    # A space on each side, so that a token at the start or end is bounded like any other.
    return (" " + texts + " ").alias(texts.name)


def _changes(candidates: list[str], decide: Callable[[str], str]) -> dict[str, str]:
    """Candidate -> repaired token, for the candidates that `decide` repairs."""
    return {t: d for t in sorted(candidates) if (d := decide(t)) not in (t, _FLAGGED)}


def _rewrite_rows(texts: pl.Series, changes: dict[str, str], maybe: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Rewrite each bounded occurrence of a key of `changes` to its value, where `maybe` holds
    every row with one (others may be in it too); also return which rows were rewritten."""
    rows = _rows_bounded(texts, list(changes), maybe)
    if not rows.any():
        return texts, rows
    # Aho-Corasick (polars `replace_many`) over the tokens with their bounding characters: one
    # pass, no per-row Python. Again where a token is left: adjacent tokens share the space
    # between them, and the first pass replaced only one of them.
    patterns, replacements = _bounded(list(changes), list(changes.values()))

    def replace(part: pl.Series) -> pl.Series:
        fixed = _padded(part).str.replace_many(patterns, replacements, leftmost=True)
        return fixed.str.slice(1).str.slice(0, fixed.str.len_chars() - 2)

    fixed = replace(texts.filter(rows))
    again = _contains_bounded(fixed, list(changes))
    if again.any():
        fixed = fixed.scatter(again.arg_true(), replace(fixed.filter(again)))
    return texts.clone().scatter(rows.arg_true(), fixed), rows


# Two more shapes of lost spacing: a sentence glued to the next ("structures.The",
# "(e.g.InstructGPT)"), and a name glued to the word after it ("ImageNetbenchmark",
# "SpinQuantnarrows", "LongT5with") or a capitalised first word to the next ("Toavoid").
# A sentence glue needs a lower-case word before the full stop, preceded by a space or an
# opening bracket: "U.S.Army", "arXiv.Org" and "github.com/Org" stay. All 15 such glues in the
# SciTLDR abstracts are real; a code name written "torch.Tensor" would be split too.
_SENTENCE_GLUE = r"(^|[ (\[\"\u201c])([a-z]{2,}|e\.g|i\.e)\.([A-Z][A-Za-z0-9])"
# The comma after "e.g." or "i.e." glued to the next word ("(e.g.,arithmetic reasoning)").
_ABBREVIATION_GLUE = r"\b(e\.g|i\.e)\.,([A-Za-z])"
# A comma between two words with the space after it lost ("adapters,no", "query,HyDEfirst");
# two letters on each side leave pairs such as "(s,a)" and numbers such as "1,000" alone.
_COMMA_GLUE = r"([a-z]{2}),([A-Za-z]{2})"
# A full stop right before a capital, which every sentence glue holds: 26 literals, one SIMD scan.
_FULL_STOP_CAPITAL = [f".{letter}" for letter in string.ascii_uppercase]
# A comma right before a letter: 52 literals, which one SIMD scan finds (far cheaper than the regex).
_COMMA_LETTER = [f",{letter}" for letter in string.ascii_letters]
_NAME_THEN_LOWER = r"\b[A-Za-z0-9]*[A-Z][A-Za-z0-9]*[a-z]{3,}\b"
_NAME_TAIL = re.compile(r"^(.*[A-Z0-9])([a-z]+)$")


def _tail_word(part: str, params: CleanParams) -> bool:
    return _is_function_word(part, params) or (len(part) >= 5 and _is_word(part, params))


@functools.cache
def _name_token(token: str, params: CleanParams) -> str:
    """`_glued_token` for a token with a capital: the repaired token, itself, or `_FLAGGED`."""
    if token.lower() in _zipf_table() or _is_term(token, params):
        return token  # "Feedback", "However"
    if token[1:].islower():
        # A capitalised word: only a split the lower-case rules call safe ("Toavoid"). An
        # unknown capitalised word is most often a name ("Mujoco"): never flagged for that.
        # A capitalised word mid-sentence is most often a name, and names are often made of
        # words ("Papernot", "Soatto"): only a function word before a content word ("Toavoid")
        # or one between two content words ("Transformerfortrue") is split off.
        fixed = _glued_token(token.lower(), params)
        if fixed in (_FLAGGED, token.lower()):
            return token
        parts = fixed.split(" ")
        function = [_is_function_word(p, params) for p in parts]
        if function not in ([True, False], [False, True, False]):
            return token
        return token[0] + fixed[1:]
    match = _NAME_TAIL.match(token)
    if match is None or not any(c.isupper() for c in match.group(1)):
        return token  # "seq2slate", "word2vec": no name before the tail
    head, tail = match.groups()
    splits = []
    for cut in range(len(tail) - 2):
        left, right = head + tail[:cut], tail[cut:]
        if not _tail_word(right, params):
            continue
        if head[-1].isdigit():
            if cut == 0:
                splits.append((left, right))  # "LongT5with", "R3overcomes"
            continue
        # The name's last part must be a word on its own, and not one word with the tail:
        # "ImageNet|benchmark" splits, "UltraFeed|back" does not ("Feedback" is a word).
        last = re.search(r"[A-Z][a-z]*$", left)
        if last is None or len(last.group()) < 3 or not _is_word(last.group(), params):
            continue
        if (last.group() + right).lower() not in _zipf_table():
            splits.append((left, right))
    if len(splits) == 1:
        return " ".join(splits[0])
    return _FLAGGED if splits else token


# arXiv archives: "cs.CL", "stat.ML", "math.OC" are category ids, not a sentence glued on.
_ARXIV_ARCHIVES = frozenset(
    [
        "cs",
        "math",
        "stat",
        "eess",
        "econ",
        "physics",
        "nlin",
        "quant",
        "q-bio",
        "q-fin",
        "astro-ph",
        "cond-mat",
        "gr-qc",
        "hep-ex",
        "hep-lat",
        "hep-ph",
        "hep-th",
        "math-ph",
        "nucl-ex",
        "nucl-th",
        "quant-ph",
    ]
)
_SENTENCE_GLUE_SPOT = re.compile(r"(^|[ (\[\"\u201c])([a-z]{2,}|e\.g|i\.e)\.([A-Z][A-Za-z0-9]*)(?=(.?)(.?))")


def _split_sentence(match: re.Match[str]) -> str | None:
    """The repaired spot of a sentence glue, or None where the dots belong to an identifier:
    an arXiv category ("cs.CL") or a dotted name going on ("torch.Tensor.cuda", "nn.Module(")."""
    lead, word, name, after, then = match.groups()
    if word in _ARXIV_ARCHIVES and name.isupper() and len(name) <= 3:
        return None
    if after in ("(", "_") or (after == "." and then.isalnum()):
        return None
    return f"{lead}{word}. {name}"


def _sentence_glue(texts: pl.Series) -> tuple[pl.Series, pl.Series | None]:
    # Each glue holds a literal that one SIMD scan finds: a full stop before a capital or
    # "e.g.,"/"i.e.," (few rows have either). The glue regexes run on those rows only, and each
    # on its own: run together on the rows of either, the Unicode `\b` made them cost far more
    # than the scans.
    # Sentence glues are decided spot by spot (identifiers are left and counted).
    rows = _matching_rows(texts, _SENTENCE_GLUE, lambda part: _contains_any(part, _FULL_STOP_CAPITAL))
    fixed = texts
    skipped: pl.Series | None = None
    if not rows.is_empty():
        repaired, unsafe = [], []
        for text in texts.gather(rows).to_list():
            left = False

            def spot(match: re.Match[str]) -> str:
                nonlocal left
                out = _split_sentence(match)
                left = left or out is None
                return match.group() if out is None else out

            repaired.append(_SENTENCE_GLUE_SPOT.sub(spot, text))
            unsafe.append(left)
        fixed = texts.clone().scatter(rows, pl.Series(repaired, dtype=pl.String))
        skipped = pl.Series([False] * len(texts)).scatter(rows, pl.Series(unsafe))
    return _masked(
        fixed,
        _ABBREVIATION_GLUE,
        lambda text: text.str.replace_all(_ABBREVIATION_GLUE, "${1}., ${2}"),
        lambda part: _contains_any(part, ["e.g.,", "i.e.,"]),
    ), skipped


def _comma_glue(texts: pl.Series) -> pl.Series:
    rows = _matching_rows(texts, _COMMA_GLUE, lambda part: _contains_any(part, _COMMA_LETTER))
    if rows.is_empty():
        return texts
    # A match takes the two letters after its comma, which may come right before the next
    # comma ("a,list,of,words"): again on these rows until no match is left (each round only
    # adds spaces after commas, so no other row gains a match).
    fixed = texts.gather(rows)
    while True:
        fixed = fixed.str.replace_all(_COMMA_GLUE, "${1}, ${2}")
        if not fixed.str.contains(_COMMA_GLUE).any():
            return texts.clone().scatter(rows, fixed)


def _glued_words(texts: pl.Series, params: CleanParams, names: pl.Series | None = None) -> Applied:
    decide = functools.partial(_glued_token, params=params)
    texts, skipped = _sentence_glue(texts)
    texts = _comma_glue(texts)
    # Only distinct lower-case tokens the word list does not know are candidates, so the
    # per-word Python work is a few hundred set lookups per batch.
    # Tokens of 12+ letters are few: all of them are candidates, so that a glued pair without
    # a function word ("introduceiris") is at least flagged.
    # A pattern whose matches hold no space and which asserts nothing but `\b` finds the same
    # matches in the distinct space-separated pieces as in the texts: to `\b`, a space and the
    # end of a piece are both non-word. The pieces skip the repeated text, and the slow Unicode
    # `\b` engine runs on a non-ASCII piece once. None of these patterns matches a space.
    occurring = Pieces.of(texts)
    pieces = occurring.values
    lower = pl.concat(
        [_candidates(pieces, _lower_pattern(params)), _candidates(pieces, _LONG_LOWER)]
    ).unique()
    table = _zipf_table()
    unknown = sorted(t for t in lower.to_list() if t not in table)
    mixed = _candidates(pieces, f"{_LOWER_THEN_UPPER}|{_ACRONYM_THEN_LOWER}").to_list()
    known = set(mixed)
    named = sorted(
        t
        for t in _candidates(pieces, _NAME_THEN_LOWER).to_list()
        if t not in known and t.lower() not in table
    )
    decide_name = functools.partial(_name_token, params=params)
    flagged = sorted(
        {t for t in (*unknown, *mixed) if decide(t) == _FLAGGED}
        | {t for t in named if decide_name(t) == _FLAGGED}
    )
    changes = {**_changes(mixed + unknown, decide), **_changes(named, decide_name)}
    # A text holding a token bounded by prose characters holds a piece holding the token: the
    # pieces find the texts to run the exact test on without a scan of every text. A rewritten
    # text has new pieces: those are tested too.
    fixed, rewritten = _rewrite_rows(
        texts, changes, occurring.texts_holding(_contains_any(pieces, list(changes)))
    )
    fixed = _keep_terms(texts, fixed, rewritten, changes, names, params)
    flagged_maybe = occurring.texts_holding(_contains_any(pieces, flagged)) | rewritten
    return Applied(fixed, _rows_bounded(fixed, flagged, flagged_maybe), skipped)


def _strong_split(fixed: str, params: CleanParams) -> bool:
    return all(
        _is_function_word(part, params) or _zipf(part) >= params.strong_split_min_zipf
        for part in re.findall(r"[A-Za-z]+", fixed)
    )


def term_evidence(token: str, fixed: str, text: str, names: str | None, params: CleanParams) -> str | None:
    """Why `token`, as it stands in `text`, is a name or term and not to become `fixed`: in
    `clean.terms`, in the title or author list, or seen as-is (in any case) `term_min_repeats`
    times in the abstract, unless the split is into common words only (`_strong_split`)."""
    if _is_term(token, params):
        return "in clean.terms"
    bounded = re.compile(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", re.IGNORECASE)
    if names and bounded.search(names):
        return "in the title or author list"
    if _strong_split(fixed, params):
        return None
    seen = len(bounded.findall(text))
    if seen >= params.term_min_repeats:
        return f"seen as-is {seen} times in the abstract"
    return None


def _keep_terms(
    texts: pl.Series,
    fixed: pl.Series,
    rewritten: pl.Series,
    changes: dict[str, str],
    names: pl.Series | None,
    params: CleanParams,
) -> pl.Series:
    """`fixed`, with the rewritten rows where a repaired token is, by the row's own evidence
    (`term_evidence`), a name or term rewritten again without that token."""
    if not rewritten.any():
        return fixed
    # Without names, only a term of `clean.terms` or a weak split can be kept: look for those.
    wanted = changes
    if names is None:
        wanted = {t: v for t, v in changes.items() if _is_term(t, params) or not _strong_split(v, params)}
        if not wanted:
            return fixed
    rows = rewritten.arg_true()
    words = "|".join(pl.escape_regex(t) for t in sorted(wanted, key=len, reverse=True))
    found = texts.gather(rows).str.extract_all(f"(?-u:\\b)(?:{words})(?-u:\\b)").to_list()
    row_names = names.gather(rows).to_list() if names is not None else [None] * len(rows)
    originals = texts.gather(rows).to_list()
    redo: dict[int, str] = {}
    for row, tokens, text, name in zip(rows.to_list(), found, originals, row_names, strict=True):
        kept = {t for t in set(tokens or ()) if term_evidence(t, changes[t], text, name, params) is not None}
        if kept:
            reduced = {t: v for t, v in changes.items() if t not in kept}
            single = pl.Series([text], dtype=pl.String)
            again, _ = _rewrite_rows(single, reduced, pl.Series([True])) if reduced else (single, None)
            redo[row] = again[0]
    if not redo:
        return fixed
    return fixed.clone().scatter(list(redo), pl.Series(list(redo.values()), dtype=pl.String))


RULES: tuple[Rule, ...] = (
    Rule("markup", _markup_rule),
    Rule("latex", _latex_rule),
    Rule("unicode", _unicode_rule),
    Rule("structure_labels", _labels_rule),
    Rule("strip_prefix", _regex_rule(r"^\s*(?:[Aa]bstract|ABSTRACT)", _strip_prefix)),
    Rule("table_residue", _regex_rule(r"\|\s*$", _table_residue)),
    Rule("whitespace", _regex_rule(r"[^\S ]|  |^ | $", _whitespace, _maybe_whitespace)),
    Rule("footnotes", _regex_rule(_MARK + r"|footnotetext|[\u2020\u2021\u2217]", _footnotes)),
    Rule("dangling_link", _regex_rule(_DANGLING_END, _dangling_link)),
    Rule("dehyphenate", _dehyphenate),
    Rule("empty_citation", _empty_citation_rule),
    Rule("glued_words", _glued_words),
)

# The commonest English words; their share of an abstract's words tells English prose apart.
_STOPWORDS = r"\b(?:the|of|and|in|to|a|an|is|are|we|for|that|with|on|by|this|from|as|our|be)\b"


# List items written "a) ... b) ..." or "1) ... 2) ..." close a bracket nobody opened.
_ENUMERATOR = r"(?:^| )(?:[a-z]|[0-9]{1,2}|[ivx]{1,4})\) "


def _non_english(texts: pl.Series, params: CleanParams) -> pl.Series:
    """Rows with too few common English words; only rows lacking " the " or " of " are counted."""
    text = pl.col("t")
    maybe = (
        pl.DataFrame({"t": texts})
        .select(~(text.str.contains(" the ", literal=True) & text.str.contains(" of ", literal=True)))
        .to_series()
    )
    flag = pl.Series([False] * len(texts), dtype=pl.Boolean)
    if not maybe.any():
        return flag
    words = text.str.count_matches(" ", literal=True) + 1
    found = (
        pl.DataFrame({"t": texts.filter(maybe)})
        .select(
            (words >= params.non_english_min_words)
            & (text.str.count_matches(_STOPWORDS) < words * params.english_min_stopword_share)
        )
        .to_series()
    )
    return flag.scatter(maybe.arg_true(), found)


def _flags(text: pl.Expr, glued: pl.Expr, non_english: pl.Expr, params: CleanParams) -> pl.Expr:
    checks = {
        "too_short": text.str.len_chars() < params.min_chars,
        "too_long": text.str.len_chars() > params.max_chars,
        "truncated": ~text.str.contains(r"[.!?)\]\"'\u201d\u2019]$"),
        "unbalanced_brackets": (
            text.str.count_matches("(", literal=True)
            != text.str.count_matches(")", literal=True) - text.str.count_matches(_ENUMERATOR)
        )
        | (text.str.count_matches("[", literal=True) != text.str.count_matches("]", literal=True)),
        "possible_glued_word": glued,
        "non_english": non_english,
        "url": text.str.contains(r"(?i)\bhttps?://|\bwww\.[a-z0-9-]+\."),
        "html_residue": text.str.contains(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>"),
        "latex_residue": text.str.contains(r"\\[a-zA-Z]+|\$[^$\s][^$]*\$"),
    }
    return _names(checks)


@functools.cache
def _name_lists(names: tuple[str, ...]) -> pl.Series:
    """Every sublist of `names` (in order), at the index whose bits say which names it holds."""
    return pl.Series(
        [[name for bit, name in enumerate(names) if code >> bit & 1] for code in range(1 << len(names))],
        dtype=pl.List(pl.String),
    )


def _names(checks: dict[str, pl.Expr]) -> pl.Expr:
    """Per row, the names of the checks that hold, in order (a null check does not hold).

    One integer per row and a lookup: building the lists row by row (`concat_list` of
    `when/then` and `drop_nulls`) cost more than computing every check.
    """
    code = pl.sum_horizontal(
        check.fill_null(False).cast(pl.UInt32) * (1 << bit) for bit, check in enumerate(checks.values())
    )
    return pl.lit(_name_lists(tuple(checks))).gather(code)


def normalised_text(text: pl.Expr) -> pl.Expr:
    """Text folded for exact-duplicate detection: Unicode compatibility, case, punctuation, spaces."""
    return _fold(text.str.normalize("NFKC"))


def _fold(text: pl.Expr) -> pl.Expr:
    # Same result as folding every run of non-alphanumerics to one space, with far fewer
    # replacements: single spaces, the commonest separator, are left in place. One pass: a run
    # of two or more, or a single non-space, becomes a space.
    return (
        text.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]{2,}|[^\p{L}\p{N} ]", " ").str.strip_chars(" ")
    )


def text_hashes(normalised: list[str]) -> list[str]:
    # blake2b is stable across Python and library versions, unlike polars' own hash.
    blake2b = hashlib.blake2b
    return [blake2b(t.encode("utf-8"), digest_size=8).hexdigest() for t in normalised]


def _text_hash_column(texts: pl.Series) -> pl.Series:
    """`text_hashes` of `normalised_text` of a string column (`fingerprint.blake2b_64`).

    Rows of ASCII and general punctuation (nearly all) are folded by a compiled loop; NFKC and
    the Unicode classes of `_fold` run on the others only.
    """
    folded, plain = fold_plain_texts(texts.to_arrow())
    digests = blake2b_64(folded)
    if not plain.all():
        others = np.flatnonzero(~plain)
        normalised = pl.select(_fold(pl.lit(_normalise(texts.gather(others), "NFKC")))).to_series()
        digests[others] = blake2b_64(normalised.to_arrow())
    hashes = pl.from_arrow(hex_digests(digests))
    assert isinstance(hashes, pl.Series)
    return hashes.alias("text_hash")


# ---- invariants ----------------------------------------------------------------------------------

_ARCHIVE_IDS = "|".join(pl.escape_regex(a) for a in sorted(_ARXIV_ARCHIVES, key=len, reverse=True))
# What clean never alters: maths, URLs, DOIs, arXiv categories, dotted identifiers ("torch.nn",
# "github.com") and digit runs with their decimal and thousands separators (so versions,
# percentages and arXiv ids). `<tex-math>` counts as the `$...$` it becomes; the digits of a
# numeric entity ("&#39;") are no number, nor is a link target inside a tag.
# Written for the regex engine's fast path (ASCII word bounds, no lazy repeats): the Unicode
# forms made the check cost more than the rules it checks.
_PROTECTED = "|".join(
    [
        r"<tex-math>[^<]*</tex-math>",
        r"</?[A-Za-z][^<>]*>",
        r"&#[0-9]+;|&#[xX][0-9A-Fa-f]+;",
        r"[0-9]*footnotetext",
        r"\$\$[^$]*\$\$|\$[^$]+\$",
        r"\\\((?:[^\\]|\\[^)])*\\\)",
        r"(?:[Hh][Tt][Tt][Pp][Ss]?://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)\]']",
        r"(?-u:\b)10\.[0-9]{4,9}/[^\s]*[^\s.,;:!?)\]]",
        rf"(?-u:\b)(?:{_ARCHIVE_IDS})\.[A-Z]{{2}}(?-u:\b)",
        r"[A-Za-z_][A-Za-z0-9_]+(?:\.[a-z_][A-Za-z0-9_]+)+",
        r"[0-9]+(?:[.,][0-9]+)*",
    ]
)
# Two marks in a row ("a,, b", "x?."): a rule may never make more of them.
_RUN_OF_MARKS = r"[,;:!?.][,;:!?]"
# The only digits a rule may remove: the footnote marks `footnotes` proves.
_MARKS = [str(d) * 3 for d in range(1, 10)]
# Rules that change only letter tokens bounded by spaces and prose punctuation (`_LEFT`,
# `_RIGHT`), spaces before punctuation and empty brackets: none can touch a number, URL, id
# or dotted name, so only their rows with maths or markup get the full check.
_PROSE_ONLY = ("dehyphenate", "empty_citation")
# Rules that remove a footnote's text or a link's dangling sentence whole: they may remove
# protected spans ("checkpoints for GPT-2 at"), never alter one.
_REMOVES_SENTENCES = ("footnotes", "dangling_link")
# Rules that cannot alter a protected span: they only replace whitespace by single spaces,
# or remove a leading label or trailing table bars.
_SPACING_ONLY = ("whitespace", "strip_prefix", "table_residue")


def _protected(texts: pl.Series, drop_marks: bool) -> pl.Series:
    found = texts.str.extract_all(_PROTECTED).list.eval(
        pl.element()
        .filter(
            ~pl.element().str.starts_with("&")
            & (~pl.element().str.starts_with("<") | pl.element().str.starts_with("<tex-math>"))
        )
        .str.replace(r"^<tex-math>\s*\$?([^<]*?)\$?\s*</tex-math>$", "$$${1}$$")
    )
    if drop_marks:
        found = found.list.eval(
            pl.element().filter(~pl.element().is_in(_MARKS) & ~pl.element().str.ends_with("footnotetext"))
        )
    return found.list.sort()


def breaks_invariants(before: pl.Series, after: pl.Series, rule: str) -> pl.Series:
    """Per row, whether `after` (one rule's output for `before`) alters a protected span or
    runs two punctuation marks together that were apart."""
    merged = after.str.count_matches(_RUN_OF_MARKS) > before.str.count_matches(_RUN_OF_MARKS)
    if rule in _PROSE_ONLY:
        # Its repairs need prose on both sides: only maths and markup can hold one.
        risky = before.str.contains(r"[$\\<&]").fill_null(True)
        if not risky.any():
            return merged.fill_null(True)
        found = merged.clone()
        rows = risky.arg_true()
        inner = breaks_invariants(before.gather(rows), after.gather(rows), "")
        return found.scatter(rows, merged.gather(rows) | inner)
    drop_marks = rule == "footnotes"
    old, new = _protected(before, drop_marks), _protected(after, drop_marks)
    if rule in _REMOVES_SENTENCES:
        # A footnote's text goes whole, numbers and all ("includes GPT-3 generation"): what is
        # left must be unaltered, so "0.999" -> "0." (a "0" that was not there) still counts.
        altered = pl.Series(
            [not Counter(b) >= Counter(a) for b, a in zip(old.to_list(), new.to_list(), strict=True)],
            dtype=pl.Boolean,
        )
    else:
        altered = old != new
    return (altered | merged).fill_null(True)


# Rules whose output can give an earlier rule (or themselves) new work: removing a footnote or
# a sentence, joining or splitting words. Rows they changed are cleaned again.
_REPEAT_AFTER = ("footnotes", "dangling_link", "dehyphenate", "empty_citation", "glued_words")
MAX_PASSES = 3
# The rules for titles and author names: markup to text and spacing, no word repairs.
FIELD_RULES = ("markup", "latex", "unicode", "whitespace")


def _skip_column(name: str) -> str:
    return f"skipped:{name}"


def _one_pass(
    texts: pl.Series,
    params: CleanParams,
    names: pl.Series | None = None,
    rules: tuple[Rule, ...] | None = None,
) -> tuple[pl.Series, pl.DataFrame]:
    """Every rule once, each checked against the invariants: a row whose change would break
    one keeps its text from before that rule, and counts as skipped for it."""
    changed: dict[str, pl.Series] = {}
    skipped: dict[str, pl.Series] = {}
    unchanged = pl.Series([False] * len(texts), dtype=pl.Boolean)
    glued = unchanged
    for rule in RULES if rules is None else rules:
        fixed, flag, unsafe = rule.apply(texts, params, names)
        mask = unchanged if fixed is texts else (fixed != texts).fill_null(False)
        unsafe = unchanged if unsafe is None else unsafe.fill_null(False)
        if rule.name not in _SPACING_ONLY and mask.any():
            rows = mask.arg_true()
            broken = breaks_invariants(texts.gather(rows), fixed.gather(rows), rule.name)
            if broken.any():
                undo = rows.filter(broken)
                fixed = fixed.clone().scatter(undo, texts.gather(undo))
                mask = mask.clone().scatter(undo, False)
                unsafe = unsafe.clone().scatter(undo, True)
        changed[rule.name] = mask
        skipped[_skip_column(rule.name)] = unsafe
        if flag is not None:
            glued = flag
        texts = fixed
    return texts, pl.DataFrame({**changed, **skipped, "_glued": glued})


def clean_texts(
    texts: pl.Series, params: CleanParams, names: pl.Series | None = None
) -> tuple[pl.Series, pl.DataFrame]:
    """Run every rule in order; return the cleaned texts and, per rule, one boolean column
    (changed) and one `skipped:<rule>` column (a spot left alone as unsafe).

    Rows that a text-removing or word-joining rule changed are cleaned again, up to
    `MAX_PASSES` passes, so that cleaning is idempotent: cleaning the output changes nothing.
    `names` (per row, the title and author names, or null) is evidence for `glued_words`.
    """
    texts, changed = _one_pass(texts, params, names)
    again = changed.select(pl.any_horizontal(_REPEAT_AFTER)).to_series()
    for _ in range(MAX_PASSES - 1):
        if not again.any():
            break
        rows = again.arg_true()
        fixed, more = _one_pass(texts.filter(again), params, None if names is None else names.filter(again))
        texts = texts.clone().scatter(rows, fixed)
        update = {
            name: changed[name].clone().scatter(rows, changed[name].filter(again) | more[name])
            for name in changed.columns
            if name != "_glued"
        }
        update["_glued"] = changed["_glued"].clone().scatter(rows, more["_glued"])
        changed = pl.DataFrame(update)
        repeat = more.select(pl.any_horizontal(r.name for r in RULES)).to_series()
        again = pl.Series([False] * len(texts), dtype=pl.Boolean).scatter(rows, repeat)
    return texts.alias("abstract"), changed


def clean_field(texts: pl.Series, params: CleanParams) -> tuple[pl.Series, pl.Series]:
    """A title or author-name column through `FIELD_RULES`; also which rows changed."""
    rules = tuple(rule for rule in RULES if rule.name in FIELD_RULES)
    fixed, changed = _one_pass(texts, params, None, rules)
    return fixed, changed.select(pl.any_horizontal(FIELD_RULES)).to_series()


@dataclass
class Tally:
    """What the batches report beside their rows, summed over a run (thread-safe):
    rows each rule skipped as unsafe (with the first few sources, by file and line) and
    rows whose title or authors changed."""

    skipped: dict[str, int] = field(default_factory=dict)
    skipped_sources: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)
    fields: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, frame: pl.DataFrame, changed: pl.DataFrame, fields: dict[str, int]) -> None:
        with self.lock:
            for rule in RULES:
                column = changed[_skip_column(rule.name)]
                count = int(column.sum())
                self.skipped[rule.name] = self.skipped.get(rule.name, 0) + count
                if count:
                    hits = frame.filter(column).select("file", "line", "source").head(EXAMPLES_PER_RULE)
                    known = self.skipped_sources.setdefault(rule.name, [])
                    known.extend((f or "", int(n or 0), src) for f, n, src in hits.iter_rows())
                    known.sort()
                    del known[EXAMPLES_PER_RULE:]
            for name, count in fields.items():
                self.fields[name] = self.fields.get(name, 0) + count

    def merge(self, other: Tally) -> None:
        """Add the counts and examples of `other` (a batch's tally from any engine's worker):
        the result is the same in any order of merging."""
        with self.lock:
            for name, count in other.skipped.items():
                self.skipped[name] = self.skipped.get(name, 0) + count
            for name, hits in other.skipped_sources.items():
                known = self.skipped_sources.setdefault(name, [])
                known.extend(hits)
                known.sort()
                del known[EXAMPLES_PER_RULE:]
            for name, count in other.fields.items():
                self.fields[name] = self.fields.get(name, 0) + count

    # A tally travels back from a worker process (the Ray engine); its lock does not.
    def __getstate__(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()


def _names_column(frame: pl.DataFrame) -> pl.Series | None:
    """Per row, the title and author names as one text (evidence of names), if the frame has them."""
    parts = []
    if "title" in frame.columns:
        parts.append(pl.col("title"))
    if "authors" in frame.columns:
        parts.append(pl.col("authors").list.join(" "))
    if not parts:
        return None
    return frame.select(pl.concat_str(parts, separator=" ", ignore_nulls=True).alias("names")).to_series()


def clean_fields(frame: pl.DataFrame, params: CleanParams) -> tuple[pl.DataFrame, dict[str, int]]:
    """`title` and `authors` (when the frame has them) through the markup rules."""
    counts: dict[str, int] = {}
    if "title" in frame.columns:
        title, changed = clean_field(frame["title"].cast(pl.String), params)
        frame = frame.with_columns(title.alias("title"))
        counts["title"] = int(changed.sum())
    if "authors" in frame.columns:
        lists = frame["authors"].to_arrow()
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks()
        lists = lists.cast(pa.large_list(pa.large_string()))
        # The names in one column (offsets kept), cleaned, and put back in their lists.
        flat = pl.Series(
            lists.values.slice(lists.offsets[0].as_py(), lists.offsets[-1].as_py()), dtype=pl.String
        )
        names, changed = clean_field(flat, params)
        offsets = pc.subtract(lists.offsets, lists.offsets[0])
        fixed = pa.LargeListArray.from_arrays(
            offsets, names.to_arrow().cast(pa.large_string()), mask=lists.is_null()
        )
        list_type = frame.schema["authors"]
        frame = frame.with_columns(pl.Series("authors", fixed).cast(list_type))
        row_of = np.searchsorted(offsets.to_numpy(), np.flatnonzero(changed.to_numpy()), side="right") - 1
        counts["authors"] = len(set(row_of.tolist()))
    return frame, counts


def clean_frame(frame: pl.DataFrame, params: CleanParams, tally: Tally | None = None) -> pl.DataFrame:
    """Apply every rule in order to `raw_text`; add `abstract`, `clean_rules`, `flags`, `text_hash`.
    `title` and `authors`, when present, get the markup rules; their names are evidence too."""
    texts, changed = clean_texts(frame["raw_text"], params, _names_column(frame))
    frame, field_counts = clean_fields(frame, params)
    if tally is not None:
        tally.add(frame, changed, field_counts)
    applied = _names({rule.name: pl.col(rule.name) for rule in RULES})
    out = frame.with_columns(texts).with_columns(
        changed.select(applied.alias("clean_rules")).to_series(),
        pl.DataFrame({"abstract": texts, "_glued": changed["_glued"], "_en": _non_english(texts, params)})
        .select(_flags(pl.col("abstract"), pl.col("_glued"), pl.col("_en"), params).alias("flags"))
        .to_series(),
    )
    return out.with_columns(_text_hash_column(texts)).select(CLEAN_SCHEMA.names)


def clean_batch(batch: pa.RecordBatch, params: CleanParams, tally: Tally | None = None) -> pa.RecordBatch:
    """The row-local unit of work: one Arrow batch of ingested records in, cleaned out."""
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    table = clean_frame(frame, params, tally).to_arrow().cast(CLEAN_SCHEMA).combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=CLEAN_SCHEMA)


def clean_counted_batch(batch: pa.RecordBatch, params: CleanParams) -> tuple[pa.RecordBatch, Tally]:
    """`clean_batch` with the batch's own tally, for an engine that runs it in another process."""
    tally = Tally()
    return clean_batch(batch, params, tally), tally


def run_clean(ingested: Path, out: Path, report_out: Path, params: CleanParams) -> dict[str, Any]:
    """Clean every record of `ingested` into `out`; write the rule report to `report_out`."""
    from pipeline.stages.clean.report import summarise  # the report replays this module's rules

    _zipf_table()  # loaded once here: the worker threads would each load it at their start
    tally = Tally()
    total = pq.ParquetFile(ingested).metadata.num_rows
    rows = 0
    options = build_file_options(CLEAN_SCHEMA, repeated=("file", "format"))
    # The local engine runs the batches on `workers` threads (nearly all of cleaning runs in
    # polars and compiled loops, outside the GIL); results come back in input order.
    with parquet_writer(out, CLEAN_SCHEMA, options) as writer:
        for batch, counted in map_slices(
            ingested,
            None,
            params.batch_rows,
            functools.partial(clean_counted_batch, params=params),
            params.workers,
        ):
            writer.write_batch(batch.cast(CLEAN_SCHEMA))
            tally.merge(counted)
            rows += batch.num_rows
            print(f"clean: {rows:,}/{total:,} rows", file=sys.stderr)
    report = summarise(out, ingested, params, tally)
    write_json(report, report_out)
    print(f"clean: {rows:,} rows, {report['rows_changed']:,} changed", file=sys.stderr)
    return report
