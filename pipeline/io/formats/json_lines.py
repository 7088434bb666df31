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
            if not text:
                continue
            locator = f"line {number}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawReject(number, locator, "invalid_json", text, f"{exc.msg} at column {exc.colno}")
                continue
            if not isinstance(obj, dict):
                yield RawReject(number, locator, "not_an_object", text)
                continue
            yield RawRecord(number, locator, obj)
