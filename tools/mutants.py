"""Mutation check of the modules whose constants make the release: does the suite notice?

Each mutant is one token changed in a copy of the repository: a number (n -> n + 1, or a
float nudged), a comparison (< <-> <=, > <-> >=, == <-> !=), an arithmetic or bit operator
(+ <-> -, * -> //, ^ -> |, >> <-> <<, & -> |) or a boolean constant. The module's tests (and
the golden values, `tests/test_golden.py`) run against it; a mutant that every test survives
is listed. Docstrings, type hints and error messages are not mutated.

Usage: `python tools/mutants.py [--per-module N] [--seed S] [--out PATH]` (`make mutants`).
Not part of `make test`: each mutant reruns a module's tests.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Module -> the tests that pin it.
TARGETS = {
    "pipeline/kernels/minhash.py": ["tests/test_golden.py", "tests/test_minhash.py"],
    "pipeline/kernels/fingerprint.py": ["tests/test_golden.py", "tests/test_fingerprint.py"],
    "pipeline/stages/split/core.py": ["tests/test_golden.py", "tests/test_split.py"],
    "pipeline/versions.py": ["tests/test_golden.py", "tests/test_versions.py"],
    "pipeline/releases.py": ["tests/test_release_diff.py", "tests/test_versions.py"],
    "pipeline/stages/release_diff/core.py": ["tests/test_release_diff.py"],
}
_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.BitXor: ast.BitOr, ast.RShift: ast.LShift,
    ast.LShift: ast.RShift, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    col: int
    before: str
    after: str


def _skipped(tree: ast.Module) -> set[int]:
    """ids of nodes not to mutate: docstrings, annotations, raise statements, f-strings."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        parts: list[ast.AST] = []
        if isinstance(node, ast.Raise | ast.JoinedStr | ast.Assert):
            parts = [node]
        elif isinstance(node, ast.AnnAssign):
            parts = [node.annotation]
        elif isinstance(node, ast.FunctionDef):
            parts = [a.annotation for a in (*node.args.args, *node.args.kwonlyargs) if a.annotation]
            parts += [node.returns] if node.returns else []
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("TypeAlias",):
            parts = [node]
        for part in parts:
            skip |= {id(n) for n in ast.walk(part)}
    return skip


def mutants_of(path: str) -> list[Mutant]:
    source = (ROOT / path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    skip = _skipped(tree)
    found: list[Mutant] = []
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno"):
            continue
        segment = ast.get_source_segment(source, node)
        if segment is None:
            continue
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            value = node.value
            if isinstance(value, bool):
                after = repr(not value)
            elif isinstance(value, int):
                after = repr(value + 1)
            elif isinstance(value, float):
                after = repr(value * 1.01 if value else 0.01)
            else:
                continue
            found.append(Mutant(path, node.lineno, node.col_offset, segment, after))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _SWAPS:
            new = ast.Compare(node.left, [_SWAPS[type(node.ops[0])]()], node.comparators)
            found.append(Mutant(path, node.lineno, node.col_offset, segment, ast.unparse(new)))
        elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _SWAPS:
            if isinstance(node, ast.BinOp):
                new_node: ast.AST = ast.BinOp(node.left, _SWAPS[type(node.op)](), node.right)
            else:
                new_node = ast.AugAssign(node.target, _SWAPS[type(node.op)](), node.value)
            # Only single-line expressions: the replacement is spliced into the line.
            if node.end_lineno == node.lineno:
                found.append(Mutant(path, node.lineno, node.col_offset, segment, ast.unparse(new_node)))
    return found


def apply(source: str, mutant: Mutant) -> str | None:
    lines = source.splitlines(keepends=True)
    line = lines[mutant.line - 1]
    if "\n" in mutant.before or not line[mutant.col :].startswith(mutant.before):
        return None
    lines[mutant.line - 1] = line[: mutant.col] + mutant.after + line[mutant.col + len(mutant.before) :]
    return "".join(lines)


def run_tests(copy: Path, tests: list[str]) -> bool:
    """True when the tests pass (the mutant survived)."""
    env = dict(os.environ, PYTHONPATH=str(copy), NUMBA_CACHE_DIR=str(copy / ".numba"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-module", type=int, default=25, help="mutants sampled per module (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "mutants.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = Path(tmp) / "repo"
        ignore = shutil.ignore_patterns(
            ".venv", ".git", "bench", "build", "__pycache__", ".*_cache", "release"
        )
        shutil.copytree(ROOT, copy, ignore=ignore, symlinks=True)
        for path, tests in TARGETS.items():
            tests = [t for t in tests if (ROOT / t).exists()]
            candidates = mutants_of(path)
            chosen = (
                candidates
                if not args.per_module
                else rng.sample(candidates, min(args.per_module, len(candidates)))
            )
            original = (copy / path).read_text(encoding="utf-8")
            survived: list[dict[str, object]] = []
            started = time.perf_counter()
            for number, mutant in enumerate(chosen, 1):
                mutated = apply(original, mutant)
                if mutated is None:
                    continue
                (copy / path).write_text(mutated, encoding="utf-8")
                try:
                    alive = run_tests(copy, tests)
                finally:
                    (copy / path).write_text(original, encoding="utf-8")
                print(
                    f"{path}: {number}/{len(chosen)} line {mutant.line}: "
                    f"{mutant.before!r} -> {mutant.after!r}: {'SURVIVED' if alive else 'killed'}",
                    flush=True,
                )
                if alive:
                    survived.append({"line": mutant.line, "before": mutant.before, "after": mutant.after})
            results[path] = {
                "candidates": len(candidates),
                "tried": len(chosen),
                "survived": survived,
                "seconds": round(time.perf_counter() - started, 1),
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    for path, result in results.items():
        print(f"{path}: {len(result['survived'])} of {result['tried']} mutants survived")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
