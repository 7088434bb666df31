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


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.card.core import run_card

    run_card(args.release, args.card_dir, args.reports, params.card, params.publish.repo_id, args.releases)
