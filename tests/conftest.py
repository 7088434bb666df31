"""Shared fixtures. The HF clients are kept offline and away from the user's cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="ml-abstracts-hf-home-"))

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def ingest_data() -> Path:
    return DATA / "ingest"


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    """An empty raw/ directory; tests copy or write dumps into it."""
    directory = tmp_path / "raw"
    directory.mkdir()
    return directory


def copy_into(directory: Path, *files: Path) -> None:
    for file in files:
        shutil.copy(file, directory / file.name)
