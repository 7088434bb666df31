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


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed dumps run through every stage up to validation, in a temporary directory.

    Layout mirrors the repository: build/, reports/, release/data/.
    """
    from pipeline.clean import run_clean
    from pipeline.dedup import run_dedup
    from pipeline.ingest import run_ingest
    from pipeline.params import load_params
    from pipeline.split import run_split
    from pipeline.validate import run_validate

    root = tmp_path_factory.mktemp("seed_build")
    params = load_params(REPO_ROOT / "params.yaml")
    build, reports = root / "build", root / "reports"
    run_ingest(
        REPO_ROOT / "raw",
        build / "ingested.parquet",
        reports / "rejects.jsonl",
        reports / "ingest.json",
        params.ingest,
    )
    run_clean(build / "ingested.parquet", build / "clean.parquet", reports / "clean.json", params.clean)
    run_dedup(
        build / "clean.parquet",
        build / "dedup.parquet",
        build / "minhash.parquet",
        reports / "duplicates.parquet",
        reports / "dedup.json",
        params.dedup,
    )
    run_split(
        build / "dedup.parquet", root / "release" / "data", reports / "split.json", params.split, params.dedup
    )
    run_validate(
        root / "release" / "data",
        REPO_ROOT / "expectations",
        reports / "validation.json",
        params.validate,
        dedup=build / "dedup.parquet",
        split_report=reports / "split.json",
    )
    return root
