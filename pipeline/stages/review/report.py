"""Rendering of the review page (Jinja2 template `templates/review.html.j2`) and its Markdown summary.

Pure functions of a `Review` (see `model`) and the `review` params: no file is read or written
here except the package's own templates.

Escaping is the template environment's job, never a caller's: autoescape is on, and every
`{{ }}` value goes through `_escape` (the environment's `finalize`), so data can reach the page
only as text. The only markup that passes through unescaped is what the templates themselves
build (their macros return `Markup`).
"""

from __future__ import annotations

import base64
import difflib
import functools
import html
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from pipeline.contracts import DIFF_KINDS, SPLITS
from pipeline.params import ReviewParams
from pipeline.stages.review.model import Review, diff_heading, docs_key, expectation_label

# Tokens for the before/after diff: words, runs of whitespace, single punctuation marks.
# Diffing tokens rather than characters keeps difflib fast on 5,000-character abstracts.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")

# One side of a diff window: (kind, text) pairs, kind "same", "del" or "ins".
Segments = list[tuple[str, str]]


# ---------------------------------------------------------------------------------------------
# The template environment.


def _escape(value: Any) -> Any:
    """The environment's `finalize`: every `{{ }}` value, escaped unless it is template markup.

    Jinja's autoescape would escape too, but with markupsafe's `&#34;`/`&#39;`; escaping here
    first keeps the page's established `&quot;`/`&#x27;` (what `html.escape` writes, quotes
    included since a value may land in an attribute), and autoescape then passes the result
    through. Markup (a macro's output) is left alone: the template built it from escaped values.
    """
    if hasattr(value, "__html__"):
        return value
    # Safe by construction: the string has just been escaped.
    return Markup(html.escape(str(value), quote=True))


def _short(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> Any:
    """Integers with thousands separators; anything else as it is (the template escapes it)."""
    return f"{value:,}" if isinstance(value, int) else value


@functools.cache
def environment() -> jinja2.Environment:
    """The page's Jinja2 environment (templates from this package, strict, autoescaping)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.stages.review", "templates"),
        autoescape=True,
        finalize=_escape,
        undefined=jinja2.StrictUndefined,
        # The page has always ended with a newline; Jinja would drop the template's last one.
        keep_trailing_newline=True,
    )
    env.filters["n"] = _number
    env.filters["short"] = _short
    return env


# ---------------------------------------------------------------------------------------------
# Before/after diffs.


def _visible(segment: str) -> str:
    # A changed run of pure whitespace would be invisible: show newlines and spaces as marks.
    if segment and not segment.strip():
        return segment.replace("\n", "↵").replace("\r", "␍").replace("\t", "⇥").replace(" ", "·")
    return segment


def diff_segments(
    before: str, after: str, context: int = 8, limit: int = 3
) -> list[tuple[Segments, Segments]]:
    """(before, after) segments around each change: at most `limit` windows, each with `context`
    tokens either side of the change. Changed runs of whitespace are made visible."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    windows = []
    for group in list(matcher.get_grouped_opcodes(context))[:limit]:
        left: Segments = []
        right: Segments = []
        for tag, i1, i2, j1, j2 in group:
            old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
            if tag == "equal":
                left.append(("same", old))
                right.append(("same", new))
                continue
            if old:
                left.append(("del", _visible(old)))
            if new:
                right.append(("ins", _visible(new)))
        windows.append((left, right))
    return windows


def diff_windows(before: str, after: str, context: int = 8, limit: int = 3) -> list[tuple[str, str]]:
    """Escaped (before, after) HTML snippets around each change, removals in <del>, insertions in <ins>.

    Rendered by the page's own macro (`templates/diff.html.j2`), so the snippets are exactly
    what the page shows.
    """
    side = environment().get_template("diff.html.j2").module.diff_side  # type: ignore[attr-defined]
    return [
        (str(side(left)), str(side(right))) for left, right in diff_segments(before, after, context, limit)
    ]


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib, Agg canvas: no display needed), as inline PNG data URIs.


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    # No "Software" chunk: the bytes depend only on the data and the matplotlib version.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 7.5, height: float = 2.8) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=96, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _histogram_chart(
    series: dict[str, np.ndarray[Any, Any]], xlabel: str, bins: int, previous: np.ndarray[Any, Any] | None
) -> str:
    figure = _figure()
    axes = figure.add_subplot()
    values = [v for v in series.values() if len(v)]
    if previous is not None and len(previous):
        values.append(previous)
    if not values:
        axes.text(0.5, 0.5, "no rows", ha="center", va="center")
        return _png(figure)
    joined = np.concatenate(values)
    # Cut the far tail (top 0.5 %) so that one runaway row does not squash the histogram.
    top = max(float(np.percentile(joined, 99.5)), 1.0)
    edges = np.linspace(0.0, top, bins + 1)
    lines: list[tuple[str, np.ndarray[Any, Any], dict[str, Any]]] = [
        (f"{name} ({len(data):,})", data, {}) for name, data in series.items() if len(data)
    ]
    if previous is not None and len(previous):
        lines.append(
            (f"previous release ({len(previous):,})", previous, {"linestyle": "--", "color": "black"})
        )
    for label, data, style in lines:
        # Share of the split's rows per bar, so splits of different sizes compare; the last bar
        # also holds the clipped tail.
        counts, _ = np.histogram(np.clip(data, 0, top), bins=edges)
        axes.stairs(counts / len(data), edges, label=label, **style)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("share of rows")
    axes.legend(fontsize="small")
    return _png(figure)


def _months_chart(months: dict[str, int]) -> str:
    figure = _figure(height=2.6)
    axes = figure.add_subplot()
    if not months:
        axes.text(0.5, 0.5, "no arXiv ids", ha="center", va="center")
        axes.set_axis_off()
        return _png(figure)
    labels = list(months)
    axes.bar(range(len(labels)), list(months.values()), color="#4c72b0")
    step = max(1, len(labels) // 12)
    axes.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right", fontsize="small")
    axes.set_ylabel("rows")
    return _png(figure)


# ---------------------------------------------------------------------------------------------
# The page: what each section shows, computed here; how it looks, in the template.


@dataclass(frozen=True)
class ValidationRow:
    suite: str
    link: str | None  # relative link into Data Docs
    label: str
    severity: Any
    status: str  # "pass", "FAIL" (critical) or "warn"
    observed: str
    unexpected: Any
    failing: str


def _validation_rows(review: Review) -> list[ValidationRow]:
    rows = []
    # Failures first (critical, then warnings), each group in report order.
    ordered = sorted(
        review.validation, key=lambda r: (bool(r.get("success")), r.get("severity") != "critical")
    )
    for r in ordered:
        if r.get("success"):
            status = "pass"
        elif r.get("severity") == "critical":
            status = "FAIL"
        else:
            status = "warn"
        failing = ", ".join(
            f"{x.get('id')} ({x.get('source')})" if isinstance(x, dict) else str(x)
            for x in (r.get("failing_rows") or [])[:3]
        )
        unexpected = r.get("unexpected_count")
        rows.append(
            ValidationRow(
                suite=str(r.get("suite")),
                link=review.data_docs.get(docs_key(r)),
                label=expectation_label(r),
                severity=r.get("severity"),
                status=status,
                observed=_short(json.dumps(r.get("observed_value"), ensure_ascii=False, sort_keys=True), 160),
                unexpected="-" if unexpected is None else unexpected,
                failing=failing,
            )
        )
    return rows


def _length_stats(review: Review) -> list[tuple[str, list[Any]]]:
    dist = review.distributions
    stats: list[tuple[str, list[Any]]] = []
    for split in SPLITS:
        chars, words = dist.chars[split], dist.words[split]
        if len(chars):
            values: list[Any] = [len(chars), int(np.median(chars)), int(chars.min()), int(chars.max())]
            stats.append((split, [*values, int(np.median(words))]))
        else:
            stats.append((split, ["0", "-", "-", "-", "-"]))
    return stats


def _charts(review: Review, params: ReviewParams) -> list[tuple[str, str]]:
    dist = review.distributions
    sampled = sum(len(v) for v in dist.words.values())
    total = sum(len(v) for v in dist.chars.values())
    words_scope = "every row" if sampled == total else f"a sample of {sampled:,} of {total:,} rows"
    bins = params.histogram_bins
    # Data URIs are "data:image/png;base64," and base64 digits: nothing the escaper changes.
    return [
        ("Characters per abstract", _histogram_chart(dist.chars, "characters", bins, dist.previous_chars)),
        (f"Words per abstract ({words_scope})", _histogram_chart(dist.words, "words", bins, None)),
        ("arXiv year-month (rows with an arXiv id)", _months_chart(dist.months)),
    ]


def _funnel_steps(review: Review) -> list[tuple[str, Any]]:
    totals = review.ingest.get("totals") or {}
    folded = review.dedup.get("folded_by_method") or {}
    return [
        ("raw lines", totals.get("lines", "?")),
        ("blank lines skipped", totals.get("blank_lines", "?")),
        ("lines rejected", totals.get("rejects", "?")),
        ("records ingested", totals.get("records", "?")),
        ("rows after clean", review.clean_rows),
        *_filtered_steps(review),
        ("duplicates folded", sum(int(v) for v in folded.values())),
        ("rows after dedup", review.dedup.get("rows_out", "?")),
        ("rows published", sum(review.split_rows.values())),
    ]


def _filtered_steps(review: Review) -> list[tuple[str, Any]]:
    """The funnel's filter steps: rows dropped per rule (first reason), then the rows kept."""
    rules = review.filter.get("rules") or {}
    steps: list[tuple[str, Any]] = [
        (f"rows filtered: {name}", int(rule.get("filtered", 0))) for name, rule in sorted(rules.items())
    ]
    steps.append(("rows after filter", review.filter.get("kept", "?")))
    return steps


@dataclass(frozen=True)
class FilterRule:
    name: str
    reason: str
    filtered: int  # rows this rule was the first reason for
    matched: int  # rows it matched at all
    samples: list[dict[str, Any]]  # id, source, reason, detail, abstract


def _filter_rules(review: Review) -> list[FilterRule]:
    rules = review.filter.get("rules") or {}
    by_rule: dict[str, list[dict[str, Any]]] = {name: [] for name in rules} | review.filtered_samples
    return [
        FilterRule(
            name=name,
            reason=str((rules.get(name) or {}).get("reason", "")),
            filtered=int((rules.get(name) or {}).get("filtered", len(samples))),
            matched=int((rules.get(name) or {}).get("matched", len(samples))),
            samples=samples,
        )
        for name, samples in sorted(by_rule.items())
    ]


@dataclass(frozen=True)
class Conflict:
    id: str
    kind: str
    values: str
    sources: str


def _conflicts(review: Review) -> tuple[dict[str, int], list[Conflict]]:
    """Counts per kind of metadata conflict (two DOIs, years two apart) and the listed rows."""
    conflicts = review.dedup.get("conflicts") or {}
    counts = {kind: int(conflicts.get(kind) or 0) for kind in ("doi", "year")}
    rows = [
        Conflict(
            id=str(row.get("id")),
            kind=str(row.get("kind")),
            values=", ".join(str(v) for v in row.get("values") or []),
            sources=", ".join(str(v) for v in row.get("sources") or []),
        )
        for row in conflicts.get("rows") or []
        if isinstance(row, dict)
    ]
    return counts, rows


def render_html(review: Review, params: ReviewParams) -> str:
    """The whole page as one string; deterministic for identical inputs."""
    diff = None
    if review.diff is not None:
        diff = [(kind, *review.diff[kind]) for kind in DIFF_KINDS]
    rule_samples = [
        (
            rule,
            [
                (s.source, "all rules" in s.tags, diff_segments(s.before, s.after), s.evidence)
                for s in samples
            ],
        )
        for rule, samples in review.rule_samples.items()
    ]
    previous = review.distributions.previous_chars
    template = environment().get_template("review.html.j2")
    return template.render(
        review=review,
        text_chars=params.text_chars,
        split_rows=[*review.split_rows.items(), ("total", sum(review.split_rows.values()))],
        diff=diff,
        diff_heading=diff_heading(review),
        funnel_steps=_funnel_steps(review),
        raw_files=sorted((review.ingest.get("files") or {}).items()),
        formats=sorted((review.ingest.get("records_by_format") or {}).items()),
        rejects=[
            (reason, count, review.rejects.get(reason, []))
            for reason, count in sorted((review.ingest.get("rejects_by_reason") or {}).items())
        ],
        folded_by_method=sorted((review.dedup.get("folded_by_method") or {}).items()),
        rule_samples=rule_samples,
        rule_rows=[
            (rule, count, review.rule_skipped.get(rule, 0)) for rule, count in review.rule_counts.items()
        ],
        length_stats=_length_stats(review),
        arxiv_months_rows=sum(review.distributions.months.values()),
        previous_rows=None if previous is None else len(previous),
        charts=_charts(review, params),
        data_docs_index=review.data_docs.get(""),
        validation=_validation_rows(review),
        filter_rules=_filter_rules(review),
        conflict_counts=_conflicts(review)[0],
        conflicts=_conflicts(review)[1],
    )


# ---------------------------------------------------------------------------------------------
# The Markdown summary (a pull-request comment or a CI job summary).

# Markdown table cells stay on one line, and pipes or HTML in the data must not break the
# table or inject markup into the comment (quotes are harmless in Markdown text).
_MARKDOWN_CELL = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "\n": " "})


def _md(text: Any) -> str:
    return str(text).translate(_MARKDOWN_CELL)


def render_markdown(review: Review) -> str:
    """A short pull-request comment from the page's data: verdict, next version (or nothing to
    publish), funnel, split rows, diff counts and the checks."""
    icon = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌"}[review.verdict]
    if review.unchanged:
        version = f"Nothing to publish: this build is **v{_md(review.version)}** as published."
    else:
        version = f"Next version: **{_md(review.version)}**."
    lines = [
        f"### {icon} Release review: {review.verdict}",
        "",
        f"{_md(review.verdict_reason)}. {version}",
        *(f"\n**Note:** {_md(note)}" for note in review.notes),
        "",
        "| split | rows |",
        "| --- | ---: |",
        *(f"| {s} | {n:,} |" for s, n in review.split_rows.items()),
        f"| **total** | **{sum(review.split_rows.values()):,}** |",
        "",
    ]
    if review.funnel:
        lines += ["| funnel step | rows |", "| --- | ---: |"]
        lines += [f"| {_md(step)} | {rows:,} |" for step, rows in review.funnel]
        lines.append("")
    if review.diff is None:
        lines.append("Diff: no previous release.")
    else:
        counts = ", ".join(f"{review.diff[k][0]:,} {k}" for k in DIFF_KINDS)
        lines.append(f"{_md(diff_heading(review))}: {counts}.")
    failed = [r for r in review.validation if not r.get("success")]
    lines.append("")
    critical = sum(1 for r in failed if r.get("severity") == "critical")
    lines.append(
        f"Checks: {len(review.validation) - len(failed):,} of {len(review.validation):,} expectations passed"
        f" ({critical:,} critical and {len(failed) - critical:,} other failed)."
    )
    lines.append("")
    if failed:
        lines += [
            "Failed expectations:",
            "",
            "| suite | expectation | severity | unexpected |",
            "| --- | --- | --- | ---: |",
        ]
        for r in failed:
            name = expectation_label(r)
            count = r.get("unexpected_count")
            lines.append(
                f"| {_md(r.get('suite'))} | `{_md(name)}` | {_md(r.get('severity'))} "
                f"| {'-' if count is None else count} |"
            )
    else:
        lines.append("Failed expectations: none.")
    return "\n".join(lines) + "\n"
