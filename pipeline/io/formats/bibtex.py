"""BibTeX (a PMLR volume's `.bib`, an Anthology export), parsed with bibtexparser 2.x.

A `@Proceedings` entry is the volume header: its booktitle, year, volume and publication date
are inherited by the file's other entries (PMLR's `@InProceedings` entries carry none of them).
Values keep their LaTeX (math, accents) for clean; only the enclosing braces or quotes go.
The file is parsed whole: a `.bib` is one volume, far below the sizes the line readers stream.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bibtexparser.entrypoint import parse_string
from bibtexparser.middlewares.names import parse_single_name_into_parts, split_multiple_persons_names
from bibtexparser.model import DuplicateBlockKeyBlock, Entry

from pipeline.errors import BadInputError
from pipeline.ids import pmlr_id
from pipeline.io.formats import RawItems, RawRecord, RawReject
from pipeline.io.formats.compression import open_binary

_HEADER_TYPES = ("proceedings", "book")
# The splitter logs each aborted block; here each becomes a reject with the same reason.
logging.getLogger("bibtexparser").setLevel(logging.ERROR + 1)


def _names(value: str) -> list[str]:
    """`Pan, Hengyue and Jiang, Hui` -> ["Hengyue Pan", "Hui Jiang"] (BibTeX name rules)."""
    names = []
    for person in split_multiple_persons_names(value):
        try:
            names.append(parse_single_name_into_parts(person, strict=False).merge_first_name_first)
        except Exception:  # a name the rules cannot split stays as written
            names.append(person)
    return [" ".join(name.split()) for name in names if name.strip()]


def _fields(entry: Entry) -> dict[str, Any]:
    fields: dict[str, Any] = {key.lower(): field.value for key, field in entry.fields_dict.items()}
    fields["ID"] = entry.key
    fields["ENTRYTYPE"] = entry.entry_type.lower()
    for key in ("author", "editor"):
        if isinstance(fields.get(key), str):
            fields[key] = _names(fields[key])
    return fields


def read_bibtex(path: Path, name: str) -> RawItems:
    """Each entry other than the volume header is a record (`entry[N]`, at its start line); a
    block bibtexparser cannot parse is a reject naming its line."""
    with open_binary(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInputError(
            f"{name}:{line}: not valid UTF-8; re-encode the file as UTF-8 and rerun"
        ) from None
    library = parse_string(text)
    header: dict[str, Any] = {}
    for entry in library.entries:
        if entry.entry_type.lower() in _HEADER_TYPES:
            header = _fields(entry)
            break
    count = 0
    for block in library.blocks:
        if isinstance(block, Entry):
            if block.entry_type.lower() in _HEADER_TYPES:
                continue
            count += 1
            fields = _fields(block)
            if header:
                fields["proceedings"] = header
            volume = fields.get("volume") or header.get("volume")
            url = fields.get("url") or ""
            # An mlresearch volume file's header has PMLR's own fields (`shortname`, `sections`).
            in_pmlr_volume = bool(volume) and ("shortname" in header or "sections" in header)
            fields["pmlr_id"] = (
                pmlr_id(url)
                or pmlr_id(block.key)
                or (pmlr_id(f"v{volume}/{block.key}") if in_pmlr_volume else None)
            )
            yield RawRecord((block.start_line or 0) + 1, f"entry[{count}] {block.key}", fields)
        elif isinstance(block, DuplicateBlockKeyBlock):
            count += 1
            yield RawReject(
                (block.start_line or 0) + 1,
                f"entry[{count}] {block.key}",
                "duplicate_key",
                (block.raw or "")[:4000],
            )
        elif block.__class__.__name__.endswith("FailedBlock"):
            count += 1
            error = getattr(block, "error", None)
            why = " ".join(
                (getattr(error, "abort_reason", None) or str(error) or type(error).__name__).split()
            )
            line = (block.start_line or 0) + 1
            yield RawReject(line, f"entry[{count}]", "malformed_bibtex", (block.raw or "")[:4000], why)
    if count == 0:
        raise BadInputError(f"{name}: no BibTeX entries found; is it a .bib file?")
