"""`abstracts plots-template`: write the offline HTML template `dvc plots show` uses."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Write the offline HTML template `dvc plots show` uses (.dvc/plots/offline.html)."


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--out", type=Path, required=True, help="template file to write")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.metrics.offline_plots import write_offline_template

    write_offline_template(args.out)
