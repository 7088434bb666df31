"""The Ray engine writes byte-identical files to the local engine's.

A loopback Ray cluster (2 CPUs on 127.0.0.1, `benchmarks.ray_cluster`) runs the stages that
use the engine (clean, filter, dedup) of a copy of the locally built seed project with the real
`dvc repro`; every parquet file they write must hash the same as the local build's, and DVC
must then find the whole pipeline up to date (the later stages' inputs did not change, so the
release is the local one). On the same cluster the band-key shuffle of dedup must find the
in-memory candidate pairs of a key set with many buckets. The cluster is shut down and no
process of it may be left.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray engine needs the `ray` extra: pip install -e '.[ray]'")

from benchmarks.ray_cluster import LoopbackCluster

ENGINE_STAGES = ["clean", "filter", "dedup"]
REPO_ROOT = Path(__file__).resolve().parent.parent


# Candidate pairs by a shuffle of a band-key file on Ray, compared with the in-memory pairs.
SHUFFLE_CHECK = """
import dataclasses, sys
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from pipeline.engines.ray_engine import RayEngine
from pipeline.kernels.minhash import candidate_pairs, keys_to_arrow
from pipeline.params import DedupParams
from pipeline.stages.dedup.core import shuffled_candidate_pairs
from tests.test_engines import _keys_with_buckets
keys = _keys_with_buckets(600, 20, seed=11)
path = Path(sys.argv[1]) / "shuffle-minhash.parquet"
pq.write_table(pa.table({"band_keys": keys_to_arrow(keys)}), path, row_group_size=150)
survivors = np.flatnonzero(np.arange(600) % 5 != 2).astype(np.int64)
params = dataclasses.replace(DedupParams(), batch_rows=100)
pairs = shuffled_candidate_pairs(path, survivors, params, RayEngine())
np.testing.assert_array_equal(pairs, candidate_pairs(survivors, keys))
print("same pairs:", len(pairs))
"""


def _hashes(root: Path) -> dict[str, str]:
    found = {}
    for directory in ("build", "reports", "release"):
        for path in sorted((root / directory).rglob("*.parquet")):
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _share_compiled_kernels(project: Path) -> None:
    """Ray workers import the modules of the driver's directory (the copy): give the copy this
    tree's compiled numba kernels, as a checkout that has run before has them (numba's cache
    is keyed by the source file's mtime and size, which the copy keeps)."""
    for cached in (REPO_ROOT / "pipeline").rglob("__pycache__/*.nb[ic]"):
        target = project / cached.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached, target)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_ray_engine_writes_the_local_engines_bytes(built_seed_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "ml-abstracts"
    shutil.copytree(built_seed_project, project, symlinks=True)
    _share_compiled_kernels(project)
    local = _hashes(built_seed_project)
    # Written anew on the cluster, not left from the local build.
    for name in ("clean.parquet", "filter.parquet", "dedup.parquet", "minhash.parquet"):
        (project / "build" / name).unlink()
    with LoopbackCluster(cpus=2) as cluster:
        result = _run(
            ["dvc", "repro", "--force", "--single-item", *ENGINE_STAGES], project, cluster.environment()
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-4000:]
        # The candidate shuffle on the cluster, on band keys with many buckets (the seeds have few).
        shuffle = _run([sys.executable, "-c", SHUFFLE_CHECK, str(tmp_path)], REPO_ROOT, cluster.environment())
        assert shuffle.returncode == 0, shuffle.stderr[-4000:]
        assert shuffle.stdout.startswith("same pairs: "), shuffle.stdout
        assert int(shuffle.stdout.split()[-1]) > 50
        seen_workers = set(cluster.worker_names)
    # Each stage ran on the cluster, in its worker processes.
    assert log.count(f"engine: ray at {cluster.address}, 2 CPUs") == len(ENGINE_STAGES), log[-4000:]
    assert "candidate pairs" in log
    assert cluster.address.startswith("127.0.0.1:")
    assert any(name.startswith("ray::") for name in seen_workers), seen_workers
    assert cluster.leftovers == [], f"Ray processes outlived the cluster: {cluster.leftovers}"
    assert len(cluster.seen) > 3

    ray_build = _hashes(project)
    assert ray_build.keys() == local.keys()
    assert {"build/clean.parquet", "build/filter.parquet", "build/dedup.parquet"} <= ray_build.keys()
    different = sorted(name for name in local if ray_build[name] != local[name])
    assert different == [], f"the Ray engine wrote other bytes than the local engine: {different}"
    # The outputs match the lock the local build wrote: nothing downstream is stale.
    status = _run(["dvc", "status"], project, dict(os.environ))
    assert status.returncode == 0, status.stderr
    assert "up to date" in status.stdout, status.stdout
