"""Stage `review`: one self-contained HTML page a maintainer reads before saying "publish".

Reads: the stage reports (`ingest.json`, `rejects.jsonl`, `clean.json`, `dedup.json`,
`duplicates.parquet`, `split.json`, `validation.json`, `release_diff.json`), the cleaned
parquet (before/after texts, flags), the release data directory and the row index of the newest
published release in `releases/` (its lengths). Writes: `review.html` (inline CSS, charts as
inline PNG, no JavaScript, no external URL) and, on request, a short Markdown summary for a
pull-request comment. Params: `review` (sample sizes and the sampling seed).

The page samples, it never dumps: every list is capped by a `review` param and the large
tables are scanned lazily with polars, so it stays fast on millions of rows. Everything that
comes from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
import json
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipeline.contracts import DIFF_KINDS, SPLITS
from pipeline.errors import BadInputError
from pipeline.io.build_files import read_raw_texts
from pipeline.io.writers import atomic_path
from pipeline.params import CleanParams, ReviewParams
from pipeline.releases import latest_index

VERDICTS = ("PASS", "WARN", "FAIL")
# Tokens for the before/after diff: words, runs of whitespace, single punctuation marks.
# Diffing tokens rather than characters keeps difflib fast on 5,000-character abstracts.
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


# ---------------------------------------------------------------------------------------------
# The data the page is rendered from (plain values only, so rendering is a pure function).


@dataclass(frozen=True)
class TextSample:
    """One row shown on the page, identified by its `source` (file:line)."""

    source: str
    before: str
    after: str
    tags: tuple[str, ...] = ()


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
    data_docs: dict[str, str] = field(default_factory=dict)  # suite ("" = index) -> relative link
    notes: list[str] = field(default_factory=list)  # inconsistencies between the inputs


# ---------------------------------------------------------------------------------------------
# Reading (the shell): reports and lazy scans, capped by params.


def _read_json(path: Path, required: bool = True) -> Any:
    if not path.exists():
        if required:
            raise BadInputError(f"{path}: report not found; run `dvc repro` to build it first")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); rerun the stage that writes it"
        ) from None


def verdict_of(validation: dict[str, Any] | None) -> tuple[str, str]:
    """PASS / WARN / FAIL and a one-line reason, from `validation.json` (None: it never ran)."""
    if validation is None:
        return "FAIL", "validation has not run (no validation.json): run `dvc repro`"
    results = validation.get("results") or []
    critical = sum(1 for r in results if not r.get("success") and r.get("severity") == "critical")
    critical = max(critical, int(validation.get("critical_failures") or 0))
    warnings = sum(1 for r in results if not r.get("success") and r.get("severity") != "critical")
    if critical or validation.get("success") is False:
        return "FAIL", f"{critical} critical expectation(s) failed, {warnings} warning(s)"
    if warnings:
        return "WARN", f"all critical expectations passed; {warnings} warning(s)"
    return "PASS", f"all {len(results)} expectations passed"


def _diff_entry(value: Any, limit: int) -> tuple[int, list[str]]:
    """Count and examples of one diff kind, whatever shape the publish step wrote it in."""

    def show(item: Any) -> str:
        if isinstance(item, dict):
            return ", ".join(f"{k}={v}" for k, v in sorted(item.items()))
        return str(item)

    if isinstance(value, bool) or value is None:
        return 0, []
    if isinstance(value, int):
        return value, []
    if isinstance(value, list):
        return len(value), [show(v) for v in value[:limit]]
    if isinstance(value, dict):
        items: list[Any] = next(
            (value[k] for k in ("examples", "ids", "rows") if isinstance(value.get(k), list)), []
        )
        count = value.get("count")
        return (count if isinstance(count, int) else len(items)), [show(v) for v in items[:limit]]
    return 0, [show(value)]


def read_diff(path: Path, limit: int) -> tuple[dict[str, tuple[int, list[str]]] | None, str, str]:
    """(diff by kind, proposed version, previous version) from `release_diff.json`, if any."""
    data = _read_json(path, required=False)
    if not isinstance(data, dict):
        return None, "1.0.0 (first release)", "no previous release"
    nested = data.get("diff")
    source: dict[str, Any] = nested if isinstance(nested, dict) else data
    diff = {kind: _diff_entry(source.get(kind), limit) for kind in DIFF_KINDS}
    version = next((str(data[k]) for k in ("proposed_version", "version") if data.get(k)), "not proposed")
    previous = next((str(data[k]) for k in ("previous", "previous_version") if data.get(k)), None)
    if previous is None:
        # The publish step writes `"previous": null` for a first release: everything is added.
        previous = "no previous release (first release)" if "previous" in data else "unknown"
    return diff, version, previous


def read_rejects(path: Path, reasons: dict[str, int], per_reason: int) -> dict[str, list[dict[str, Any]]]:
    """Up to `per_reason` rejected lines per reason, in file order.

    `reasons` (reason -> count, from the ingest report) lets the scan stop as soon as every
    reason has all the lines it will show, instead of reading a large rejects file to the end.
    """
    wanted = {reason: min(per_reason, int(count)) for reason, count in reasons.items()}
    samples: dict[str, list[dict[str, Any]]] = {}
    if not path.exists():
        return samples
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(
                    f"{path}:{number}: invalid JSON ({exc.msg}); rerun `abstracts ingest`"
                ) from None
            bucket = samples.setdefault(str(row.get("reason")), [])
            if len(bucket) < per_reason:
                bucket.append(row)
            if wanted and all(len(samples.get(r, [])) >= n for r, n in wanted.items()):
                break
    return samples


def _sample_keys(frame: pl.LazyFrame, list_column: str, seed: int) -> pl.LazyFrame:
    """One row per (row, value of `list_column`) with a pseudo-random but reproducible key.

    The key is polars' seeded hash of `source`: the same rows are picked on every run with one
    polars version (the page is a report; a polars upgrade may pick other samples).
    """
    return (
        frame.select("source", "file", list_column, pl.col("source").hash(seed).alias("_key"))
        .explode(list_column)
        .drop_nulls(list_column)
        .rename({list_column: "_name"})
    )


def _stratified(frame: pl.LazyFrame, per_name: int) -> dict[str, list[str]]:
    """Up to `per_name` sources per name, spread over the raw files (round-robin by file)."""
    picked = (
        frame.with_columns(pl.col("_key").rank("ordinal").over("_name", "file").alias("_rank"))
        .filter(pl.col("_rank") <= per_name)
        .sort("_name", "_rank", "file", "_key", "source")
        .group_by("_name", maintain_order=True)
        .head(per_name)
        .collect()
    )
    out: dict[str, list[str]] = {}
    for name, source in picked.select("_name", "source").iter_rows():
        out.setdefault(name, []).append(source)
    return out


def _counts(frame: pl.LazyFrame) -> dict[str, int]:
    counted = frame.group_by("_name").len().sort("_name").collect()
    return {name: int(n) for name, n in counted.iter_rows()}


# Rows per Arrow batch while scanning the release: bounds memory whatever the shard size.
_SCAN_BATCH_ROWS = 32_768
# New-style arXiv ids start with YYMM; old-style ones end /YYMMNNN (arXiv identifier scheme).
_YYMM = pl.coalesce(
    pl.col("arxiv_id").str.extract(r"^(\d{4})\.\d{4,5}$", 1),
    pl.col("arxiv_id").str.extract(r"/(\d{4})\d{3}$", 1),
)


def _scan_group(
    path: Path, group: int, offset: int, every: int
) -> tuple[list[np.ndarray[Any, Any]], list[np.ndarray[Any, Any]]]:
    """Characters of every abstract of one row group, and words of the rows whose position in
    the split (`offset` is the group's first) is a multiple of `every`."""
    chars, words = [], []
    batches = pq.ParquetFile(path).iter_batches(
        batch_size=_SCAN_BATCH_ROWS, row_groups=[group], columns=["abstract"], use_threads=False
    )
    for batch in batches:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        chars.append(frame["abstract"].str.len_chars().fill_null(0).to_numpy())
        # Counting words is a regex over the whole text (about 30 s for 2.7M abstracts): a
        # systematic sample of rows is plenty for a histogram.
        first = (-offset) % every
        sample = frame["abstract"].gather_every(every, first) if first < frame.height else None
        if sample is not None:
            words.append(sample.str.count_matches(r"\S+").fill_null(0).to_numpy())
        offset += frame.height
    return chars, words


def _scan_lengths(
    files: list[Path], every: int, pool: ThreadPoolExecutor
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], dict[str, int]]:
    """Characters of every abstract, words of every `every`-th one, and counts per arXiv YYMM.

    Reads the shards row group by row group, in batches (pyarrow), so that memory stays flat
    at millions of rows; `pool` decodes and measures two row groups at once.
    """
    groups = []
    offset = 0
    for path in files:
        meta = pq.ParquetFile(path).metadata
        for group in range(meta.num_row_groups):
            groups.append(pool.submit(_scan_group, path, group, offset, every))
            offset += meta.row_group(group).num_rows
    chars, words = [], []
    for future in groups:
        group_chars, group_words = future.result()
        chars += group_chars
        words += group_words
    yymm: dict[str, int] = {}
    if all("arxiv_id" in pq.ParquetFile(path).schema_arrow.names for path in files):
        # Ids are short: one lazy scan of that column alone is fast and small.
        counted = pl.scan_parquet(files).select(_YYMM.alias("m")).drop_nulls().group_by("m").len().collect()
        yymm = {str(key): int(count) for key, count in counted.iter_rows()}
    empty = np.zeros(0, dtype=np.int64)
    return (
        np.concatenate(chars) if chars else empty,
        np.concatenate(words) if words else empty,
        yymm,
    )


def read_distributions(
    release_data: Path, previous_data: Path | None, word_rows: int, previous_index: Path | None = None
) -> Distributions:
    """Length and arXiv month distributions over every release row, words over a sample.

    Words are counted on every k-th row of each split, at most about `word_rows` rows in all.
    The previous release's lengths come from its data directory when given, else from its row
    index (`releases/<version>.rows.parquet`, which keeps every row's length).
    """
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in release_data.glob("*.parquet"))
    every = max(1, -(-total // max(1, word_rows)))
    chars: dict[str, np.ndarray[Any, Any]] = {}
    words: dict[str, np.ndarray[Any, Any]] = {}
    months: dict[str, int] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for split in SPLITS:
            files = sorted(release_data.glob(f"{split}-*.parquet"))
            if not files:
                raise BadInputError(
                    f"{release_data}: no {split}-*.parquet shard; run `abstracts split` first"
                )
            chars[split], words[split], yymm = _scan_lengths(files, every, pool)
            for key, count in yymm.items():
                year = int(key[:2])
                # arXiv started in 1991: old-style ids from 91..99 are the 1990s.
                month = f"{1900 + year if year >= 91 else 2000 + year}-{key[2:]}"
                months[month] = months.get(month, 0) + count
        previous = None
        if previous_data is not None:
            files = sorted(previous_data.glob("*.parquet"))
            if not files:
                raise BadInputError(f"{previous_data}: no parquet files of the previous release")
            previous = _scan_lengths(files, max(1, total), pool)[0]
        elif previous_index is not None:
            previous = pl.read_parquet(previous_index, columns=["chars"])["chars"].to_numpy()
    return Distributions(chars, words, dict(sorted(months.items())), previous)


def rule_examples(clean_report: dict[str, Any], per_rule: int) -> dict[str, list[TextSample]]:
    """Each rule's before/after examples as the clean stage recorded them in `clean.json`.

    The clean stage keeps, per rule, windows of text just before and just after that rule's own
    change, so the page shows each rule alone without replaying the rules here.
    """
    out: dict[str, list[TextSample]] = {}
    for name, entry in sorted((clean_report.get("rules") or {}).items()):
        examples = entry.get("examples") if isinstance(entry, dict) else None
        out[name] = [
            TextSample(str(x.get("source")), str(x.get("before")), str(x.get("after")), (name,))
            for x in examples or []
            if isinstance(x, dict)
        ][:per_rule]
    return out


def _docs_key(result: dict[str, Any]) -> str:
    """`suite.table` when the result names its table (Data Docs has a page per pair), else `suite`."""
    suite = str(result.get("suite"))
    return f"{suite}.{result['table']}" if result.get("table") else suite


def data_docs_links(data_docs: Path, out: Path, suites: Iterable[str]) -> dict[str, str]:
    """Relative links from the page to GX Data Docs: the index and a page per suite (or suite.table).

    `suites` holds `suite` or `suite.table` keys; a page named `<key>.html` wins, then a page in
    a folder named after the suite, then any page whose name starts with the suite.
    """
    if not data_docs.is_dir():
        return {}
    pages = sorted(p for p in data_docs.rglob("*.html"))
    links: dict[str, str] = {}
    index = data_docs / "index.html"
    if index.exists():
        links[""] = Path(os.path.relpath(index, out.parent)).as_posix()
    for key in suites:
        suite = key.split(".", 1)[0]
        page = next((p for p in pages if p.name == f"{key}.html"), None)
        page = page or next((p for p in pages if suite in p.relative_to(data_docs).parts[:-1]), None)
        page = page or next((p for p in pages if p.stem.startswith(suite)), None)
        if page is not None:
            links[key] = Path(os.path.relpath(page, out.parent)).as_posix()
    return links


def load_review(
    reports: Path,
    clean: Path,
    ingested: Path,
    release_data: Path,
    out: Path,
    params: ReviewParams,
    clean_params: CleanParams,
    previous_data: Path | None = None,
    releases: Path | None = None,
) -> Review:
    """Read every input the page needs, sampling the large tables.

    Raises:
        BadInputError: a required report or table is missing or unreadable.
    """
    ingest = _read_json(reports / "ingest.json")
    dedup = _read_json(reports / "dedup.json")
    split_report = _read_json(reports / "split.json")
    clean_report = _read_json(reports / "clean.json", required=False) or {}
    validation = _read_json(reports / "validation.json", required=False)
    verdict, reason = verdict_of(validation)
    diff, version, previous_version = read_diff(reports / "release_diff.json", params.diff_examples)
    release_diff = _read_json(reports / "release_diff.json", required=False)
    latest = latest_index(releases) if releases is not None else None
    # The release's lengths are read on another thread (decoding gigabytes of text) while this
    # one samples the clean table: both spend their time outside the GIL.
    background = ThreadPoolExecutor(max_workers=1)
    try:
        distributions = background.submit(
            read_distributions,
            release_data,
            previous_data,
            params.word_sample_rows,
            latest[1] if latest else None,
        )
        rejects = read_rejects(
            reports / "rejects.jsonl", ingest.get("rejects_by_reason") or {}, params.rejects_per_reason
        )
        if not clean.exists():
            raise BadInputError(f"{clean}: cleaned parquet not found; run `abstracts clean` first")
        if not ingested.exists():
            raise BadInputError(f"{ingested}: ingested parquet not found; run `abstracts ingest` first")

        scan = pl.scan_parquet(clean)
        rules = _sample_keys(scan, "clean_rules", params.seed)
        flags = _sample_keys(scan, "flags", params.seed)
        # Rules and flags the clean report knows of but no row hit still get a (zero) line.
        rule_counts = {name: 0 for name in clean_report.get("rules") or {}} | _counts(rules)
        flag_counts = {name: 0 for name in clean_report.get("flags") or {}} | _counts(flags)
        rule_sources = _stratified(rules, params.examples_per_rule)
        flag_sources = _stratified(flags, params.rows_per_flag)

        duplicates_path = reports / "duplicates.parquet"
        dups = pl.read_parquet(duplicates_path) if duplicates_path.exists() else pl.DataFrame()
        top: list[tuple[str, int]] = []
        if dups.height:
            sizes = dups.group_by("kept_source").len().sort(["len", "kept_source"], descending=[True, False])
            top = [(str(s), int(n)) for s, n in sizes.head(params.clusters).iter_rows()]
        folded_of: dict[str, list[dict[str, Any]]] = {}
        if top:
            shown = (
                dups.filter(pl.col("kept_source").is_in([s for s, _ in top]))
                .sort("kept_source", "method", "source")
                .group_by("kept_source", maintain_order=True)
                .head(params.folded_per_cluster)
            )
            for row in shown.iter_rows(named=True):
                folded_of.setdefault(row["kept_source"], []).append(row)

        wanted = {s for sources in (*rule_sources.values(), *flag_sources.values()) for s in sources}
        wanted |= {s for s, _ in top} | {r["source"] for rows in folded_of.values() for r in rows}
        # The cleaned file is row for row the ingested one, which holds the raw texts.
        picked = (
            scan.with_row_index("_row")
            .filter(pl.col("source").is_in(sorted(wanted)))
            .select("_row", "source", "abstract", "clean_rules", "flags")
            .collect(engine="streaming")
        )
        # The cleaned file is row for row the ingested one, which holds the raw texts.
        raw_texts = read_raw_texts(
            ingested, picked["_row"].to_list(), dict(zip(picked["_row"], picked["source"], strict=True))
        )
        texts = {
            source: (source, raw_texts[row], abstract, rules, flags)
            for row, source, abstract, rules, flags in picked.iter_rows()
        }

        def samples(picked: dict[str, list[str]], tag_column: int) -> dict[str, list[TextSample]]:
            return {
                name: [
                    TextSample(s, texts[s][1], texts[s][2], tuple(texts[s][tag_column] or ()))
                    for s in sources
                    if s in texts
                ]
                for name, sources in sorted(picked.items())
            }

        clusters = [
            Cluster(
                kept_source=kept,
                kept_text=texts[kept][2] if kept in texts else "",
                size=size,
                folded=tuple(
                    (
                        r["source"],
                        str(r["method"]),
                        texts[r["source"]][2] if r["source"] in texts else "",
                        r.get("similarity"),
                    )
                    for r in folded_of.get(kept, [])
                ),
            )
            for kept, size in top
        ]
        results = list((validation or {}).get("results") or [])
        # Row counts come from the release files themselves: they are what would be published.
        split_rows = {
            s: sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(release_data.glob(f"{s}-*.parquet")))
            for s in SPLITS
        }
        reported = {s: int((split_report.get("rows") or {}).get(s, 0)) for s in SPLITS}
        notes = [str(n) for n in release_diff.get("notes") or []] if isinstance(release_diff, dict) else []
        if reported != split_rows:
            notes.append(
                f"split.json reports {reported} rows but {release_data} holds {split_rows}: "
                "the reports are stale, rerun `dvc repro`"
            )
        suites = sorted({_docs_key(r) for r in results})
        return Review(
            verdict=verdict,
            verdict_reason=reason,
            version=version,
            previous_version=previous_version,
            split_rows=split_rows,
            diff=diff,
            ingest=ingest,
            rejects=rejects,
            clean_rows=pq.ParquetFile(clean).metadata.num_rows,
            dedup=dedup,
            rule_counts=dict(sorted(rule_counts.items())),
            rule_samples=rule_examples(clean_report, params.examples_per_rule),
            flag_counts=dict(sorted(flag_counts.items())),
            flag_samples=samples(flag_sources, 4),
            clusters=clusters,
            folded_rows=dups.height,
            distributions=distributions.result(),
            validation=results,
            data_docs=data_docs_links(reports / "data_docs", out, suites),
            notes=notes,
        )
    finally:
        background.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------
# Rendering (pure): HTML and Markdown from a `Review`.


def e(value: Any) -> str:
    """HTML-escape anything that came from the data (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _visible(segment: str) -> str:
    # A changed run of pure whitespace would be invisible: show newlines and spaces as marks.
    if segment and not segment.strip():
        return segment.replace("\n", "↵").replace("\r", "␍").replace("\t", "⇥").replace(" ", "·")
    return segment


def diff_windows(before: str, after: str, context: int = 8, limit: int = 3) -> list[tuple[str, str]]:
    """Escaped (before, after) HTML snippets around each change, removals in <del>, insertions in <ins>.

    At most `limit` windows, each with `context` tokens either side of the change.
    """
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    windows = []
    for group in list(matcher.get_grouped_opcodes(context))[:limit]:
        left, right = [], []
        for tag, i1, i2, j1, j2 in group:
            old, new = "".join(a[i1:i2]), "".join(b[j1:j2])
            if tag == "equal":
                left.append(e(old))
                right.append(e(new))
                continue
            if old:
                left.append(f"<del>{e(_visible(old))}</del>")
            if new:
                right.append(f"<ins>{e(_visible(new))}</ins>")
        windows.append(("".join(left), "".join(right)))
    return windows


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


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1rem 1.5rem;color:#1d232b;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{border-bottom:2px solid #dde2e8;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;min-width:24rem}table:has(.text){width:100%}
th,td{border:1px solid #dde2e8;padding:.25rem .45rem;
text-align:left;vertical-align:top}th{background:#f3f5f8}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;font-size:2rem;font-weight:700;padding:.3rem 1.2rem;border-radius:.4rem;
color:#fff}
.verdict.PASS{background:#1f8a3b}.verdict.WARN{background:#b7791f}.verdict.FAIL{background:#c0392b}
.summary{display:flex;gap:2rem;align-items:center;flex-wrap:wrap}.muted{color:#5f6b7a}
.text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}
del{background:#fbd5d5;text-decoration:line-through}ins{background:#c9efd3;text-decoration:none}
.ok{color:#1f8a3b;font-weight:600}.bad{color:#c0392b;font-weight:600}.warn{color:#b7791f;font-weight:600}
td code{overflow-wrap:break-word}.wrap{overflow-wrap:anywhere}
img{max-width:100%}details{margin:.3rem 0}summary{cursor:pointer}code{font-size:12px}
"""


def _table(headers: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> str:
    """An HTML table; cells are already-escaped HTML, `numeric` column indexes align right."""
    right = set(numeric)
    head = "".join(f"<th{' class=n' if i in right else ''}>{h}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in right else ''}>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else e(value)


def _diff_heading(review: Review) -> str:
    if review.previous_version.startswith("no previous release"):
        return "Diff: first release, nothing published before"
    return f"Diff against {review.previous_version}"


def _section_verdict(review: Review) -> str:
    total = sum(review.split_rows.values())
    splits = _table(
        ["split", "rows"],
        ([e(s), _n(n)] for s, n in [*review.split_rows.items(), ("total", total)]),
        numeric=[1],
    )
    if review.diff is None:
        diff = '<p id="diff">Diff: <strong>no previous release</strong>; this is the first version.</p>'
    else:
        rows = []
        for kind in DIFF_KINDS:
            count, examples = review.diff[kind]
            shown = "<br>".join(f"<code>{e(x)}</code>" for x in examples) or '<span class="muted">-</span>'
            rows.append([e(kind), _n(count), shown])
        diff = (
            f'<div id="diff"><p>{e(_diff_heading(review))}:</p>'
            + _table(["change", "rows", "examples"], rows, numeric=[1])
            + "</div>"
        )
    return (
        '<section id="summary"><div class="summary">'
        f'<div id="verdict" class="verdict {e(review.verdict)}" role="status">{e(review.verdict)}</div>'
        f"<div><p><strong>{e(review.verdict_reason)}</strong></p>"
        f'<p>Proposed version: <strong id="version">{e(review.version)}</strong></p>'
        + "".join(f'<p class="warn">{e(note)}</p>' for note in review.notes)
        + "</div></div>"
        f"{splits}{diff}</section>"
    )


def _section_funnel(review: Review, params: ReviewParams) -> str:
    totals = review.ingest.get("totals") or {}
    folded = review.dedup.get("folded_by_method") or {}
    steps = [
        ("raw lines", totals.get("lines", "?")),
        ("blank lines skipped", totals.get("blank_lines", "?")),
        ("lines rejected", totals.get("rejects", "?")),
        ("records ingested", totals.get("records", "?")),
        ("rows after clean", review.clean_rows),
        ("duplicates folded", sum(int(v) for v in folded.values())),
        ("rows after dedup", review.dedup.get("rows_out", "?")),
        ("rows published", sum(review.split_rows.values())),
    ]
    files = review.ingest.get("files") or {}
    per_file = _table(
        ["raw file", "format", "lines", "records", "rejects", "blank"],
        (
            [
                f"<code>{e(name)}</code>",
                e(info.get("format", "?")),
                _n(info.get("lines", "?")),
                _n(info.get("records", "?")),
                _n(info.get("rejects", "?")),
                _n(info.get("blank_lines", "?")),
            ]
            for name, info in sorted(files.items())
        ),
        numeric=[2, 3, 4, 5],
    )
    formats = _table(
        ["format", "records"],
        ([e(k), _n(v)] for k, v in sorted((review.ingest.get("records_by_format") or {}).items())),
        numeric=[1],
    )
    reject_blocks = []
    for reason, count in sorted((review.ingest.get("rejects_by_reason") or {}).items()):
        lines = review.rejects.get(reason, [])
        table = _table(
            ["file:line", "rejected line"],
            (
                [
                    f"<code>{e(r.get('file'))}:{e(r.get('line'))}</code>",
                    f'<span class="text">{e(_short(str(r.get("content", "")), params.text_chars))}</span>',
                ]
                for r in lines
            ),
        )
        reject_blocks.append(
            f"<details><summary><code>{e(reason)}</code>: {_n(count)} line(s), "
            f"{len(lines)} shown</summary>{table}</details>"
        )
    by_method = _table(
        ["method", "rows folded"], ([e(k), _n(v)] for k, v in sorted(folded.items())), numeric=[1]
    )
    return (
        '<section id="funnel"><h2>From raw lines to published rows</h2>'
        + _table(["step", "rows"], ([e(s), _n(v)] for s, v in steps), numeric=[1])
        + "<h3>Records per raw file</h3>"
        + per_file
        + "<h3>Records per format</h3>"
        + formats
        + "<h3>Rejects by reason</h3>"
        + ("".join(reject_blocks) or '<p class="muted">No line was rejected.</p>')
        + "<h3>Duplicates folded by method</h3>"
        + by_method
        + "</section>"
    )


def _section_clean(review: Review, params: ReviewParams) -> str:
    parts = ['<section id="cleaning"><h2>Cleaning</h2><h3>Rules</h3>']
    parts.append(
        _table(
            ["rule", "rows changed"],
            ([f"<code>{e(k)}</code>", _n(v)] for k, v in review.rule_counts.items()),
            numeric=[1],
        )
    )
    for rule, samples in review.rule_samples.items():
        rows = []
        for sample in samples:
            windows = diff_windows(sample.before, sample.after)
            scope = (
                '<br><span class="muted">raw → cleaned, all rules</span>'
                if "all rules" in sample.tags
                else ""
            )
            rows.append(
                [
                    f"<code>{e(sample.source)}</code>{scope}",
                    '<span class="text">' + " … <br>".join(w[0] for w in windows) + "</span>",
                    '<span class="text">' + " … <br>".join(w[1] for w in windows) + "</span>",
                ]
            )
        parts.append(
            f'<details class="rule" open><summary>Rule <code>{e(rule)}</code>: '
            f"{_n(review.rule_counts.get(rule, 0))} row(s), {len(samples)} sampled</summary>"
            + _table(["source", "before", "after"], rows)
            + "</details>"
        )
    parts.append("<h3>Flags</h3>")
    parts.append(
        _table(
            ["flag", "rows"],
            ([f"<code>{e(k)}</code>", _n(v)] for k, v in review.flag_counts.items()),
            numeric=[1],
        )
    )
    for flag, samples in review.flag_samples.items():
        rows = [
            [
                f"<code>{e(s.source)}</code>",
                f'<span class="text">{e(_short(s.after, params.text_chars))}</span>',
                e(", ".join(s.tags)),
            ]
            for s in samples
        ]
        parts.append(
            f'<details class="flag"><summary>Flag <code>{e(flag)}</code>: '
            f"{_n(review.flag_counts.get(flag, 0))} row(s), {len(samples)} sampled across raw files</summary>"
            + _table(["source", "abstract (cleaned)", "all flags"], rows)
            + "</details>"
        )
    return "".join(parts) + "</section>"


def _section_duplicates(review: Review, params: ReviewParams) -> str:
    parts = [
        '<section id="duplicates"><h2>Duplicates</h2>',
        f"<p>{_n(review.folded_rows)} row(s) folded into kept rows; the largest clusters:</p>",
    ]
    if not review.clusters:
        parts.append('<p class="muted">No duplicates were folded.</p>')
    for cluster in review.clusters:
        rows = [
            [
                "kept",
                f"<code>{e(cluster.kept_source)}</code>",
                "",
                f'<span class="text">{e(_short(cluster.kept_text, params.text_chars))}</span>',
            ]
        ]
        for source, method, text, similarity in cluster.folded:
            sim = "" if similarity is None else f"{similarity:.3f}"
            rows.append(
                [
                    e(method),
                    f"<code>{e(source)}</code>",
                    sim,
                    f'<span class="text">{e(_short(text, params.text_chars))}</span>',
                ]
            )
        more = cluster.size - len(cluster.folded)
        note = f'<p class="muted">and {more:,} more folded row(s)</p>' if more > 0 else ""
        parts.append(
            f'<div class="cluster"><h3>{_n(cluster.size)} folded into '
            f"<code>{e(cluster.kept_source)}</code></h3>"
            + _table(["role / method", "source", "similarity", "abstract"], rows, numeric=[2])
            + note
            + "</div>"
        )
    return "".join(parts) + "</section>"


def _section_distributions(review: Review, params: ReviewParams) -> str:
    dist = review.distributions
    bins = params.histogram_bins
    sampled = sum(len(v) for v in dist.words.values())
    total = sum(len(v) for v in dist.chars.values())
    words_scope = "every row" if sampled == total else f"a sample of {sampled:,} of {total:,} rows"
    charts = [
        (
            "Characters per abstract",
            _histogram_chart(dist.chars, "characters", params.histogram_bins, dist.previous_chars),
        ),
        (f"Words per abstract ({words_scope})", _histogram_chart(dist.words, "words", bins, None)),
        ("arXiv year-month (rows with an arXiv id)", _months_chart(dist.months)),
    ]
    stats = []
    for split in SPLITS:
        chars, words = dist.chars[split], dist.words[split]
        if len(chars):
            stats.append(
                [
                    e(split),
                    _n(len(chars)),
                    _n(int(np.median(chars))),
                    _n(int(chars.min())),
                    _n(int(chars.max())),
                    _n(int(np.median(words))),
                ]
            )
        else:
            stats.append([e(split), "0", "-", "-", "-", "-"])
    body = "".join(
        f'<figure><figcaption>{e(t)}</figcaption><img alt="{e(t)}" src="{src}"></figure>' for t, src in charts
    )
    known = sum(dist.months.values())
    return (
        '<section id="distributions"><h2>Distributions</h2>'
        + _table(
            ["split", "rows", "median chars", "min chars", "max chars", "median words"],
            stats,
            numeric=[1, 2, 3, 4, 5],
        )
        + f'<p class="muted">{_n(known)} row(s) have an arXiv id with a year-month.'
        + (
            " The dashed line in the length histogram is the previous release"
            f" ({_n(len(dist.previous_chars))} rows)."
            if dist.previous_chars is not None
            else " No previous release data was given to compare lengths with."
        )
        + "</p>"
        + body
        + "</section>"
    )


def expectation_label(result: dict[str, Any]) -> str:
    """`name: expect_x(column)` (or `[table] ...`) for one validation result, as plain text."""
    column = (result.get("kwargs") or {}).get("column")
    label = str(result.get("expectation")) + (f"({column})" if column else "")
    if result.get("name"):
        label = f"{result['name']}: {label}"
    if result.get("table") not in (None, "rows", "release"):
        label = f"[{result['table']}] {label}"
    return label


def _section_validation(review: Review) -> str:
    rows = []
    # Failures first (critical, then warnings), each group in report order.
    ordered = sorted(
        review.validation, key=lambda r: (bool(r.get("success")), r.get("severity") != "critical")
    )
    for r in ordered:
        name = expectation_label(r)
        if r.get("success"):
            status = '<span class="ok">pass</span>'
        elif r.get("severity") == "critical":
            status = '<span class="bad">FAIL</span>'
        else:
            status = '<span class="warn">warn</span>'
        observed = _short(json.dumps(r.get("observed_value"), ensure_ascii=False, sort_keys=True), 160)
        failing = ", ".join(
            f"{x.get('id')} ({x.get('source')})" if isinstance(x, dict) else str(x)
            for x in (r.get("failing_rows") or [])[:3]
        )
        suite = str(r.get("suite"))
        link = review.data_docs.get(_docs_key(r))
        suite_cell = f'<a href="{e(link)}">{e(suite)}</a>' if link else e(suite)
        rows.append(
            [
                suite_cell,
                f"<code>{e(name)}</code>",
                e(r.get("severity")),
                status,
                f'<code class="wrap">{e(observed)}</code>',
                _n(r.get("unexpected_count") if r.get("unexpected_count") is not None else "-"),
                f'<span class="wrap">{e(failing)}</span>',
            ]
        )
    index = review.data_docs.get("")
    docs = (
        f'<p>Full results: <a id="data-docs" href="{e(index)}">Great Expectations Data Docs</a>.</p>'
        if index
        else '<p class="muted">No Data Docs were built (reports/data_docs/).</p>'
    )
    return (
        '<section id="validation"><h2>Validation</h2>'
        + docs
        + _table(
            ["suite", "expectation", "severity", "status", "observed", "unexpected", "example ids"],
            rows,
            numeric=[5],
        )
        + "</section>"
    )


def render_html(review: Review, params: ReviewParams) -> str:
    """The whole page as one string; deterministic for identical inputs."""
    title = f"Release review: {review.verdict}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>ML Abstracts release review</h1>"
        + _section_verdict(review)
        + _section_funnel(review, params)
        + _section_clean(review, params)
        + _section_duplicates(review, params)
        + _section_distributions(review, params)
        + _section_validation(review)
        + "</body></html>\n"
    )


def _md(text: Any) -> str:
    # Keep table cells on one line and stop pipes or HTML in the data from breaking the comment.
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def render_markdown(review: Review) -> str:
    """A short pull-request comment: verdict, counts, diff and failed expectations."""
    icon = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌"}[review.verdict]
    lines = [
        f"### {icon} Release review: {review.verdict}",
        "",
        f"{_md(review.verdict_reason)}. Proposed version: **{_md(review.version)}**.",
        *(f"\n**Note:** {_md(note)}" for note in review.notes),
        "",
        "| split | rows |",
        "| --- | ---: |",
        *(f"| {s} | {n:,} |" for s, n in review.split_rows.items()),
        f"| **total** | **{sum(review.split_rows.values()):,}** |",
        "",
    ]
    if review.diff is None:
        lines.append("Diff: no previous release.")
    else:
        counts = ", ".join(f"{review.diff[k][0]:,} {k}" for k in DIFF_KINDS)
        lines.append(f"{_md(_diff_heading(review))}: {counts}.")
    failed = [r for r in review.validation if not r.get("success")]
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


def run_review(
    reports: Path,
    clean: Path,
    ingested: Path,
    release_data: Path,
    out: Path,
    params: ReviewParams,
    clean_params: CleanParams,
    previous_data: Path | None = None,
    releases: Path | None = None,
) -> Review:
    """Write the review page to `out` and return what it was rendered from.

    Raises:
        BadInputError: a required report or table is missing or unreadable.
    """
    review = load_review(
        reports, clean, ingested, release_data, out, params, clean_params, previous_data, releases
    )
    page = render_html(review, params)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
        # A page to open and share: readable by all, unlike the private temporary file.
        tmp.chmod(0o644)
    return review
