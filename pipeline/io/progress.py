"""Progress of the long stages: a tqdm bar on a terminal, quiet elsewhere.

A stage that can run longer than a couple of seconds (clean, filter and dedup's batch passes,
validate, card, review, dedup's global steps) reports its phases or rows here. On a terminal
(stderr is a TTY) the user sees a live bar; in a log (dvc in CI, a test's captured output)
nothing but the stage's own summary lines, plus one line per batch for the batch passes, so a
CI log shows the run moved without redrawing a bar into it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


def on_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def phases(label: str, total: int) -> Iterator[Callable[[str], None]]:
    """A bar over `total` named phases of a stage: call `step(name)` as each one starts."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="step", disable=not on_terminal(), leave=False, file=sys.stderr)
    started = False

    def step(name: str) -> None:
        nonlocal started
        if started:
            bar.update(1)
        started = True
        bar.set_postfix_str(name, refresh=True)

    try:
        yield step
        if started:
            bar.update(1)
    finally:
        bar.close()


@contextmanager
def rows(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """Rows done of `total`: a bar on a terminal, else one `label: done/total rows` line per call."""
    from tqdm import tqdm

    terminal = on_terminal()
    bar = tqdm(total=total, desc=label, unit="rows", unit_scale=True, disable=not terminal, file=sys.stderr)
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if terminal:
            bar.update(count)
        else:
            print(f"{label}: {done:,}/{total:,} rows", file=sys.stderr)

    try:
        yield advance
    finally:
        bar.close()
