"""Stage `card`: the dataset card `release/README.md` and `release/croissant.json`.

Reads: the release data directory, `dataset_card/` (Jinja `template.md`, static facts in
`metadata.yaml`, hand-written prose in `sections/*.md`), the stage reports (ingest, clean,
filter, dedup with `duplicates.parquet`, validation, release_diff) and, when present, the
published-release records `releases/*.json` (the changelog). The per-source table must add up
(records read = rejected + filtered + folded + released, per source) or the stage fails.
Writes: the card, whose YAML front matter (built with huggingface_hub's `DatasetCardData`) holds
`configs` and a `dataset_info` computed from the parquet files, and an MLCommons Croissant 1.1
JSON-LD description of the same files, and `reports/card.json`: the version the card describes
and whether this build is the last published release (`unchanged`: nothing to publish) or a
new one. Params: `card` (pretty name, license, homepage, contact) and `publish.repo_id`.

The version is not a param. With no published release it is 1.0.0; otherwise the card is
rendered as the last published version and keyed like `abstracts publish` keys a Hub revision
(`releases.content_key`): equal to that release's recorded key, the build *is* that release;
else it is the version `release_diff` proposes from the row diff (removed, merged, changed or
moved rows: major; only added: minor; same rows: patch). The comparison renders for the
repository the record names (`publish --repo-id` may have overridden `publish.repo_id`).

Nothing in either output is typed by hand per release: prose comes verbatim from
`dataset_card/sections/`, numbers from the data and reports, so regenerating loses nothing.
`check_card` recomputes what the card claims about the data; publish calls it before upload.
"""

from __future__ import annotations

import datetime
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from pipeline.contracts import (
    DEDUP_REPORT,
    DUPLICATES,
    FILTER_REPORT,
    INGEST_REPORT,
    RELEASE_DIFF_REPORT,
    RELEASE_SCHEMA,
    SPLITS,
)
from pipeline.errors import BadInputError, ConfigError, ValidationFailed
from pipeline.io.writers import atomic_path, sha256_file, write_json
from pipeline.params import CardParams
from pipeline.releases import (
    ChangelogEntry,
    content_key,
    load_changelog,
    published_versions,
    read_record,
)
from pipeline.versions import Version, format_version, parse_version, sort_key, tag_name

_ARROW_TO_HF = {pa.string(): "string", pa.int64(): "int64", pa.date32(): "date32"}
_ARROW_TO_CROISSANT = {pa.string(): "sc:Text", pa.int64(): "sc:Integer", pa.date32(): "sc:Date"}


def hf_feature(field: pa.Field) -> dict[str, Any]:
    """A release column in `dataset_info.features` form, as `datasets.Features._to_yaml_list`
    writes it: `dtype` for a scalar, `list` for a list of scalars, `struct` for a struct."""
    kind = field.type
    if pa.types.is_list(kind):
        return {"name": field.name, "list": _ARROW_TO_HF[kind.value_type]}
    if pa.types.is_struct(kind):
        return {"name": field.name, "struct": [hf_feature(kind.field(i)) for i in range(kind.num_fields)]}
    return {"name": field.name, "dtype": _ARROW_TO_HF[kind]}


def dtype_label(kind: pa.DataType) -> str:
    """A release column's type as the card's field table shows it (`list<string>`)."""
    if pa.types.is_list(kind):
        return f"list<{dtype_label(kind.value_type)}>"
    if pa.types.is_struct(kind):
        return (
            "struct<"
            + ", ".join(
                f"{kind.field(i).name}: {dtype_label(kind.field(i).type)}" for i in range(kind.num_fields)
            )
            + ">"
        )
    return _ARROW_TO_HF[kind]


def croissant_field(field: pa.Field, record_set: str, description: str) -> dict[str, Any]:
    """A release column as a Croissant 1.1 `cr:Field`: a list is `isArray` of its item type, a
    struct has one `subField` per member, read from the column by `jsonPath`."""
    kind = field.type
    column: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{field.name}",
        "name": field.name,
        "description": description,
        "source": {"fileSet": {"@id": "parquet-files"}, "extract": {"column": field.name}},
    }
    if pa.types.is_struct(kind):
        column["subField"] = [
            {
                "@type": "cr:Field",
                "@id": f"{record_set}/{field.name}/{member.name}",
                "name": member.name,
                "dataType": _ARROW_TO_CROISSANT[member.type],
                "source": {
                    "fileSet": {"@id": "parquet-files"},
                    "extract": {"column": field.name},
                    "transform": {"jsonPath": member.name},
                },
            }
            for member in (kind.field(i) for i in range(kind.num_fields))
        ]
        return column
    if pa.types.is_list(kind):
        column["dataType"] = _ARROW_TO_CROISSANT[kind.value_type]
        column["isArray"] = True
        column["arrayShape"] = "-1"
        return column
    column["dataType"] = _ARROW_TO_CROISSANT[kind]
    return column


REQUIRED_METADATA = ("citation", "fields")
# Hand-written prose, one file per card section under dataset_card/sections/.
SECTIONS = (
    "summary",
    "description",
    "direct_use",
    "out_of_scope_use",
    "curation_rationale",
    "source_data",
    "personal_information",
    "limitations",
    "recommendations",
)
# Croissant wants a license URL; the Hub wants the SPDX-style id. Unknown ids are passed as text.
_LICENSE_URLS = {
    "cc-by-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "cc-by-sa-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "cc0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "cc-by-nc-4.0": "https://creativecommons.org/licenses/by-nc/4.0/",
    "cc-by-nc-sa-4.0": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "odc-by-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    "mit": "https://opensource.org/licenses/MIT",
    "apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
}
# Characters that start Markdown constructs inside a paragraph or table cell. `<`, `>` and `&`
# are handled by HTML-escaping first, so raw HTML (`<script>`) never reaches the renderer.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]|~#$!])")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:/-]+")
# The JSON-LD context of Croissant 1.1, as `mlcroissant` writes it (mlcroissant._src.core.rdf).
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "description": {"@container": "@language"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "name": {"@container": "@language"},
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def escape_markdown(text: str) -> str:
    """`text` made inert inside a Markdown paragraph or table cell, on one line.

    HTML is escaped (`<script>` shows as text), Markdown punctuation is backslash-escaped (a `|`
    cannot end a table cell, `[x](y)` cannot become a link) and line breaks become spaces
    because a newline ends a table row.
    """
    one_line = " ".join(text.split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def code_span(text: str) -> str:
    """`text` as inline code when it is a plain identifier or path, else escaped text.

    Backslash escapes do not work inside code spans, so only safe names get backticks.
    """
    return f"`{text}`" if _PLAIN_NAME.fullmatch(text) else escape_markdown(text)


def table_cell(text: str) -> str:
    """Trusted, hand-written Markdown on one line, with `|` escaped so it stays in its cell."""
    return " ".join(text.split()).replace("|", "\\|")


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket for a row count."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ]
    return next((label for bound, label in bounds if rows < bound), "100M<n<1B")


def _split_files(release: Path, split: str) -> list[Path]:
    return sorted((release / "data").glob(f"{split}-*.parquet"))


def _decoded_bytes(path: Path, group: int) -> int:
    return int(pq.ParquetFile(path).read_row_group(group, use_threads=False).nbytes)


def dataset_info(release: Path) -> dict[str, Any]:
    """`dataset_info` for the card, computed from the release parquet files.

    `num_bytes` is the size of the decoded Arrow table: `read_table(f).nbytes` has one chunk per
    row group, so it is the sum over row groups, and two row groups decode at once, one per
    core (`read_table`'s threads split by column, and nearly every byte is in `abstract`).

    Raises:
        BadInputError: a split has no parquet file under `release/data`.
    """
    files = {}
    for split in SPLITS:
        files[split] = _split_files(release, split)
        if not files[split]:
            raise BadInputError(f"{release / 'data'}: no {split}-*.parquet file; run `dvc repro split` first")
    with ThreadPoolExecutor(max_workers=2) as pool:
        decoded = {
            split: [
                pool.submit(_decoded_bytes, f, group)
                for f in paths
                for group in range(pq.ParquetFile(f).metadata.num_row_groups)
            ]
            for split, paths in files.items()
        }
        splits = [
            {
                "name": split,
                "num_bytes": sum(future.result() for future in decoded[split]),
                "num_examples": sum(pq.ParquetFile(f).metadata.num_rows for f in files[split]),
            }
            for split in SPLITS
        ]
    return {
        "features": [hf_feature(f) for f in RELEASE_SCHEMA],
        "splits": splits,
        "download_size": sum(f.stat().st_size for paths in files.values() for f in paths),
        "dataset_size": sum(s["num_bytes"] for s in splits),
    }


def load_metadata(card_dir: Path) -> dict[str, Any]:
    """`dataset_card/metadata.yaml`, checked for the required fields.

    Raises:
        BadInputError: the file cannot be read or parsed.
        ConfigError: a required field (or a field description) is missing or empty.
    """
    path = card_dir / "metadata.yaml"
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadInputError(f"{path}: cannot read card metadata ({exc})") from None
    if not isinstance(metadata, dict):
        raise BadInputError(f"{path}: must be a mapping of card fields")
    for key in REQUIRED_METADATA:
        if not metadata.get(key):
            raise ConfigError(f"{path}: required field {key!r} is missing or empty; add it")
    for column in RELEASE_SCHEMA.names:
        if not str(metadata["fields"].get(column) or "").strip():
            raise ConfigError(f"{path}: fields.{column} needs a description of the release column")
    return metadata


def load_sections(card_dir: Path) -> dict[str, str]:
    """The hand-written prose sections, verbatim (trailing whitespace trimmed).

    Raises:
        ConfigError: a section file is missing or empty.
    """
    sections = {}
    for name in SECTIONS:
        path = card_dir / "sections" / f"{name}.md"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if not text:
            raise ConfigError(f"{path}: required card section {name!r} is missing or empty; write it")
        sections[name] = text
    return sections


def _check_params(params: CardParams, repo_id: str) -> None:
    # CardParams/PublishParams defaults must stay constructible, so emptiness is checked here.
    for key in ("pretty_name", "license", "homepage", "contact"):
        if not str(getattr(params, key)).strip():
            raise ConfigError(f"params.yaml: card.{key} is required for the card; set it")
    if not repo_id.strip():
        raise ConfigError("params.yaml: publish.repo_id is required for the card; set it")


def _read_report(reports: Path, name: str) -> dict[str, Any]:
    path = reports / name
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read report ({exc}); run `dvc repro` first") from None


def _changelog_rows(entries: Iterable[ChangelogEntry]) -> list[ChangelogEntry]:
    by_version: dict[str, ChangelogEntry] = {}
    for entry in entries:
        # A pending entry passed by publish replaces a stale record of the same version.
        by_version[entry.version] = entry
    return sorted(by_version.values(), key=lambda e: sort_key(e.version), reverse=True)


def _example_row(release: Path) -> dict[str, Any]:
    for split in SPLITS:
        for path in _split_files(release, split):
            # The first row only, not the whole file (an empty row group gives an empty batch).
            batches = pq.ParquetFile(path).iter_batches(batch_size=1)
            batch = next((b for b in batches if b.num_rows), None)
            if batch is not None:
                row = batch.to_pylist()[0]
                return {
                    "split": split,
                    "fields": [
                        {
                            "name": name,
                            "value": "*null*" if row[name] is None else escape_markdown(str(row[name])),
                        }
                        for name in RELEASE_SCHEMA.names
                    ],
                }
    raise BadInputError(f"{release / 'data'}: every split is empty; there is no row to show in the card")


def _files(release: Path) -> list[dict[str, Any]]:
    return [
        {
            "path": f"data/{path.name}",
            "split": split,
            "rows": pq.ParquetFile(path).metadata.num_rows,
            "bytes": path.stat().st_size,
        }
        for split in SPLITS
        for path in _split_files(release, split)
    ]


def _target(result: Mapping[str, Any]) -> str:
    # Reports from before the validate stage checked several tables carry no `table` key.
    column = (result.get("kwargs") or {}).get("column")
    table = result.get("table")
    parts = [str(part) for part in (table, column) if isinstance(part, str)]
    return code_span(".".join(parts)) if parts else "(table)"


def _check(result: Mapping[str, Any]) -> str:
    expectation = str(result["expectation"])
    name = str(result.get("name") or expectation)
    if name == expectation:
        return code_span(expectation)
    return f"{code_span(name)} ({code_span(expectation)})"


def _quality(validation: Mapping[str, Any]) -> dict[str, Any]:
    results = []
    warnings = []
    for result in validation["results"]:
        unexpected = result.get("unexpected_count")
        row = {
            "suite": escape_markdown(str(result["suite"])),
            "check": _check(result),
            "target": _target(result),
            "severity": escape_markdown(str(result["severity"])),
            "outcome": "passed" if result["success"] else "failed",
            "unexpected": "-" if unexpected is None else unexpected,
        }
        results.append(row)
        if result["severity"] == "warning" and not result["success"]:
            warnings.append(row)
    failed = sum(1 for r in validation["results"] if not r["success"])
    summary = (
        f"{len(results)} expectations checked on {validation['rows']} rows, {len(results) - failed} passed "
        f"(critical failures: {validation['critical_failures']}, warnings: {validation['warnings']})."
    )
    return {"summary": summary, "results": results, "warnings": warnings}


def _funnel(
    ingest: Mapping[str, Any],
    clean: Mapping[str, Any],
    filtered: Mapping[str, Any],
    dedup: Mapping[str, Any],
    info: Mapping[str, Any],
) -> list[dict[str, Any]]:
    totals = ingest["totals"]
    funnel: list[dict[str, Any]] = [
        {"name": f"raw lines in {totals['files']} dumps", "count": totals["lines"]},
        {"name": "blank lines skipped", "count": totals["blank_lines"]},
    ]
    funnel += [
        {"name": f"lines rejected: {code_span(reason)}", "count": count}
        for reason, count in sorted(ingest["rejects_by_reason"].items())
    ]
    funnel += [
        {"name": "raw records parsed", "count": totals["records"]},
        {"name": "records after cleaning", "count": clean["rows"]},
    ]
    funnel += [
        {"name": f"rows filtered: {code_span(name)}", "count": rule["filtered"]}
        for name, rule in sorted(filtered["rules"].items())
    ]
    funnel.append({"name": "rows after filtering", "count": filtered["kept"]})
    funnel += [
        {"name": f"duplicates folded: {code_span(method)}", "count": count}
        for method, count in sorted(dedup["folded_by_method"].items())
    ]
    funnel.append({"name": "rows after deduplication", "count": dedup["rows_out"]})
    funnel += [{"name": f"rows in `{s['name']}`", "count": s["num_examples"]} for s in info["splits"]]
    return funnel


# A source's `license` when sources.yaml declares none (SPDX's "no licence stated").
UNDECLARED_LICENSE = "NOASSERTION"
# Where a record's provenance (`source`, "<file>:<line>") names its raw file.
_LINE_SUFFIX = r":\d+$"


def _counts_by_file(frame: pl.LazyFrame) -> dict[str, int]:
    """Rows per raw file, from a frame with a `source` ("<file>:<line>") column."""
    counted = (
        frame.select(pl.col("source").str.replace(_LINE_SUFFIX, "").alias("file"))
        .group_by("file")
        .len()
        .collect()
    )
    return {str(name): int(count) for name, count in counted.iter_rows()}


def _by_source(counts: Mapping[str, int], source_of: Mapping[str, str], origin: Path) -> dict[str, int]:
    by_source: dict[str, int] = {}
    for file, count in counts.items():
        if file not in source_of:
            raise BadInputError(
                f"{origin}: counts rows of the raw file {file!r}, which {INGEST_REPORT} does not list: "
                "the reports come from different runs; rerun `dvc repro`"
            )
        by_source[source_of[file]] = by_source.get(source_of[file], 0) + count
    return by_source


def _release_rows(release: Path) -> pl.LazyFrame:
    shards = [path for split in SPLITS for path in _split_files(release, split)]
    return pl.scan_parquet(shards).select("source", "license")


def source_accounts(
    release: Path, reports: Path, ingest: Mapping[str, Any], filtered: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One row per source (ingest's `source_name`): format, licence and what became of its records.

    Records read and rejected come from `ingest.json`, filtered from `filter.json` (per raw
    file), folded from `duplicates.parquet` and released from the release rows (each by its
    provenance file, mapped to its source by `ingest.json`). Nothing is lost, so the counts must
    add up per source: read == rejected + filtered + folded + released.

    Raises:
        BadInputError: a report names a raw file that `ingest.json` does not (stale reports).
        ValidationFailed: a source's counts do not add up; the message names the source.
    """
    source_of = {str(file): str(entry["source"]) for file, entry in ingest["files"].items()}
    filter_path = reports / FILTER_REPORT
    filtered_by_file = {str(file): int(entry["filtered"]) for file, entry in filtered["sources"].items()}
    duplicates = reports / DUPLICATES
    if not duplicates.is_file():
        raise BadInputError(f"{duplicates}: report not found; run `dvc repro dedup` first")
    folded = _by_source(_counts_by_file(pl.scan_parquet(duplicates)), source_of, duplicates)
    released = _by_source(_counts_by_file(_release_rows(release)), source_of, release / "data")
    removed = _by_source(filtered_by_file, source_of, filter_path)
    rows = []
    problems = []
    for name, entry in sorted(ingest["sources"].items()):
        counts = {
            "read": int(entry["records_read"]),
            "rejected": int(entry["rejects"]),
            "filtered": removed.get(name, 0),
            "folded": folded.get(name, 0),
            "released": released.get(name, 0),
        }
        accounted = counts["rejected"] + counts["filtered"] + counts["folded"] + counts["released"]
        if accounted != counts["read"]:
            problems.append(
                f"source {name!r}: {counts['read']} records read, but {counts['rejected']} rejected + "
                f"{counts['filtered']} filtered + {counts['folded']} folded + {counts['released']} released "
                f"= {accounted}"
            )
        rows.append(
            {
                "name": code_span(str(name)),
                "format": code_span(str(entry["format"])),
                "license": escape_markdown(str(entry.get("license") or UNDECLARED_LICENSE)),
                **counts,
            }
        )
    unknown = sorted((set(folded) | set(released) | set(removed)) - set(ingest["sources"]))
    if unknown:
        problems.append(f"source {unknown[0]!r} has rows downstream but is not in {INGEST_REPORT}")
    if problems:
        raise ValidationFailed(
            f"{reports}: the records of a source do not add up ({'; '.join(problems)}); every record "
            "must be released, folded, filtered or rejected: rerun `dvc repro`, and if it persists, "
            "report it with these reports"
        )
    return rows


def row_licenses(release: Path) -> dict[str, int]:
    """Release rows per licence (`license` column; a row without one counts as NOASSERTION)."""
    counted = (
        _release_rows(release)
        .select(pl.col("license").fill_null(UNDECLARED_LICENSE))
        .group_by("license")
        .len()
        .sort("license")
        .collect()
    )
    return {str(name): int(count) for name, count in counted.iter_rows()}


def card_license(params: CardParams, licenses: Mapping[str, int]) -> dict[str, Any]:
    """The card's licence metadata for the release rows' licences.

    Rows that declare no licence leave the maintainers' `card.license`; rows that all carry one
    declared licence give that one (as the Hub writes ids, lower-case); rows under several
    (undeclared counts as one of them) give the Hub's `license: other` with a `license_name`
    and a `license_details` sentence naming each licence and its rows, as the Hub's dataset
    card spec (hub-docs `datasetcard.md`) describes for a licence outside its list.
    """
    if set(licenses) <= {UNDECLARED_LICENSE}:
        return {"license": params.license}
    if len(licenses) == 1:
        return {"license": next(iter(licenses)).lower()}
    parts = ", ".join(
        f"{'no licence declared' if name == UNDECLARED_LICENSE else name} ({count} rows)"
        for name, count in licenses.items()
    )
    return {
        "license": "other",
        "license_name": "per-row-licenses",
        "license_details": f"Each row is under its source's licence (column `license`): {parts}.",
    }


def croissant_license(params: CardParams, licenses: Mapping[str, int]) -> str | list[str]:
    """Croissant's `license` for the release rows' licences: as `card_license` decides, one
    licence (URL where known) when the rows carry one or none, else every licence the rows carry,
    sorted, as Croissant allows a list (undeclared rows as SPDX's `NOASSERTION`, as the card's
    sources table names them)."""

    def url(name: str) -> str:
        return _LICENSE_URLS.get(name.lower(), name)

    if set(licenses) <= {UNDECLARED_LICENSE}:
        return url(params.license)
    if len(licenses) == 1:
        return url(next(iter(licenses)))
    return [url(name) for name in sorted(licenses)]


def _removals(diff: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """Every published row this release drops (`release_diff.json` `removals`), at most `limit`
    listed by id, kind and reason."""
    gone = list(diff["removals"])
    listed = []
    for entry in gone[:limit]:
        into = entry.get("into")
        listed.append(
            {
                "id": code_span(str(entry["id"])),
                "kind": "merged" if into else "removed",
                "reason": f"merged into {code_span(str(into))}"
                if into
                else escape_markdown(str(entry["reason"])),
            }
        )
    return {
        "count": len(gone),
        "rows": listed,
        "more": len(gone) - len(listed),
        "previous": diff.get("previous"),
    }


def _filter_rules(filtered: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": code_span(name),
            "reason": escape_markdown(str(rule["reason"])),
            "count": int(rule["filtered"]),
        }
        for name, rule in sorted(filtered["rules"].items())
    ]


def _card_data(
    params: CardParams, metadata: Mapping[str, Any], info: Mapping[str, Any], license_data: dict[str, Any]
) -> DatasetCardData:
    total = sum(s["num_examples"] for s in info["splits"])
    return DatasetCardData(
        **license_data,
        pretty_name=params.pretty_name,
        language=metadata.get("language", ["en"]),
        language_creators=metadata.get("language_creators"),
        annotations_creators=metadata.get("annotations_creators"),
        multilinguality=metadata.get("multilinguality"),
        task_categories=metadata.get("task_categories"),
        task_ids=metadata.get("task_ids"),
        size_categories=[size_category(total)],
        source_datasets=metadata.get("source_datasets"),
        tags=metadata.get("tags"),
        configs=[
            {
                "config_name": "default",
                "default": True,
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in SPLITS],
            }
        ],
        dataset_info=dict(info),
    )


def render_card(
    release: Path,
    card_dir: Path,
    reports: Path,
    params: CardParams,
    repo_id: str,
    version: str,
    changelog: Sequence[ChangelogEntry] = (),
) -> str:
    """The full text of `release/README.md`.

    Args:
        release: release directory holding `data/`.
        card_dir: `dataset_card/` (template, metadata, sections).
        reports: directory of the stage reports.
        params: the `card` params section.
        repo_id: `publish.repo_id`, used in the `load_dataset` line.
        version: the release version the card describes (MAJOR.MINOR.PATCH).
        changelog: published releases (`load_changelog`) plus, from publish, the pending one;
            rendered newest first; a later entry replaces an earlier one of the same version.

    Raises:
        ConfigError: a required param, metadata field or prose section is missing.
        BadInputError: a report or the release data cannot be read.
    """
    _check_params(params, repo_id)
    metadata = load_metadata(card_dir)
    sections = load_sections(card_dir)
    info = dataset_info(release)
    ingest = _read_report(reports, INGEST_REPORT)
    clean = _read_report(reports, "clean.json")
    filtered = _read_report(reports, FILTER_REPORT)
    dedup = _read_report(reports, DEDUP_REPORT)
    validation = _read_report(reports, "validation.json")
    diff = _read_report(reports, RELEASE_DIFF_REPORT)
    try:
        sources = source_accounts(release, reports, ingest, filtered)
        license_data = card_license(params, row_licenses(release))
    except KeyError as exc:
        raise BadInputError(f"{reports}: a report lacks the key {exc}; rerun `dvc repro`") from None
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(card_dir),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML: values from data are escaped by escape_markdown.
    )
    try:
        template = environment.get_template("template.md")
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{card_dir / 'template.md'}: cannot load the card template ({exc})") from None
    files = _files(release)
    try:
        content = template.render(
            card_data=_front_matter(_card_data(params, metadata, info, license_data)),
            pretty_name=escape_markdown(params.pretty_name),
            sections=sections,
            curators=escape_markdown(str(metadata.get("curators", "the maintainers"))),
            languages=", ".join(escape_markdown(str(x)) for x in metadata.get("language", ["en"])),
            license=escape_markdown(
                license_data["license_details"]
                if "license_details" in license_data
                else license_data["license"]
            ),
            version=version,
            contact=params.contact,
            hub_url=f"https://huggingface.co/datasets/{repo_id}",
            homepage=params.homepage,
            repo_id=repo_id,
            fields=[
                {
                    "name": f.name,
                    "dtype": dtype_label(f.type),
                    "description": table_cell(str(metadata["fields"][f.name])),
                }
                for f in RELEASE_SCHEMA
            ],
            files=[{**f, "name": code_span(f["path"])} for f in files],
            example=_example_row(release),
            sources=sources,
            funnel=_funnel(ingest, clean, filtered, dedup, info),
            filter_rules=_filter_rules(filtered),
            rules=[
                {"name": code_span(n), "count": r["rows_changed"]} for n, r in sorted(clean["rules"].items())
            ],
            flags=[{"name": code_span(n), "count": c} for n, c in sorted(clean["flags"].items())],
            folded=[{"name": code_span(m), "count": c} for m, c in sorted(dedup["folded_by_method"].items())],
            quality=_quality(validation),
            changelog=_changelog_rows(changelog),
            removals=_removals(diff, params.removals_listed),
            citation=str(metadata["citation"]).strip(),
        )
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{card_dir / 'template.md'}: cannot render the card ({exc})") from None
    except KeyError as exc:
        raise BadInputError(f"{reports}: a report lacks the key {exc}; rerun `dvc repro`") from None
    return content if content.endswith("\n") else content + "\n"


def build_croissant(
    release: Path,
    card_dir: Path,
    reports: Path,
    params: CardParams,
    repo_id: str,
    version: str,
    date_published: str | None = None,
) -> dict[str, Any]:
    """The Croissant 1.1 JSON-LD document describing the release files and their records;
    `date_published` (ISO date) is the day the version was (or, published today, would be) published.

    Raises:
        ConfigError / BadInputError: as `render_card`.
    """
    _check_params(params, repo_id)
    metadata = load_metadata(card_dir)
    sections = load_sections(card_dir)
    clean = _read_report(reports, "clean.json")
    filtered = _read_report(reports, FILTER_REPORT)
    dedup = _read_report(reports, "dedup.json")
    files = _files(release)
    license_value = croissant_license(params, row_licenses(release))
    rules = ", ".join(f"{name} ({rule['rows_changed']} rows)" for name, rule in clean["rules"].items())
    dropped = ", ".join(
        f"{name} ({rule['filtered']} rows)" for name, rule in sorted(filtered["rules"].items())
    )
    folded = ", ".join(f"{m} ({c} records)" for m, c in sorted(dedup["folded_by_method"].items()))
    preprocessing = (
        "Raw dumps are parsed per format, stray lines rejected with a reason; abstracts are repaired "
        f"by named cleaning rules: {rules or 'none applied'}. Rows that are not an abstract of an ML "
        f"paper are dropped by named filter rules, each with its reason: {dropped or 'none'}. "
        "Records of the same paper are folded "
        f"into one row ({folded or 'none folded'}), keeping the best copy's abstract (complete, fewest "
        "defects, longest) and each metadata field from the best copy that has it. A published row "
        "keeps its id and split; a new row is assigned to train/validation/test by a seeded hash of "
        "its id."
    )
    record_set = "abstracts"
    fields: list[dict[str, Any]] = [
        croissant_field(f, record_set, str(metadata["fields"][f.name])) for f in RELEASE_SCHEMA
    ]
    fields.append(
        {
            "@type": "cr:Field",
            "@id": f"{record_set}/split",
            "name": "split",
            "description": "The split the row belongs to (train, validation or test), from its file name.",
            "dataType": "sc:Text",
            "source": {
                "fileSet": {"@id": "parquet-files"},
                "extract": {"fileProperty": "fullpath"},
                "transform": {"regex": r"^(?:.*/)?(train|validation|test)-\d+-of-\d+\.parquet$"},
            },
        }
    )
    distribution: list[dict[str, Any]] = [
        {
            "@type": "cr:FileObject",
            "@id": f["path"],
            "name": f["path"],
            "description": f"{f['split']} split shard, {f['rows']} rows.",
            "contentUrl": f["path"],
            "contentSize": f"{f['bytes']} B",
            "encodingFormat": "application/x-parquet",
            "sha256": sha256_file(release / f["path"]),
        }
        for f in files
    ]
    distribution.append(
        {
            "@type": "cr:FileSet",
            "@id": "parquet-files",
            "name": "parquet-files",
            "description": "Every release parquet shard, all splits.",
            "encodingFormat": "application/x-parquet",
            "includes": "data/*.parquet",
        }
    )
    return {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.1",
        "name": params.pretty_name,
        "alternateName": repo_id,
        "description": sections["summary"],
        "license": license_value,
        "url": params.homepage,
        "sameAs": f"https://huggingface.co/datasets/{repo_id}",
        "version": version,
        "datePublished": date_published or datetime.date.today().isoformat(),
        "citeAs": str(metadata["citation"]).strip(),
        "creator": {
            "@type": "sc:Organization",
            "name": str(metadata.get("curators", "the maintainers")),
            **_contact_point(params.contact),
        },
        "keywords": list(metadata.get("tags") or []),
        "inLanguage": list(metadata.get("language") or ["en"]),
        "rai:dataCollection": sections["source_data"],
        "rai:dataPreprocessingProtocol": preprocessing,
        "rai:dataLimitations": sections["limitations"],
        "distribution": distribution,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": record_set,
                "name": record_set,
                "description": "One row per paper: the cleaned abstract, its ids and provenance.",
                "key": {"@id": f"{record_set}/id"},
                "field": fields,
            }
        ],
    }


def check_card(release: Path) -> None:
    """Fail if `release/README.md` or `release/croissant.json` disagree with the release files.

    Recomputes `dataset_info` from the parquet files and each file's sha256, so a card left
    over from an earlier build (stale `num_examples`, a changed shard) never gets published.

    Raises:
        BadInputError: the card or its front matter cannot be read.
        ValidationFailed: a field differs; the message names it and both values.
    """
    card_path = release / "README.md"
    if not card_path.is_file():
        raise BadInputError(f"{card_path}: no dataset card; run `dvc repro card`")
    try:
        card = DatasetCard.load(card_path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise BadInputError(f"{card_path}: cannot parse the card front matter ({exc})") from None
    claimed = card.data.to_dict().get("dataset_info")
    if not isinstance(claimed, dict):
        raise ValidationFailed(f"{card_path}: front matter has no dataset_info; run `dvc repro card`")
    actual = dataset_info(release)
    problems = []
    for key in ("features", "download_size", "dataset_size"):
        if claimed.get(key) != actual[key]:
            problems.append(f"dataset_info.{key}: card says {claimed.get(key)!r}, files give {actual[key]!r}")
    claimed_splits = {s.get("name"): s for s in claimed.get("splits") or []}
    for split in actual["splits"]:
        name = split["name"]
        for key in ("num_examples", "num_bytes"):
            value = claimed_splits.get(name, {}).get(key)
            if value != split[key]:
                problems.append(
                    f"dataset_info.splits[{name}].{key}: card says {value!r}, files give {split[key]!r}"
                )
    croissant_path = release / "croissant.json"
    if croissant_path.is_file():
        try:
            croissant = json.loads(croissant_path.read_text(encoding="utf-8"))
            described = {d["contentUrl"]: d["sha256"] for d in croissant["distribution"] if "sha256" in d}
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BadInputError(f"{croissant_path}: cannot read the file list ({exc!r})") from None
        present = {f["path"]: sha256_file(release / f["path"]) for f in _files(release)}
        for path in sorted(set(described) | set(present)):
            if described.get(path) != present.get(path):
                problems.append(
                    f"croissant.json {path} sha256: file says {described.get(path)!r}, "
                    f"data gives {present.get(path)!r}"
                )
    if problems:
        raise ValidationFailed(
            f"{card_path}: the card does not match the release files; run `dvc repro card`:\n  "
            + "\n  ".join(problems)
        )


def _front_matter(card_data: DatasetCardData) -> str:
    """The card's YAML; `paperswithcode_id: null` kept, because the Hub's dataset card spec
    (hub-docs `datasetcard.md`) asks for the key even without a Papers with Code entry and
    `DatasetCardData.to_yaml` drops keys whose value is None."""
    text = card_data.to_yaml()
    return text if "paperswithcode_id:" in text else text + "\npaperswithcode_id: null"


def _contact_point(contact: str) -> dict[str, Any]:
    """schema.org `contactPoint` of the creator: an email address or a URL."""
    kind = "email" if re.fullmatch(r"[^@\s/]+@[^@\s/]+", contact.strip()) else "url"
    return {"contactPoint": {"@type": "sc:ContactPoint", kind: contact.strip()}} if contact.strip() else {}


def card_files(release: Path, card: str, croissant: Mapping[str, Any]) -> dict[str, bytes | Path]:
    """Every file of a release as publish uploads it (repo path -> local file or bytes), the card
    and Croissant as rendered; the input of `releases.content_key`."""
    files: dict[str, bytes | Path] = {f["path"]: release / f["path"] for f in _files(release)}
    files["README.md"] = card.encode("utf-8")
    files["croissant.json"] = croissant_bytes(croissant)
    return files


def croissant_bytes(croissant: Mapping[str, Any]) -> bytes:
    return (json.dumps(croissant, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _last_published(releases: Path | None) -> tuple[Version, dict[str, Any]] | None:
    versions = published_versions(releases) if releases is not None else []
    if not versions:
        return None
    version, path = versions[-1]
    return version, read_record(path)


def _proposed(reports: Path, previous: Version | None) -> Version:
    """`release_diff`'s proposal, checked to be against the same last release as the card's."""
    diff = _read_report(reports, RELEASE_DIFF_REPORT)
    expected = None if previous is None else tag_name(previous)
    if diff.get("previous") != expected:
        raise BadInputError(
            f"{reports / RELEASE_DIFF_REPORT}: diffed against {diff.get('previous')} but the last published "
            f"release is {expected}; run `dvc repro release_diff card`"
        )
    try:
        return parse_version(str(diff.get("proposed_version")))
    except BadInputError:
        raise BadInputError(
            f"{reports / RELEASE_DIFF_REPORT}: proposed_version {diff.get('proposed_version')!r} is not a "
            "version; run `dvc repro release_diff`"
        ) from None


def run_card(
    release: Path,
    card_dir: Path,
    reports: Path,
    params: CardParams,
    repo_id: str,
    releases: Path | None = None,
    report: Path | None = None,
    today: datetime.date | None = None,
) -> Path:
    """Write `release/README.md`, `release/croissant.json` and (when `report` is given) the
    version report; return the card's path.

    Raises:
        ConfigError / BadInputError: as `render_card`; also a release diff against another
            release than the last published one.
    """
    from pipeline.io.progress import phases

    changelog = load_changelog(releases)
    last = _last_published(releases)
    status, version, date = "new", None, (today or datetime.date.today()).isoformat()
    card = croissant = None
    with phases("card", 2) as step:
        if last is not None:
            # Rendered as the last published version: the same bytes as published, if nothing changed.
            step(f"comparing with {tag_name(last[0])}")
            previous, record = last
            # As published: to the repository the record names (publish --repo-id may differ).
            published_to = str(record.get("repo_id") or repo_id)
            card = render_card(
                release, card_dir, reports, params, published_to, format_version(previous), changelog
            )
            croissant = build_croissant(
                release, card_dir, reports, params, published_to, format_version(previous), record.get("date")
            )
            if record.get("content_key") == content_key(card_files(release, card, croissant)):
                status, version, date = "unchanged", previous, str(record.get("date") or date)
        if version is None:
            step("rendering")
            version = _proposed(reports, None if last is None else last[0])
            card = render_card(
                release, card_dir, reports, params, repo_id, format_version(version), changelog
            )
            croissant = build_croissant(
                release, card_dir, reports, params, repo_id, format_version(version), date
            )
    assert card is not None and croissant is not None
    target = release / "README.md"
    with atomic_path(target) as tmp:
        tmp.write_text(card, encoding="utf-8")
    write_json(croissant, release / "croissant.json")
    if report is not None:
        write_json(
            {
                "status": status,
                "version": format_version(version),
                "tag": tag_name(version),
                "previous": None if last is None else tag_name(last[0]),
                "date_published": date,
            },
            report,
        )
    return target
