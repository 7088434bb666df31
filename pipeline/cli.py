"""The `abstracts` command: one subcommand per pipeline stage, as called by `dvc.yaml`.

Paths come from the command line (declared once, in `dvc.yaml`); params come from
`params.yaml`. Stage modules are imported lazily so that `abstracts --help` and the light
stages never pay for heavy imports (Great Expectations, datasets).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.params import Params, load_params


def _ingest(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.ingest.core import run_ingest

    run_ingest(args.raw, args.out, args.rejects, args.report, params.ingest)


def _clean(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.clean.core import run_clean

    run_clean(args.input, args.out, args.report, params.clean)


def _dedup(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.dedup.core import run_dedup

    run_dedup(args.input, args.out, args.minhash, args.duplicates, args.report, params.dedup, args.releases)


def _split(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.split.core import run_split

    run_split(args.input, args.clean, args.out, args.report, params.split, params.dedup, args.releases)


def _validate(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.validate.core import run_validate

    run_validate(
        args.release_data,
        args.suites,
        args.report,
        params.validate,
        dedup=args.dedup,
        split_report=args.split_report,
        clean=args.clean,
        data_docs=args.data_docs,
    )


def _card(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.card.core import run_card

    run_card(args.release, args.card_dir, args.reports, params.card, params.publish.repo_id, args.releases)


def _release_diff(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.release_diff.core import run_release_diff

    report = run_release_diff(
        args.release_data, args.releases, args.out, params.release_diff, params.card, args.dedup
    )
    previous = report["previous"] or "no previous release"
    counts = ", ".join(f"{n} {kind}" for kind, n in report["counts"].items())
    print(f"release_diff: against {previous}: {counts}; proposed version {report['proposed_version']}")
    for note in report["notes"]:
        print(f"release_diff: note: {note}", file=sys.stderr)


def _publish(args: argparse.Namespace, params: Params) -> None:
    from pipeline.publish.core import PublishPaths, run_publish

    paths = PublishPaths(params=args.params)
    run_publish(paths, params, args.repo_id, args.version, args.private, args.dry_run)


def _review(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.review.core import render_markdown, run_review

    review = run_review(
        args.reports,
        args.clean,
        args.ingested,
        args.release_data,
        args.out,
        params.review,
        params.clean,
        args.previous_data,
        args.releases,
    )
    if args.markdown:
        print(render_markdown(review), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abstracts",
        description=(
            "Build the ML abstracts dataset: raw dumps -> ingest -> clean -> dedup -> split -> "
            "validate -> card -> release-diff -> review. `dvc repro` runs the stages in order; each can "
            "also be run alone; `publish` puts a release on the Hub."
        ),
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, handler: Callable[[argparse.Namespace, Params], None]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("ingest", "Parse every raw dump into records; reject stray lines with a reason.", _ingest)
    sub.add_argument("--raw", type=Path, required=True, help="directory of raw dumps")
    sub.add_argument("--out", type=Path, required=True, help="records parquet to write")
    sub.add_argument("--rejects", type=Path, required=True, help="rejects JSONL to write")
    sub.add_argument("--report", type=Path, required=True, help="ingest report JSON to write")

    sub = command("clean", "Repair scraping damage with named rules; flag what cannot be repaired.", _clean)
    sub.add_argument("--in", dest="input", type=Path, required=True, help="records parquet from ingest")
    sub.add_argument("--out", type=Path, required=True, help="cleaned parquet to write")
    sub.add_argument("--report", type=Path, required=True, help="clean report JSON to write")

    sub = command(
        "dedup", "Fold records of one paper (same arXiv id, same or near-duplicate text) into a row.", _dedup
    )
    sub.add_argument("--in", dest="input", type=Path, required=True, help="cleaned parquet")
    sub.add_argument("--out", type=Path, required=True, help="deduplicated parquet to write")
    sub.add_argument("--minhash", type=Path, required=True, help="LSH band keys parquet to write")
    sub.add_argument("--duplicates", type=Path, required=True, help="folded-records parquet to write")
    sub.add_argument("--report", type=Path, required=True, help="dedup report JSON to write")
    sub.add_argument(
        "--releases", type=Path, default=None, help="published release records (ids and splits kept)"
    )

    sub = command("split", "Assign rows to train/validation/test by id and write the release shards.", _split)
    sub.add_argument("--in", dest="input", type=Path, required=True, help="deduplicated parquet")
    sub.add_argument("--clean", type=Path, required=True, help="cleaned parquet (the kept rows' abstracts)")
    sub.add_argument("--out", type=Path, required=True, help="release data directory to write")
    sub.add_argument("--report", type=Path, required=True, help="split report JSON to write")
    sub.add_argument(
        "--releases", type=Path, default=None, help="published release records (splits kept, leaks checked)"
    )

    sub = command(
        "validate", "Run the Great Expectations suites; fail on any critical expectation.", _validate
    )
    sub.add_argument("--release-data", type=Path, required=True, help="release data directory")
    sub.add_argument("--suites", type=Path, required=True, help="directory of suite JSON files")
    sub.add_argument("--report", type=Path, required=True, help="validation report JSON to write")
    sub.add_argument("--dedup", type=Path, required=True, help="deduplicated parquet (text hashes, flags)")
    sub.add_argument("--split-report", type=Path, required=True, help="split report JSON (leaked_pairs)")
    sub.add_argument(
        "--clean", type=Path, required=True, help="cleaned records parquet (build/clean.parquet)"
    )
    sub.add_argument("--data-docs", type=Path, help="directory to write offline Data Docs HTML to (optional)")

    sub = command("card", "Generate the dataset card (release/README.md) from the data and reports.", _card)
    sub.add_argument("--release", type=Path, required=True, help="release directory (holds data/)")
    sub.add_argument("--card-dir", type=Path, required=True, help="card template and metadata directory")
    sub.add_argument("--reports", type=Path, required=True, help="directory of stage reports")
    sub.add_argument(
        "--releases", type=Path, default=None, help="published release records for the changelog (optional)"
    )

    sub = command(
        "release-diff",
        "Diff the release against the newest published version in releases/; propose the next version.",
        _release_diff,
    )
    sub.add_argument("--release-data", type=Path, required=True, help="release data directory")
    sub.add_argument("--releases", type=Path, required=True, help="published release records and row indexes")
    sub.add_argument("--out", type=Path, required=True, help="release diff JSON to write")
    sub.add_argument(
        "--dedup", type=Path, default=None, help="deduplicated parquet (the release rows' member keys)"
    )

    sub = command("review", "Render the release review page (one HTML file) from reports and data.", _review)
    sub.add_argument("--reports", type=Path, required=True, help="directory of stage reports")
    sub.add_argument(
        "--clean", type=Path, required=True, help="cleaned parquet (cleaned texts, rules, flags)"
    )
    sub.add_argument(
        "--ingested",
        type=Path,
        required=True,
        help="ingested parquet (the raw texts, row for row the cleaned)",
    )
    sub.add_argument("--release-data", type=Path, required=True, help="release data directory")
    sub.add_argument("--out", type=Path, required=True, help="review HTML page to write")
    sub.add_argument(
        "--releases",
        type=Path,
        help="published release records: lengths of the newest one are drawn beside this release's",
    )
    sub.add_argument(
        "--previous-data",
        type=Path,
        help="a previous release's data directory to compare lengths with (instead of --releases)",
    )
    sub.add_argument(
        "--markdown", action="store_true", help="also print a short Markdown summary for a PR comment"
    )

    sub = command(
        "publish",
        "Publish release/ to the Hugging Face Hub (HF_ENDPOINT) as one commit tagged vX.Y.Z. "
        "Not a dvc stage: refuses unless `dvc status` is clean and validation passed.",
        _publish,
    )
    sub.add_argument("--repo-id", help="Hub dataset repository ORG/NAME (default: publish.repo_id)")
    sub.add_argument(
        "--version", help="release version X.Y.Z; may only raise the proposed one (default: proposed)"
    )
    sub.add_argument("--private", action="store_true", help="create the repository private")
    sub.add_argument("--dry-run", action="store_true", help="print the plan; upload and write nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        params = load_params(args.params)
        args.handler(args, params)
    except PipelineError as exc:
        print(f"abstracts {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"abstracts {args.command}: interrupted; outputs were left as they were", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
