"""`abstracts gate`: arguments and the thin wrapper around `core.run_gate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.params import Params

HELP = "Fail (exit 4) when a critical expectation failed; else write the gate verdict."


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--validation", type=Path, required=True, help="validation report JSON")
    sub.add_argument("--out", type=Path, required=True, help="gate verdict JSON to write on a pass")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.gate.core import run_gate

    run_gate(args.validation, args.out)
