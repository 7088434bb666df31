"""`abstracts metrics`: arguments and the thin wrapper around `core.run_metrics`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Write reports/metrics.json (headline numbers for `dvc metrics diff`) and the plot CSVs."


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--reports", type=Path, required=True, help="directory of stage reports")
    sub.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    sub.add_argument("--plots", type=Path, required=True, help="directory of plot CSVs to write")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.metrics.core import run_metrics

    run_metrics(args.reports, args.out, args.plots)
