"""From a reader's raw fields to the record columns: field paths, per-format default names and
the conversions (authors to "First Last", dates, DOIs, ids).

A field path names where a column's value sits in a raw record: `title`, `journal.name`
(nested), `authors[].last` (every element), `versions[-1].version` (one element, negative counts
from the end). Each column has, per format, a list of default paths tried in order; a source's
`field` mapping replaces a column's list with its one path. Mapping is per source: two CSVs with
different headers each get their own.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from pipeline.errors import ConfigError
from pipeline.ids import (
    acl_anthology_id,
    dblp_key,
    ids_in_url,
    normalize_doi,
    openalex_id,
    openreview_id,
    parse_arxiv_id,
    pmlr_id,
    semantic_scholar_id,
    split_title_suffix,
)

SOURCE_ID_KINDS = ("acl_anthology", "openreview", "semantic_scholar", "pmlr", "openalex", "dblp")
# Columns a field mapping can fill (`source_ids.<kind>` for the other ids).
TARGETS = (
    "abstract",
    "id",
    "arxiv_id",
    "arxiv_version",
    "title",
    "authors",
    "year",
    "published",
    "venue",
    "categories",
    "doi",
    "url",
    *(f"source_ids.{kind}" for kind in SOURCE_ID_KINDS),
)

_STEP = re.compile(r"(?P<name>[^.\[\]]+)(?:\[(?P<index>-?\d*)\])?")


@dataclass(frozen=True)
class Step:
    name: str
    # None: no brackets; "each": `[]`; an int: `[N]`.
    index: int | str | None


def parse_path(path: str, key: str) -> tuple[Step, ...]:
    """`authors[].last` -> steps; `key` names the setting in error messages."""
    steps: list[Step] = []
    for part in path.split("."):
        match = _STEP.fullmatch(part)
        if match is None:
            raise ConfigError(
                f"{key}: bad field path {path!r} (use names, `.` for nesting, `[]` for every element, "
                "`[N]` or `[-1]` for one element)"
            )
        index = match.group("index")
        steps.append(
            Step(match.group("name"), None if index is None else ("each" if index == "" else int(index)))
        )
    return tuple(steps)


def resolve(value: Any, steps: Sequence[Step]) -> Any:
    """The value a path names in `value`, or None; after `[]` a list of the values found."""
    for position, step in enumerate(steps):
        # Readers hand out plain dicts; `Mapping` would cost an ABC check per step.
        if isinstance(value, dict):
            value = value.get(step.name)
        else:
            return None
        if step.index is None or value is None:
            continue
        if not isinstance(value, list):
            return None
        if step.index == "each":
            rest = steps[position + 1 :]
            found = [resolve(item, rest) for item in value]
            return [item for item in found if item is not None]
        assert isinstance(step.index, int)
        if not -len(value) <= step.index < len(value):
            return None
        value = value[step.index]
    return value


def _paths(*paths: str) -> tuple[tuple[Step, ...], ...]:
    return tuple(parse_path(path, "default field") for path in paths)


_GENERIC: dict[str, tuple[tuple[Step, ...], ...]] = {
    "abstract": _paths(
        "abstract", "Abstract", "paperAbstract", "abstract_text", "abstractText", "summary", "AB"
    ),
    "id": _paths("id", "ID", "Id", "arxiv_id", "arxivId", "paper_id", "paperId", "entry_id"),
    "arxiv_id": _paths("arxiv_id", "arxivId", "arXiv", "externalIds.ArXiv", "externalids.ArXiv"),
    "arxiv_version": (),
    "title": _paths("title", "Title", "paper_title"),
    "authors": _paths("authors", "author", "Authors", "Author", "creators"),
    "year": _paths("year", "Year", "publication_year"),
    "published": _paths(
        "published",
        "publication_date",
        "publicationDate",
        "publicationdate",
        "published_date",
        "date",
        "Date",
    ),
    "venue": _paths("venue", "Venue", "booktitle", "journal", "conference"),
    "categories": _paths(
        "categories", "Categories", "category", "fieldsOfStudy", "fields_of_study", "subjects"
    ),
    "doi": _paths("doi", "DOI", "externalIds.DOI", "externalids.DOI"),
    "url": _paths("url", "URL", "link", "Link", "site", "abs_url", "pdf_url", "pdf_link"),
    "source_ids.acl_anthology": _paths("acl_id", "externalIds.ACL", "externalids.ACL"),
    "source_ids.openreview": _paths("openreview_id", "forum"),
    "source_ids.semantic_scholar": _paths("externalIds.CorpusId", "externalids.CorpusId"),
    "source_ids.pmlr": _paths("pmlr_id"),
    "source_ids.openalex": _paths("openalex_id"),
    "source_ids.dblp": _paths("externalIds.DBLP", "externalids.DBLP", "dblp"),
}


def _override(**columns: tuple[str, ...]) -> dict[str, tuple[tuple[Step, ...], ...]]:
    merged = dict(_GENERIC)
    for column, paths in columns.items():
        merged[column.replace("__", ".")] = _paths(*paths)
    return merged


# Each format's usual field names; formats not listed use the generic names.
DEFAULT_FIELDS: dict[str, dict[str, tuple[tuple[Step, ...], ...]]] = {
    "arxiv_snapshot": _override(
        authors=("authors_parsed", "authors"),
        published=("versions[0].created",),
        arxiv_version=("versions[].version",),
        venue=("journal-ref",),
    ),
    "openalex": _override(
        abstract=("abstract_inverted_index", "abstract"),
        title=("title", "display_name"),
        authors=("authorships[].author.display_name", "authorships[].raw_author_name"),
        year=("publication_year",),
        published=("publication_date",),
        venue=("primary_location.source.display_name", "host_venue.display_name"),
        categories=("topics[].display_name", "concepts[].display_name"),
        url=("primary_location.landing_page_url", "doi"),
        arxiv_id=("ids.arxiv",),
        source_ids__openalex=("id",),
    ),
    "semantic_scholar": _override(
        abstract=("abstract", "paperAbstract"),
        id=("paperId", "corpusid", "corpusId", "paper_id", "id"),
        authors=("authors",),
        published=("publicationDate", "publicationdate"),
        venue=("venue", "journal.name", "journal"),
        categories=(
            "fieldsOfStudy",
            "s2fieldsofstudy[].category",
            "s2FieldsOfStudy[].category",
            "mag_field_of_study",
        ),
        # S2ORC's metadata rows name it `s2_url` (the API's CorpusID page).
        url=("url", "s2Url", "s2_url"),
        source_ids__semantic_scholar=(
            "paperId",
            "corpusid",
            "corpusId",
            "externalIds.CorpusId",
            "paper_id",
            "id",
        ),
    ),
    "acl_xml": _override(
        id=("acl_id",),
        venue=("volume.booktitle",),
        source_ids__acl_anthology=("acl_id",),
        published=(),
    ),
    "bibtex": _override(
        id=("ID",),
        arxiv_id=("eprint",),
        venue=("booktitle", "journal", "proceedings.booktitle"),
        year=("year", "proceedings.year"),
        published=("published", "proceedings.published"),
        source_ids__pmlr=("pmlr_id",),
    ),
    "arxiv_oai": _override(
        categories=("categories", "subject"),
        published=("versions[0].date", "created", "date[0]"),
        arxiv_version=("versions[].version",),
        venue=("journal-ref",),
        url=("identifier[0]",),
    ),
    "arxiv_atom": _override(
        abstract=("summary",),
        published=("published",),
        venue=("journal_ref",),
        url=("link", "id"),
    ),
}
# Who publishes these formats and under which licence their metadata is: a declaration overrides.
DEFAULT_LICENSES = {
    "arxiv_snapshot": "CC0-1.0",
    "arxiv_oai": "CC0-1.0",
    "arxiv_atom": "CC0-1.0",
    "acl_xml": "CC-BY-4.0",
    "openalex": "CC0-1.0",
    "semantic_scholar": "ODC-By-1.0",
}
_ARXIV_FORMATS = ("arxiv_snapshot", "arxiv_oai", "arxiv_atom")


Getter: TypeAlias = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class FieldPaths:
    """The paths tried for each column of one source, and a compiled getter per column."""

    paths: dict[str, tuple[tuple[Step, ...], ...]]
    getters: dict[str, Getter]


def _getter(candidates: tuple[tuple[Step, ...], ...]) -> Getter:
    """The first non-empty value of `candidates` in a record; plain top-level names (most
    defaults) are looked up directly, which is most of ingest's time per record."""
    if all(len(steps) == 1 and steps[0].index is None for steps in candidates):
        names = tuple(steps[0].name for steps in candidates)

        def get_named(fields: dict[str, Any]) -> Any:
            for name in names:
                value = fields.get(name)
                if value is not None and value != "" and value != []:
                    return value
            return None

        return get_named

    def get_path(fields: dict[str, Any]) -> Any:
        for steps in candidates:
            if steps[0].name not in fields:
                continue
            value = resolve(fields, steps)
            if value is not None and value != "" and value != []:
                return value
        return None

    return get_path


# Tables whose header names are written by people or spreadsheet tools (`Summary`, `PDF Link`).
_TABULAR_FORMATS = ("csv", "tsv")
_HEADER_SEPARATORS = re.compile(r"[\s_-]+")


def _header_key(name: str) -> str:
    """A header name as the default names are matched: case, spaces, `_` and `-` ignored."""
    return _HEADER_SEPARATORS.sub("_", name.strip().lower())


def _header_getter(candidates: tuple[tuple[Step, ...], ...]) -> Getter:
    """`_getter` for a table's rows: a candidate name matches a header name that differs only in
    case and separators. A file's rows share their header, so each header is matched once."""
    wanted = tuple(dict.fromkeys(_header_key(steps[0].name) for steps in candidates))
    matched: dict[tuple[str, ...], tuple[str, ...]] = {}

    def get_header(fields: dict[str, Any]) -> Any:
        header = tuple(fields)
        names = matched.get(header)
        if names is None:
            by_key: dict[str, str] = {}
            for name in header:
                by_key.setdefault(_header_key(name), name)
            names = matched[header] = tuple(by_key[k] for k in wanted if k in by_key)
        for name in names:
            value = fields.get(name)
            if value is not None and value != "":
                return value
        return None

    return get_header


def field_paths(fmt: str, overrides: Mapping[str, str], key: str) -> FieldPaths:
    """The paths tried for each column of a source: its format's defaults, then its overrides.
    In CSV and TSV tables the names match header names whatever their case and separators."""
    paths = dict(DEFAULT_FIELDS.get(fmt, _GENERIC))
    for column, path in overrides.items():
        if column not in TARGETS:
            raise ConfigError(f"{key}.{column}: unknown column; mappable columns are {', '.join(TARGETS)}")
        paths[column] = (parse_path(path, f"{key}.{column}"),)
    getters = {}
    for column in TARGETS:
        candidates = paths.get(column, ())
        flat = all(len(steps) == 1 and steps[0].index is None for steps in candidates)
        tabular = fmt in _TABULAR_FORMATS and flat and column not in overrides and candidates
        getters[column] = _header_getter(candidates) if tabular else _getter(candidates)
    return FieldPaths(paths, getters)


def text(value: Any) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if v not in (None, "")), None)
    if value is None or isinstance(value, dict | list):
        return None
    result = str(value).strip()
    return result or None


def inverted_abstract(index: Mapping[str, Any]) -> str:
    """OpenAlex's `abstract_inverted_index` ({word: [positions]}) back to the text."""
    words: dict[int, str] = {}
    for word, positions in index.items():
        for position in positions if isinstance(positions, list) else []:
            if isinstance(position, int):
                words[position] = word
    return " ".join(words[position] for position in sorted(words))


def _person(value: Any) -> str | None:
    if isinstance(value, str):
        return " ".join(value.split()) or None
    if isinstance(value, Mapping):
        for key in ("name", "display_name", "full_name", "fullName", "literal"):
            if isinstance(value.get(key), str) and value[key].strip():
                return " ".join(value[key].split())
        parts = []
        for key in (
            "first",
            "given",
            "forenames",
            "firstName",
            "middle",
            "von",
            "last",
            "family",
            "keyname",
            "lastName",
            "suffix",
            "jr",
        ):
            part = value.get(key)
            if isinstance(part, list):
                part = " ".join(p for p in part if isinstance(p, str))
            if isinstance(part, str) and part.strip():
                parts.append(part.strip())
        return " ".join(parts) or None
    if isinstance(value, list | tuple):
        # arXiv snapshot `authors_parsed`: [last, first, suffix].
        names = [p.strip() for p in value if isinstance(p, str)]
        if names:
            last, rest = names[0], names[1:]
            return " ".join([*(p for p in rest[:1] if p), last, *(p for p in rest[1:] if p)]) or None
    return None


_AUTHOR_SEPARATOR = re.compile(r"\s*;\s*|\s*,\s*(?:and\s+)?|\s+and\s+|\s*&\s*")


def authors(value: Any) -> list[str] | None:
    """A list of "First Last" names from a list (of names, name dicts or name parts) or from one
    string of names separated by `;`, `,`, `and` or `&` (each name kept in the order it has)."""
    if value is None:
        return None
    if isinstance(value, str):
        separator = r"\s*;\s*" if ";" in value else _AUTHOR_SEPARATOR
        items: list[Any] = [part for part in re.split(separator, value.strip()) if part]
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    names = [name for item in items if (name := _person(item))]
    return names or None


_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
# RFC 2822 (`Mon, 2 Apr 2007 19:18:42 GMT`, the snapshot's version dates): the day as written.
_RFC_DATE = re.compile(r"\b(\d{1,2}) ([A-Z][a-z]{2}) (\d{4})\b")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}


def year(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and 1800 <= value <= 2100:
        return int(value)
    match = _YEAR.search(text(value) or "")
    return int(match.group(1)) if match else None


def published(value: Any) -> dt.date | None:
    """A date from ISO (`2023-01-02`, `2023-01-02T10:00:00Z`) or RFC 2822 (`Mon, 2 Apr 2007
    19:18:42 GMT`) text; a bare year or month is not a date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raw = text(value)
    if raw is None:
        return None
    try:
        match = _ISO_DATE.match(raw)
        if match:
            return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        match = _RFC_DATE.search(raw)
        if match and match.group(2) in _MONTHS:
            return dt.date(int(match.group(3)), _MONTHS[match.group(2)], int(match.group(1)))
    except ValueError:
        return None
    return None


def categories(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        parts = re.split(r"\s*[;,]\s*" if re.search(r"[;,]", value) else r"\s+", value.strip())
    elif isinstance(value, list):
        parts = [p for item in value if (p := text(item))]
    else:
        return None
    result = list(dict.fromkeys(p for p in parts if p))
    return result or None


def version(value: Any) -> int | None:
    """`2`, `"v2"`, or the highest of a list of them (the snapshot's `versions[].version`)."""
    if isinstance(value, list):
        found = [v for item in value if (v := version(item)) is not None]
        return max(found) if found else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"v?(\d+)", text(value) or "")
    return int(match.group(1)) if match else None


# Every kind has a parser: a value that is not such an id is dropped, since dedup links the
# records that share an id (a venue list's per-author `dblp` cell, `;;`, would link every
# paper with as many authors).
_ID_PARSERS = {
    "acl_anthology": acl_anthology_id,
    "openreview": openreview_id,
    "dblp": dblp_key,
    "semantic_scholar": semantic_scholar_id,
    "pmlr": pmlr_id,
    "openalex": openalex_id,
}


_SOURCE_ID_COLUMNS = tuple((kind, f"source_ids.{kind}") for kind in SOURCE_ID_KINDS)


@dataclass(frozen=True)
class Mapped:
    """One record's column values (RECORD_SCHEMA's metadata columns), or why it has none."""

    abstract: str | None
    raw_id: str | None
    arxiv_id: str | None
    arxiv_version: int | None
    title: str | None
    authors: list[str] | None
    year: int | None
    published: dt.date | None
    venue: str | None
    categories: list[str] | None
    doi: str | None
    url: str | None
    source_ids: dict[str, str | None] | None


def map_record(fields: dict[str, Any], paths: FieldPaths, defaults: Mapping[str, Any], fmt: str) -> Mapped:
    """The columns of one raw record: each from its first non-empty path, else the source's
    default; arXiv id from the explicit field, the record id, the DOI, the URL or the title."""
    getters = paths.getters

    def get(column: str) -> Any:
        value = getters[column](fields)
        return defaults.get(column) if value is None and defaults else value

    raw_abstract = get("abstract")
    if isinstance(raw_abstract, Mapping):
        raw_abstract = inverted_abstract(raw_abstract)
    # The abstract is kept as found (clean repairs and counts); blank is no abstract.
    abstract = raw_abstract if isinstance(raw_abstract, str) and raw_abstract.strip() else None
    raw_id = text(get("id"))
    title = text(get("title"))
    title_arxiv = None
    if title is not None:
        # arXiv wraps long titles over lines; the wrap is not part of the title.
        title, title_arxiv = split_title_suffix(" ".join(title.split()))
    doi_text = text(get("doi"))
    doi = normalize_doi(doi_text) if doi_text else None
    url = text(get("url"))
    url_ids = ids_in_url(url) if url else {}
    found = [
        parsed
        for candidate in (text(get("arxiv_id")), raw_id, doi, url_ids.get("arxiv"))
        if candidate and (parsed := parse_arxiv_id(candidate)) is not None
    ]
    if title_arxiv is not None:
        found.append(title_arxiv)
    arxiv = None
    if found:
        # The first id found; its version from whichever form carries one (an RSS title's
        # suffix does, the abs link beside it often does not).
        first_id = found[0][0]
        versions = [v for i, v in found if i == first_id and v is not None]
        arxiv = (first_id, versions[0] if versions else None)
    if doi is None and "doi" in url_ids:
        doi = url_ids["doi"]
    arxiv_id, arxiv_version = arxiv if arxiv else (None, None)
    if arxiv_id is not None and arxiv_version is None:
        arxiv_version = version(get("arxiv_version"))
    if url is None and arxiv_id is not None and fmt in _ARXIV_FORMATS:
        url = f"https://arxiv.org/abs/{arxiv_id}"
    ids: dict[str, str | None] = {}
    for kind, column in _SOURCE_ID_COLUMNS:
        value = text(get(column))
        parse = _ID_PARSERS.get(kind)
        ids[kind] = ((parse(value) if parse else value) if value else None) or url_ids.get(kind)
    when = published(get("published"))
    return Mapped(
        abstract=abstract,
        raw_id=raw_id,
        arxiv_id=arxiv_id,
        arxiv_version=arxiv_version,
        title=title,
        authors=authors(get("authors")),
        year=year(get("year")) or (when.year if when else None),
        published=when,
        venue=" ".join(venue.split()) if (venue := text(get("venue"))) else None,
        categories=categories(get("categories")),
        doi=doi,
        url=url,
        source_ids=ids if any(ids.values()) else None,
    )


def content(fields: Mapping[str, Any], limit: int = 4000) -> str:
    """A raw record as JSON for a reject's `content` (cut at `limit` characters)."""
    dumped = json.dumps(fields, ensure_ascii=False, default=str)
    return dumped if len(dumped) <= limit else dumped[:limit] + "..."
