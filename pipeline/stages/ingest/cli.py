"""The `abstracts ingest` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Parse every raw dump into records; reject stray lines with a reason."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", type=Path, required=True, help="directory of raw dumps")
    parser.add_argument("--out", type=Path, required=True, help="records parquet to write")
    parser.add_argument("--rejects", type=Path, required=True, help="rejects JSONL to write")
    parser.add_argument("--report", type=Path, required=True, help="ingest report JSON to write")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.ingest.core import run_ingest

    run_ingest(args.raw, args.out, args.rejects, args.report, params.ingest)
