"""The `abstracts` command: one subcommand per pipeline stage, as called by `dvc.yaml`, and `publish`.

Each command lives beside its code (`pipeline/stages/<stage>/cli.py`, `pipeline/publish/cli.py`)
and is found here by name, so a stage's DVC dependencies are its own package, not every stage's.
Paths come from the command line (declared once, in `dvc.yaml`); params from `params.yaml`.
Stage code is imported only when its command runs, so `abstracts --help` pays for no heavy
import (Great Expectations, datasets, numba).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.params import load_params

# Command name -> module holding its `HELP`, `add_arguments` and `run`, in pipeline order.
COMMANDS = {
    "ingest": "pipeline.stages.ingest.cli",
    "clean": "pipeline.stages.clean.cli",
    "dedup": "pipeline.stages.dedup.cli",
    "split": "pipeline.stages.split.cli",
    "validate": "pipeline.stages.validate.cli",
    "card": "pipeline.stages.card.cli",
    "release-diff": "pipeline.stages.release_diff.cli",
    "review": "pipeline.stages.review.cli",
    "publish": "pipeline.publish.cli",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abstracts",
        description=(
            "Build the ML abstracts dataset: raw dumps -> "
            + " -> ".join(c for c in COMMANDS if c != "publish")
            + ". `dvc repro` runs the stages in order; each can also be run alone; `publish` puts a "
            "release on the Hub."
        ),
    )
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
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
