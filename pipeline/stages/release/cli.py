"""`abstracts release`: arguments and the thin wrapper around `core.run_release`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.params import Params

HELP = "Swap the checked candidate (build/release) into release/ atomically, after the gate passed."


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--candidate", type=Path, required=True, help="candidate release (build/release)")
    sub.add_argument("--gate", type=Path, required=True, help="the gate's verdict JSON (reports/gate.json)")
    sub.add_argument("--out", type=Path, required=True, help="release directory to replace (release)")


def run(args: argparse.Namespace, params: Params) -> None:
    from pipeline.stages.release.core import run_release

    entries = run_release(args.candidate, args.gate, args.out)
    print(f"release: {args.out}/ now holds {', '.join(entries)} from {args.candidate}/", file=sys.stderr)
