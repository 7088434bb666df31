from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT

from pipeline.errors import ConfigError
from pipeline.params import Params, load_params, parse_params


def test_repository_params_load() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.split.fractions == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert params.ingest.batch_rows == 50_000
    assert isinstance(params.dedup.format_priority, tuple)


def test_params_are_frozen() -> None:
    params = parse_params({})
    with pytest.raises(AttributeError):
        params.split.seed = 1  # type: ignore[misc]
    assert params == Params()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"clen": {}}, r"unknown section 'clen'"),
        ({"clean": {"worker": 2}}, r"clean.worker: unknown key"),
        ({"clean": {"workers": 0}}, r"clean.workers must be between 1 and 64, got 0"),
        ({"clean": {"workers": "two"}}, r"clean.workers must be an integer, got 'two'"),
        ({"clean": {"workers": True}}, r"clean.workers must be an integer, got True"),
        (
            {"split": {"fractions": {"train": 0.8, "validation": 0.1, "test": 0.05}}},
            r"must sum to 1, got 0.95",
        ),
        ({"split": {"fractions": {"train": 1.0}}}, r"exactly the keys train, validation, test"),
        # Formats and field mappings moved to sources.yaml: the old keys are unknown, not ignored.
        ({"ingest": {"formats": {"a.txt": "jsonl"}}}, r"ingest.formats: unknown key"),
        ({"ingest": {"batch_rows": 0}}, r"ingest.batch_rows must be between 1 and"),
        ({"publish": {"repo_id": "no-slash"}}, r"publish.repo_id must look like ORG/NAME"),
        ({"card": {"license": " "}}, r"card.license is required"),
        ({"validate": {"min_rows": 10, "max_rows": 5}}, r"validate.max_rows must be between 10 and"),
        ([1, 2], r"top level must be a mapping"),
    ],
)
def test_bad_params_name_the_key_and_value(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_params(data)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("clean:\n  workers: 2\n  min_chars: [1\n")
    with pytest.raises(ConfigError, match=r"params.yaml:\d+: .*fix the YAML syntax"):
        load_params(path)


def test_missing_params_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read params"):
        load_params(tmp_path / "nope.yaml")
