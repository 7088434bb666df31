"""Stage `review`: one self-contained HTML page a maintainer reads before saying "publish".

Reads: the stage reports (`ingest.json`, `rejects.jsonl`, `clean.json`, `filter.json`,
`filtered.parquet`, `dedup.json` (with its metadata conflicts), `duplicates.parquet`,
`split.json`, `validation.json`, `release_diff.json` (with the published rows gone)), the cleaned
parquet (before/after texts, flags), the release data directory and the row index of the newest
published release in `releases/` (its lengths). Writes: `review.html` (inline CSS, charts as
inline PNG, no JavaScript, no external URL) and, on request, a short Markdown summary for a
pull-request comment. Params: `review` (sample sizes and the sampling seed).

This module reads and samples the inputs into a `Review` (`model`); `report` renders it from
the Jinja2 template `templates/review.html.j2`, which escapes everything that comes from the
data. The page samples, it never dumps: every list is capped by a `review` param and the large
tables are scanned lazily with polars, so it stays fast on millions of rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from pipeline.contracts import DIFF_KINDS, SPLITS
from pipeline.errors import BadInputError
from pipeline.io.build_files import read_raw_texts
from pipeline.io.writers import atomic_path, sha256_file
from pipeline.params import PublishParams, ReviewParams
from pipeline.releases import latest_index
from pipeline.stages.review.model import (
    Cluster,
    Distributions,
    PublishPlan,
    Review,
    TextSample,
    docs_key,
    expectation_label,
)
from pipeline.stages.review.report import diff_windows, render_html, render_markdown
from pipeline.versions import release_version, tag_name

# What callers and tests use from the stage: the readers here, the model and the renderers.
__all__ = [
    "Cluster",
    "Distributions",
    "PublishPlan",
    "Review",
    "TextSample",
    "data_docs_links",
    "diff_windows",
    "expectation_label",
    "load_review",
    "publish_plan",
    "read_diff",
    "read_distributions",
    "read_filtered",
    "read_rejects",
    "render_html",
    "render_markdown",
    "rule_examples",
    "rule_skips",
    "run_review",
    "verdict_of",
]

VERDICTS = ("PASS", "WARN", "FAIL")

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


def read_filtered(path: Path, rules: Iterable[str], per_rule: int) -> dict[str, list[dict[str, Any]]]:
    """Up to `per_rule` dropped rows per filter rule (`reason`), in file order, from
    `filtered.parquet`; every rule of `rules` gets a (possibly empty) list.

    Raises:
        BadInputError: the file is missing or unreadable.
    """
    if not path.is_file():
        raise BadInputError(f"{path}: filtered rows not found; run `abstracts filter` (`dvc repro`) first")
    columns = ["id", "source", "reason", "detail", "abstract"]
    try:
        picked = (
            pl.scan_parquet(path)
            .select(columns)
            .group_by("reason", maintain_order=True)
            .head(per_rule)
            .collect()
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BadInputError(
            f"{path}: cannot read the filtered rows ({exc}); rerun `abstracts filter`"
        ) from None
    samples: dict[str, list[dict[str, Any]]] = {rule: [] for rule in rules}
    for row in picked.iter_rows(named=True):
        samples.setdefault(str(row["reason"]), []).append(row)
    return dict(sorted(samples.items()))


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
        # Counting words is a regex over the whole text, the costliest part of this stage on a
        # large release: a systematic sample of rows is plenty for a histogram.
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
            TextSample(
                str(x.get("source")),
                str(x.get("before")),
                str(x.get("after")),
                (name,),
                str(x.get("evidence") or ""),
            )
            for x in examples or []
            if isinstance(x, dict)
        ][:per_rule]
    return out


def rule_skips(clean_report: dict[str, Any]) -> dict[str, int]:
    """Per clean rule, its `skipped_unsafe` count in `clean.json`: the rows where it left a spot
    alone because changing it would have broken an invariant."""
    rules = clean_report.get("rules") or {}
    return {
        name: int(entry.get("skipped_unsafe") or 0)
        for name, entry in sorted(rules.items())
        if isinstance(entry, dict)
    }


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


def read_card_version(path: Path) -> tuple[str, bool] | None:
    """(version, unchanged) from the card stage's `card.json`; None when there is none yet."""
    data = _read_json(path, required=False)
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        return None
    return str(data["version"]), data.get("status") == "unchanged"


def read_funnel(reports: Path) -> list[tuple[str, int]]:
    """(step, rows) of `plots/funnel.csv` (the metrics stage's funnel), or [] before it ran."""
    import csv

    path = reports / "plots" / "funnel.csv"
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return [(str(row["step"]), int(row["rows"])) for row in csv.DictReader(handle)]
    except (OSError, KeyError, ValueError):
        return []


def publish_plan(
    release_data: Path, version: str, params: PublishParams, unchanged: bool = False
) -> PublishPlan:
    """The version, tag, data files (size, sha256) and Hub repo `abstracts publish` would use.

    Paths are as the command line names them (`release_data` as given), so a reviewer can
    check a file with `sha256sum`.
    """
    files = sorted(p for p in release_data.rglob("*") if p.is_file())
    parsed = release_version(version)
    return PublishPlan(
        version=version,
        tag=tag_name(parsed) if parsed is not None else None,
        repo_id=params.repo_id,
        files=tuple((path.as_posix(), path.stat().st_size, sha256_file(path)) for path in files),
        command="abstracts publish --dry-run",
        unchanged=unchanged,
    )


def load_review(
    reports: Path,
    clean: Path,
    ingested: Path,
    release_data: Path,
    out: Path,
    params: ReviewParams,
    previous_data: Path | None = None,
    releases: Path | None = None,
    publish_params: PublishParams | None = None,
) -> Review:
    """Read every input the page needs, sampling the large tables.

    With `publish_params`, also what publishing this build would upload (sizes and hashes of
    the release data files).

    Raises:
        BadInputError: a required report or table is missing or unreadable.
    """
    ingest = _read_json(reports / "ingest.json")
    dedup = _read_json(reports / "dedup.json")
    filter_report = _read_json(reports / "filter.json")
    split_report = _read_json(reports / "split.json")
    clean_report = _read_json(reports / "clean.json", required=False) or {}
    validation = _read_json(reports / "validation.json", required=False)
    verdict, reason = verdict_of(validation)
    diff, version, previous_version = read_diff(reports / "release_diff.json", params.diff_examples)
    # The card stage decides the version (and "nothing to publish") as publish does.
    card_version = read_card_version(reports / "card.json")
    unchanged = False
    if card_version is not None:
        version, unchanged = card_version
    release_diff = _read_json(reports / "release_diff.json", required=False)
    latest = latest_index(releases) if releases is not None else None
    # The release's lengths are read on another thread (decoding gigabytes of text) while this
    # one samples the clean table: both spend their time outside the GIL.
    background = ThreadPoolExecutor(max_workers=2)
    try:
        # Hashing the release files runs beside the length scan (hashlib releases the GIL).
        plan = (
            background.submit(publish_plan, release_data, version, publish_params, unchanged)
            if publish_params is not None
            else None
        )
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
        filtered_samples = read_filtered(
            reports / "filtered.parquet", filter_report.get("rules") or {}, params.filtered_per_rule
        )
        removals = list(release_diff.get("removals") or []) if isinstance(release_diff, dict) else []
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
        suites = sorted({docs_key(r) for r in results})
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
            rule_skipped=rule_skips(clean_report),
            flag_counts=dict(sorted(flag_counts.items())),
            flag_samples=samples(flag_sources, 4),
            clusters=clusters,
            folded_rows=dups.height,
            distributions=distributions.result(),
            validation=results,
            data_docs=data_docs_links(reports / "data_docs", out, suites),
            notes=notes,
            publish=plan.result() if plan is not None else None,
            filter=filter_report,
            filtered_samples=filtered_samples,
            removals=removals[: params.removed_rows],
            removals_total=len(removals),
            unchanged=unchanged,
            funnel=read_funnel(reports),
        )
    finally:
        background.shutdown(wait=True, cancel_futures=True)


def run_review(
    reports: Path,
    clean: Path,
    ingested: Path,
    release_data: Path,
    out: Path,
    params: ReviewParams,
    previous_data: Path | None = None,
    releases: Path | None = None,
    publish_params: PublishParams | None = None,
) -> Review:
    """Write the review page to `out` and return what it was rendered from.

    Raises:
        BadInputError: a required report or table is missing or unreadable.
    """
    from pipeline.io.progress import phases

    with phases("review", 2) as step:
        step("reading and sampling the build")
        review = load_review(
            reports,
            clean,
            ingested,
            release_data,
            out,
            params,
            previous_data,
            releases,
            publish_params,
        )
        step("rendering the page")
        page = render_html(review, params)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
        # A page to open and share: readable by all, unlike the private temporary file.
        tmp.chmod(0o644)
    return review
