"""OpenAlex works in each layout OpenAlex ships them: the snapshot's JSON lines of works
(`works/*/part_*.gz`), API pages saved as files (`{"meta": {...}, "results": [work, ...]}`,
minified on one line or pretty-printed, or one page per line), a JSON array of works, and one
work per file (`/works/W...`). The layout is told from the content, so none is declared.

A page's works are numbered by their ordinal in the file (`line`), so that each record's
`<file>:<line>` stays unique even when a whole page sits on one line.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import ijson

from pipeline.errors import BadInputError
from pipeline.io.formats import RawItems, RawRecord, RawReject
from pipeline.io.formats.compression import open_binary
from pipeline.io.formats.json_document import read_json_array, read_json_object
from pipeline.io.formats.json_lines import read_json_lines

_PEEK_BYTES = 64 << 10
_WORK_ID_PREFIX = "https://openalex.org/W"


def is_work(keys: set[str] | dict[str, Any], work_id: object) -> bool:
    """An OpenAlex work by its keys or its id (`https://openalex.org/W...`)."""
    return "abstract_inverted_index" in keys or (
        isinstance(work_id, str) and work_id.startswith(_WORK_ID_PREFIX)
    )


def is_page(obj: dict[str, Any]) -> bool:
    """An API page: `results`, a list whose first item is a work (an empty page tells nothing)."""
    results = obj.get("results")
    return (
        isinstance(results, list)
        and bool(results)
        and isinstance(results[0], dict)
        and is_work(results[0], results[0].get("id"))
    )


def document_layout(head: bytes) -> str | None:
    """`"page"`, `"work"` or `"array"` for a JSON document (possibly cut, e.g. a file's first
    bytes) that is an OpenAlex page, work or array of works, else None. Reads the document's
    events only as far as its first work."""
    array = head.lstrip().startswith(b"[")
    # Where the first work's keys are: the top level, a page's `results`, an array's items.
    item_prefix = "item" if array else "results.item"
    top: set[str] = set()
    top_id: object = None
    item: set[str] = set()
    item_id: object = None
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(head)):
            if prefix == "" and event == "map_key":
                top.add(value)
            elif prefix == "id" and event == "string":
                top_id = value
            elif prefix == item_prefix and event == "map_key":
                item.add(value)
            elif prefix == f"{item_prefix}.id" and event == "string":
                item_id = value
            elif prefix == item_prefix and event == "end_map":
                break
    except (ijson.JSONError, UnicodeDecodeError):
        # A cut head ends the events early; what was seen decides.
        pass
    if array:
        return "array" if is_work(item, item_id) else None
    if is_work(top, top_id):
        return "work"
    if "results" in top and is_work(item, item_id):
        return "page"
    return None


def read_openalex(path: Path, name: str) -> RawItems:
    """OpenAlex works from a file in any of its layouts: JSON lines (`line N`; a line holding a
    page gives its works as `line N results[i]`), a JSON array (`$[i]`), one page (`$.results[i]`,
    minified or pretty-printed) or one work (`$`)."""
    with open_binary(path) as handle:
        first = handle.readline()
        while first and not first.strip():
            first = handle.readline()
        after = handle.read(_PEEK_BYTES)
    text = first.removeprefix(b"\xef\xbb\xbf").strip()
    if text.startswith(b"["):
        yield from read_json_array(path, name)
        return
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        obj = None
    if isinstance(obj, dict):
        if after.strip():
            yield from _pages_in_lines(read_json_lines(path, name))
        elif is_page(obj):
            yield from _read_page_document(path, name)
        else:
            yield from read_json_object(path, name)
        return
    # A pretty-printed document (its first line is not a whole object).
    if document_layout(first + after) == "page":
        yield from _read_page_document(path, name)
    else:
        yield from read_json_object(path, name)


def _pages_in_lines(items: RawItems) -> RawItems:
    """JSON lines of works, a line holding a whole page expanded to its works."""
    ordinal = 0
    for item in items:
        if isinstance(item, RawRecord) and is_page(item.fields):
            for index, work in enumerate(item.fields["results"]):
                ordinal += 1
                locator = f"{item.locator} results[{index}]"
                if isinstance(work, dict):
                    yield RawRecord(ordinal, locator, work)
                else:
                    yield RawReject(ordinal, locator, "not_an_object", json.dumps(work, default=str)[:2000])
            continue
        # A line's number, unless works of an earlier page already took it.
        ordinal = max(ordinal + 1, item.line)
        yield item if ordinal == item.line else dataclasses.replace(item, line=ordinal)


def _read_page_document(path: Path, name: str) -> RawItems:
    """A pretty-printed page, streamed work by work."""
    index = -1
    try:
        with open_binary(path) as handle:
            for index, work in enumerate(ijson.items(handle, "results.item", use_float=True)):
                locator = f"$.results[{index}]"
                if isinstance(work, dict):
                    yield RawRecord(index + 1, locator, work)
                else:
                    yield RawReject(index + 1, locator, "not_an_object", json.dumps(work, default=str)[:2000])
    except ijson.JSONError as exc:
        why = " ".join(str(exc).split())
        raise BadInputError(
            f"{name}: $.results[{index + 1}]: not valid JSON ({why}); the page is cut or malformed "
            f"after work {index}; fix or re-download it"
        ) from None
    except UnicodeDecodeError:
        raise BadInputError(
            f"{name}: $.results[{index + 1}]: not valid UTF-8; re-encode the file as UTF-8"
        ) from None
