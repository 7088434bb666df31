"""The `abstracts review` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Render the release review page (one HTML file) from reports and data."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reports", type=Path, required=True, help="directory of stage reports")
    parser.add_argument(
        "--clean", type=Path, required=True, help="cleaned parquet (cleaned texts, rules, flags)"
    )
    parser.add_argument(
        "--ingested",
        type=Path,
        required=True,
        help="ingested parquet (the raw texts, row for row the cleaned)",
    )
    parser.add_argument("--release-data", type=Path, required=True, help="release data directory")
    parser.add_argument("--out", type=Path, required=True, help="review HTML page to write")
    parser.add_argument(
        "--releases",
        type=Path,
        help="published release records: lengths of the newest one are drawn beside this release's",
    )
    parser.add_argument(
        "--previous-data",
        type=Path,
        help="a previous release's data directory to compare lengths with (instead of --releases)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="also print a short Markdown summary for a PR comment"
    )
    parser.add_argument(
        "--summary",
        type=Path,
        help="also write the Markdown summary (a CI job summary or PR comment) to this file",
    )


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.review.core import run_review
    from pipeline.stages.review.report import render_markdown

    review = run_review(
        args.reports,
        args.clean,
        args.ingested,
        args.release_data,
        args.out,
        params.review,
        args.previous_data,
        args.releases,
        params.publish,
    )
    summary = render_markdown(review)
    if args.summary is not None:
        from pipeline.io.writers import atomic_path

        with atomic_path(args.summary) as tmp:
            tmp.write_text(summary, encoding="utf-8")
    if args.markdown:
        print(summary, end="")
