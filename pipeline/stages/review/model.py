"""The data the review page is rendered from: plain values only, so rendering is a pure function.

`core` reads the inputs into a `Review`; `report` renders it. Both import this module, neither
imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TextSample:
    """One row shown on the page, identified by its `source` (file:line)."""

    source: str
    before: str
    after: str
    tags: tuple[str, ...] = ()
    # Why the rule made this change (a clean rule's deciding evidence), where one was recorded.
    evidence: str = ""


@dataclass(frozen=True)
class Cluster:
    """A kept row and the rows that were folded into it by dedup."""

    kept_source: str
    kept_text: str
    size: int
    folded: tuple[tuple[str, str, str, float | None], ...]  # (source, method, text, similarity)


@dataclass(frozen=True)
class Distributions:
    """Per-split arrays of characters and words per abstract, and arXiv year-month counts."""

    chars: dict[str, np.ndarray[Any, Any]]
    words: dict[str, np.ndarray[Any, Any]]
    months: dict[str, int]
    previous_chars: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class PublishPlan:
    """What `abstracts publish` would put on the Hub for this build."""

    version: str  # the card stage's (`card.json`), else as proposed by `release_diff.json`
    tag: str | None  # None when the proposed version is not a release version
    repo_id: str
    files: tuple[tuple[str, int, str], ...]  # (path, bytes, sha256) of each release data file
    command: str  # the command to check the plan with
    # The build is the last published release (card.json `unchanged`): publish has nothing to do.
    unchanged: bool = False


@dataclass
class Review:
    verdict: str
    verdict_reason: str
    version: str
    previous_version: str
    split_rows: dict[str, int]
    diff: dict[str, tuple[int, list[str]]] | None
    ingest: dict[str, Any]
    rejects: dict[str, list[dict[str, Any]]]
    clean_rows: int
    dedup: dict[str, Any]
    rule_counts: dict[str, int]
    rule_samples: dict[str, list[TextSample]]
    flag_counts: dict[str, int]
    flag_samples: dict[str, list[TextSample]]
    clusters: list[Cluster]
    folded_rows: int
    distributions: Distributions
    validation: list[dict[str, Any]]
    data_docs: dict[str, str] = field(default_factory=dict)  # docs_key ("" = index) -> relative link
    notes: list[str] = field(default_factory=list)  # inconsistencies between the inputs
    publish: PublishPlan | None = None  # None when no publish params were given
    # filter.json; and per filter rule, its first dropped rows (id, source, reason, detail, abstract)
    filter: dict[str, Any] = field(default_factory=dict)
    filtered_samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Published rows gone in this build (release_diff.json `removals`: id, reason, into), capped,
    # and how many there are in all.
    removals: list[dict[str, Any]] = field(default_factory=list)
    removals_total: int = 0
    # The card stage found this build equal to the last published release: nothing to publish.
    unchanged: bool = False
    # Rows per step from raw records to released rows (metrics' funnel), for the summary.
    funnel: list[tuple[str, int]] = field(default_factory=list)
    # Per clean rule, the rows where it left a spot alone because the change was unsafe.
    rule_skipped: dict[str, int] = field(default_factory=dict)


def docs_key(result: dict[str, Any]) -> str:
    """`suite.table` when the result names its table (Data Docs has a page per pair), else `suite`."""
    suite = str(result.get("suite"))
    return f"{suite}.{result['table']}" if result.get("table") else suite


def expectation_label(result: dict[str, Any]) -> str:
    """`name: expect_x(column)` (or `[table] ...`) for one validation result, as plain text."""
    column = (result.get("kwargs") or {}).get("column")
    label = str(result.get("expectation")) + (f"({column})" if column else "")
    if result.get("name"):
        label = f"{result['name']}: {label}"
    if result.get("table") not in (None, "rows", "release"):
        label = f"[{result['table']}] {label}"
    return label


def diff_heading(review: Review) -> str:
    """The line above the diff counts, on the page and in the Markdown summary."""
    if review.previous_version.startswith("no previous release"):
        return "Diff: first release, nothing published before"
    return f"Diff against {review.previous_version}"
