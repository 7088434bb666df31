"""The `abstracts validate` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Run the Great Expectations suites; fail on any critical expectation."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release-data", type=Path, required=True, help="release data directory")
    parser.add_argument("--suites", type=Path, required=True, help="directory of suite JSON files")
    parser.add_argument("--report", type=Path, required=True, help="validation report JSON to write")
    parser.add_argument("--dedup", type=Path, required=True, help="deduplicated parquet (text hashes, flags)")
    parser.add_argument("--split-report", type=Path, required=True, help="split report JSON (leaked_pairs)")
    parser.add_argument(
        "--clean", type=Path, required=True, help="cleaned records parquet (build/clean.parquet)"
    )
    parser.add_argument(
        "--data-docs", type=Path, help="directory to write offline Data Docs HTML to (optional)"
    )


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.validate.core import run_validate

    run_validate(
        args.release_data,
        args.suites,
        args.report,
        params.validate,
        dedup=args.dedup,
        split_report=args.split_report,
        clean=args.clean,
        data_docs=args.data_docs,
    )
