"""Telling a raw file's format from its name and first bytes (after decompression)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.io.formats.compression import decompression_errors, logical_name, open_binary
from pipeline.io.formats.openalex import document_layout, is_page, is_work
from pipeline.params import KNOWN_FORMATS
from pipeline.stages.ingest.text_dumps import ABSTRACT_LINE, TABLE_HEADER, TABLE_ROW

_HEAD_BYTES = 256 << 10
_SNIFF_LINES = 200
_SUFFIXES = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".bib": "bibtex",
    ".bibtex": "bibtex",
}
_XML_ROOT = re.compile(rb"<(?![?!])(?:[\w.-]+:)?(?P<tag>[\w.-]+)")
_XML_ROOTS = {b"collection": "acl_xml", b"OAI-PMH": "arxiv_oai", b"feed": "arxiv_atom"}
# Header names under which a table's abstract sits (the generic mapping's names).
_ABSTRACT_COLUMNS = {"abstract", "paperabstract", "abstract_text", "abstracttext", "summary", "ab"}
_S2_KEYS = {"paperId", "corpusid", "corpusId", "paperAbstract", "s2Url", "s2FieldsOfStudy", "s2fieldsofstudy"}


def _head(path: Path) -> bytes:
    with open_binary(path) as handle:
        return handle.read(_HEAD_BYTES)


def json_lines_kind(obj: dict[str, object]) -> str:
    """Which JSON lines family a first record belongs to, by its keys."""
    keys = set(obj)
    if {"id", "abstract", "versions"} <= keys:
        return "arxiv_snapshot"
    if is_work(keys, obj.get("id")) or is_page(obj):
        return "openalex"
    if keys & _S2_KEYS or {"paper_id", "mag_field_of_study"} <= keys:
        return "semantic_scholar"
    return "jsonl"


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32 text, by its byte-order mark or, without one, by NULs in every other
    byte of its first characters (text in UTF-8 has none)."""
    for mark, encoding in (
        (b"\xff\xfe\x00\x00", "UTF-32LE"),
        (b"\x00\x00\xfe\xff", "UTF-32BE"),
        (b"\xff\xfe", "UTF-16LE"),
        (b"\xfe\xff", "UTF-16BE"),
    ):
        if head.startswith(mark):
            return encoding
    sample = head[:200]
    if len(sample) >= 8 and sample[1::2].count(0) == len(sample[1::2]) and sample[0::2].count(0) == 0:
        return "UTF-16LE"
    if len(sample) >= 8 and sample[0::2].count(0) == len(sample[0::2]) and sample[1::2].count(0) == 0:
        return "UTF-16BE"
    return None


def _unknown(name: str, number: int, text: str) -> BadInputError:
    return BadInputError(
        f"{name}:{number}: cannot tell the format (starts with {text[:60]!r}); known formats are "
        f"{', '.join(KNOWN_FORMATS)}; declare it in sources.yaml (`format:`) or remove the file"
    )


def sniff_format(path: Path, name: str) -> str:
    """Guess a raw file's format from its name and content.

    Raises:
        BadInputError: the file is empty, unreadable or matches no known format.
    """
    logical = logical_name(path.name).lower()
    suffix = Path(logical).suffix
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    try:
        head = _head(path)
    except decompression_errors() as exc:
        raise BadInputError(
            f"{name}: cannot be decompressed ({exc}); re-download or re-compress it"
        ) from None
    if head.startswith(b"PAR1"):
        return "parquet"
    encoding = _wide_encoding(head)
    if encoding is not None:
        raise BadInputError(
            f"{name}: is {encoding}, not UTF-8; convert it (`iconv -f {encoding} -t UTF-8 {name}`) or "
            "remove it from raw/"
        )
    body = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not body:
        raise BadInputError(f"{name}: file is empty; remove it from raw/ or add its content")
    start = body[:1]
    if start == b"<":
        root = _XML_ROOT.search(re.sub(rb"<!--.*?-->", b"", body[:8192], flags=re.DOTALL))
        if root is not None and root.group("tag") in _XML_ROOTS:
            return _XML_ROOTS[root.group("tag")]
        tag = root.group("tag").decode(errors="replace") if root else "?"
        raise BadInputError(
            f"{name}:1: XML with root <{tag}> is not a known format (ACL Anthology <collection>, "
            "OAI-PMH, Atom <feed>); declare its format in sources.yaml or remove the file"
        )
    if start == b"@":
        return "bibtex"
    if start == b"[":
        # An array of OpenAlex works (an API page's `results` saved alone) is read as OpenAlex.
        return "openalex" if document_layout(body) else "json_array"
    if start == b"{":
        first_line = body.split(b"\n", 1)[0]
        if suffix == ".json" and len(head) < _HEAD_BYTES and b"\n" not in body.rstrip():
            # One minified object in a `.json` file: a paper of a folder of them, not a dump; an
            # OpenAlex work or API page is read as OpenAlex.
            return "openalex" if document_layout(body) else "json_object"
        try:
            obj = json.loads(first_line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            # A pretty-printed document: an OpenAlex page or work, or one paper.
            return "openalex" if document_layout(body) else "json_object"
        return json_lines_kind(obj) if isinstance(obj, dict) else "json_object"
    raw_lines = head.split(b"\n")
    if len(head) == _HEAD_BYTES and len(raw_lines) > 1:
        # The last line may be cut by the head's end.
        raw_lines = raw_lines[:-1]
    lines = [
        (number, text)
        for number, raw in enumerate(raw_lines, start=1)
        if (text := raw.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip())
    ][:_SNIFF_LINES]
    number, text = lines[0]
    if any(TABLE_ROW.match(line) for _, line in lines) and any(
        TABLE_HEADER.match(line) or line.endswith("|") for _, line in lines
    ):
        return "viewer_table"
    label_lines = sum(1 for _, line in lines if ABSTRACT_LINE.match(line))
    if label_lines and label_lines * 2 >= len(lines):
        return "abstract_lines"
    for delimiter, fmt in (("\t", "tsv"), (",", "csv"), (";", "csv")):
        header = {cell.strip().strip('"').lower() for cell in text.split(delimiter)}
        if len(header) > 1 and header & _ABSTRACT_COLUMNS:
            return fmt
    raise _unknown(name, number, text)
