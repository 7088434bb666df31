"""`.github/workflows/data.yml`: the release cycle in CI, checked against GitHub's workflow
schema (check-jsonschema's vendored copy, as `make lint` runs it) and for what it must do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "data.yml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text(encoding="utf-8")))


def _steps(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("env", "")) for step in job["steps"])


def test_the_workflow_passes_the_github_workflow_schema(tmp_path: Path) -> None:
    check = [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    good = subprocess.run([*check, str(WORKFLOW)], capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    # The check can fail: a misspelt job key is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text(encoding="utf-8").replace("runs-on:", "runs_on:", 1))
    bad = subprocess.run([*check, str(broken)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "is not valid under any of the given schemas" in bad.stdout
    actionlint = shutil.which("actionlint")
    if actionlint is not None:
        lint = subprocess.run([actionlint, str(WORKFLOW)], capture_output=True, text=True, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_pull_requests_build_and_post_the_review_summary(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    triggers = workflow[True]
    assert set(triggers) == {"pull_request", "push", "workflow_dispatch"}
    review = workflow["jobs"]["review"]
    assert review["if"] == "github.event_name == 'pull_request'"
    assert review["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = _steps(review)
    assert "make data" in steps
    assert 'cat reports/review.md >> "$GITHUB_STEP_SUMMARY"' in steps
    assert "gh pr comment" in steps and "--body-file reports/review.md" in steps
    # The file posted is the one the review stage writes (dvc.yaml).
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    stage = dvc["stages"]["review"]
    assert "--summary reports/review.md" in stage["cmd"]
    assert {"reports/review.md": {"cache": False}} in stage["outs"]


def test_a_version_tag_or_a_manual_run_publishes_with_the_secret_token(workflow: dict[Any, Any]) -> None:
    triggers = workflow[True]
    assert triggers["push"] == {"tags": ["v[0-9]+.[0-9]+.[0-9]+"]}
    assert triggers["workflow_dispatch"]["inputs"]["create_pr"]["type"] == "boolean"
    publish = workflow["jobs"]["publish"]
    assert publish["if"] == "github.event_name == 'push' || github.event_name == 'workflow_dispatch'"
    step = next(s for s in publish["steps"] if "abstracts publish" in str(s.get("run")))
    assert step["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert "args=(--yes)" in step["run"] and "--create-pr" in step["run"]
    assert '--version "${TAG#v}"' in step["run"]
    # No secret is written into a command line.
    assert "secrets." not in "".join(str(s.get("run", "")) for s in publish["steps"])
    assert "releases CHANGELOG.md" in _steps(publish) and "gh pr create" in _steps(publish)
