"""The curation policy's shared grammar: what a released abstract must not be.

The filter stage drops the rows these rules find; the validate stage runs the same functions
on the release again (GX suite `policy`) so that a bug anywhere between the filter and the
release (a row kept by mistake, a copy dedup preferred, a text split took from the wrong row)
cannot slip a row through. Stages never import each other, so the grammar lives here.

- Placeholder notices: `placeholder_rows` and `placeholder_notice` ("This paper has been
  withdrawn", "Erratum to ...", "No abstract available", "N/A").
- Language: `language_verdicts`, py3langid's verdict on the rows whose share of common English
  function words does not already make them English.
- Split sizes: `split_size_allowed_deviation`, the statistical bound each split's size is held to.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

Mask = npt.NDArray[np.bool_]
Counts = npt.NDArray[np.int64]

# --- placeholder notices ---------------------------------------------------------------------

_SUBJECT = r"(?:paper|article|manuscript|submission|preprint|version|work|abstract|report|note|entry)"
PLACEHOLDER = re.compile(
    r"(?i)(?:"
    # "This paper has been withdrawn", "The paper is withdrawn", "This paper as been withdrawn"
    # (with its determiner: "prior work was replaced by ..." is an abstract's sentence)
    + rf"\b(?:this|the)\s+{_SUBJECT}\s+(?:(?:has|have|as)\s+(?:now\s+)?been|is|was)\s+(?:hereby\s+)?"
    r"(?:withdrawn|retracted|removed|superseded|replaced)"
    # "Withdrawn due to ...", "Paper withdrawn", "This submission was withdrawn"
    r"|^\W*(?:(?:this\s+)?(?:paper|article|submission)\s+)?withdrawn\b"
    # "The authors have withdrawn this paper", "We withdraw this submission"
    + r"|\b(?:we|i|authors?)\s+(?:have\s+|has\s+)?(?:decided\s+to\s+)?withdr[ae]wn?\s+"
    + rf"(?:this|the|our)\s+{_SUBJECT}"
    # "Erratum to ...", "Corrigendum: ...", "This is an erratum for ..."
    r"|^\W*(?:an?\s+)?(?:erratum|corrigendum|retraction\s+note)\b"
    r"|\b(?:an?\s+)?(?:erratum|corrigendum)\s+(?:to|for|of|on)\b"
    # "No abstract", "No abstract available", "[No abstract]", "No abstract given; ..." (at the
    # start or followed by its availability: "needs no abstract syntax" is an abstract's phrase)
    r"|^\W*no\s+abstract\b|\bno\s+abstract\s+(?:is\s+)?(?:available|given|provided|supplied)"
    # "Abstract not available", "Abstract unavailable", "The abstract is not provided"
    r"|\babstract\s+(?:is\s+)?(?:not\s+(?:available|provided|given|included|supplied)|unavailable|missing"
    r"|withheld|forthcoming|to\s+(?:come|follow|be\s+(?:added|announced|provided)))"
    # The whole text is a stand-in: "N/A", "TBD", "Abstract", "Coming soon"
    r"|^\W*(?:n/?a|none|null|nan|tbd|tba|todo|abstract|coming\s+soon|to\s+be\s+(?:announced|added|determined))\W*$"
    r")"
)

# A notice of more than a few words holds one of these (any case): the regex runs on the
# short rows that do, and on every row of at most `STAND_IN_WORDS` words ("N/A", "TBD").
PLACEHOLDER_HINTS = [
    "withdr",
    "retract",
    "supersed",
    "replaced",
    "removed",
    "erratum",
    "corrigendum",
    "abstract",
]
STAND_IN_WORDS = 5


def placeholder_notice(text: str) -> str | None:
    """The notice `PLACEHOLDER` finds in `text` (stripped), or None."""
    match = PLACEHOLDER.search(text)
    return match.group(0).strip() if match else None


def placeholder_rows(texts: pl.Series, words: Counts, max_words: int) -> Mask:
    """Rows of `texts` that are a notice in place of an abstract.

    Only a text of at most `max_words` words (`words`: spaces + 1 per row) can be one: a longer
    text that mentions a withdrawal is an abstract (filter.placeholder_max_words).
    """
    short = np.flatnonzero(words <= max_words)
    if len(short):
        hinted = texts.gather(short).str.contains_any(PLACEHOLDER_HINTS, ascii_case_insensitive=True)
        short = short[hinted.fill_null(False).to_numpy() | (words[short] <= STAND_IN_WORDS)]
    found = np.zeros(len(texts), dtype=np.bool_)
    candidates = texts.gather(short).to_list() if len(short) else []
    for row, text in zip(short.tolist(), candidates, strict=True):
        found[row] = text is not None and PLACEHOLDER.search(text) is not None
    return found


# --- language --------------------------------------------------------------------------------

# The language identifier (py3langid's bundled model, offline) and the label it gives English.
LANGUAGE_IDENTIFIER = "py3langid"
ENGLISH = "en"


@functools.cache
def _identifier() -> object:
    """py3langid's identifier over all its languages, with probabilities (slow to load: once)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """The identifier's language and probability for `text`, scored lower-cased and whole."""
    label, probability = _identifier().classify(text.lower())  # type: ignore[attr-defined]
    return str(label), float(probability)


@dataclass(frozen=True)
class LanguageVerdicts:
    """The language rule on a batch of texts."""

    # Rows the identifier is sure are not English (the filter drops them).
    not_english: Mask
    # Per scored row (by row number): the identifier's label and probability.
    answers: dict[int, tuple[str, float]]
    # Rows the identifier scored, and those whose non-English answer it was unsure of.
    scored: int
    unsure: int


def language_verdicts(
    texts: pl.Series,
    chars: Counts,
    words: Counts,
    function_words: Counts,
    english_sure_share: float,
    min_confidence: float,
) -> LanguageVerdicts:
    """Which rows are not English: py3langid (whole text, lower-cased) is at least
    `min_confidence` sure of another language.

    A row whose common English function words (the, of, and, ...; `function_words` per row,
    see `pipeline.kernels.measures`) are at least `english_sure_share` of its words is English
    without asking: scoring it would say "en" (every abstract of the SciTLDR corpus and the
    seeds), at a thousand times the cost.
    """
    sure = function_words >= english_sure_share * np.maximum(words, 1)
    rows = np.flatnonzero(~sure & (chars > 0))
    found = np.zeros(len(texts), dtype=np.bool_)
    answers: dict[int, tuple[str, float]] = {}
    unsure = 0
    candidates = texts.gather(rows).to_list() if len(rows) else []
    for row, text in zip(rows.tolist(), candidates, strict=True):
        label, probability = identify(text)
        answers[row] = (label, probability)
        if label != ENGLISH:
            if probability >= min_confidence:
                found[row] = True
            else:
                unsure += 1
    return LanguageVerdicts(found, answers, len(rows), unsure)


# --- split sizes -----------------------------------------------------------------------------

# Binomial standard deviations a split's size may stray from its target (issue 21).
SPLIT_SIGMAS = 4.0


def split_size_allowed_deviation(rows: int, fraction: float, sigmas: float = SPLIT_SIGMAS) -> float:
    """How far a split's row count may lie from `rows * fraction`: sigmas * sqrt(n p (1 - p)) + 1.

    A hash split puts each of the n rows in a split with probability p, so the split's size is
    binomial (mean n p, standard deviation sqrt(n p (1 - p))); the one row more allows for the
    rounding a small release cannot avoid.
    """
    return sigmas * math.sqrt(rows * fraction * (1.0 - fraction)) + 1.0
