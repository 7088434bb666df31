"""Shared pieces of the XML readers: streaming parse with clear errors, inline text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from pipeline.errors import BadInputError
from pipeline.io.formats.compression import open_binary


def local(tag: object) -> str:
    """An element's tag without its namespace (`{http://www.w3.org/2005/Atom}entry` -> `entry`)."""
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def inline_text(element: etree._Element) -> str:
    """An element's text with inline markup kept as text: `<tex-math>` becomes `$...$` (LaTeX
    math, as arXiv and BibTeX abstracts carry it), other tags (`<i>`, `<b>`, `<url>`,
    `<fixed-case>`) give their content. Entities are already decoded by the parser."""
    parts = [element.text or ""]
    for child in element:
        if isinstance(child.tag, str):
            inner = inline_text(child)
            parts.append(f"${inner}$" if local(child.tag) == "tex-math" else inner)
        parts.append(child.tail or "")
    return "".join(parts).strip()


def child_text(element: etree._Element, name: str) -> str | None:
    """The inline text of the first child named `name` (any namespace), or None."""
    for child in element:
        if local(child.tag) == name:
            return inline_text(child)
    return None


def children(element: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in element if local(child.tag) == name]


def iter_elements(
    path: Path, name: str, tags: set[str], record: str | None = None
) -> Iterator[etree._Element]:
    """The elements whose local name is in `tags`, as each ends; freed after the caller is done
    with them, so the tree never holds the file whole. `record` (default: the one tag) is the
    tag whose ordinal names the record a syntax error is in, as the readers' locators do."""
    record_tag = record or (next(iter(tags)) if len(tags) == 1 else None)
    done = 0
    try:
        with open_binary(path) as handle:
            for _event, element in etree.iterparse(
                handle, events=("end",), resolve_entities=False, huge_tree=True
            ):
                tag = local(element.tag)
                if tag in tags:
                    yield element
                    done += tag == record_tag
                    element.clear(keep_tail=True)
                    parent = element.getparent()
                    while parent is not None and element.getprevious() is not None:
                        del parent[0]
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or (exc.position[0] if exc.position else 0)
        # A cut or broken file fails inside the record after the last complete one.
        where = f" in {record_tag}[{done + 1}]" if record_tag else ""
        raise BadInputError(
            f"{name}:{line}: malformed XML{where} ({exc.msg}); fix or re-download the file"
        ) from None
