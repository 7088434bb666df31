"""JSON lines: one JSON object per line (generic dumps, the arXiv metadata snapshot, OpenAlex
works, Semantic Scholar / S2ORC papers). Streamed line by line."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.io.formats import RawItems, RawRecord, RawReject
from pipeline.io.formats.compression import open_binary


def read_json_lines(path: Path, name: str) -> RawItems:
    """Each non-blank line is a record; a line that is not a JSON object is a reject."""
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise BadInputError(
                    f"{name}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); re-encode the file as UTF-8 and rerun"
                ) from None
            if text:
                yield parse_json_line(number, text)


def parse_json_line(number: int, text: str) -> RawRecord | RawReject:
    """One non-blank line: a record when it is a JSON object, else a reject."""
    locator = f"line {number}"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawReject(number, locator, "invalid_json", text, f"{exc.msg} at column {exc.colno}")
    if not isinstance(obj, dict):
        return RawReject(number, locator, "not_an_object", text)
    return RawRecord(number, locator, obj)
