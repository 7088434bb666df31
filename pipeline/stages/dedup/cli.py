"""The `abstracts dedup` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Fold records of one paper (same arXiv id, same or near-duplicate text) into a row."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", type=Path, required=True, help="cleaned parquet")
    parser.add_argument("--out", type=Path, required=True, help="deduplicated parquet to write")
    parser.add_argument("--minhash", type=Path, required=True, help="LSH band keys parquet to write")
    parser.add_argument("--duplicates", type=Path, required=True, help="folded-records parquet to write")
    parser.add_argument("--report", type=Path, required=True, help="dedup report JSON to write")
    parser.add_argument(
        "--releases", type=Path, default=None, help="published release records (ids and splits kept)"
    )


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.dedup.core import run_dedup

    run_dedup(args.input, args.out, args.minhash, args.duplicates, args.report, params.dedup, args.releases)
