"""JSON documents: one array of records per file (streamed item by item with ijson), or one
record object per file (a folder of them is one source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ijson

from pipeline.errors import BadInputError
from pipeline.io.formats import RawItems, RawRecord, RawReject
from pipeline.io.formats.compression import open_binary


def read_json_array(path: Path, name: str) -> RawItems:
    """Each item of the top-level array is a record (`$[0]`, `$[1]`, ...); an item that is not an
    object is a reject. A file broken mid-way is an error naming the last item read."""
    index = -1
    try:
        with open_binary(path) as handle:
            # `use_float`: numbers as float/int, not Decimal, as json.loads gives them.
            for index, item in enumerate(ijson.items(handle, "item", use_float=True)):
                locator = f"$[{index}]"
                if isinstance(item, dict):
                    yield RawRecord(index + 1, locator, item)
                else:
                    yield RawReject(index + 1, locator, "not_an_object", json.dumps(item, default=str)[:2000])
    except ijson.JSONError as exc:
        why = " ".join(str(exc).split())
        raise BadInputError(
            f"{name}: $[{index + 1}]: not valid JSON ({why}); the file is cut or malformed after "
            f"item {index}; fix or re-download it"
        ) from None
    except UnicodeDecodeError:
        raise BadInputError(f"{name}: $[{index + 1}]: not valid UTF-8; re-encode the file as UTF-8") from None
    if index < 0:
        raise BadInputError(f"{name}: the JSON array holds no records; remove the file or fill it")


def read_json_object(path: Path, name: str) -> RawItems:
    """The file's one JSON object is one record (`$`)."""
    with open_binary(path) as handle:
        data = handle.read()
    try:
        obj: Any = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise BadInputError(f"{name}: not valid UTF-8; re-encode the file as UTF-8 and rerun") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{name}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); fix the file"
        ) from None
    if not isinstance(obj, dict):
        yield RawReject(1, "$", "not_an_object", data.decode("utf-8", "replace")[:2000])
        return
    yield RawRecord(1, "$", obj)
