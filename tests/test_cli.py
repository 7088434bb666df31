from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

from pipeline.cli import build_parser, main

STAGES = [
    "ingest",
    "clean",
    "filter",
    "dedup",
    "split",
    "validate",
    "card",
    "release-diff",
    "review",
    "metrics",
    "gate",
    "release",
    "plots-template",
    "publish",
]


def run_cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_help_lists_every_stage_without_importing_gx() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for stage in STAGES:
        assert stage in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pipeline.cli import build_parser; build_parser();"
            "print('great_expectations' in sys.modules, 'datasets' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    assert probe.stdout.strip() == "False False"


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert sorted(subparsers.choices) == sorted(STAGES)  # type: ignore[union-attr]
    for stage in STAGES:
        assert run_cli(stage, "--help").returncode == 0


def test_bad_params_print_one_message_and_no_traceback(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    params.write_text(text.replace("clean:\n  workers: 2\n", "clean:\n  workers: 0\n"))
    line = text.splitlines().index("clean:") + 2
    result = run_cli("--params", str(params), "clean", "--in", "x", "--out", "y", "--report", "z")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"abstracts clean: error: {params}:{line}: clean.workers must be between 1 and 64, got 0; "
        f"fix it in {params} (every key is documented in pipeline/params.py)"
    )


def test_bad_input_exit_code(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "empty.txt").write_text("")
    code = main(
        [
            "--params",
            str(REPO_ROOT / "params.yaml"),
            "ingest",
            "--raw",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "o.parquet"),
            "--rejects",
            str(tmp_path / "r.jsonl"),
            "--report",
            str(tmp_path / "i.json"),
        ]
    )
    assert code == 3
    assert not (tmp_path / "o.parquet").exists()
