"""The `abstracts filter` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Drop rows the dataset must not ship (placeholders, junk, off-topic, ...), each with a reason."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", type=Path, required=True, help="cleaned parquet")
    parser.add_argument("--out", type=Path, required=True, help="kept rows parquet to write (dedup's input)")
    parser.add_argument("--filtered", type=Path, required=True, help="dropped rows parquet, with reasons")
    parser.add_argument("--report", type=Path, required=True, help="filter report JSON to write")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.filter.run import run_filter

    run_filter(args.input, args.out, args.filtered, args.report, params.filter)
