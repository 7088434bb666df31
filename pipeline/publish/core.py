"""`abstracts publish`: put `release/` on a Hugging Face Hub dataset repo as one tagged commit.

Not a DVC stage (publishing is a deliberate act), but it reads only DVC outputs and refuses to
run when they are stale. Reads: `release/` (data shards, card, Croissant file), the stage
reports, `dataset_card/` (to re-render the card with this version and its changelog entry),
`releases/*.json` (earlier records), `dvc status`, and the Hub: its refs and the previous tag's
parquet files, downloaded with the real `huggingface_hub` client from `HF_ENDPOINT`.
Writes: `releases/<version>.json`, the release's row index `releases/<version>.rows.parquet`
(which the `release_diff` stage diffs the next build against) and a line in `CHANGELOG.md`; on
the Hub, one commit on `main` and one tag `v<version>`. Params: `publish` (repo id) and
`card` (to render the published card).

Order of work, chosen so that a failure anywhere leaves the Hub as it was or complete:
local preconditions -> refs of the repo -> "already published?" -> row diff against the previous
tag -> version -> one commit (skipped when `main` already holds exactly this release, which is
how a run whose tag call failed is resumed) -> tag on that commit's oid -> local records.
The token is handed to the client and never printed.

The version is publish's to decide, with the rules the card stage uses (`releases.content_key`
and the row diff): the Hub's last tag holding this release means nothing to do; otherwise the
row diff against that tag gives the version. The card stage decides the same from the local
record of that tag (`reports/card.json`); publish says so when the two disagree (a `releases/`
out of step with the Hub).

`--create-pr` opens a Hub pull request (`create_commit(create_pr=True)`, ref `refs/pr/N`)
instead of committing to `main`, and stops there: no tag and no `releases/` record, because
nothing is published until a maintainer merges it. After the merge, `abstracts publish --yes`
finds `main` holding exactly this release and only tags the merge commit and writes the
record (the resume path), so the record is still written only after the tag succeeded.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.contracts import ROW_INDEX_SUFFIX
from pipeline.errors import BadInputError, PipelineError, PublishError
from pipeline.io.writers import atomic_path, sha256_file, write_json
from pipeline.params import Params
from pipeline.releases import (
    HUB_MANAGED,
    ReleaseDiff,
    content_key,
    diff_releases,
    propose_version,
    write_row_index,
)
from pipeline.versions import Version, format_version, is_release_tag, tag_name
from pipeline.versions import parse_version as semver

if TYPE_CHECKING:
    from huggingface_hub import HfApi

REPO_TYPE = "dataset"
# Example ids per kind of change kept in a release record (the counts are always complete).
DIFF_EXAMPLES = 20
CHANGELOG_HEADER = (
    "# Changelog\n\n"
    "Published dataset versions, newest first: Hub commit, row diff against the previous version,\n"
    "and the code commit and `params.yaml` that built it (written by `abstracts publish`).\n\n"
)


@dataclass(frozen=True)
class PublishPaths:
    """Where publish reads and writes; relative to the project root (the defaults of the CLI)."""

    root: Path = Path(".")
    release: Path = Path("release")
    reports: Path = Path("reports")
    card_dir: Path = Path("dataset_card")
    releases: Path = Path("releases")
    # The deduplicated rows the release was split from: their member keys go into the row index.
    deduped: Path = Path("build/dedup.parquet")
    changelog: Path = Path("CHANGELOG.md")
    params: Path = Path("params.yaml")

    def at(self, path: Path) -> Path:
        return path if path.is_absolute() else self.root / path


@dataclass(frozen=True)
class PublishResult:
    """What a run did: `action` is one of planned, published, tagged, already_published."""

    action: str
    repo_id: str
    version: str
    commit: str | None
    diff: ReleaseDiff | None


# -- pure core ------------------------------------------------------------------------------------


def parse_version(text: str) -> Version:
    """`1.2.3` or `v1.2.3` as a tuple.

    Raises:
        PublishError: `text` is not MAJOR.MINOR.PATCH.
    """
    try:
        return semver(text)
    except BadInputError:
        raise PublishError(
            f"--version {text!r} is not a semantic version; use MAJOR.MINOR.PATCH, e.g. 1.2.0"
        ) from None


def read_release_rows(files: dict[str, Path]) -> pl.DataFrame:
    """Every row of the release shards among `files` (repo paths), with its `split` column."""
    frames = []
    for path, local in sorted(files.items()):
        match = re.fullmatch(r"data/([a-z]+)-\d+-of-\d+\.parquet", path)
        if match is None:
            continue
        frames.append(pl.read_parquet(local).with_columns(pl.lit(match.group(1)).alias("split")))
    if not frames:
        return pl.DataFrame({"id": [], "split": []}, schema={"id": pl.String, "split": pl.String})
    return pl.concat(frames, how="vertical")


# -- preconditions --------------------------------------------------------------------------------


def check_validation(report: Path) -> None:
    """Refuse unless `reports/validation.json` says every critical expectation passed."""
    try:
        validation = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PublishError(f"{report}: cannot read the validation report ({exc}); run `dvc repro`") from None
    failures = validation.get("critical_failures")
    if failures != 0 or validation.get("success") is False:
        raise PublishError(
            f"{report}: validation failed ({failures} critical failure(s)); a failed release is never "
            "published. Fix the data or the rule, run `dvc repro`, then publish again"
        )


def check_dvc_status(root: Path) -> None:
    """Refuse unless `dvc status` reports the `release` stage and every stage before it up to date.

    Only what is uploaded must match the code, params and raw data (the card's changelog of
    `releases/` excepted: publish renders it): `release` materialises
    release/ only after the `gate` stage passed, so an up-to-date `release` stage also means the
    checks passed on exactly these files. The report stages `release_diff` (which the card reads
    for its changelog's removals) and `review` depend on `releases/`, which every publish writes
    to, so they are stale right after a publish until the next `dvc repro`; that must not block
    re-running publish (a resumed tag, or "already published").
    """
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json", "--with-deps", "release"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PublishError(f"`dvc status` failed in {root}: {result.stderr.strip()[-500:]}")
    try:
        status = json.loads(result.stdout or "{}")
    except json.JSONDecodeError:
        raise PublishError(f"`dvc status --json` printed no JSON: {result.stdout[-500:]!r}") from None
    status = {
        stage: changes for stage, changes in status.items() if not _stale_only_by_releases(stage, changes)
    }
    if status:
        stale = ", ".join(sorted(status))
        raise PublishError(
            f"the pipeline is not up to date (`dvc status`: {stale} changed); "
            "run `dvc repro` so that release/ matches the code, params and raw data, then publish"
        )


# Stages up to the card that read `releases/`.
RELEASES_READERS = ("dedup", "split", "validate", "release_diff", "card")


def _stale_only_by_releases(stage: str, changes: Any) -> bool:
    """Whether `stage` reads `releases/` and only that dependency changed.

    The card's changelog lists the records in `releases/`, which every publish writes; publish
    renders the uploaded card with that changelog itself, so a card stale only by it is fine;
    so is `release_diff`, whose removals the card shows in that changelog section (which the
    "same release" comparison leaves out).
    `dedup` and `split` read the published memberships there: rebuilt from the release just
    published, they give the same rows (its ids and splits are the ones they keep); `validate`
    checks new train rows against them, and right after a publish no row is new.
    """
    if stage not in RELEASES_READERS or not isinstance(changes, list):
        return False
    changed: set[str] = set()
    for change in changes:
        if not isinstance(change, dict) or set(change) != {"changed deps"}:
            return False
        changed |= set(change["changed deps"])
    return changed == {"releases"}


def check_card_matches(release: Path) -> None:
    """Refuse when the card or the Croissant file disagree with the data (card.check_card)."""
    from pipeline.stages.card.core import check_card

    try:
        check_card(release)
    except PipelineError as exc:
        raise PublishError(f"stale or missing dataset card: {exc}") from None
    if not (release / "croissant.json").is_file():
        raise PublishError(f"{release / 'croissant.json'}: no Croissant file; run `dvc repro card`")


def find_token() -> str:
    """The Hub token from `HF_TOKEN` or the huggingface_hub login, never echoed."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token: set HF_TOKEN to a token with write access, or run `hf auth login`"
        )
    return token


# -- the Hub side ---------------------------------------------------------------------------------


def bounded_client(timeout_seconds: float) -> None:
    """Make this process's HF client requests time out: its default client waits forever for a
    stalled server. Its own bounded retries (429, 5xx, dropped connections) are kept. Process-wide
    (the client is shared), so the `publish` command sets it, not `run_publish`."""
    import httpx2
    from huggingface_hub.utils._http import hf_request_event_hook, set_client_factory

    def factory() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=httpx2.Timeout(timeout_seconds),
        )

    set_client_factory(factory)


@contextlib.contextmanager
def hub_errors(action: str, endpoint: str, token: str) -> Iterator[None]:
    """Turn client exceptions into a `PublishError` that says what happened and what to do."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    def clean(text: str) -> str:
        # Belt and braces: client messages carry URLs, not headers, but never echo a token.
        return text.replace(token, "***")[-600:]

    try:
        yield
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise PublishError(
                f"{action}: the Hub at {endpoint} rejected the token (401 Unauthorized); set HF_TOKEN "
                "to a valid token with write access, or run `hf auth login`"
            ) from None
        if status == 403:
            raise PublishError(
                f"{action}: the token has no write access to this repository on {endpoint} (403)"
            ) from None
        raise PublishError(f"{action}: the Hub at {endpoint} answered {status}: {clean(str(exc))}") from None
    except (OSError, httpx2.HTTPError) as exc:
        # Connection errors of the client: nothing half-done is left on the Hub (a commit is
        # atomic and the tag is the last step), so a rerun finishes the job.
        raise PublishError(
            f"{action}: network failure talking to {endpoint} ({type(exc).__name__}: {clean(str(exc))}); "
            "the repository is unchanged or this step completed; rerun `abstracts publish` to finish"
        ) from None


@dataclass
class Hub:
    """The dataset repo on the Hub, read and written with the real `huggingface_hub` client."""

    api: HfApi
    repo_id: str
    workdir: Path

    def refs(self) -> tuple[dict[str, str], dict[str, str]] | None:
        """(branches, tags) as name -> commit oid; None when the repository does not exist."""
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            refs = self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE)
        except RepositoryNotFoundError:
            return None
        return (
            {ref.name: ref.target_commit for ref in refs.branches},
            {ref.name: ref.target_commit for ref in refs.tags},
        )

    def _download(self, commit: str, patterns: list[str]) -> dict[str, Path]:
        local = self.workdir / commit
        self.api.snapshot_download(
            self.repo_id, repo_type=REPO_TYPE, revision=commit, allow_patterns=patterns, local_dir=local
        )
        return {
            p.relative_to(local).as_posix(): p
            for p in sorted(local.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(local).parts
        }

    def content_key(self, commit: str) -> dict[str, str]:
        """`content_key` of the files at `commit`: LFS files by their sha256, others downloaded."""
        from huggingface_hub.hf_api import RepoFile

        key: dict[str, str] = {}
        small: list[str] = []
        for entry in self.api.list_repo_tree(
            self.repo_id, repo_type=REPO_TYPE, revision=commit, recursive=True
        ):
            if not isinstance(entry, RepoFile) or entry.path in HUB_MANAGED:
                continue
            if entry.lfs is not None and entry.path != "README.md":
                key[entry.path] = entry.lfs.sha256
            else:
                small.append(entry.path)
        if small:
            downloaded = self._download(commit, small)
            key.update(content_key({path: downloaded[path] for path in small}))
        return key

    def date_published(self, commit: str) -> str | None:
        """`datePublished` of croissant.json at `commit` (None without one)."""
        croissant = self._download(commit, ["croissant.json"]).get("croissant.json")
        if croissant is None:
            return None
        try:
            date = json.loads(croissant.read_text(encoding="utf-8")).get("datePublished")
        except (OSError, json.JSONDecodeError, AttributeError):
            return None
        return date if isinstance(date, str) else None

    def rows(self, commit: str) -> pl.DataFrame:
        return read_release_rows(self._download(commit, ["data/*.parquet"]))


# -- the command ----------------------------------------------------------------------------------


def local_files(release: Path) -> dict[str, Path]:
    """Every file of `release/` by repo path; hidden files (atomic writers' temporaries) excluded."""
    return {
        p.relative_to(release).as_posix(): p
        for p in sorted(release.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(release).parts)
    }


def render_published(
    paths: PublishPaths,
    params: Params,
    repo_id: str,
    version: Version,
    diff: ReleaseDiff | None,
    date_published: str | None = None,
) -> dict[str, bytes]:
    """README.md and croissant.json as published: this version, this repo, this changelog entry,
    published on `date_published` (default today)."""
    from pipeline.releases import ChangelogEntry, load_changelog
    from pipeline.stages.card.core import build_croissant, croissant_bytes, render_card

    changelog = load_changelog(paths.at(paths.releases))
    if diff is not None:
        changelog.append(ChangelogEntry(version=format_version(version), **diff.counts()))
    release, card_dir, reports = paths.at(paths.release), paths.at(paths.card_dir), paths.at(paths.reports)
    text = format_version(version)
    card = render_card(release, card_dir, reports, params.card, repo_id, text, changelog)
    croissant = build_croissant(release, card_dir, reports, params.card, repo_id, text, date_published)
    return {"README.md": card.encode("utf-8"), "croissant.json": croissant_bytes(croissant)}


def uncommitted_changes(root: Path) -> list[str]:
    """The paths `git status` reports changed or untracked in `root` (outputs DVC tracks are
    git-ignored, so they never show); raises when `root` is not in a git repository."""
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PublishError(
            f"{root} is not a git checkout ({result.stderr.strip()[-300:]}): a release must name the "
            "commit that rebuilds it; publish from a clone of the project"
        )
    return [line[3:] for line in result.stdout.splitlines() if line.strip()]


def check_git_clean(root: Path) -> None:
    """Refuse to publish from a tree whose commit could not rebuild the release."""
    changed = uncommitted_changes(root)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise PublishError(
            f"the git tree has {len(changed)} uncommitted change(s) ({shown}); the release records the "
            "commit that built it, so commit them first (`git add -A && git commit`, after `dvc repro` "
            "that includes dvc.lock and release/README.md), then publish"
        )


def confirm(question: str, yes: bool, ask: Callable[[str], str] | None) -> None:
    """Go on when `yes`, or when a terminal's user answers y; refuse otherwise."""
    if yes:
        return
    if ask is None:
        raise PublishError("not a terminal, so nobody can confirm: pass --yes to publish without asking")
    if ask(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise PublishError("not confirmed: nothing was uploaded or written")


def _git_commit(root: Path) -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def date_published_of(planned: Mapping[str, bytes | Path]) -> str | None:
    croissant = planned.get("croissant.json")
    if not isinstance(croissant, bytes):
        return None
    date = json.loads(croissant).get("datePublished")
    return date if isinstance(date, str) else None


def write_records(
    paths: PublishPaths,
    repo_id: str,
    endpoint: str,
    version: Version,
    commit: str,
    planned: dict[str, bytes | Path],
    diff: ReleaseDiff,
    previous: tuple[str, str] | None,
) -> Path:
    """`releases/<version>.json` and a line at the top of `CHANGELOG.md`; returns the record."""
    params_file = paths.at(paths.params)
    code = _git_commit(paths.root)
    params_sha = sha256_file(params_file) if params_file.is_file() else "unknown"
    index = paths.at(paths.releases) / f"{format_version(version)}{ROW_INDEX_SUFFIX}"
    # The index goes first: a record without its index would stop the `release_diff` stage.
    deduped = paths.at(paths.deduped)
    write_row_index(paths.at(paths.release) / "data", index, deduped if deduped.is_file() else None)
    record = {
        "version": format_version(version),
        "tag": tag_name(version),
        "repo_id": repo_id,
        "endpoint": endpoint,
        "commit": commit,
        "previous": {"tag": previous[0], "commit": previous[1]} if previous else None,
        "files": {
            path: hashlib.sha256(src).hexdigest() if isinstance(src, bytes) else sha256_file(src)
            for path, src in sorted(planned.items())
        },
        "diff": diff.counts(),
        "diff_examples": diff.examples(DIFF_EXAMPLES),
        "row_index": index.name,
        "row_index_sha256": sha256_file(index),
        # What the card stage compares the next build with (releases.content_key).
        "content_key": content_key(planned),
        "date": date_published_of(planned),
        "code_commit": code,
        "params_sha256": params_sha,
    }
    target = paths.at(paths.releases) / f"{format_version(version)}.json"
    write_json(record, target)
    changelog = paths.at(paths.changelog)
    text = changelog.read_text(encoding="utf-8") if changelog.is_file() else CHANGELOG_HEADER
    line = (
        f"- **{tag_name(version)}** ({datetime.date.today().isoformat()}): `{repo_id}` commit "
        f"`{commit[:12]}`; {diff.summary()}; code `{code[:12]}`, params.yaml sha256 `{params_sha[:12]}`\n"
    )
    if f"`{repo_id}` commit `{commit[:12]}`" not in text:
        # Newest first: the new line goes above the first existing entry.
        first = text.find("\n- ")
        text = text + line if first < 0 else text[: first + 1] + line + text[first + 1 :]
        with atomic_path(changelog) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return target


def print_plan(
    out: Callable[[str], None],
    repo_id: str,
    endpoint: str,
    private: bool,
    version: Version,
    proposed: Version,
    diff: ReleaseDiff,
    planned: dict[str, bytes | Path],
    deletions: list[str],
) -> None:
    out(f"repo:     {repo_id} (dataset, {'private' if private else 'public'}) on {endpoint}")
    note = "" if version == proposed else f" (proposed {tag_name(proposed)}, raised by --version)"
    out(f"version:  {tag_name(version)}{note}")
    out(f"diff:     {diff.summary()}")
    out("files:")
    for path, src in sorted(planned.items()):
        if isinstance(src, bytes):
            size, digest = len(src), hashlib.sha256(src).hexdigest()
        else:
            size, digest = src.stat().st_size, sha256_file(src)
        out(f"  {path}  {size} bytes  sha256:{digest}")
    for path in deletions:
        out(f"  {path}  (delete: no longer in release/)")


def agree(out: Callable[[str], None], paths: PublishPaths, version: Version, unchanged: bool) -> None:
    """Say so when the card stage's decision (`reports/card.json`) differs from the Hub's."""
    report = paths.at(paths.reports) / "card.json"
    try:
        local = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        out(f"note: {report} is missing or unreadable; run `dvc repro` so the review shows this version")
        return
    same = (
        local.get("version") == format_version(version) and (local.get("status") == "unchanged") == unchanged
    )
    if not same:
        hub_says = (
            f"{tag_name(version)} is already published"
            if unchanged
            else f"the next version is {tag_name(version)}"
        )
        out(
            f"note: the Hub says {hub_says}, but the local build ({report}) says "
            f"{local.get('tag')} ({local.get('status')}): releases/ is not in step with the Hub; pull the "
            "commit that recorded the last publish (releases/, CHANGELOG.md) and run `dvc repro`"
        )


def commit_release(
    api: Any,
    repo_id: str,
    tag: str,
    diff: ReleaseDiff,
    planned: dict[str, bytes | Path],
    deletions: list[str],
    head: str | None,
    create_pr: bool = False,
) -> Any:
    """The release's one Hub commit (`planned` files added, `deletions` removed) on `head`: to
    main, or to a new pull request with `create_pr`. Returns the Hub's `CommitInfo`."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=src) for path, src in planned.items()
    ]
    operations += [CommitOperationDelete(path_in_repo=path) for path in deletions]
    return api.create_commit(
        repo_id,
        operations,
        repo_type=REPO_TYPE,
        commit_message=f"Release {tag}",
        commit_description=diff.summary(),
        parent_commit=head,
        create_pr=create_pr,
    )


def open_pull_request(
    api: HfApi,
    hub: Hub,
    paths: PublishPaths,
    repo_id: str,
    endpoint: str,
    token: str,
    tag: str,
    diff: ReleaseDiff,
    planned: dict[str, bytes | Path],
    deletions: list[str],
    head: str | None,
    out: Callable[[str], None],
) -> PublishResult:
    """One commit on a new Hub pull request (`refs/pr/N`), or the open one that holds it already."""

    wanted = content_key(planned)
    with hub_errors("listing the open pull requests", endpoint, token):
        for pull in api.get_repo_discussions(
            repo_id, repo_type=REPO_TYPE, discussion_type="pull_request", discussion_status="open"
        ):
            if hub.content_key(pull.git_reference or f"refs/pr/{pull.num}") == wanted:
                out(
                    f"pull request #{pull.num} already holds {tag}: {pull.url}; "
                    "merge it, then run publish again"
                )
                return PublishResult("pull_request", repo_id, tag.removeprefix("v"), None, diff)
    with hub_errors("opening the pull request", endpoint, token):
        info = commit_release(api, repo_id, tag, diff, planned, deletions, head, create_pr=True)
    out(f"opened pull request #{info.pr_num} with {tag}: {info.pr_url} (commit {info.oid})")
    out(
        f"nothing is tagged or recorded yet: merge the pull request on the Hub, then run "
        f"`abstracts publish --yes` to tag the merge commit {tag} and write releases/"
    )
    return PublishResult("pull_request", repo_id, tag.removeprefix("v"), info.oid, diff)


def run_publish(
    paths: PublishPaths,
    params: Params,
    repo_id: str | None = None,
    version: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    out: Callable[[str], None] = print,
    yes: bool = False,
    ask: Callable[[str], str] | None = None,
    create_pr: bool = False,
) -> PublishResult:
    """Publish `release/` as one commit tagged `v<version>` on the Hub (`HF_ENDPOINT`).

    Args:
        paths: project paths (defaults are relative to the current directory).
        params: all params; `publish.repo_id` is the default repository.
        repo_id: override of `publish.repo_id` (`ORG/NAME`).
        version: requested version; may only raise the proposed one.
        private: create the repository private (ignored if it exists).
        dry_run: print the plan and touch nothing, locally or remotely.
        out: where progress lines go.
        yes: publish without asking (CI).
        ask: asks the user a question and returns the answer (a terminal's `input`); without
            it and without `yes`, publish refuses after printing the plan.
        create_pr: open a Hub pull request with the release instead of committing to main;
            no tag and no record until it is merged and publish runs again.

    Raises:
        PublishError: a precondition failed or the Hub refused or failed; the message says which.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.hf_api import RepoFile

    repo_id = repo_id or params.publish.repo_id
    if len(repo_id.split("/")) != 2 or not all(repo_id.split("/")):
        raise PublishError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    requested = parse_version(version) if version is not None else None
    release = paths.at(paths.release)
    check_validation(paths.at(paths.reports) / "validation.json")
    check_card_matches(release)
    token = find_token()
    check_dvc_status(paths.root)
    endpoint = constants.ENDPOINT
    api = HfApi(endpoint=endpoint, token=token)

    with tempfile.TemporaryDirectory(prefix="abstracts-publish-") as tmp:
        hub = Hub(api, repo_id, Path(tmp))
        with hub_errors("reading the repository's refs", endpoint, token):
            refs = hub.refs()
        branches, tags = refs if refs is not None else ({}, {})
        versions = sorted((parse_version(t), t) for t in tags if is_release_tag(t))
        previous = versions[-1] if versions else None
        files = local_files(release)

        if previous is not None:
            prev_version, prev_tag = previous
            prev_commit = tags[prev_tag]
            with hub_errors(f"reading {prev_tag}", endpoint, token):
                remote_key = hub.content_key(prev_commit)
                same: dict[str, bytes | Path] = {
                    **files,
                    **render_published(paths, params, repo_id, prev_version, None),
                }
                if remote_key == content_key(same) and (requested is None or requested == prev_version):
                    out(
                        f"release already published as {prev_tag} ({repo_id} commit {prev_commit[:12]}); "
                        "nothing to do"
                    )
                    agree(out, paths, prev_version, unchanged=True)
                    return PublishResult(
                        "already_published", repo_id, format_version(prev_version), prev_commit, None
                    )
                old_rows = hub.rows(prev_commit)
        new_rows = read_release_rows(files)
        if previous is None:
            old_rows = new_rows.clear()
        diff = diff_releases(old_rows, new_rows, previous[1] if previous else None)
        proposed = propose_version(previous[0] if previous else None, diff)
        chosen = requested or proposed
        tag = tag_name(chosen)
        if tag in tags:
            raise PublishError(
                f"tag {tag} already exists on {repo_id} (commit {tags[tag][:12]}); published versions are "
                "immutable: choose a higher --version"
            )
        if chosen < proposed:
            raise PublishError(
                f"--version {format_version(chosen)} is lower than the proposed {format_version(proposed)} "
                f"({diff.summary()}); a version may only be raised"
            )

        today = datetime.date.today().isoformat()
        planned: dict[str, bytes | Path] = {
            **files,
            **render_published(paths, params, repo_id, chosen, diff, today),
        }
        head = branches.get("main")
        with hub_errors("listing the files on main", endpoint, token):
            head_files = (
                [
                    e.path
                    for e in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=head, recursive=True)
                    if isinstance(e, RepoFile)
                ]
                if head
                else []
            )
        deletions = sorted(p for p in head_files if p not in planned and p not in HUB_MANAGED)
        print_plan(out, repo_id, endpoint, private, chosen, proposed, diff, planned, deletions)
        agree(out, paths, chosen, unchanged=False)
        if dry_run:
            changed = uncommitted_changes(paths.root)
            if changed:
                out(
                    f"note: the git tree has {len(changed)} uncommitted change(s); publish will refuse until "
                    "they are committed"
                )
            out("dry run: nothing was uploaded or written")
            return PublishResult("planned", repo_id, format_version(chosen), None, diff)
        check_git_clean(paths.root)
        if create_pr:
            confirm(f"Open a pull request with {tag} on {repo_id} at {endpoint}?", yes, ask)
        else:
            confirm(f"Publish {tag} to {repo_id} on {endpoint}?", yes, ask)

        with hub_errors("creating the repository", endpoint, token):
            api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
            refs = hub.refs()
        branches = refs[0] if refs is not None else {}
        head = branches.get("main")
        commit: str | None = None
        if head is not None:
            with hub_errors("reading main", endpoint, token):
                if hub.content_key(head) == content_key(planned) and head != (
                    tags[previous[1]] if previous else None
                ):
                    # An earlier run's commit (or a merged pull request) landed but its tag did not:
                    # only tag it, with the files exactly as they are on main.
                    commit = head
                    planned = {
                        **files,
                        **render_published(paths, params, repo_id, chosen, diff, hub.date_published(head)),
                    }
                    out(f"main already holds this release (commit {head[:12]}); tagging it")
        if commit is None and create_pr:
            return open_pull_request(
                api, hub, paths, repo_id, endpoint, token, tag, diff, planned, deletions, head, out
            )
        action = "tagged" if commit else "published"
        if commit is None:
            with hub_errors("uploading the release commit", endpoint, token):
                info = commit_release(api, repo_id, tag, diff, planned, deletions, head)
            commit = info.oid
            out(f"committed {len(planned)} file(s), {len(deletions)} deletion(s): {commit}")
        with hub_errors(
            f"creating tag {tag} (commit {commit[:12]} is on main; rerun to tag it)", endpoint, token
        ):
            api.create_tag(repo_id, tag=tag, revision=commit, repo_type=REPO_TYPE, tag_message=diff.summary())
        prev_ref = (previous[1], tags[previous[1]]) if previous else None
        record = write_records(paths, repo_id, endpoint, chosen, commit, planned, diff, prev_ref)
        out(f"published {repo_id}@{tag} (commit {commit}); record: {record}")
        out(f'load it with: load_dataset("{repo_id}", revision="{tag}")')
        return PublishResult(action, repo_id, format_version(chosen), commit, diff)
