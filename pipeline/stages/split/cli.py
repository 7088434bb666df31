"""The `abstracts split` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Assign rows to train/validation/test by id and write the release shards."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", type=Path, required=True, help="deduplicated parquet")
    parser.add_argument(
        "--clean", type=Path, required=True, help="cleaned parquet (the kept rows' abstracts)"
    )
    parser.add_argument("--out", type=Path, required=True, help="release data directory to write")
    parser.add_argument("--report", type=Path, required=True, help="split report JSON to write")
    parser.add_argument(
        "--releases", type=Path, default=None, help="published release records (splits kept, leaks checked)"
    )


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.split.core import run_split

    run_split(args.input, args.clean, args.out, args.report, params.split, params.dedup, args.releases)
