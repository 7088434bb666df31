"""The arXiv metadata snapshot (2.7M JSON lines) mapped a block of lines at a time.

Per record, `json.loads` and the field mapping cost about 115 CPU-us; Arrow's JSON parser and
polars expressions do a block of lines in a few us per record. The columns are those the
per-record mapping (`mapping.map_record`) gives a snapshot line; a block Arrow cannot parse
against the snapshot's schema (a malformed line, a field of another type) and the rare values
the expressions do not cover (an id in URL or DOI form, an RSS title suffix, an `authors`
string without `authors_parsed`, categories separated by `,` or `;`) go through the per-record
mapping, so the output is the same either way (tests/test_formats.py checks it).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from pipeline.contracts import RECORD_SCHEMA
from pipeline.ids import NEW_STYLE, OLD_STYLE
from pipeline.stages.ingest.text_dumps import PY_WHITESPACE, Lines, Numbers, Reject

SNAPSHOT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("abstract", pa.string()),
        ("authors", pa.string()),
        ("authors_parsed", pa.list_(pa.list_(pa.string()))),
        ("categories", pa.string()),
        ("doi", pa.string()),
        ("journal-ref", pa.string()),
        ("versions", pa.list_(pa.struct([("version", pa.string()), ("created", pa.string())]))),
    ]
)
_PARSE = pa_json.ParseOptions(explicit_schema=SNAPSHOT_SCHEMA, unexpected_field_behavior="ignore")
# What str.split() and str.strip() treat as whitespace, as a regex class.
_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WHITESPACE) + "]"
_ARXIV = rf"^(?i:arxiv:)?({NEW_STYLE}|{OLD_STYLE})(?:v(\d+))?$"
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}


def _strip(expr: pl.Expr) -> pl.Expr:
    """`str.strip()`."""
    return expr.str.strip_chars(PY_WHITESPACE)


def _text(expr: pl.Expr) -> pl.Expr:
    """`mapping.text`: stripped, empty is null."""
    stripped = _strip(expr)
    return pl.when(stripped != "").then(stripped)


def _collapsed(expr: pl.Expr) -> pl.Expr:
    """`" ".join(text.split())`, empty is null."""
    joined = _strip(expr.str.replace_all(f"{_SPACE}+", " "))
    return pl.when(joined != "").then(joined)


def _nonempty(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr != "").then(expr)


def _mapped(table: pa.Table) -> pl.DataFrame:
    """The snapshot lines' columns, plus `_python`: the rows the per-record mapping must do."""
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    raw_id = _text(pl.col("id"))
    parsed = raw_id.str.extract_groups(_ARXIV)
    person = pl.element()
    names = pl.concat_str(
        [
            _nonempty(_strip(person.list.get(1, null_on_oob=True))),
            _strip(person.list.get(0, null_on_oob=True)),
            _nonempty(_strip(person.list.get(2, null_on_oob=True))),
        ],
        separator=" ",
        ignore_nulls=True,
    )
    authors = pl.col("authors_parsed").list.eval(_nonempty(names)).list.drop_nulls()
    first_created = _text(pl.col("versions").list.get(0, null_on_oob=True).struct.field("created"))
    rfc = first_created.str.extract_groups(r"\b(\d{1,2}) ([A-Z][a-z]{2}) (\d{4})\b")
    month = rfc.struct.field("2").replace_strict(_MONTHS, default=None, return_dtype=pl.Int64)
    iso = first_created.str.extract(r"^(\d{4}-\d{2}-\d{2})", 1)
    rfc_date = pl.concat_str(
        [rfc.struct.field("3"), month.cast(pl.String).str.zfill(2), rfc.struct.field("1").str.zfill(2)],
        separator="-",
    )
    published = pl.coalesce(iso, rfc_date).str.to_date("%Y-%m-%d", strict=False)
    versions = (
        pl.col("versions")
        .list.eval(_strip(pl.element().struct.field("version")).str.extract(r"^v?(\d+)$", 1).cast(pl.Int64))
        .list.max()
    )
    doi_text = _text(pl.col("doi"))
    doi_bare = _strip(doi_text.str.replace(r"^(?i:doi:\s*|https?://(?:dx\.)?doi\.org/)", ""))
    doi = pl.when(doi_bare.str.contains(r"^10\.\d{4,9}/\S+$")).then(doi_bare.str.to_lowercase())
    categories = (
        _text(pl.col("categories")).str.extract_all(f"[^{_SPACE[1:-1]}]+").list.unique(maintain_order=True)
    )
    title = _collapsed(pl.col("title"))
    out = frame.select(
        abstract=pl.col("abstract"),
        raw_id=raw_id,
        arxiv_id=parsed.struct.field("1"),
        id_version=parsed.struct.field("2").cast(pl.Int64),
        versions=versions,
        title=title,
        authors=pl.when(authors.list.len() > 0).then(authors),
        published=published,
        venue=_collapsed(pl.col("journal-ref")),
        categories=pl.when(categories.list.len() > 0).then(categories),
        doi=doi,
        _python=(
            (raw_id.is_not_null() & parsed.struct.field("1").is_null())
            | title.str.contains("(arXiv:", literal=True).fill_null(False)
            | (pl.col("authors_parsed").is_null() & _text(pl.col("authors")).is_not_null())
            | pl.col("categories").str.contains("[;,]").fill_null(False)
            | (raw_id.is_null() & doi.str.starts_with("10.48550/").fill_null(False))
        ),
    )
    arxiv_id = pl.col("arxiv_id")
    return out.with_columns(
        arxiv_version=pl.when(arxiv_id.is_not_null()).then(pl.coalesce("id_version", "versions")),
        year=pl.col("published").dt.year().cast(pl.Int64),
        url=pl.when(arxiv_id.is_not_null()).then(pl.lit("https://arxiv.org/abs/") + arxiv_id),
    )


def parse_block(
    name: str,
    numbers: Numbers,
    lines: Lines,
    source: str,
    license_id: str | None,
    python_rows: Any,
) -> tuple[pa.Table, list[Reject], list[int]] | None:
    """Records and rejects of one block of snapshot lines; None when Arrow cannot parse it.

    `python_rows(indexes)` maps the rows the expressions leave to the per-record mapping and
    returns their RECORD_SCHEMA table; the third item lists those rows' indexes in the block.
    """
    data = "\n".join(lines.to_pylist()).encode("utf-8")
    try:
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=_PARSE,
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(lines):
        return None
    mapped = _mapped(table)
    abstract = mapped["abstract"]
    blank = (abstract.is_null() | (abstract.str.strip_chars(PY_WHITESPACE) == "")).to_numpy()
    python = mapped["_python"].to_numpy() & ~blank
    kept = ~blank & ~python
    has_field = np.asarray(
        pc.match_substring(lines, '"abstract"').to_numpy(zero_copy_only=False), dtype=np.bool_
    )
    rejects = [
        Reject(name, int(numbers[i]), "empty_abstract" if has_field[i] else "no_abstract_field", text)
        for i, text in zip(
            np.flatnonzero(blank).tolist(), lines.take(np.flatnonzero(blank)).to_pylist(), strict=True
        )
    ]
    rows = mapped.filter(pl.Series(kept))
    line = pa.array(numbers[kept], pa.int64())
    count = len(line)
    columns: dict[str, Any] = {
        "source": pc.binary_join_element_wise(f"{name}:", line.cast(pa.string()), ""),
        "file": pa.repeat(pa.scalar(name, pa.string()), count),
        "line": line,
        "format": pa.repeat(pa.scalar("arxiv_snapshot", pa.string()), count),
        "raw_text": rows["abstract"].to_arrow(),
        "source_name": pa.repeat(pa.scalar(source, pa.string()), count),
        "locator": pc.binary_join_element_wise("line ", line.cast(pa.string()), ""),
        "license": pa.repeat(pa.scalar(license_id, pa.string()), count),
        "source_ids": pa.nulls(count, RECORD_SCHEMA.field("source_ids").type),
    }
    for column in (
        "raw_id", "arxiv_id", "arxiv_version", "title", "authors", "year", "published", "venue",
        "categories", "doi", "url",
    ):  # fmt: skip
        columns[column] = rows[column].to_arrow()
    arrays = [pa.array(columns[f.name]).cast(f.type) if not isinstance(columns[f.name], pa.Array)
              else columns[f.name].cast(f.type) for f in RECORD_SCHEMA]  # fmt: skip
    vector = pa.Table.from_arrays(arrays, schema=RECORD_SCHEMA)
    python_indexes = np.flatnonzero(python).tolist()
    if not python_indexes:
        return vector, rejects, []
    # Keep the file's order: the per-record rows go back in among the others by line.
    merged = pa.concat_tables([vector, python_rows(python_indexes)])
    order = pc.sort_indices(merged, sort_keys=[("line", "ascending")])
    return merged.take(order), rejects, python_indexes


def raw_records(numbers: Numbers, lines: Lines, indexes: list[int]) -> Iterator[tuple[int, str]]:
    """The (line number, text) of some lines of a block, for the per-record mapping."""
    for index, text in zip(indexes, lines.take(pa.array(indexes, pa.int64())).to_pylist(), strict=True):
        yield int(numbers[index]), text
