"""`abstracts validate`: the arguments and the thin wrapper around `core.run_validate`.

GX is imported only when the command runs (`core` imports it lazily).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = (
    "Stage the release tables and run the GX checkpoint (gx/checkpoints/release.json); write the "
    "results. Never fails on a failed expectation: the gate stage does."
)


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--release-data", type=Path, required=True, help="release data directory")
    sub.add_argument("--gx", type=Path, required=True, help="the GX project (file data context) directory")
    sub.add_argument("--report", type=Path, required=True, help="validation report JSON to write")
    sub.add_argument("--dedup", type=Path, required=True, help="deduplicated parquet (text hashes, flags)")
    sub.add_argument("--split-report", type=Path, required=True, help="split report JSON (leaked_pairs)")
    sub.add_argument(
        "--clean", type=Path, required=True, help="cleaned records parquet (build/clean.parquet)"
    )
    sub.add_argument(
        "--releases",
        type=Path,
        help="published releases (row indexes with memberships): new train rows are checked against them",
    )
    sub.add_argument("--text-lengths", type=Path, help="text-length-per-split plot CSV to write (optional)")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.validate.core import run_validate

    run_validate(
        args.release_data,
        args.gx,
        args.report,
        params.validate,
        params.split,
        dedup=args.dedup,
        split_report=args.split_report,
        clean=args.clean,
        text_lengths=args.text_lengths,
        policy=params.filter,
        dedup_params=params.dedup,
        releases=args.releases,
    )
