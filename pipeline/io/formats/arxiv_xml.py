"""arXiv's XML interfaces: OAI-PMH `ListRecords` responses (metadata prefixes `arXiv`,
`arXivRaw` and `oai_dc`) and arXiv API Atom feeds. Both are namespaced; elements are matched by
local name so either namespace version reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from pipeline.io.formats import RawItems, RawRecord, RawReject
from pipeline.io.formats.xml_text import child_text, children, iter_elements, local


def _oai_metadata(metadata: etree._Element) -> dict[str, Any]:
    """The fields of one record's `<metadata>` in any of the three arXiv prefixes."""
    fields: dict[str, Any] = {}
    for block in metadata:
        kind = local(block.tag)
        if kind in ("arXiv", "arXivRaw"):
            for key in (
                "id",
                "title",
                "abstract",
                "categories",
                "doi",
                "license",
                "created",
                "updated",
                "journal-ref",
                "comments",
            ):
                value = child_text(block, key)
                if value is not None:
                    fields[key] = value
            authors = children(block, "authors")
            if authors and kind == "arXiv":
                fields["authors"] = [
                    {
                        "first": child_text(a, "forenames") or "",
                        "last": child_text(a, "keyname") or "",
                        "suffix": child_text(a, "suffix") or "",
                    }
                    for a in children(authors[0], "author")
                ]
            elif authors:
                fields["authors"] = authors[0].text or ""
            versions = [
                {"version": v.get("version"), "date": child_text(v, "date")}
                for v in children(block, "version")
            ]
            if versions:
                fields["versions"] = versions
        elif kind == "dc":
            for child in block:
                key = local(child.tag)
                text = "".join(child.itertext()).strip()
                if key in ("creator", "subject", "identifier", "date"):
                    fields.setdefault(key, []).append(text)
                elif key == "description":
                    # arXiv's oai_dc gives the abstract first, then "Comment: ..." descriptions.
                    fields.setdefault("abstract", text)
                elif key == "title":
                    fields["title"] = text
            if "creator" in fields:
                # oai_dc creators are "Last, First".
                fields["authors"] = [
                    {"first": first.strip(), "last": last.strip()} if sep else {"name": last}
                    for last, sep, first in (c.partition(",") for c in fields["creator"])
                ]
    return fields


def read_arxiv_oai(path: Path, name: str) -> RawItems:
    """Each OAI-PMH `<record>` is a record (`record[N]`); a deleted record is a reject."""
    count = 0
    for element in iter_elements(path, name, {"record"}):
        count += 1
        locator = f"record[{count}]"
        line = element.sourceline or count
        header = children(element, "header")
        identifier = child_text(header[0], "identifier") if header else None
        if header and header[0].get("status") == "deleted":
            yield RawReject(line, locator, "deleted_record", identifier or "")
            continue
        metadata = children(element, "metadata")
        fields = _oai_metadata(metadata[0]) if metadata else {}
        if header:
            fields["oai_identifier"] = identifier
            fields["datestamp"] = child_text(header[0], "datestamp")
        if "id" not in fields and identifier:
            fields["id"] = identifier.removeprefix("oai:arXiv.org:")
        yield RawRecord(line, locator, fields)


def read_arxiv_atom(path: Path, name: str) -> RawItems:
    """Each Atom `<entry>` is a record (`entry[N]`): id (abs URL), title, summary, authors,
    published/updated, categories, links and the `arxiv:` extension elements."""
    for count, element in enumerate(iter_elements(path, name, {"entry"}), start=1):
        fields: dict[str, Any] = {}
        for child in element:
            key = local(child.tag)
            if key == "author":
                fields.setdefault("authors", []).append(child_text(child, "name") or "")
            elif key == "category":
                fields.setdefault("categories", []).append(child.get("term") or "")
            elif key == "primary_category":
                fields["primary_category"] = child.get("term")
            elif key == "link":
                if child.get("rel", "alternate") == "alternate":
                    fields["link"] = child.get("href")
                elif child.get("title") == "pdf":
                    fields["pdf_url"] = child.get("href")
            else:
                fields[key] = "".join(child.itertext()).strip()
        yield RawRecord(element.sourceline or count, f"entry[{count}]", fields)
