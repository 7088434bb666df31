"""Shared fixtures. The HF clients are kept offline and away from the user's cache."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"
if "HF_HOME" not in os.environ:
    # A private HF cache for the test run, removed when the run ends.
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="ml-abstracts-hf-home-")
    atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)

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


def copy_project(target: Path, exclude: tuple[str, ...] = (), extra_raw: tuple[Path, ...] = ()) -> Path:
    """This working tree as a fresh git repository at `target`: the files git tracks or would
    track (so no outputs DVC ignores), minus paths starting with any of `exclude`, plus
    `extra_raw` dumps copied into raw/."""
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in names:
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(exclude):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for raw in extra_raw:
        shutil.copy(raw, target / "raw" / raw.name)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "copy"],
    ):
        subprocess.run(command, cwd=target, check=True, capture_output=True)
    return target


def run_in(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`cmd` in `cwd` with this interpreter's scripts (`abstracts`, `dvc`) first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def built_seed_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This working tree as a fresh git repository, built once with the real `dvc repro`.

    Built once per test run, not once per xdist worker: the first worker to ask builds it in
    the run's shared temporary directory under a file lock, the others wait and reuse it. Use it
    read-only (reading files is fine); a test that runs `dvc` in it or changes files copies it
    first (`shutil.copytree(..., symlinks=True)`), since two workers may read it at once.
    """
    from filelock import FileLock

    # Under xdist each worker's base temp is <run>/popen-gwN; their parent is the run's own.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    target = shared / "built_seed_project" / "ml-abstracts"
    done = shared / "built_seed_project" / "built.json"
    with FileLock(str(shared / "built_seed_project.lock")):
        if not done.exists():
            if target.exists():
                # A worker that failed part-way left this; build again from nothing.
                shutil.rmtree(target)
            target.mkdir(parents=True)
            copy_project(target)
            result = run_in(["dvc", "repro"], target)
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            done.write_text(json.dumps({"built_by": worker or "main"}))
    return target


@pytest.fixture(scope="session")
def stage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fork server for stage commands (tests/faults/forkserver.py), one per test process: the
    modules that run stage commands share the imports it pays once."""
    faults = str(Path(__file__).resolve().parent / "faults")
    if faults not in sys.path:
        sys.path.insert(0, faults)
    from forkserver import StageServer

    server = StageServer(tmp_path_factory.mktemp("stage-server"))
    try:
        yield server
    finally:
        server.close()


# The modules that take longest, first: xdist hands whole modules to the next idle worker in
# this order, so the long ones start early and the short ones fill in at the end.
LONGEST_MODULES = (
    "tests/test_publish.py",
    "tests/test_e2e.py",
    "tests/faults/test_publish_faults.py",
    "tests/test_real_samples.py",
    "tests/faults/test_concurrency.py",
    "tests/faults/test_interrupts.py",
    "tests/faults/test_bad_params.py",
    "tests/test_validate.py",
    "tests/faults/test_escaping.py",
    "tests/test_clean.py",
    "tests/test_engine_ray.py",
    "tests/faults/test_raw_inputs.py",
    "tests/test_clean_invariants.py",
    "tests/test_card.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first. `make test` runs `pytest-xdist --dist loadscope`, which keeps
    each module on one worker (its module fixtures are built once) and, with
    `--no-loadscope-reorder`, hands the modules out in this order."""

    def rank(item: pytest.Item) -> int:
        name = item.nodeid.split("::")[0]
        return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,900",
]


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver (Debian's packages, which `.ci/run` installs)."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver: "
            "run `apt-get install -y chromium chromium-driver` (as .ci/run does), then rerun"
        )
    return browser, driver


@pytest.fixture
def headless_browser(chromium: tuple[str, str], tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium (selenium) logging the console and every network request; quit after
    the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers online
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromium[1]))
    try:
        yield browser
    finally:
        browser.quit()


def requested_urls(browser: Any) -> list[str]:
    """Every URL the browser asked for since the last call (from its performance log)."""
    events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def copy_gx_project(root: Path) -> Path:
    """The repository's GX project (gx/, without its uncommitted results) copied into `root`."""
    shutil.copytree(REPO_ROOT / "gx", root / "gx", ignore=shutil.ignore_patterns("uncommitted"))
    return root / "gx"


def copy_into(directory: Path, *files: Path) -> None:
    for file in files:
        shutil.copy(file, directory / file.name)


@pytest.fixture(scope="session")
def seed_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed dumps run through every stage up to validation and the release diff (against
    no published release), in a temporary directory.

    Layout mirrors the repository: build/, reports/, release/data/.
    """
    from pipeline.params import load_params
    from pipeline.stages.clean.core import run_clean
    from pipeline.stages.dedup.core import run_dedup
    from pipeline.stages.filter.run import run_filter
    from pipeline.stages.ingest.core import run_ingest
    from pipeline.stages.release_diff.core import run_release_diff
    from pipeline.stages.split.core import run_split
    from pipeline.stages.validate.core import run_validate

    root = tmp_path_factory.mktemp("seed_build")
    params = load_params(REPO_ROOT / "params.yaml")
    build, reports = root / "build", root / "reports"
    run_ingest(
        REPO_ROOT / "raw",
        build / "ingested.parquet",
        reports / "rejects.jsonl",
        reports / "ingest.json",
        params.ingest,
        REPO_ROOT / "sources.yaml",
    )
    run_clean(build / "ingested.parquet", build / "clean.parquet", reports / "clean.json", params.clean)
    run_filter(
        build / "clean.parquet",
        build / "filter.parquet",
        reports / "filtered.parquet",
        reports / "filter.json",
        params.filter,
    )
    run_dedup(
        build / "filter.parquet",
        build / "dedup.parquet",
        build / "minhash.parquet",
        reports / "duplicates.parquet",
        reports / "dedup.json",
        params.dedup,
    )
    run_split(
        build / "dedup.parquet",
        build / "filter.parquet",
        root / "release" / "data",
        reports / "split.json",
        params.split,
        params.dedup,
    )
    # GX reads the staged tables relative to the working directory (gx/great_expectations.yml).
    copy_gx_project(root)
    with contextlib.chdir(root):
        run_validate(
            root / "release" / "data",
            root / "gx",
            reports / "validation.json",
            params.validate,
            params.split,
            dedup=build / "dedup.parquet",
            split_report=reports / "split.json",
            clean=build / "clean.parquet",
        )
    run_release_diff(
        root / "release" / "data",
        root / "releases",
        reports / "release_diff.json",
        params.release_diff,
        build / "dedup.parquet",
        reports / "filtered.parquet",
    )
    return root


def add_filtered_records(root: Path, records: list[tuple[str | None, str]]) -> None:
    """Append records the filter drops (arXiv id or None, text) to a copy of the seed build, as
    records of the seed file 000_*.txt (lines 1001, 1002, ...), and rerun the filter.

    The ingested and cleaned tables and ingest.json get the records; the filter's kept rows do
    not change, so dedup, split and the release stay valid for the new filter outputs.
    """
    import json

    import polars as pl

    from pipeline.params import load_params
    from pipeline.stages.filter.run import run_filter

    build, reports = root / "build", root / "reports"
    ingested = pl.read_parquet(build / "ingested.parquet")
    clean = pl.read_parquet(build / "clean.parquet")
    file = next(name for name in ingested["file"].unique().sort() if name.startswith("000_"))
    template_raw = ingested.filter(pl.col("file") == file).row(0, named=True)
    template_clean = clean.filter(pl.col("file") == file).row(0, named=True)
    raw_rows, clean_rows = [], []
    for number, (arxiv_id, text) in enumerate(records, 1001):
        own = {"source": f"{file}:{number}", "line": number, "arxiv_id": arxiv_id, "raw_id": arxiv_id}
        own |= {"arxiv_version": None, "locator": f"line {number}"}
        raw_rows.append(template_raw | own | {"raw_text": text})
        clean_rows.append(template_clean | own | {"abstract": text, "clean_rules": [], "flags": []})
    pl.concat([ingested, pl.DataFrame(raw_rows, schema=ingested.schema)]).write_parquet(
        build / "ingested.parquet"
    )
    pl.concat([clean, pl.DataFrame(clean_rows, schema=clean.schema)]).write_parquet(build / "clean.parquet")
    report = json.loads((reports / "ingest.json").read_text(encoding="utf-8"))
    source = report["files"][file]["source"]
    for entry in (report["files"][file], report["totals"]):
        entry["lines"] += len(records)
    for entry in (report["files"][file], report["sources"][source], report["totals"]):
        entry["records"] += len(records)
    for entry in (report["sources"][source], report["totals"]):
        entry["records_read"] += len(records)
    (reports / "ingest.json").write_text(json.dumps(report), encoding="utf-8")
    clean_report = json.loads((reports / "clean.json").read_text(encoding="utf-8"))
    clean_report["rows"] += len(records)
    (reports / "clean.json").write_text(json.dumps(clean_report), encoding="utf-8")
    params = load_params(REPO_ROOT / "params.yaml")
    run_filter(
        build / "clean.parquet",
        build / "filter.parquet",
        reports / "filtered.parquet",
        reports / "filter.json",
        params.filter,
    )
