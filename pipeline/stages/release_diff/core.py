"""Stage `release_diff`: what this build changes against the newest published release.

Reads: the release data directory, the deduplicated parquet (the rows' member keys) and
`releases/` (see `pipeline.releases`). Writes: `release_diff.json` with the previous version,
the version the Croissant bump rules propose, counts per kind (added / removed / merged /
changed / moved), a few example ids of each, and every published row that is gone
(`removals`: id, reason, and for a merge the row it went into; with the filtered rows, a row the
filter dropped says by which rule). Params: `release_diff` (examples per kind).

`proposed_version` is the version a release with these row changes gets; the card stage
decides whether the build is a new release at all (`reports/card.json`: a build whose rows,
card and Croissant equal the last published release is that release, nothing to publish).

The same diff and version rules serve `abstracts publish`, which diffs against the Hub's
previous tag; this stage diffs against the local record of it, so that a maintainer sees the
proposed version and the changes before publishing, without network access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from pipeline.contracts import ROW_INDEX_META_COLUMNS
from pipeline.errors import BadInputError
from pipeline.io.writers import write_json
from pipeline.params import ReleaseDiffParams
from pipeline.releases import ReleaseDiff, diff_releases, latest_index, propose_version, read_index, row_index
from pipeline.versions import format_version, tag_name

# -- stage ------------------------------------------------------------------------------------


def describe(old: pl.DataFrame, new: pl.DataFrame, diff: ReleaseDiff, limit: int) -> dict[str, list[str]]:
    """Examples per kind; `changed` and `moved` say what changed about the row."""
    examples = diff.examples(limit)
    shown = set(examples["changed"]) | set(examples["moved"])
    if not shown:
        return examples
    pairs = old.filter(pl.col("id").is_in(shown)).join(
        new.filter(pl.col("id").is_in(shown)), on="id", suffix="__new"
    )
    by_id = {row["id"]: row for row in pairs.iter_rows(named=True)}

    def changed(row_id: str) -> str:
        row = by_id[row_id]
        columns = [
            {"abstract_hash": "abstract", "metadata_hash": "metadata"}.get(column, column)
            for column in ("abstract_hash", *ROW_INDEX_META_COLUMNS, "metadata_hash")
            if f"{column}__new" in row and row[column] != row[f"{column}__new"]
        ]
        return f"{row_id} ({', '.join(columns) or 'columns'} changed)"

    examples["changed"] = [changed(i) for i in examples["changed"]]
    examples["moved"] = [f"{i} ({by_id[i]['split']} -> {by_id[i]['split__new']})" for i in examples["moved"]]
    return examples


def filtered_reasons(filtered: Path, ids: list[str]) -> dict[str, str]:
    """Why each of `ids` (published rows gone) was dropped by the filter, for those the filtered
    rows hold by id or arXiv id: "filtered: <rule> (<detail>)" of its first dropped record.

    Raises:
        BadInputError: the filtered rows cannot be read.
    """
    if not ids:
        return {}
    try:
        hits = (
            pl.scan_parquet(filtered)
            .select(pl.coalesce("id", "arxiv_id").alias("key"), "reason", "detail")
            .filter(pl.col("key").is_in(ids))
            .unique("key", keep="first", maintain_order=True)
            .collect()
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BadInputError(
            f"{filtered}: cannot read the filtered rows ({exc}); run `dvc repro filter`"
        ) from None
    return {key: f"filtered: {reason} ({detail})" for key, reason, detail in hits.iter_rows()}


def run_release_diff(
    release_data: Path,
    releases: Path,
    out: Path,
    params: ReleaseDiffParams,
    deduped: Path | None = None,
    filtered: Path | None = None,
) -> dict[str, Any]:
    """Diff the release against the newest published row index; write and return the report.

    Raises:
        BadInputError: no release shards, or a published record without its row index.
    """
    new = pl.from_arrow(row_index(release_data, deduped=deduped))
    assert isinstance(new, pl.DataFrame)
    latest = latest_index(releases)
    previous = None if latest is None else tag_name(latest[0])
    old = new.clear() if latest is None else read_index(latest[1])
    diff = diff_releases(old, new, previous)
    proposed = format_version(propose_version(None if latest is None else latest[0], diff))
    notes: list[str] = []
    removals = diff.removals()
    if filtered is not None:
        # A removed row whose paper the filter dropped says which rule and why.
        why = filtered_reasons(filtered, [str(r["id"]) for r in removals if r["into"] is None])
        removals = [r | {"reason": why[str(r["id"])]} if str(r["id"]) in why else r for r in removals]
    report = {
        "previous": previous,
        "proposed_version": proposed,
        "rows": new.height,
        "counts": diff.counts(),
        "diff": {
            kind: {"count": count, "examples": examples}
            for (kind, count), examples in zip(
                diff.counts().items(), describe(old, new, diff, params.examples).values(), strict=True
            )
        },
        "removals": removals,
        "notes": notes,
    }
    write_json(report, out)
    return report
