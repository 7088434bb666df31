"""arXiv identifier parsing shared by ingest (raw ids) and validate (id patterns).

New-style ids are `YYMM.NNNN` (2007-2014) or `YYMM.NNNNN` (2015-); old-style ids are
`archive(.SUBJ)/YYMMNNN` (arXiv identifier scheme, https://info.arxiv.org/help/arxiv_identifier.html).
Either may carry a version suffix `vN`.
"""

from __future__ import annotations

import re

NEW_STYLE = r"\d{4}\.\d{4,5}"
OLD_STYLE = r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}"
# Without version: what the release's `arxiv_id` column must match.
ARXIV_ID_PATTERN = rf"^(?:{NEW_STYLE}|{OLD_STYLE})$"
_VERSIONED = re.compile(rf"^(?:arXiv:)?(?P<id>{NEW_STYLE}|{OLD_STYLE})(?:v(?P<version>\d+))?$")


def parse_arxiv_id(raw: str) -> tuple[str, int | None] | None:
    """Split a raw arXiv id into (id without version, version or None).

    Returns None when `raw` is not an arXiv id, e.g. `parse_arxiv_id("2201.12288v2")` is
    `("2201.12288", 2)` and `parse_arxiv_id("hep-th/9901001")` is `("hep-th/9901001", None)`.
    """
    match = _VERSIONED.match(raw.strip())
    if match is None:
        return None
    version = match.group("version")
    return match.group("id"), int(version) if version else None
