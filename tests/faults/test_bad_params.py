"""Broken `params.yaml`, through the real stage command `dvc.yaml` runs (in a fresh child of the
fork server, forkserver.py, so no case pays the imports): one message naming the key (and its
line), what is wrong and what to do; exit 2 (a `ConfigError`), no traceback, and nothing
written, because the params are read before a stage touches a file. One case goes through `dvc
repro`, whose own check of the params it lists names the key too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, run_in
from forkserver import Result, StageServer

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = (REPO_ROOT / "params.yaml").read_text()


def edited(old: str, new: str) -> str:
    assert PARAMS.count(old) == 1, old
    return PARAMS.replace(old, new)


def line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def assert_one_config_error(result: Result, *needles: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


# (case id, stage run, params text, expected substrings; `{line}` is the line of the marker)
CASES = [
    (
        "missing_key",
        "dedup",
        edited("  near_threshold: 0.7\n", ""),
        (
            "params.yaml:{line}:",
            "dedup.near_threshold is missing",
            "add `near_threshold: 0.7` under `dedup:`",
        ),
        "dedup:",
    ),
    (
        "wrong_type",
        "clean",
        edited(
            "  min_chars: 200\n  max_chars: 5000\n  word_min_zipf",
            "  min_chars: two hundred\n  max_chars: 5000\n  word_min_zipf",
        ),
        ("params.yaml:{line}:", "clean.min_chars must be an integer, got 'two hundred'", "fix it in"),
        "min_chars: two hundred",
    ),
    (
        "list_expected",
        "filter",
        re.sub(r"  topics: \[.*\]\n", "  topics: cs.LG\n", PARAMS),
        ("params.yaml:{line}:", "filter.topics must be a list, got 'cs.LG'"),
        "topics: cs.LG",
    ),
    (
        "negative_threshold",
        "dedup",
        edited("near_threshold: 0.7", "near_threshold: -0.5"),
        ("params.yaml:{line}:", "dedup.near_threshold must be between 0.05 and 1, got -0.5"),
        "near_threshold: -0.5",
    ),
    (
        "negative_share",
        "filter",
        edited("max_non_text_share: 0.3", "max_non_text_share: -0.1"),
        ("params.yaml:{line}:", "filter.max_non_text_share must be between 0 and 1, got -0.1"),
        "max_non_text_share",
    ),
    (
        "unknown_key",
        "clean",
        edited("  term_min_repeats: 2\n", "  term_min_repeats: 2\n  min_char: 300\n"),
        ("params.yaml:{line}:", "clean.min_char: unknown key; known keys are", "min_chars"),
        "min_char: 300",
    ),
    (
        "unknown_section",
        "ingest",
        edited("release_diff:\n", "release_dif:\n"),
        ("params.yaml:{line}:", "unknown section 'release_dif'", "release_diff"),
        "release_dif:",
    ),
    (
        "duplicate_key",
        "dedup",
        edited("  seed: 42\n", "  seed: 42\n  seed: 7\n"),
        ("params.yaml:{line}:", "key 'seed' appears twice", "fix the YAML syntax"),
        "seed: 7",
    ),
    (
        "yaml_syntax_error",
        "split",
        edited("  rows_per_shard: 500000\n", "  rows_per_shard: [500000\n"),
        ("params.yaml:", "expected ',' or ']'", "on line {line}", "fix the YAML syntax"),
        "rows_per_shard: [500000",
    ),
    (
        "tab_indent",
        "gate",
        edited("  examples: 20\n", "\texamples: 20\n"),
        ("params.yaml:{line}:", "'\\t'", "fix the YAML syntax"),
        "\texamples: 20",
    ),
]


@pytest.mark.parametrize(
    ("stage", "text", "needles", "marker"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_params_are_one_message_naming_the_key(
    tmp_path: Path, stage_server: StageServer, stage: str, text: str, needles: tuple[str, ...], marker: str
) -> None:
    (tmp_path / "params.yaml").write_text(text)
    line = line_of(text, marker)
    result = stage_server.run(STAGES[stage]["cmd"], tmp_path)
    assert_one_config_error(result, *(n.format(line=line) for n in needles))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "the stage wrote something"


def test_dvc_repro_with_a_key_removed_names_it_and_leaves_the_build(
    built_seed_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "project"
    shutil.copytree(built_seed_project, root, symlinks=True)
    (root / "params.yaml").write_text(edited("  near_threshold: 0.7\n", ""))
    before = (root / "release" / "README.md").read_bytes()
    result = run_in(["dvc", "repro"], root)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "dedup.near_threshold" in output and "missing" in output, output[-2000:]
    assert (root / "release" / "README.md").read_bytes() == before
