"""A loopback Ray cluster for the Ray engine's identity test and the benchmark.

The head runs in a child process (`python -m benchmarks.ray_cluster`) that starts a Ray
instance bound to 127.0.0.1 with token authentication (a fresh token in the environment,
nothing written to the home directory), prints its address and waits; closing its stdin
shuts Ray down, which stops every process the instance started. `LoopbackCluster` records
the processes of the cluster while it runs (head, raylet, GCS, agents, workers), samples
their summed memory, and after shutdown kills any that outlived it and reports them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent

# Ray binds to the address it would reach other nodes at unless clusters are disabled, in
# which case it uses the loopback address (`ray._private.services.get_node_ip_address`).
LOOPBACK_ENVIRONMENT = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "token",
    # The raylet registers within 60 s by default; a busy 2-core machine (the test suite on
    # every core) has taken longer.
    "RAY_raylet_start_wait_time_s": "300",
}


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


class LoopbackCluster:
    """A Ray cluster of `cpus` CPUs on 127.0.0.1, for the length of a `with` block."""

    def __init__(self, cpus: int, object_store_mb: int = 1024) -> None:
        self.cpus = cpus
        self.object_store_mb = object_store_mb
        self.address = ""
        self.token = secrets.token_hex(16)
        self.seen: dict[int, psutil.Process] = {}
        self.worker_names: set[str] = set()
        self.peak_rss = 0
        self.leftovers: list[str] = []
        self._head: subprocess.Popen[str] | None = None
        self._temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._watched: list[psutil.Process] = []
        self._lock = threading.Lock()

    def environment(self) -> dict[str, str]:
        """The environment a stage needs to run on this cluster (`ABSTRACTS_ENGINE=ray`)."""
        return {
            **os.environ,
            **LOOPBACK_ENVIRONMENT,
            "RAY_AUTH_TOKEN": self.token,
            "RAY_ADDRESS": self.address,
            "ABSTRACTS_ENGINE": "ray",
        }

    def __enter__(self) -> LoopbackCluster:
        env = {**os.environ, **LOOPBACK_ENVIRONMENT, "RAY_AUTH_TOKEN": self.token}
        env.pop("RAY_ADDRESS", None)
        self._head = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.ray_cluster",
                "--cpus",
                str(self.cpus),
                "--temp-dir",
                str(self._temp),
                "--object-store-mb",
                str(self.object_store_mb),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._head.stdout is not None
        line = self._head.stdout.readline()
        if not line:
            self.__exit__(None, None, None)
            raise RuntimeError("the Ray head process exited before it printed its address")
        self.address = json.loads(line)["address"]
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def watch(self, pid: int | None) -> None:
        """Count process `pid` and its children (a stage's driver) in the memory samples too."""
        with self._lock:
            self._watched = [psutil.Process(pid)] if pid is not None else []

    def _sample(self) -> None:
        assert self._head is not None
        head = psutil.Process(self._head.pid)
        while not self._stop.is_set():
            processes = _tree(head)
            with self._lock:
                for process in self._watched:
                    processes.extend(_tree(process))
            for process in processes:
                if process.pid not in self.seen:
                    self.seen[process.pid] = process
                try:
                    name = process.name()
                    if name.startswith("ray::"):
                        self.worker_names.add(name)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss = max(self.peak_rss, _rss(processes))
            self._stop.wait(0.2)

    def reset_peak(self) -> int:
        """The peak summed RSS since the last reset (bytes), and start a new peak."""
        peak, self.peak_rss = self.peak_rss, 0
        return peak

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        if self._head is not None:
            for process in _tree(psutil.Process(self._head.pid)):
                self.seen.setdefault(process.pid, process)
            assert self._head.stdin is not None
            self._head.stdin.close()
            try:
                self._head.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self._head.kill()
                self._head.wait()
        # Processes of this cluster that outlived its shutdown: reported, then stopped.
        time.sleep(1)
        for process in self.seen.values():
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    self.leftovers.append(f"{process.pid} {process.name()}")
                    process.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self._temp, ignore_errors=True)


def _serve(cpus: int, temp_dir: str, object_store_mb: int) -> None:
    import ray

    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        object_store_memory=object_store_mb * 1024 * 1024,
        _temp_dir=temp_dir,
        log_to_driver=False,
    )
    address: Any = ray.get_runtime_context().gcs_address
    print(json.dumps({"address": address}), flush=True)
    sys.stdin.read()
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a loopback Ray head until stdin closes.")
    parser.add_argument("--cpus", type=int, required=True)
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--object-store-mb", type=int, default=1024)
    args = parser.parse_args()
    _serve(args.cpus, args.temp_dir, args.object_store_mb)


if __name__ == "__main__":
    main()
