"""pipeline.versions: the one parser of release versions and tags."""

from __future__ import annotations

import pytest

from pipeline.errors import BadInputError
from pipeline.versions import (
    format_version,
    is_release_tag,
    parse_version,
    release_version,
    sort_key,
    tag_name,
)


@pytest.mark.parametrize(
    ("text", "version"),
    [("1.2.3", (1, 2, 3)), ("v1.2.3", (1, 2, 3)), (" 10.0.7 ", (10, 0, 7)), ("0.0.0", (0, 0, 0))],
)
def test_release_versions_parse(text: str, version: tuple[int, int, int]) -> None:
    assert parse_version(text) == version
    assert release_version(text) == version


@pytest.mark.parametrize(
    "text", ["1.2", "1.2.3.4", "1.2.3-rc1", "1.2.3.post1", "1!1.2.3", "x.y.z", "", "1.2.3+local"]
)
def test_anything_else_is_refused_with_the_expected_form(text: str) -> None:
    assert release_version(text) is None
    with pytest.raises(BadInputError, match=r"MAJOR\.MINOR\.PATCH, e\.g\. 1\.2\.0"):
        parse_version(text)


def test_tags_and_formatting() -> None:
    assert tag_name((1, 2, 3)) == "v1.2.3" and format_version((1, 2, 3)) == "1.2.3"
    assert is_release_tag("v1.2.3")
    assert not is_release_tag("1.2.3") and not is_release_tag("v1.2") and not is_release_tag("v1.2.3-rc1")


def test_a_pre_release_sorts_before_its_release_and_numbers_sort_as_numbers() -> None:
    order = ["1.10.0", "1.2.0", "1.2.0-rc1", "2.0.0", "1.2.1"]
    assert sorted(order, key=sort_key) == ["1.2.0-rc1", "1.2.0", "1.2.1", "1.10.0", "2.0.0"]
    with pytest.raises(BadInputError, match="not a semantic version"):
        sort_key("one")


def test_a_release_record_counts_zero_changes_and_refuses_negative_ones() -> None:
    from pipeline.releases import parse_changelog_entry

    record = {"version": "1.1.0", "diff": {"added": 3, "removed": 0, "changed": 0, "moved": 0}}
    entry = parse_changelog_entry(record, "releases/1.1.0.json")
    assert (entry.version, entry.added, entry.removed, entry.changed, entry.moved) == ("1.1.0", 3, 0, 0, 0)
    with pytest.raises(
        BadInputError, match=r"releases/x\.json: diff\.removed must be a non-negative integer"
    ):
        parse_changelog_entry(
            {"version": "1.1.0", "diff": {**record["diff"], "removed": -1}}, "releases/x.json"
        )
