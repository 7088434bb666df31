"""The `abstracts clean` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Repair scraping damage with named rules; flag what cannot be repaired."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", type=Path, required=True, help="records parquet from ingest")
    parser.add_argument("--out", type=Path, required=True, help="cleaned parquet to write")
    parser.add_argument("--report", type=Path, required=True, help="clean report JSON to write")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.clean.core import run_clean

    run_clean(args.input, args.out, args.report, params.clean)
