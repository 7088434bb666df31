"""Bad raw input, each case alone in `raw/`, through the real stage command `dvc.yaml` runs
(`abstracts ingest ...`): one clear message naming the file (and line or record) and what to
do, a non-zero exit, no traceback and no output written; or, for input that is merely unusual
(a BOM, CRLF, odd file names), every record read. One `dvc repro` case shows the same through
DVC.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO_ROOT, copy_project, run_in

ABSTRACT = (
    "We study how a small change to the training objective of a language model changes what it "
    "learns from noisy labels, and show on three benchmarks that the change improves accuracy "
    "while costing nothing at inference time, which we explain with a simple model of the noise."
)
INGEST = shlex.split(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["ingest"]["cmd"])
OUTPUTS = ("build/ingested.parquet", "reports/rejects.jsonl", "reports/ingest.json")
# What to do, after the file and what is wrong: a message that only names the fault leaves the
# user guessing.
ADVICE = re.compile(r"; .*\b(?:remove|convert|re-[a-z]+|copy|declare|check|fix|add)\b")


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "raw").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / "sources.yaml").write_text("sources: []\n")
    return root


def ingest(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(INGEST, cwd=root, env=env, capture_output=True, text=True, check=False)


def assert_one_clear_error(result: subprocess.CompletedProcess[str], root: Path, *needles: str) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert ADVICE.search(errors[0]), f"the message says nothing to do: {errors[0]}"
    assert not [name for name in OUTPUTS if (root / name).exists()], "an output was written"
    return errors[0]


def records(root: Path) -> list[dict[str, object]]:
    return list(pq.read_table(root / "build" / "ingested.parquet").to_pylist())


def lines(count: int) -> str:
    return "".join(f"Abstract:{ABSTRACT} Variant {i}.\n" for i in range(count))


def test_invalid_utf8_mid_file_names_the_file_and_line(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "raw" / "dump.txt").write_bytes(
        lines(3).encode() + b"Abstract:caf\xe9 au lait\n" + lines(2).encode()
    )
    result = ingest(root)
    if result.returncode == 0:  # read as a reject of its own line, the rest kept
        rejects = [json.loads(line) for line in (root / "reports" / "rejects.jsonl").read_text().splitlines()]
        assert [(r["file"], r["line"]) for r in rejects] == [("dump.txt", 4)], rejects
        assert len(records(root)) == 5
    else:
        assert_one_clear_error(result, root, "dump.txt", "4")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bom.txt", b"\xef\xbb\xbf" + lines(3).encode()),
        ("crlf.txt", lines(3).replace("\n", "\r\n").encode()),
        ("with space.txt", lines(3).encode()),
        ("résumé ünïcode.txt", lines(3).encode()),
    ],
)
def test_unusual_but_valid_files_are_read_whole(tmp_path: Path, name: str, data: bytes) -> None:
    root = project(tmp_path)
    (root / "raw" / name).write_bytes(data)
    result = ingest(root)
    assert result.returncode == 0, result.stderr
    rows = records(root)
    assert len(rows) == 3
    assert all(str(row["raw_text"]).startswith("Abstract:We study") for row in rows)
    assert all("\r" not in str(row["raw_text"]) and "\ufeff" not in str(row["raw_text"]) for row in rows)


@pytest.mark.parametrize(
    ("name", "data", "needles"),
    [
        ("utf16.txt", lines(2).encode("utf-16"), ("utf16.txt", "UTF-8")),
        ("empty.txt", b"", ("empty.txt",)),
        ("blank.txt", b"  \n\t\n   \n", ("blank.txt",)),
        ("dump.xyz", b"\x00\x01\x02 not a format anyone knows \xff", ("dump.xyz",)),
        ("truncated.jsonl.gz", gzip.compress(lines(50).encode())[:-30], ("truncated.jsonl.gz",)),
        ("truncated.txt.bz2", bz2.compress(lines(50).encode())[:-30], ("truncated.txt.bz2",)),
    ],
)
def test_unreadable_files_are_one_error_naming_the_file(
    tmp_path: Path, name: str, data: bytes, needles: tuple[str, ...]
) -> None:
    root = project(tmp_path)
    (root / "raw" / name).write_bytes(data)
    assert_one_clear_error(ingest(root), root, *needles)


def test_a_json_syntax_error_names_its_line(tmp_path: Path) -> None:
    root = project(tmp_path)
    rows = [
        json.dumps({"id": f"2301.{i:05d}", "abstract": f"{ABSTRACT} Variant {i}."}) for i in range(1, 600)
    ]
    rows[499] = rows[499][:-5]  # line 500 cut short
    (root / "raw" / "papers.jsonl").write_text("\n".join(rows) + "\n")
    result = ingest(root)
    if result.returncode == 0:  # the broken record rejected with its line, the rest kept
        rejects = [json.loads(line) for line in (root / "reports" / "rejects.jsonl").read_text().splitlines()]
        assert [(r["file"], r["line"]) for r in rejects] == [("papers.jsonl", 500)], rejects
        assert len(records(root)) == 598
    else:
        assert_one_clear_error(result, root, "papers.jsonl", "500")


def test_a_binary_line_in_a_large_dump_is_rejected_alone(tmp_path: Path) -> None:
    root = project(tmp_path)
    body = lines(200_000).encode()
    cut = body.index(b"\n", len(body) // 2) + 1
    (root / "raw" / "big.txt").write_bytes(
        body[:cut] + b"Abstract:\x00\x01\x02\x03 binary \x00\n" + body[cut:]
    )
    result = ingest(root)
    assert result.returncode == 0, result.stderr
    rejects = [json.loads(line) for line in (root / "reports" / "rejects.jsonl").read_text().splitlines()]
    binary_line = body[:cut].count(b"\n") + 1
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [("big.txt", binary_line, "binary_line")]
    assert pq.ParquetFile(root / "build" / "ingested.parquet").metadata.num_rows == 200_000


def test_one_ten_megabyte_line_is_read_not_a_crash(tmp_path: Path) -> None:
    """Too long for an abstract: ingest keeps it as a record and the filter's `too_long` drops it
    with its length, so it is accounted for, never a crash or a silent loss."""
    root = project(tmp_path)
    huge = "Abstract:" + " ".join(["token"] * 1_750_000) + "\n"
    (root / "raw" / "huge.txt").write_text(lines(2) + huge + lines(1))
    result = ingest(root)
    assert result.returncode == 0, result.stderr
    assert sorted(len(str(r["raw_text"])) for r in records(root))[-1] > 10_000_000


def test_parquet_with_wrong_columns_and_truncated_parquet(tmp_path: Path) -> None:
    root = project(tmp_path)
    pq.write_table(pa.table({"identifier": ["a"], "body": [ABSTRACT]}), root / "raw" / "wrong.parquet")
    assert_one_clear_error(ingest(root), root, "wrong.parquet")
    (root / "raw" / "wrong.parquet").unlink()
    pq.write_table(pa.table({"id": ["2301.00001"], "abstract": [ABSTRACT]}), tmp_path / "good.parquet")
    data = (tmp_path / "good.parquet").read_bytes()
    (root / "raw" / "cut.parquet").write_bytes(data[: len(data) // 2])
    assert_one_clear_error(ingest(root), root, "cut.parquet")


def test_a_symlink_out_of_the_project_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text(lines(2))
    (root / "raw" / "linked.txt").symlink_to(outside)
    assert_one_clear_error(ingest(root), root, "linked.txt")


def test_dvc_repro_on_an_empty_dump_stops_at_ingest_with_its_message(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "repo", exclude=("raw/",))
    (root / "raw").mkdir(exist_ok=True)
    (root / "raw" / "empty.txt").write_text("")
    (root / "sources.yaml").write_text("sources: []\n")
    result = run_in(["dvc", "repro"], root)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "empty.txt" in result.stderr and "abstracts ingest: error:" in result.stderr, result.stderr
    assert "Running stage 'clean'" not in result.stdout
    assert not (root / "release" / "data").exists()
