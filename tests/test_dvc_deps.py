"""dvc.yaml declares, for every stage, the code it runs: a missing code dep is a test failure.

A stage's code is its package under `pipeline/stages/<name>/` plus every project module those
modules import, followed transitively (found by reading the import statements, so a lazy import
inside a function counts too). Each must sit under one of the stage's `deps` paths, or a change
to it would leave a stale output that `dvc status` calls up to date.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _modules() -> dict[str, Path]:
    found = {}
    for path in (REPO_ROOT / "pipeline").rglob("*.py"):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    found = {name for name in names if name in MODULES}
    # Importing `a.b.c` runs the packages `a` and `a.b` first.
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES}
    return found


def _holds_code(path: Path) -> bool:
    """False for a package marker holding only its docstring."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return not all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def stage_code(stage: str) -> set[Path]:
    """Every project file the stage's package runs, transitively."""
    todo = [
        m for m in MODULES if m == f"pipeline.stages.{stage}" or m.startswith(f"pipeline.stages.{stage}.")
    ]
    todo.append("pipeline.cli")
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module) - seen)
    return {MODULES[m].relative_to(REPO_ROOT) for m in seen}


def _stage_of(command: str) -> str:
    return command.split()[1].replace("-", "_")


CODE_STAGES = sorted(name for name, stage in STAGES.items() if str(stage["cmd"]).startswith("abstracts "))


def test_every_stage_runs_a_stage_package() -> None:
    assert CODE_STAGES
    for name in CODE_STAGES:
        assert (REPO_ROOT / "pipeline" / "stages" / _stage_of(STAGES[name]["cmd"])).is_dir(), name


@pytest.mark.parametrize("name", CODE_STAGES)
def test_every_module_a_stage_runs_is_a_dependency(name: str) -> None:
    deps = [Path(str(d)) for d in STAGES[name]["deps"]]
    code = stage_code(_stage_of(STAGES[name]["cmd"]))
    missing = sorted(
        str(path)
        for path in code
        if _holds_code(REPO_ROOT / path) and not any(path == d or d in path.parents for d in deps)
    )
    assert not missing, f"stage {name!r} runs {missing} but dvc.yaml does not list them in its deps"


def test_stages_never_import_each_other() -> None:
    for module in MODULES:
        if not module.startswith("pipeline.stages."):
            continue
        own = module.split(".")[2]
        others = {
            m.split(".")[2]
            for m in _imports(module)
            if m.startswith("pipeline.stages.") and m.count(".") >= 2
        }
        assert others <= {own}, f"{module} imports stage(s) {sorted(others - {own})}"


def test_contracts_import_nothing_of_the_project() -> None:
    for module in ("pipeline.contracts", "pipeline.ids"):
        assert not {m for m in _imports(module) if m != "pipeline"}, module


def test_a_code_change_to_a_stage_module_makes_dvc_report_that_stage(
    built_seed_project: Path, tmp_path: Path
) -> None:
    """Change one module of every stage in a copy of a built checkout: `dvc status` names each
    stage with its own package as the changed dep (and a stage's dep on another stage's package
    would show here as a second changed dep)."""
    copy = tmp_path / "repo"
    shutil.copytree(built_seed_project, copy, symlinks=True)
    packages = {name: f"pipeline/stages/{_stage_of(STAGES[name]['cmd'])}" for name in CODE_STAGES}
    for package in set(packages.values()):
        core = copy / package / "core.py"
        core.write_text(core.read_text(encoding="utf-8") + "\n# a change\n", encoding="utf-8")
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    changed = {
        stage: {
            path for entry in entries if isinstance(entry, dict) for path in entry.get("changed deps", {})
        }
        for stage, entries in json.loads(status.stdout).items()
    }
    assert {name: changed.get(name) for name in CODE_STAGES} == {
        name: {packages[name]} for name in CODE_STAGES
    }
