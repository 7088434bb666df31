"""The `abstracts card` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Generate the dataset card (release/README.md) from the data and reports."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release", type=Path, required=True, help="release directory (holds data/)")
    parser.add_argument("--card-dir", type=Path, required=True, help="card template and metadata directory")
    parser.add_argument("--reports", type=Path, required=True, help="directory of stage reports")
    parser.add_argument(
        "--releases", type=Path, default=None, help="published release records for the changelog (optional)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="version report to write: the version described and whether it is already published",
    )


def run(args: argparse.Namespace, params: Params) -> None:
    import json

    from pipeline.stages.card.core import run_card

    run_card(
        args.release,
        args.card_dir,
        args.reports,
        params.card,
        params.publish.repo_id,
        args.releases,
        args.report,
    )
    if args.report is not None:
        report = json.loads(args.report.read_text(encoding="utf-8"))
        if report["status"] == "unchanged":
            print(f"card: this build is {report['tag']} as published; nothing to publish")
        else:
            against = report["previous"] or "no previous release"
            print(f"card: next version {report['tag']} (against {against})")
