"""Release versions: one parser (PEP 440 via `packaging.version`, restricted to MAJOR.MINOR.PATCH)
and the rule that picks the next version from a release diff.

Tags are `v` + the version (`v1.2.0`), as the Hub revisions and `releases/` records name them.
"""

from __future__ import annotations

from packaging.version import InvalidVersion
from packaging.version import Version as _Parsed

from pipeline.errors import BadInputError

Version = tuple[int, int, int]
FIRST_VERSION: Version = (1, 0, 0)


def _parse(text: str) -> _Parsed | None:
    stripped = text.strip()
    if stripped[:1] in ("v", "V"):
        stripped = stripped[1:]
    try:
        parsed = _Parsed(stripped)
    except InvalidVersion:
        return None
    # Exactly three release numbers, no epoch, post, dev or local part: `1.2` or `1.2.3.4` are
    # not release versions of this dataset, though PEP 440 accepts them.
    if len(parsed.release) != 3 or parsed.epoch or parsed.post is not None or parsed.dev is not None:
        return None
    if parsed.local is not None:
        return None
    return parsed


def release_version(text: str) -> Version | None:
    """`1.2.3` or `v1.2.3` as a tuple; None when `text` is not a release version."""
    parsed = _parse(text)
    if parsed is None or parsed.pre is not None:
        return None
    major, minor, patch = parsed.release
    return (major, minor, patch)


def parse_version(text: str) -> Version:
    """`1.2.3` or `v1.2.3` as a tuple.

    Raises:
        BadInputError: `text` is not MAJOR.MINOR.PATCH (a pre-release is not a release version).
    """
    version = release_version(text)
    if version is None:
        raise BadInputError(f"version {text!r} is not a semantic version; use MAJOR.MINOR.PATCH, e.g. 1.2.0")
    return version


def is_release_tag(text: str) -> bool:
    """Whether `text` is a release tag: `v` + MAJOR.MINOR.PATCH."""
    return text.startswith("v") and release_version(text) is not None


def sort_key(text: str) -> _Parsed:
    """Sort key for a version that may be a pre-release (`1.0.0-rc1` sorts before `1.0.0`).

    Raises:
        BadInputError: `text` is not a semantic version.
    """
    parsed = _parse(text)
    if parsed is None:
        raise BadInputError(f"release version {text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    return parsed


def format_version(version: Version) -> str:
    return ".".join(str(part) for part in version)


def tag_name(version: Version) -> str:
    return f"v{format_version(version)}"


def next_version(previous: Version | None, *, breaking: bool, additive: bool) -> Version:
    """The next version by the Croissant 1.1 rules.

    Major: a published record was removed, changed or moved to another split (`breaking`);
    minor: records were only added (`additive`); patch: the same records. The first is 1.0.0.
    """
    if previous is None:
        return FIRST_VERSION
    major, minor, patch = previous
    if breaking:
        return (major + 1, 0, 0)
    if additive:
        return (major, minor + 1, 0)
    return (major, minor, patch + 1)
