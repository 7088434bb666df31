"""ACL Anthology XML (`data/xml/<collection>.xml` of acl-org/acl-anthology): `<collection>` of
`<volume>`s, each with a `<meta>` (booktitle, year, month, publisher, address) its papers
inherit, then `<paper>`s (title, authors, abstract, `<url>` = anthology id, `<doi>`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from pipeline.io.formats import RawItems, RawRecord
from pipeline.io.formats.xml_text import child_text, children, inline_text, iter_elements, local


def _person(element: etree._Element) -> dict[str, str]:
    return {key: value for key in ("first", "last") if (value := child_text(element, key)) is not None}


def read_acl_anthology(path: Path, name: str) -> RawItems:
    """Each `<paper>` is a record (`paper[N]`, N counting the file's papers from 1), with its
    volume's meta under `volume` and the ids under `acl_id` and `doi`."""
    volume: dict[str, Any] = {}
    collection = ""
    count = 0
    for element in iter_elements(path, name, {"meta", "paper"}, record="paper"):
        parent = element.getparent()
        volume_element = parent if parent is not None and local(parent.tag) == "volume" else None
        if volume_element is not None:
            grand = volume_element.getparent()
            collection = (grand.get("id") or "") if grand is not None else collection
        if local(element.tag) == "meta":
            volume = {
                key: value
                for key in ("booktitle", "year", "month", "publisher", "address")
                if (value := child_text(element, key)) is not None
            }
            volume["id"] = volume_element.get("id") if volume_element is not None else None
            continue
        count += 1
        url = child_text(element, "url")
        acl_id = url if url and "://" not in url else None
        if acl_id is None and collection and volume.get("id") and element.get("id"):
            acl_id = f"{collection}-{volume['id']}.{element.get('id')}"
        fields: dict[str, Any] = {
            "title": child_text(element, "title"),
            "authors": [_person(author) for author in children(element, "author")],
            "abstract": child_text(element, "abstract"),
            "acl_id": acl_id,
            "url": f"https://aclanthology.org/{acl_id}" if acl_id else url,
            "doi": child_text(element, "doi"),
            "pages": child_text(element, "pages"),
            "bibkey": child_text(element, "bibkey"),
            "year": child_text(element, "year") or volume.get("year"),
            "month": child_text(element, "month") or volume.get("month"),
            "volume": volume,
        }
        yield RawRecord(element.sourceline or count, f"paper[{count}]", fields)


__all__ = ["inline_text", "read_acl_anthology"]
