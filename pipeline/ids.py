"""Identifier grammar shared by ingest (raw ids) and validate (id patterns): every pattern for the
ids a source may carry lives here.

arXiv: new-style ids are `YYMM.NNNN` (2007-2014) or `YYMM.NNNNN` (2015-); old-style ids are
`archive(.SUBJ)/YYMMNNN` (arXiv identifier scheme, https://info.arxiv.org/help/arxiv_identifier.html).
Either may carry a version suffix `vN`, an `arXiv:` prefix, sit in an abs/pdf URL, in an arXiv DOI
(`10.48550/arXiv.2301.00006`) or at the end of an RSS title (`(arXiv:2301.00006v2 [cs.HC] UPDATED)`).

Other ids: DOI (lower-case, no resolver prefix), ACL Anthology (`2021.conll-1.5`, `P19-1001`),
OpenReview (forum id), Semantic Scholar (40-hex paper id or a corpus id), PMLR (`v77/pan17`),
OpenAlex (`W2741809807`) and dblp keys (`conf/icml/Smith21`).
"""

from __future__ import annotations

import re

NEW_STYLE = r"\d{4}\.\d{4,5}"
OLD_STYLE = r"[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7}"
# Without version: what the release's `arxiv_id` column must match.
ARXIV_ID_PATTERN = rf"^(?:{NEW_STYLE}|{OLD_STYLE})$"
_ARXIV = rf"(?P<id>{NEW_STYLE}|{OLD_STYLE})(?:v(?P<version>\d+))?"
# The id itself is case-sensitive (`math.GT/0309136`); prefixes and hosts are not.
_VERSIONED = re.compile(rf"^(?i:arxiv:)?{_ARXIV}$")
_ARXIV_URL = re.compile(
    rf"^(?i:(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html|format)/){_ARXIV}(?i:\.pdf)?/?(?:[?#].*)?$"
)
_ARXIV_DOI = re.compile(rf"^(?i:10\.48550/arxiv\.){_ARXIV}$")
# `Title. (arXiv:2301.00006v2 [cs.HC] UPDATED)`: the suffix arXiv's RSS feeds append to titles.
_TITLE_SUFFIX = re.compile(
    rf"\s*\(arXiv:{_ARXIV}(?:\s*\[[^\]]*\])?(?:\s+[A-Z]+)*\)\s*$",
)
_DOI_PREFIX = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)", re.IGNORECASE)
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
# New-style (`2021.conll-1.5`) and old-style (`P19-1001`, `W04-1013`) ACL Anthology ids.
_ACL_ID = re.compile(r"^(?:\d{4}\.[a-z0-9]+-[a-z0-9]+\.\d+|[A-Z]\d{2}-\d{4})$")
_ACL_URL = re.compile(r"^https?://(?:www\.)?aclanthology\.org/(?P<id>[^/?#]+?)(?:\.pdf)?/?$")
_OPENREVIEW_URL = re.compile(r"^https?://(?:www\.)?openreview\.net/(?:forum|pdf)\?(?:.*&)?id=(?P<id>[\w-]+)")
_PMLR_URL = re.compile(
    r"^https?://proceedings\.mlr\.press/(?P<volume>v\d+)/(?P<key>[\w-]+?)(?:\.html|\.pdf)?/?$"
)
_PMLR_KEY = re.compile(r"^(?:pmlr-)?(?P<volume>v\d+)[-/](?P<key>[\w-]+)$")
_S2_URL = re.compile(
    r"^https?://(?:www\.|api\.)?semanticscholar\.org/(?:paper/(?:[^/]+/)?)?(?P<id>[0-9a-f]{40})"
)
_S2_ID = re.compile(r"^(?:[0-9a-f]{40}|\d{1,12})$")
_OPENALEX = re.compile(r"^(?:https?://openalex\.org/)?(?P<id>W\d+)$", re.IGNORECASE)
# A forum id as openreview.net writes it in `?id=` (letters, digits, `_`, `-`).
_OPENREVIEW_ID = re.compile(r"^[\w-]{6,}$")
# A dblp record key is `<type>/<stream>/<key>` (https://dblp.org/faq/17334559.html), bare or in
# its `dblp.org/rec/` URL; `homepages/` keys name people, not papers, so they are not paper ids.
_DBLP_KEY = re.compile(
    r"^(?:https?://dblp\.(?:org|uni-trier\.de)/rec/)?"
    r"(?P<key>(?:conf|journals|books|series|reference|phd|tr|ms)(?:/[\w.+'-]+?){2,})"
    r"(?:\.html|\.bib|\.xml)?$"
)


def _split(match: re.Match[str]) -> tuple[str, int | None]:
    version = match.group("version")
    return match.group("id"), int(version) if version else None


def parse_arxiv_id(raw: str) -> tuple[str, int | None] | None:
    """Split a raw arXiv id in any of its forms into (id without version, version or None).

    Returns None when `raw` is not an arXiv id, e.g. `parse_arxiv_id("2201.12288v2")` is
    `("2201.12288", 2)`, `parse_arxiv_id("http://arxiv.org/pdf/hep-th/9901001")` is
    `("hep-th/9901001", None)` and `parse_arxiv_id("10.48550/arXiv.2301.00006")` is
    `("2301.00006", None)`.
    """
    text = raw.strip()
    match = _VERSIONED.match(text) or _ARXIV_URL.match(text)
    if match is None:
        match = _ARXIV_DOI.match(_DOI_PREFIX.sub("", text).strip())
    if match is None:
        return None
    return _split(match)


def split_title_suffix(title: str) -> tuple[str, tuple[str, int | None] | None]:
    """Remove an arXiv RSS suffix from a title: (title without it, (id, version) or None).

    `"Fair O-RANs. (arXiv:2301.00597v3 [cs.NI] UPDATED)"` -> `("Fair O-RANs.", ("2301.00597", 3))`;
    a title without the suffix comes back unchanged.
    """
    match = _TITLE_SUFFIX.search(title)
    if match is None:
        return title, None
    return title[: match.start()], _split(match)


def normalize_doi(raw: str) -> str | None:
    """A DOI lower-cased without `doi:` or resolver prefix, or None when `raw` is not a DOI."""
    text = _DOI_PREFIX.sub("", raw.strip()).strip()
    return text.lower() if _DOI.match(text) else None


def acl_anthology_id(raw: str) -> str | None:
    """An ACL Anthology id (`2021.conll-1.5`, `P19-1001`) from the id or its aclanthology.org URL."""
    text = raw.strip()
    match = _ACL_URL.match(text)
    if match is not None:
        text = match.group("id")
    return text if _ACL_ID.match(text) else None


def openreview_id(raw: str) -> str | None:
    """The forum id of an openreview.net forum or pdf URL, or a bare forum id."""
    text = raw.strip()
    match = _OPENREVIEW_URL.match(text)
    if match is not None:
        return match.group("id")
    return text if _OPENREVIEW_ID.match(text) else None


def dblp_key(raw: str) -> str | None:
    """A dblp publication key (`conf/nips/VaswaniSPUJGKP17`), bare or from its dblp.org URL; a
    person's key or a list of them (venue lists' per-author `dblp` cells) is None."""
    match = _DBLP_KEY.match(raw.strip())
    return match.group("key") if match else None


def pmlr_id(raw: str) -> str | None:
    """`v77/pan17` from a proceedings.mlr.press URL or a `pmlr-v77-pan17` / `v77/pan17` key."""
    text = raw.strip()
    match = _PMLR_URL.match(text) or _PMLR_KEY.match(text)
    return f"{match.group('volume')}/{match.group('key')}" if match else None


def semantic_scholar_id(raw: str) -> str | None:
    """A Semantic Scholar paper id (40 hex digits) or corpus id, bare or from its URL."""
    text = raw.strip()
    match = _S2_URL.match(text)
    if match is not None:
        return match.group("id")
    return text if _S2_ID.match(text) else None


def openalex_id(raw: str) -> str | None:
    """`W2741809807` from an OpenAlex work id or its `https://openalex.org/` URL."""
    match = _OPENALEX.match(raw.strip())
    return match.group("id").upper() if match else None


def ids_in_url(url: str) -> dict[str, str]:
    """The ids a landing-page URL names, keyed like the `source_ids` struct (plus `arxiv`, `doi`)."""
    found: dict[str, str] = {}
    arxiv = _ARXIV_URL.match(url.strip())
    if arxiv is not None:
        arxiv_id, version = _split(arxiv)
        found["arxiv"] = arxiv_id if version is None else f"{arxiv_id}v{version}"
    if url.strip().lower().startswith(("https://doi.org/", "http://doi.org/", "https://dx.doi.org/")):
        doi = normalize_doi(url)
        if doi:
            found["doi"] = doi
    for kind, parse in (
        ("acl_anthology", acl_anthology_id),
        ("openreview", openreview_id),
        ("pmlr", pmlr_id),
        ("semantic_scholar", semantic_scholar_id),
        ("openalex", openalex_id),
    ):
        value = parse(url) if "://" in url else None
        if value:
            found[kind] = value
    return found
