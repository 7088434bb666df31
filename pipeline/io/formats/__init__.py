"""Readers of raw dump formats: one small module per format family.

Each reader takes a file (possibly compressed, see `compression`) and its name under `raw/`, and
yields `RawRecord`s (the fields as the format gives them, with the record's position) and
`RawReject`s (a record that cannot be read, with a reason). A file that cannot be read at all
raises `BadInputError` naming it and the position. Readers stream: none holds a file whole,
except the single-object JSON and BibTeX readers, whose files are one paper or one volume.
Mapping the fields onto the record columns is the ingest stage's job, not the readers'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True)
class RawRecord:
    # Line of the file where the record starts, or its ordinal where the format has no lines.
    line: int
    # The record's position as a reader would look for it: "line 12", "$[3]", "paper[4]".
    locator: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class RawReject:
    line: int
    locator: str
    # A stable code (`invalid_json`); `detail` says what exactly was wrong.
    reason: str
    content: str
    detail: str = ""


RawItems: TypeAlias = Iterator[RawRecord | RawReject]
