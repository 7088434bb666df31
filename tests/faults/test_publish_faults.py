"""`abstracts publish --yes` (the real CLI and HF client) against tests/hub_server.py behind a
fault proxy (fault_proxy.py, 127.0.0.1 only): a dropped upload, 429 and 500 answers, a stalled
server, a server that is down, a publish killed mid-upload. Each run ends with one clear
message or completes; the Hub never holds a tag on a partial commit (a commit is all of the
release or absent, the tag comes last); a rerun finishes idempotently; the client's retries are
bounded; and the token appears in no output, record or file.
Each case publishes to its own repository on one server, from one committed copy of the built
seed project (its local records are reset between cases).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_proxy import FaultProxy, Rule
from hub_server import HubServer

TOKEN = "hf_fault_battery_token_9b7e6d5c4a"
BIN = Path(sys.executable).parent
LFS_PUT = r"^/lfs-upload/"
COMMIT = r"^/api/datasets/[^/]+/[^/]+/commit/"
PREUPLOAD = r"^/api/datasets/[^/]+/[^/]+/preupload/"
OUTPUTS: list[str] = []  # every stdout and stderr of the publish runs, grepped for the token


def git(project: Path, *args: str) -> None:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def project(built_seed_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("publish-faults") / "ml-abstracts"
    shutil.copytree(built_seed_project, root, symlinks=True)
    # A stalled request fails after 3 s, not the default minute.
    params = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(params.replace("  timeout_seconds: 60\n", "  timeout_seconds: 3\n"))
    git(root, "add", "-A")
    git(root, "commit", "--allow-empty", "-qm", "build")
    return root


@pytest.fixture
def proxy(hub: HubServer) -> Iterator[FaultProxy]:
    front = FaultProxy(hub.url)
    # The server's LFS upload links point at the proxy too.
    hub.state.base_url = front.url
    try:
        yield front
    finally:
        front.stop()
        hub.state.base_url = f"http://127.0.0.1:{hub.server_address[1]}"


@pytest.fixture
def clean_records(project: Path) -> Iterator[None]:
    """Each case starts from the committed tree (no release records of another case)."""
    yield
    git(project, "checkout", "--", ".")
    git(project, "clean", "-fdq", "--", "releases", "CHANGELOG.md")


def environment(endpoint: str, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=endpoint,
        HF_TOKEN=TOKEN,
        HF_HOME=str(home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_OFFLINE="0",
        HF_DATASETS_OFFLINE="0",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PATH=f"{BIN}{os.pathsep}{env['PATH']}",
    )
    return env


def publish(project: Path, endpoint: str, repo: str, home: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["abstracts", "publish", "--repo-id", repo, "--yes"],
        cwd=project,
        env=environment(endpoint, home),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    OUTPUTS.extend([result.stdout, result.stderr])
    return result


def assert_no_partial_release(hub: HubServer, repo: str) -> None:
    """No tag, and no commit beyond the repository's initial one."""
    state = hub.state.repos.get(f"datasets/{repo}")
    if state is not None:
        assert state.tags == {}
        assert len(state.commits) == 1, "a commit landed"


def assert_published_once(hub: HubServer, project: Path, repo: str, home: Path, again: bool = False) -> None:
    """Published: one release commit, tagged; with `again`, a further run is a no-op (one case
    shows it: each publish is a process paying the HF client's imports)."""
    state = hub.state.repos[f"datasets/{repo}"]
    assert len(state.commits) == 2 and state.tags == {"v1.0.0": state.branches["main"]}
    assert (project / "releases" / "1.0.0.json").is_file()
    if not again:
        return
    again_run = publish(project, hub.url, repo, home)
    assert again_run.returncode == 0 and "already published as v1.0.0" in again_run.stdout, again_run.stderr
    assert len(state.commits) == 2


def test_a_dropped_upload_is_retried_and_completes(
    hub: HubServer, project: Path, proxy: FaultProxy, clean_records: None, tmp_path: Path
) -> None:
    proxy.rules.append(Rule("PUT", LFS_PUT, "drop", times=1, after_bytes=4096))
    result = publish(project, proxy.url, "test-org/dropped", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    uploads = proxy.requests("PUT", LFS_PUT)
    assert uploads[0] == "dropped after 4096 body bytes" and "forwarded" in uploads[1:]
    assert_published_once(hub, project, "test-org/dropped", tmp_path)


def test_a_429_is_retried_after_its_retry_after(
    hub: HubServer, project: Path, proxy: FaultProxy, clean_records: None, tmp_path: Path
) -> None:
    proxy.rules.append(Rule("POST", PREUPLOAD, "status", times=1, status=429))
    result = publish(project, proxy.url, "test-org/limited", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert proxy.requests("POST", PREUPLOAD)[:2] == ["answered 429", "forwarded"]
    assert_published_once(hub, project, "test-org/limited", tmp_path)


def test_retries_are_bounded_and_end_in_one_message(
    hub: HubServer, project: Path, proxy: FaultProxy, clean_records: None, tmp_path: Path
) -> None:
    proxy.rules.append(Rule("POST", PREUPLOAD, "status", times=100, status=429))
    result = publish(project, proxy.url, "test-org/always-limited", tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "answered 429" in result.stderr, result.stderr
    # The client's bound: the first try and 5 retries, then the error.
    assert proxy.requests("POST", PREUPLOAD) == ["answered 429"] * 6
    assert_no_partial_release(hub, "test-org/always-limited")


def test_a_500_on_the_commit_leaves_no_commit_and_a_rerun_publishes(
    hub: HubServer, project: Path, proxy: FaultProxy, clean_records: None, tmp_path: Path
) -> None:
    proxy.rules.append(Rule("POST", COMMIT, "status", times=1, status=500))
    first = publish(project, proxy.url, "test-org/flaky-commit", tmp_path)
    assert first.returncode == 5, first.stdout + first.stderr
    assert "uploading the release commit" in first.stderr and "500" in first.stderr, first.stderr
    assert "Traceback" not in first.stderr
    assert_no_partial_release(hub, "test-org/flaky-commit")
    assert not (project / "releases" / "1.0.0.json").exists()
    second = publish(project, proxy.url, "test-org/flaky-commit", tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert_published_once(hub, project, "test-org/flaky-commit", tmp_path)


def test_a_stalled_server_times_out_with_a_message(
    hub: HubServer, project: Path, proxy: FaultProxy, clean_records: None, tmp_path: Path
) -> None:
    proxy.rules.append(Rule("POST", COMMIT, "stall", times=1))
    result = publish(project, proxy.url, "test-org/stalled", tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "uploading the release commit" in result.stderr and "rerun `abstracts publish`" in result.stderr
    assert "Timeout" in result.stderr, result.stderr
    assert_no_partial_release(hub, "test-org/stalled")


def test_a_server_that_is_down_is_one_message(project: Path, clean_records: None, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    result = publish(project, f"http://127.0.0.1:{port}", "test-org/down", tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "network failure talking to" in result.stderr and "ConnectError" in result.stderr, result.stderr


def test_a_publish_killed_mid_upload_leaves_no_release_and_a_rerun_completes(
    hub: HubServer, project: Path, proxy: FaultProxy, clean_records: None, tmp_path: Path
) -> None:
    # The commit request stalls (the server holds every LFS object already, from the cases above).
    stall = Rule("POST", COMMIT, "stall", times=1)
    proxy.rules.append(stall)
    process = subprocess.Popen(
        ["abstracts", "publish", "--repo-id", "test-org/killed", "--yes"],
        cwd=project,
        env=environment(proxy.url, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert stall.hit.wait(timeout=120), "the commit was never sent"
        process.send_signal(signal.SIGKILL)
    finally:
        out, err = process.communicate(timeout=60)
        OUTPUTS.extend([out, err])
    assert process.returncode == -signal.SIGKILL
    assert_no_partial_release(hub, "test-org/killed")
    assert not (project / "releases" / "1.0.0.json").exists()
    rerun = publish(project, proxy.url, "test-org/killed", tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_published_once(hub, project, "test-org/killed", tmp_path, again=True)


def test_the_token_appears_in_no_output_record_or_file(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Runs last in this module: every publish above left its outputs and files."""
    assert OUTPUTS, "no publish ran before this test"
    assert not [text for text in OUTPUTS if TOKEN in text]
    places = [project, tmp_path_factory.getbasetemp()]
    hits = []
    for place in places:
        for path in place.rglob("*"):
            # The copies of this test module hold the token literal; nothing else may.
            if path.is_file() and not path.is_symlink() and path.name != Path(__file__).name:
                try:
                    if TOKEN.encode() in path.read_bytes():
                        hits.append(path)
                except OSError:
                    continue
    assert hits == [], hits
