"""The `abstracts publish` command (see HELP).

Arguments are paths (declared once, in `dvc.yaml`); the stage's code is imported only when the
command runs, so `abstracts --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.params import Params

HELP = (
    "Publish release/ to the Hugging Face Hub (HF_ENDPOINT) as one commit tagged vX.Y.Z. "
    "Not a dvc stage: refuses unless `dvc status` and the git tree are clean and validation passed; "
    "asks before uploading (--yes for CI)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo-id", help="Hub dataset repository ORG/NAME (default: publish.repo_id)")
    parser.add_argument(
        "--version", help="release version X.Y.Z; may only raise the proposed one (default: proposed)"
    )
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; upload and write nothing")
    parser.add_argument(
        "--yes", action="store_true", help="publish without asking (CI); on a terminal publish asks first"
    )
    parser.add_argument(
        "--create-pr",
        action="store_true",
        help="open a Hub pull request with the release instead of committing to main; after it is "
        "merged, run publish again to tag it and write releases/",
    )


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.publish.core import PublishPaths, bounded_client, run_publish

    bounded_client(params.publish.timeout_seconds)
    paths = PublishPaths(params=args.params)
    ask = input if sys.stdin.isatty() else None
    run_publish(
        paths,
        params,
        args.repo_id,
        args.version,
        args.private,
        args.dry_run,
        yes=args.yes,
        ask=ask,
        create_pr=args.create_pr,
    )
