"""`abstracts publish` against a Hub-compatible server, with the real clients and the real CLI.

`tests/hub_server.py` runs on 127.0.0.1; `abstracts publish` and `load_dataset` run in
subprocesses with `HF_ENDPOINT` pointing at it (the HF libraries read their endpoint and offline
flags at import, and conftest sets them offline for every other test). The project is a copy of
this working tree built with the real `dvc repro`, as in test_e2e.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from hub_server import HubServer

from pipeline.releases import ReleaseDiff, diff_releases, propose_version, strip_changelog

TOKEN = "hf_publish_test_token_5f0c1d2e3a"
REPO = "test-org/ml-abstracts"
NEW_DUMP = Path(__file__).parent / "data" / "publish" / "004_new_papers.txt"
NEW_IDS = ["2511.00101", "2511.00102", "2511.00103", "2511.00104"]
BIN = Path(sys.executable).parent
TAG_ROUTE = "/api/{type}s/{repo}/tag/{rev}"


# -- pure core ----------------------------------------------------------------------------------


def _rows(*rows: tuple[str, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"id": [r[0] for r in rows], "abstract": [r[1] for r in rows], "split": [r[2] for r in rows]}
    )


def test_diff_classifies_rows_and_proposes_the_croissant_bump() -> None:
    old = _rows(("a", "x", "train"), ("b", "y", "train"), ("c", "z", "test"), ("d", "w", "test"))
    new = _rows(("a", "x", "train"), ("b", "y2", "train"), ("c", "z", "validation"), ("e", "v", "test"))
    diff = diff_releases(old, new, "v1.2.3")
    assert (diff.added, diff.removed, diff.changed, diff.moved) == (["e"], ["d"], ["b"], ["c"])
    assert propose_version((1, 2, 3), diff) == (2, 0, 0)
    assert propose_version((1, 2, 3), diff_releases(old, old)) == (1, 2, 4)
    grown = diff_releases(old, pl.concat([old, _rows(("f", "u", "train"))]))
    assert grown.counts() == {"added": 1, "removed": 0, "merged": 0, "changed": 0, "moved": 0}
    assert propose_version((1, 2, 3), grown) == (1, 3, 0)
    assert propose_version(None, ReleaseDiff(previous=None, added=["a"])) == (1, 0, 0)
    # A new column changes every shared record: a major release.
    widened = diff_releases(old, old.with_columns(pl.lit(1).alias("duplicate_count")))
    assert widened.changed == ["a", "b", "c", "d"]


def test_strip_changelog_drops_only_the_changelog_section() -> None:
    card = "# T\n\n## Changelog\n\n| v | added |\n| 1.0.0 | 3 |\n\n## Citation\n\nx\n"
    assert strip_changelog(card) == "# T\n\n## Changelog\n## Citation\n\nx\n"
    assert strip_changelog(card.replace("| 1.0.0 | 3 |", "| 1.1.0 | 4 |")) == strip_changelog(card)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """The server, and this process's environment pointed at it (inherited by subprocesses)."""
    server = HubServer(TOKEN).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", server.url)
        patch.setenv("HF_HUB_DISABLE_XET", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        patch.setenv("HF_HUB_OFFLINE", "0")
        patch.setenv("HF_DATASETS_OFFLINE", "0")
        patch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        patch.setenv("HF_TOKEN", TOKEN)
        patch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        yield server
    server.stop()


def run(cmd: list[str], cwd: Path, **env: str | None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    for name, value in env.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, check=False)


def publish(project: Path, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """`abstracts publish --yes` (the tests' stdin is no terminal: without --yes it refuses)."""
    return run(["abstracts", "publish", "--repo-id", REPO, "--yes", *args], project, **env)


def commit_all(project: Path, message: str) -> None:
    for command in (
        ["git", "add", "-A"],
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "--allow-empty",
            "-qm",
            message,
        ],
    ):
        result = run(command, project)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def projects(
    hub: HubServer, built_seed_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Two projects built with the real `dvc repro`, both copies of conftest's
    `built_seed_project` (no release published yet): `seed` (the seed dumps) and `grown` (the
    seed dumps plus one dump of four new papers, committed, then rebuilt)."""
    roots = {name: tmp_path_factory.mktemp(name) / "ml-abstracts" for name in ("seed", "grown")}
    for root in roots.values():
        shutil.copytree(built_seed_project, root, symlinks=True)
    grown = roots["grown"]
    shutil.copy(NEW_DUMP, grown / "raw" / NEW_DUMP.name)
    build = run(["dvc", "repro"], grown)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    # As a maintainer does before publishing: the build (dvc.lock, release/'s card) committed.
    for root in roots.values():
        commit_all(root, "build")
    return roots


@pytest.fixture(scope="module")
def seed_project(projects: dict[str, Path]) -> Path:
    return projects["seed"]


@pytest.fixture(scope="module")
def grown_project(projects: dict[str, Path]) -> Path:
    return projects["grown"]


@pytest.fixture(scope="module")
def published_v1(seed_project: Path) -> subprocess.CompletedProcess[str]:
    result = publish(seed_project)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def published_v2(published_v1: Any, grown_project: Path) -> subprocess.CompletedProcess[str]:
    result = publish(grown_project)
    assert result.returncode == 0, result.stderr
    return result


def load_remote(revisions: tuple[str, ...], cwd: Path) -> dict[str, dict[str, Any]]:
    """`load_dataset(REPO, revision=...)` for each revision, in one fresh interpreter (not this
    one, whose `datasets` may have cached a revision): revision -> split -> features and rows."""
    code = (
        "import json, sys\n"
        "from datasets import load_dataset\n"
        "def kind(f):\n"
        "    return getattr(f, 'dtype', None) or type(f).__name__\n"
        "out = {}\n"
        "for revision in sys.argv[2:]:\n"
        "    d = load_dataset(sys.argv[1], revision=revision)\n"
        "    out[revision] = {n: {'features': {k: kind(f) for k, f in s.features.items()},"
        " 'rows': s.to_list()} for n, s in d.items()}\n"
        "print(json.dumps(out, default=str))\n"
    )
    result = run([sys.executable, "-c", code, REPO, *revisions], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.splitlines()[-1]))


def local_rows(project: Path) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((project / "release" / "data").glob("*.parquet")):
        rows.setdefault(path.name.split("-")[0], []).extend(pq.read_table(path).to_pylist())
    return rows


@pytest.fixture(scope="module")
def loaded(published_v2: Any, grown_project: Path) -> dict[str, dict[str, Any]]:
    return load_remote(("v1.0.0", "v1.1.0"), grown_project)


# -- end to end ---------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_touches_nothing(
    hub: HubServer, grown_project: Path, published_v1: Any
) -> None:
    if (grown_project / "releases" / "1.1.0.json").exists():
        pytest.skip("the grown release was published before this test ran")
    commits = hub.state.commit_count("datasets", REPO)
    result = publish(grown_project, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "version:  v1.1.0" in result.stdout
    assert "4 added, 0 removed, 0 merged, 0 changed, 0 moved split (against v1.0.0)" in result.stdout
    assert "data/train-00000-of-00001.parquet" in result.stdout and "sha256:" in result.stdout
    assert hub.state.commit_count("datasets", REPO) == commits
    assert "v1.1.0" not in hub.state.repos[f"datasets/{REPO}"].tags
    assert not list((grown_project / "releases").glob("1.*"))


def test_publishing_the_same_release_twice_is_a_no_op(
    hub: HubServer, seed_project: Path, published_v1: Any
) -> None:
    commits = hub.state.commit_count("datasets", REPO)
    again = publish(seed_project)
    assert again.returncode == 0, again.stderr
    assert "already published as v1.0.0" in again.stdout
    assert hub.state.commit_count("datasets", REPO) == commits


def test_first_release_is_v1_and_loads_the_same_rows(
    hub: HubServer, seed_project: Path, published_v1: subprocess.CompletedProcess[str], loaded: Any
) -> None:
    assert "v1.0.0" in published_v1.stdout
    assert TOKEN not in published_v1.stdout + published_v1.stderr
    # Loaded by its tag after v1.1.0 was published on top of it.
    remote = loaded["v1.0.0"]
    expected = local_rows(seed_project)
    assert sorted(remote) == sorted(expected)
    for split, rows in expected.items():
        assert remote[split]["rows"] == rows
        assert remote[split]["features"] == {
            "id": "string",
            "arxiv_id": "string",
            "arxiv_version": "int64",
            "abstract": "string",
            "source": "string",
            "duplicate_count": "int64",
            "title": "string",
            "authors": "List",
            "year": "int64",
            "published": "date32",
            "venue": "string",
            "categories": "List",
            "doi": "string",
            "url": "string",
            "license": "string",
            "source_ids": "dict",
            "sources": "List",
        }
    record = json.loads((seed_project / "releases" / "1.0.0.json").read_text())
    repo = hub.state.repos[f"datasets/{REPO}"]
    assert record["tag"] == "v1.0.0" and repo.tags["v1.0.0"] == record["commit"]
    assert record["diff"] == {
        "added": sum(map(len, expected.values())),
        "removed": 0,
        "merged": 0,
        "changed": 0,
        "moved": 0,
    }
    published = repo.commits[record["commit"]].files
    assert set(record["files"]) == set(published) - {".gitattributes"}
    assert (
        published["data/train-00000-of-00001.parquet"].lfs_oid
        == record["files"]["data/train-00000-of-00001.parquet"]
    )
    # The published card pins this version and lists it in its changelog.
    card = published["README.md"].data.decode()
    assert 'revision="v1.0.0"' in card
    assert "| 1.0.0 |" in card
    assert "**v1.0.0**" in (seed_project / "CHANGELOG.md").read_text()


def test_added_dump_is_a_minor_release_and_old_tags_keep_their_rows(
    hub: HubServer, grown_project: Path, published_v2: subprocess.CompletedProcess[str], loaded: Any
) -> None:
    assert "version:  v1.1.0" in published_v2.stdout
    record = json.loads((grown_project / "releases" / "1.1.0.json").read_text())
    assert record["diff_examples"]["added"] == NEW_IDS
    assert record["diff"] == {"added": 4, "removed": 0, "merged": 0, "changed": 0, "moved": 0}
    assert record["previous"]["tag"] == "v1.0.0"
    old_ids = {row["id"] for split in loaded["v1.0.0"].values() for row in split["rows"]}
    new_ids = {row["id"] for split in loaded["v1.1.0"].values() for row in split["rows"]}
    assert new_ids - old_ids == set(NEW_IDS)
    assert old_ids <= new_ids
    expected = local_rows(grown_project)
    assert {s: v["rows"] for s, v in loaded["v1.1.0"].items()} == expected
    repo = hub.state.repos[f"datasets/{REPO}"]
    assert repo.tags["v1.1.0"] == repo.branches["main"] != repo.tags["v1.0.0"]


def test_the_next_build_diffs_against_the_published_row_index(grown_project: Path, published_v2: Any) -> None:
    record = json.loads((grown_project / "releases" / "1.1.0.json").read_text())
    index = pl.read_parquet(grown_project / "releases" / record["row_index"])
    assert index.height == sum(map(len, local_rows(grown_project).values()))
    assert set(NEW_IDS) <= set(index["id"].to_list())
    # Publishing wrote releases/: the stages that read it (the published memberships, the card's
    # changelog, the diff, the review page) are stale now, and only by releases/.
    status = json.loads(run(["dvc", "status", "--json"], grown_project).stdout)
    assert sorted(status) == ["card", "dedup", "release_diff", "review", "split", "validate"], status
    assert all(changes == [{"changed deps": {"releases": "modified"}}] for changes in status.values())
    repro = run(["dvc", "repro"], grown_project)
    assert repro.returncode == 0, repro.stdout[-3000:]
    diff = json.loads((grown_project / "reports" / "release_diff.json").read_text())
    assert diff["previous"] == "v1.1.0"
    assert diff["counts"] == {"added": 0, "removed": 0, "merged": 0, "changed": 0, "moved": 0}
    page = (grown_project / "reports" / "review.html").read_text(encoding="utf-8")
    assert "Diff against v1.1.0" in page
    assert f"is the previous release ({index.height:,} rows)" in page


def test_after_a_publish_and_a_rebuild_review_and_publish_both_say_nothing_to_publish(
    hub: HubServer, grown_project: Path, published_v2: Any, loaded: Any
) -> None:
    """The release cycle end to end: publish --yes (published_v2), load_dataset(revision=tag)
    (loaded), rebuild; the card stage, the review page, its Markdown summary and publish agree."""
    if json.loads(run(["dvc", "status", "--json"], grown_project).stdout or "{}"):
        repro = run(["dvc", "repro"], grown_project)
        assert repro.returncode == 0, repro.stdout[-3000:]
    card = json.loads((grown_project / "reports" / "card.json").read_text())
    assert card == {
        "status": "unchanged",
        "version": "1.1.0",
        "tag": "v1.1.0",
        "previous": "v1.1.0",
        "date_published": card["date_published"],
    }
    record = json.loads((grown_project / "releases" / "1.1.0.json").read_text())
    assert card["date_published"] == record["date"]
    page = (grown_project / "reports" / "review.html").read_text(encoding="utf-8")
    assert 'Nothing to publish: this build is <strong id="version">1.1.0</strong> as published.' in page
    assert 'already published as <code id="publish-tag">v1.1.0</code>' in page
    # The summary command (the CI job summary and PR comment) says the same.
    summary = grown_project / "summary.md"
    review = run(
        [
            "abstracts",
            "review",
            "--reports",
            "reports",
            "--clean",
            "build/clean.parquet",
            "--ingested",
            "build/ingested.parquet",
            "--release-data",
            "build/release/data",
            "--releases",
            "releases",
            "--out",
            str(grown_project / "page.html"),
            "--summary",
            str(summary),
        ],
        grown_project,
    )
    assert review.returncode == 0, review.stderr[-2000:]
    text = summary.read_text(encoding="utf-8")
    assert text == (grown_project / "reports" / "review.md").read_text(encoding="utf-8")
    assert "Nothing to publish: this build is **v1.1.0** as published." in text
    assert "| raw records | " in text and "| released | " in text
    assert "Diff against v1.1.0: 0 added, 0 removed, 0 merged, 0 changed, 0 moved." in text
    assert re.search(r"Checks: \d+ of \d+ expectations passed \(0 critical", text)
    summary.unlink()
    (grown_project / "page.html").unlink()
    commits = hub.state.commit_count("datasets", REPO)
    again = publish(grown_project)
    assert again.returncode == 0, again.stderr
    assert "release already published as v1.1.0" in again.stdout and "nothing to do" in again.stdout
    assert "not in step" not in again.stdout
    assert hub.state.commit_count("datasets", REPO) == commits


def test_the_server_saw_every_route_the_clients_need(hub: HubServer, loaded: Any) -> None:
    """Fails loudly when a client upgrade calls a route the test server does not implement."""
    seen = set(hub.state.routes)
    assert not [r for r in seen if "UNKNOWN" in r], sorted(seen)
    assert {
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        "POST /api/{type}s/{repo}/preupload/{rev}",
        "POST /{type}s/{repo}.git/info/lfs/objects/batch",
        "PUT /lfs-upload/{oid}",
        "POST /api/{type}s/{repo}/commit/{rev}",
        f"POST {TAG_ROUTE}",
        "GET /api/{type}s/{repo}/refs",
        "GET /api/{type}s/{repo}/revision/{rev}",
        "GET /api/{type}s/{repo}/tree/{rev}/{path}",
        "HEAD /{type}s/{repo}/resolve/{rev}/{path}",
        "GET /{type}s/{repo}/resolve/{rev}/{path}",
    } <= seen


# -- refusals -----------------------------------------------------------------------------------


def drop_publish_records(project: Path) -> None:
    """Back to the committed tree: without the records a publish of the seed project wrote."""
    for command in (
        ["git", "checkout", "--", "."],
        ["git", "clean", "-fdq", "--", "releases", "CHANGELOG.md"],
    ):
        assert run(command, project).returncode == 0


def _copy(project: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(project, target, symlinks=True)
    return target


def test_refuses_a_failed_validation(hub: HubServer, seed_project: Path, tmp_path: Path) -> None:
    project = _copy(seed_project, tmp_path)
    report = project / "reports" / "validation.json"
    validation = json.loads(report.read_text())
    validation.update(critical_failures=1, success=False)
    report.write_text(json.dumps(validation))
    result = publish(project)
    assert result.returncode == 5
    assert "validation failed (1 critical failure(s))" in result.stderr
    assert "Traceback" not in result.stderr


def test_refuses_a_stale_pipeline(hub: HubServer, seed_project: Path, tmp_path: Path) -> None:
    project = _copy(seed_project, tmp_path)
    params = project / "params.yaml"
    text = params.read_text()
    assert "min_chars: 200" in text
    params.write_text(text.replace("min_chars: 200", "min_chars: 201"))
    result = publish(project)
    assert result.returncode == 5
    assert "not up to date" in result.stderr and "clean" in result.stderr and "dvc repro" in result.stderr


def test_refuses_without_a_token(hub: HubServer, seed_project: Path, tmp_path: Path) -> None:
    result = publish(seed_project, HF_TOKEN=None, HF_HOME=str(tmp_path / "empty-home"))
    assert result.returncode == 5
    assert "no Hugging Face token" in result.stderr


def test_a_wrong_token_surfaces_the_servers_401(hub: HubServer, seed_project: Path) -> None:
    wrong = "hf_wrong_token_do_not_print_me"
    result = publish(seed_project, HF_TOKEN=wrong)
    assert result.returncode == 5
    assert "rejected the token (401 Unauthorized)" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_refuses_an_existing_tag_and_a_lower_version(
    hub: HubServer, grown_project: Path, published_v1: Any
) -> None:
    existing = publish(grown_project, "--version", "1.0.0")
    assert existing.returncode == 5
    assert "tag v1.0.0 already exists" in existing.stderr
    lower = publish(grown_project, "--version", "1.0.5")
    assert lower.returncode == 5
    assert "--version 1.0.5 is lower than the proposed 1.1." in lower.stderr


def test_refuses_a_dirty_tree_and_says_to_commit(hub: HubServer, seed_project: Path, tmp_path: Path) -> None:
    project = _copy(seed_project, tmp_path)
    drop_publish_records(project)
    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write("\nAn edit not committed.\n")
    (project / "notes.txt").write_text("untracked")
    repo_id = "test-org/dirty"
    plan = run(["abstracts", "publish", "--repo-id", repo_id, "--dry-run"], project)
    assert plan.returncode == 0, plan.stderr
    assert "publish will refuse until they are committed" in plan.stdout
    result = run(["abstracts", "publish", "--repo-id", repo_id, "--yes"], project)
    assert result.returncode == 5
    assert "2 uncommitted change(s) (README.md, notes.txt)" in result.stderr
    assert "git add -A && git commit" in result.stderr and "Traceback" not in result.stderr
    assert f"datasets/{repo_id}" not in hub.state.repos
    assert not (project / "releases" / "1.0.0.json").exists()


def test_asks_on_a_terminal_and_refuses_without_yes_elsewhere(
    hub: HubServer, seed_project: Path, tmp_path: Path
) -> None:
    project = _copy(seed_project, tmp_path)
    drop_publish_records(project)
    repo_id = "test-org/asked"
    unattended = run(["abstracts", "publish", "--repo-id", repo_id], project)
    assert unattended.returncode == 5
    assert "pass --yes" in unattended.stderr
    # On a terminal it shows the plan, asks, and a "n" publishes nothing.
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            ["abstracts", "publish", "--repo-id", repo_id],
            cwd=project,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(leader, b"n\n")
        stdout, stderr = process.communicate(timeout=300)
    finally:
        os.close(follower)
        os.close(leader)
    assert process.returncode == 5, stderr
    assert f"Publish v1.0.0 to {repo_id} on {hub.url}? [y/N]" in stdout and "files:" in stdout
    assert "not confirmed: nothing was uploaded or written" in stderr
    assert f"datasets/{repo_id}" not in hub.state.repos


def test_create_pr_opens_a_hub_pull_request_and_a_rerun_after_the_merge_tags_it(
    hub: HubServer, seed_project: Path, tmp_path: Path
) -> None:
    """--create-pr: one commit on refs/pr/N, main, tags and releases/ untouched; the same PR is
    not opened twice; once merged, publish --yes tags the merge commit and writes the record."""
    project = _copy(seed_project, tmp_path)
    drop_publish_records(project)
    repo_id = "test-org/reviewed"
    opened = run(["abstracts", "publish", "--repo-id", repo_id, "--yes", "--create-pr"], project)
    assert opened.returncode == 0, opened.stderr
    assert f"opened pull request #1 with v1.0.0: {hub.url}/datasets/{repo_id}/discussions/1" in opened.stdout
    repo = hub.state.repos[f"datasets/{repo_id}"]
    initial = repo.branches["main"]
    assert repo.tags == {} and list(repo.pulls) == [1] and repo.pulls[1].status == "open"
    assert "README.md" in repo.commits[repo.pulls[1].head].files
    assert set(repo.commits[initial].files) == {".gitattributes"}
    assert not (project / "releases" / "1.0.0.json").exists()
    assert "CHANGELOG.md" not in run(["git", "status", "--porcelain"], project).stdout
    again = run(["abstracts", "publish", "--repo-id", repo_id, "--yes", "--create-pr"], project)
    assert again.returncode == 0, again.stderr
    assert "pull request #1 already holds v1.0.0" in again.stdout and list(repo.pulls) == [1]
    merge = run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom huggingface_hub import HfApi\n"
            "api = HfApi()\n"
            "pr = api.get_discussion_details(sys.argv[1], 1, repo_type='dataset')\n"
            "print(pr.status, pr.target_branch, pr.conflicting_files)\n"
            "api.merge_pull_request(sys.argv[1], 1, repo_type='dataset')\n"
            "print(api.get_discussion_details(sys.argv[1], 1, repo_type='dataset').status)\n",
            repo_id,
        ],
        project,
    )
    assert merge.returncode == 0, merge.stderr[-2000:]
    assert merge.stdout.split() == ["open", "refs/heads/main", "[]", "merged"]
    assert repo.branches["main"] != initial and repo.tags == {}
    tagged = run(["abstracts", "publish", "--repo-id", repo_id, "--yes"], project)
    assert tagged.returncode == 0, tagged.stderr
    assert "main already holds this release" in tagged.stdout and "tagging it" in tagged.stdout
    assert repo.tags == {"v1.0.0": repo.branches["main"]}
    record = json.loads((project / "releases" / "1.0.0.json").read_text())
    assert record["commit"] == repo.branches["main"]
    published = repo.commits[record["commit"]].files
    # The record describes the files exactly as they are on the Hub.
    for path, digest in record["files"].items():
        blob = published[path]
        assert (blob.lfs_oid or hashlib.sha256(blob.data).hexdigest()) == digest, path
    assert "GET /api/{type}s/{repo}/discussions" in hub.state.routes
    assert "POST /api/{type}s/{repo}/discussions/{num}/merge" in hub.state.routes


# -- faults -------------------------------------------------------------------------------------


def test_a_dropped_tag_call_is_finished_by_a_rerun_without_a_second_commit(
    hub: HubServer, seed_project: Path, tmp_path: Path
) -> None:
    project = _copy(seed_project, tmp_path)
    drop_publish_records(project)
    repo_id = "test-org/flaky"
    hub.state.drop_connection[TAG_ROUTE] = 1
    first = run(["abstracts", "publish", "--repo-id", repo_id, "--yes"], project)
    assert first.returncode == 5
    assert "creating tag v1.0.0" in first.stderr and "network failure" in first.stderr
    repo = hub.state.repos[f"datasets/{repo_id}"]
    assert repo.tags == {} and len(repo.commits) == 2  # the initial commit and the release
    assert not (project / "releases" / "1.0.0.json").exists()
    second = run(["abstracts", "publish", "--repo-id", repo_id, "--yes"], project)
    assert second.returncode == 0, second.stderr
    assert "tagging it" in second.stdout
    assert len(repo.commits) == 2
    assert repo.tags == {"v1.0.0": repo.branches["main"]}
    record = json.loads((project / "releases" / "1.0.0.json").read_text())
    assert record["commit"] == repo.branches["main"]


# -- the server itself --------------------------------------------------------------------------


def test_server_answers_like_the_hub(hub: HubServer, published_v1: Any) -> None:
    base = f"{hub.url}/datasets/{REPO}/resolve/v1.0.0"

    def fetch(path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{base}/{path}", method=method, headers=headers)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    status, headers, body = fetch("README.md", "GET", Range="bytes=0-2")
    assert (status, body, headers["Content-Range"].split("/")[0]) == (206, b"---", "bytes 0-2")
    assert headers["ETag"].startswith('"') and len(headers["X-Repo-Commit"]) == 40
    status, headers, _ = fetch("missing.txt", "HEAD")
    assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
    status, _, _ = fetch("README.md", "HEAD", Authorization="Bearer nope")
    assert status == 401

    def post(path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
        request = urllib.request.Request(f"{hub.url}{path}", data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    form = b"paths=README.md&paths=data&paths=nope&expand=False"
    status, entries = post(
        f"/api/datasets/{REPO}/paths-info/v1.0.0", form, "application/x-www-form-urlencoded"
    )
    assert status == 200
    assert [(e["type"], e["path"]) for e in entries] == [("file", "README.md"), ("directory", "data")]
    org, name = REPO.split("/")
    payload = json.dumps({"name": name, "organization": org, "type": "dataset"}).encode()
    status, answer = post("/api/repos/create", payload, "application/json")
    assert status == 409 and answer["url"].endswith(f"/datasets/{REPO}")
