"""The `abstracts release-diff` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Diff the release against the newest published version in releases/; propose the next version."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release-data", type=Path, required=True, help="release data directory")
    parser.add_argument(
        "--releases", type=Path, required=True, help="published release records and row indexes"
    )
    parser.add_argument("--out", type=Path, required=True, help="release diff JSON to write")
    parser.add_argument(
        "--dedup", type=Path, default=None, help="deduplicated parquet (the release rows' member keys)"
    )
    parser.add_argument(
        "--filtered", type=Path, default=None, help="filtered rows: why a removed published row was dropped"
    )


def run(args: argparse.Namespace, params: Params) -> None:
    import sys

    from pipeline.stages.release_diff.core import run_release_diff

    report = run_release_diff(
        args.release_data,
        args.releases,
        args.out,
        params.release_diff,
        args.dedup,
        args.filtered,
    )
    previous = report["previous"] or "no previous release"
    counts = ", ".join(f"{n} {kind}" for kind, n in report["counts"].items())
    print(f"release_diff: against {previous}: {counts}; proposed version {report['proposed_version']}")
    for note in report["notes"]:
        print(f"release_diff: note: {note}", file=sys.stderr)
