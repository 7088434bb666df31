"""CSV and TSV exports: a header row, then one record per row. Header names and cells are trimmed
of padding (space-aligned exports), quoted cells may hold newlines, a BOM is dropped. Streamed."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from pipeline.errors import BadInputError
from pipeline.io.formats import RawItems, RawRecord, RawReject
from pipeline.io.formats.compression import open_binary

# Abstracts with long LaTeX can pass the csv module's default 128 KiB cell limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
_CANDIDATE_DELIMITERS = ",;\t|"
_QUOTE = '"'


def _delimiter(header: str, default: str) -> str:
    """The delimiter of a header line: the default unless another candidate is clearly it."""
    counts = {d: header.count(d) for d in _CANDIDATE_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return default if counts[default] or not counts[best] else best


def read_delimited(path: Path, name: str, delimiter: str) -> RawItems:
    """Rows keyed by the trimmed header names (`row 1` is the first row after the header); a row
    whose cell count differs from the header's is a reject."""
    row_number = 0
    line = 0
    try:
        with (
            open_binary(path) as raw,
            io.TextIOWrapper(cast(BinaryIO, raw), encoding="utf-8-sig", newline="") as handle,
        ):
            first = handle.readline()
            header_line = 1
            while first and not first.strip():
                first = handle.readline()
                header_line += 1
            if not first:
                raise BadInputError(f"{name}: file is empty; remove it from raw/ or add its content")
            delimiter = _delimiter(first, delimiter)
            header = [cell.strip() for cell in next(csv.reader([first], delimiter=delimiter))]
            duplicated = sorted({h for h in header if header.count(h) > 1 and h})
            if duplicated:
                raise BadInputError(
                    f"{name}: header repeats column(s) {', '.join(duplicated)}; rename them so each is unique"
                )
            # The csv module closes a quoted cell that the file's end cuts short without a word:
            # a row the reader could only finish at the end of the file, with an odd number of
            # quotes in its raw lines, is such a cut.
            row_lines: list[str] = []
            ended = False

            def lines() -> Iterator[str]:
                nonlocal ended
                for text in handle:
                    row_lines.append(text)
                    yield text
                ended = True

            reader = csv.reader(lines(), delimiter=delimiter, skipinitialspace=True)
            line = header_line
            for cells in reader:
                start, line = line + 1, header_line + reader.line_num
                raw_row, row_lines[:] = "".join(row_lines), []
                if not any(cell.strip() for cell in cells):
                    continue
                row_number += 1
                locator = f"row {row_number}"
                if ended and raw_row.count(_QUOTE) % 2:
                    yield RawReject(
                        start,
                        locator,
                        "unclosed_quote",
                        raw_row,
                        "the file ends inside a quoted cell: it was cut short; re-download it",
                    )
                    continue
                if len(cells) != len(header):
                    yield RawReject(
                        start,
                        locator,
                        "wrong_cell_count",
                        delimiter.join(cells),
                        f"{len(cells)} cells, the header has {len(header)}",
                    )
                    continue
                fields = {key: cell.strip() for key, cell in zip(header, cells, strict=True) if key}
                yield RawRecord(start, locator, fields)
    except UnicodeDecodeError:
        raise BadInputError(
            f"{name}: row {row_number + 1}: not valid UTF-8; re-encode the file as UTF-8 and rerun"
        ) from None
    except csv.Error as exc:
        raise BadInputError(
            f"{name}: row {row_number + 1} (line {line + 1}): malformed CSV ({exc})"
        ) from None
