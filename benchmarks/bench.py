"""Benchmark: generate N abstracts with known damage and duplicates, run every stage, report.

Not a test: it measures. The corpus recombines sentences of the shared SciTLDR abstracts
(`../shared/corpora/scitldr_train_abstracts.jsonl`) into N documents, writes 80% of them as an
`Abstract:` line dump and 20% as a pasted viewer table with arXiv ids, and injects exact
duplicates, near duplicates, a second version of some papers and scraping damage. Each stage
runs as its own process with the command `dvc.yaml` gives it, so its wall time and peak RSS are
its own. The floor is reading and writing the ingested parquet once (median of three runs).

Usage: `make bench N=200000` (writes `reports/bench.json`). `make bench SEEDS=10` runs the
stages on the seed dumps copied ten times instead (issue 24's load case: `reports/bench-seeds.json`,
each stage's peak RSS against the README's budget).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from benchmarks.ray_cluster import LoopbackCluster

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "scitldr_train_abstracts.jsonl"
WORK = ROOT / "bench"
SEED = 20261123
# The README's memory budget: every stage's peak RSS at the 2.7M scale target, on 2 cores.
RSS_BUDGET_MB = 4096


def load_sentences(corpus: Path) -> list[str]:
    sentences: list[str] = []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            abstract = json.loads(line)["abstract"]
            # A split inside "(e.g. ...)" leaves half a bracket pair: keep balanced sentences only,
            # or the corpus would carry damage the generator made, not damage it injected.
            sentences.extend(
                s
                for s in re.split(r"(?<=[.!?])\s+", abstract)
                if len(s) > 30 and s.count("(") == s.count(")") and s.count("[") == s.count("]")
            )
    return sentences


def damage(text: str, rng: random.Random) -> str:
    """One kind of scraping damage seen in the seed dumps."""
    kind = rng.randrange(4)
    if kind == 0:
        return text.replace(". ", ".111Code is available at ", 1) + " |"
    if kind == 1:
        return text.replace(" , ", " , ", 1).replace(", ", " , ", 1)
    if kind == 2:
        return re.sub(r"\b(\w{4})(\w{4,})\b", r"\1-\n\2", text, count=1)
    return text.replace("  ", " ") + "\u00a0"


def near_duplicate(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 40)):
        index = rng.randrange(len(words))
        words[index] = words[index].upper() if rng.random() < 0.5 else words[index] + "s"
    return " ".join(words)


def generate(docs: int, raw: Path) -> dict[str, int]:
    """Write the raw dumps for `docs` abstracts; return what was injected."""
    rng = random.Random(SEED)
    sentences = load_sentences(CORPUS)
    raw.mkdir(parents=True, exist_ok=True)
    injected = {"exact": 0, "near": 0, "second_version": 0, "damaged": 0}
    table_every = 5
    with (
        (raw / "lines.txt").open("w", encoding="utf-8") as lines,
        (raw / "table.txt").open("w", encoding="utf-8") as table,
    ):
        table.write("stringlengths 9\n| abstract\nstringlengths 431\n")
        previous: list[str] = []
        for number in range(docs):
            roll = rng.random()
            if previous and roll < 0.03:
                text = rng.choice(previous)
                injected["exact"] += 1
            elif previous and roll < 0.06:
                text = near_duplicate(rng.choice(previous), rng)
                injected["near"] += 1
            else:
                text = " ".join(rng.choice(sentences) for _ in range(rng.randint(4, 9)))
                if len(previous) < 10_000:
                    previous.append(text)
                else:
                    previous[rng.randrange(10_000)] = text
            if rng.random() < 0.1:
                text = damage(text, rng)
                injected["damaged"] += 1
            if number % table_every == 0:
                paper = f"{2000 + number // 100_000 % 100:04d}.{number % 100_000:05d}"
                version = rng.randint(1, 3)
                wrapped = re.sub(r"(.{80,120}?) ", "\\1\n", text.replace("\n", " "))
                table.write(f"{paper}v{version} | {wrapped} |\n")
                if rng.random() < 0.02:
                    table.write(f"{paper}v{version + 1} | {wrapped} |\n")
                    injected["second_version"] += 1
            else:
                lines.write("Abstract:" + text.replace("\n", " ") + "\n")
    return injected


def copy_seeds(times: int, raw: Path) -> int:
    """The project's seed dumps `times` over under raw/ (each copy keeps its file's prefix, so
    sources.yaml declares it as it declares the seed); return the number of lines written."""
    raw.mkdir(parents=True, exist_ok=True)
    lines = 0
    for seed in sorted((ROOT / "raw").iterdir()):
        if not seed.is_file():
            continue
        data = seed.read_bytes()
        for copy in range(times):
            (raw / f"{seed.stem}_x{copy:02d}{seed.suffix}").write_bytes(data)
            lines += data.count(b"\n")
    return lines


def run_order(stages: dict[str, Any]) -> list[str]:
    """The stages in an order `dvc repro` could run them: each after the stages whose outputs
    it depends on (dvc.yaml's order among the ready ones)."""

    def paths(entries: list[Any]) -> set[str]:
        return {next(iter(e)) if isinstance(e, dict) else str(e) for e in entries}

    producer = {out: name for name, stage in stages.items() for out in paths(stage.get("outs", []))}
    needs = {
        name: {producer[d] for d in paths(stage.get("deps", [])) if d in producer} - {name}
        for name, stage in stages.items()
    }
    order: list[str] = []
    while len(order) < len(stages):
        ready = [name for name in stages if name not in order and needs[name] <= set(order)]
        if not ready:
            sys.exit(
                f"bench: dvc.yaml stages depend on each other in a cycle: {sorted(set(stages) - set(order))}"
            )
        order.append(ready[0])
    return order


def run_measured(
    command: list[str], may_fail: bool = False, cluster: LoopbackCluster | None = None
) -> tuple[float, float, float]:
    """Run `command`; return (wall seconds, peak RSS in MB, CPU seconds (user + system) of the
    process and its children). CPU seconds barely move when other work shares the machine; wall
    seconds do. A failure exits, unless `may_fail` (then it is printed). With a Ray `cluster`
    the command runs on it (`ABSTRACTS_ENGINE=ray`); the CPU seconds are then the driver's
    only, and the cluster samples the memory of its processes and the driver together."""
    env = cluster.environment() if cluster is not None else dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=WORK, env=env, stderr=subprocess.PIPE, text=True)
    if cluster is not None:
        cluster.watch(process.pid)
    assert process.stderr is not None
    log = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        if not may_fail:
            sys.exit(f"bench: {' '.join(command)} failed:\n{log}")
        print(f"bench: {' '.join(command)} failed (measured anyway):\n{log}", file=sys.stderr)
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


FLOOR = (
    "import pyarrow.parquet as pq, sys\n"
    "table = pq.read_table(sys.argv[1])\n"
    "pq.write_table(table, sys.argv[2], compression='zstd', compression_level=3)\n"
)


def clean_time_by_rule(ingested: Path, rows: int = 100_000, repeats: int = 3) -> dict[str, float]:
    """Where clean's time goes: CPU seconds per rule (first pass), in the second pass (the rows a
    text-removing or word-joining rule changed, cleaned again), in the flags and hashes, and for
    the whole of `clean_frame`, on the first `rows` ingested rows: the median of `repeats` runs
    after one untimed warm-up run (the word list and the compiled loops, which a long run loads
    once; it also caches the timed rows' token decisions, but forgetting them before each run
    measured the same, within noise). Each step is timed on its own, not as a difference of two
    noisy times.
    Run it with one polars thread (`clean_time_on_one_core`): the CPU time is then what one core
    spends."""
    import polars as pl

    from pipeline.params import load_params
    from pipeline.stages.clean.core import (
        _REPEAT_AFTER,
        RULES,
        _flags,
        _non_english,
        _one_pass,
        _text_hash_column,
        clean_frame,
    )

    params = load_params(ROOT / "params.yaml").clean
    frame = pl.read_parquet(ingested, n_rows=rows)
    clean_frame(frame, params)
    first, changed = _one_pass(frame["raw_text"], params)
    again = changed.select(pl.any_horizontal(_REPEAT_AFTER)).to_series()
    runs: dict[str, list[float]] = {}

    def timed(name: str, step: Callable[[], object]) -> None:
        start = time.process_time()
        step()
        runs.setdefault(name, []).append(time.process_time() - start)

    def flags_and_hashes() -> None:
        cleaned = pl.DataFrame({"abstract": first, "_glued": changed["_glued"]})
        cleaned = cleaned.with_columns(_en=_non_english(first, params))
        cleaned.select(_flags(pl.col("abstract"), pl.col("_glued"), pl.col("_en"), params))
        _text_hash_column(first)

    for _ in range(repeats):
        texts = frame["raw_text"]
        for rule in RULES:
            start = time.process_time()
            texts = rule.apply(texts, params, None).texts
            runs.setdefault(rule.name, []).append(time.process_time() - start)
        timed("second_pass", lambda: _one_pass(first.filter(again), params))
        timed("flags_and_hashes", flags_and_hashes)
        timed("clean_frame", lambda: clean_frame(frame, params))
    seconds = {name: sorted(values)[len(values) // 2] for name, values in runs.items()}
    steps = ", ".join(f"{name} {value:.2f} s" for name, value in seconds.items() if name != "clean_frame")
    print(
        f"bench: clean CPU on {frame.height:,} rows, one core: {seconds['clean_frame']:.2f} s "
        f"({frame.height / seconds['clean_frame']:,.0f} docs per CPU-s); by step: {steps}",
        file=sys.stderr,
    )
    return {name: round(value, 3) for name, value in seconds.items()}


def clean_time_on_one_core(ingested: Path) -> dict[str, float]:
    """`clean_time_by_rule` in a child process with one polars thread, as a clean worker runs
    (polars reads the thread count when it is first imported)."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from benchmarks.bench import clean_time_by_rule\n"
        "print(json.dumps(clean_time_by_rule(Path(sys.argv[1]))))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(ingested)],
        cwd=ROOT,
        env={**os.environ, "POLARS_MAX_THREADS": "1"},
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    )
    seconds: dict[str, float] = json.loads(child.stdout)
    return seconds


def filter_language_cost(cleaned: Path, rows: int = 100_000, repeats: int = 3) -> dict[str, float | int]:
    """CPU seconds per 100,000 rows of the filter's compiled counting pass (which counts the
    English function words that spare most rows the identifier, beside the lengths, capitals,
    symbols and brackets the other rules read) and of the identifier on the rows it scores."""
    import numpy as np
    import pyarrow.parquet as pq

    from pipeline.kernels.measures import measure
    from pipeline.params import FilterParams
    from pipeline.policy import identify

    texts = pq.read_table(cleaned, columns=["abstract"]).slice(0, rows).column("abstract").combine_chunks()
    measure(texts.slice(0, 10))  # compiles (or loads the cached) loop
    times = []
    for _ in range(repeats):
        start = time.process_time()
        counts = measure(texts)
        times.append(time.process_time() - start)
    params = FilterParams()
    sure = counts.function_words >= params.english_sure_share * np.maximum(counts.words, 1)
    scored = np.flatnonzero(~sure & (counts.chars > 0))
    start = time.process_time()
    for text in texts.take(scored).to_pylist():
        identify(text)
    per_100k = 100_000 / max(len(texts), 1)
    return {
        "counting_pass_cpu_s_per_100k": round(min(times) * per_100k, 3),
        "identifier_rows_per_100k": round(len(scored) * per_100k),
        "identifier_cpu_s_per_100k": round((time.process_time() - start) * per_100k, 3),
    }


def row_index_cost(workdir: Path) -> dict[str, float | int]:
    """Size and time of the row index `abstracts publish` would write for this release
    (`releases/<version>.rows.parquet`: every row's id, split and membership keys)."""
    import pyarrow.parquet as pq

    from pipeline.releases import write_row_index

    target = workdir / "bench.rows.parquet"
    start, cpu = time.perf_counter(), time.process_time()
    write_row_index(workdir / "release" / "data", target, workdir / "build" / "dedup.parquet")
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    size = target.stat().st_size
    rows = pq.ParquetFile(target).metadata.num_rows
    print(f"bench: row index {size / 1e6:.1f} MB for {rows:,} rows in {seconds:.1f} s", file=sys.stderr)
    return {
        "rows": rows,
        "bytes": size,
        "bytes_per_row": round(size / max(rows, 1), 1),
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu_s, 2),
    }


def dedup_quality(workdir: Path) -> dict[str, float | int]:
    """Precision and recall of the real dedup stage on the labelled pairs of `benchmarks.pairs`."""
    from benchmarks.pairs import build_rows, dedup_rows, load_corpus, score
    from pipeline.params import load_params

    seed_release = ROOT / "build" / "dedup.parquet"
    extra: list[str] = []
    if seed_release.exists():
        from pipeline.stages.dedup.core import kept_abstracts

        extra = kept_abstracts(ROOT / "build" / "clean.parquet", seed_release).to_pylist()
    rows, positives = build_rows(load_corpus() + extra)
    kept_of = dedup_rows(rows, workdir, load_params(ROOT / "params.yaml").dedup)
    result = score(rows, positives, kept_of)
    print(
        f"bench: dedup precision {result['precision']:.4f}, recall (Jaccard >= 0.8) "
        f"{result['recall_jaccard_ge_0_8']:.4f} on {result['folded_pairs']} folded pairs",
        file=sys.stderr,
    )
    return result


def output_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every parquet file the run wrote, to compare engines' outputs byte for byte."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for directory in ("build", "reports", "release")
        for path in sorted((root / directory).rglob("*.parquet"))
        if path.name != "floor.parquet"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--docs", type=int, default=200_000, help="abstracts to generate")
    parser.add_argument("--out", type=Path, help="default: reports/bench.json (bench-ray.json on Ray)")
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="ray: the stages run on a loopback Ray cluster of --ray-cpus CPUs (ABSTRACTS_ENGINE=ray)",
    )
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs (parallel tasks) of the Ray cluster")
    parser.add_argument(
        "--seeds-times",
        type=int,
        help="run on the seed dumps copied this many times (not --docs generated abstracts)",
    )
    parser.add_argument(
        "--until", help="stop after this stage (e.g. dedup: the last stage with work on the engine)"
    )
    args = parser.parse_args()
    if args.out is None:
        name = "bench-seeds.json" if args.seeds_times else "bench.json"
        args.out = ROOT / "reports" / (name if args.engine == "local" else "bench-ray.json")

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    injected: dict[str, int] | None = None
    if args.seeds_times:
        print(f"bench: the seed dumps {args.seeds_times} times ...", file=sys.stderr)
        args.docs = copy_seeds(args.seeds_times, WORK / "raw")
        shutil.copy(ROOT / "sources.yaml", WORK / "sources.yaml")
    else:
        print(f"bench: generating {args.docs:,} abstracts ...", file=sys.stderr)
        injected = generate(args.docs, WORK / "raw")
        # The bench dumps are undeclared sources (each named by its file); ingest reads sources.yaml.
        (WORK / "sources.yaml").write_text("sources: []\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["validate"].update({"min_rows": 1, "max_rows": 100_000_000})
    (WORK / "params.yaml").write_text(yaml.safe_dump(params))
    for static in ("gx", "dataset_card", "releases"):
        if (ROOT / static).is_dir():
            # gx/uncommitted holds GX's run results and Data Docs, not the project.
            shutil.copytree(ROOT / static, WORK / static, ignore=shutil.ignore_patterns("uncommitted"))

    # The stage commands come from dvc.yaml, so the benchmark runs exactly what `dvc repro` runs.
    dvc_stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stages = {name: shlex.split(dvc_stages[name]["cmd"]) for name in run_order(dvc_stages)}
    if args.until:
        if args.until not in stages:
            sys.exit(f"bench: --until {args.until}: no such stage; dvc.yaml has {', '.join(stages)}")
        names = list(stages)
        stages = {name: stages[name] for name in names[: names.index(args.until) + 1]}
    results: dict[str, Any] = {}
    gate_passed = True
    cluster = None
    if args.engine == "ray":
        # Imported here: psutil and Ray come with the `ray` extra (`make bench ENGINE=ray`).
        from benchmarks.ray_cluster import LoopbackCluster

        started = time.perf_counter()
        cluster = LoopbackCluster(args.ray_cpus, object_store_mb=2048).__enter__()
        cluster_start_s = time.perf_counter() - started
        cluster.reset_peak()
        print(f"bench: Ray cluster of {args.ray_cpus} CPUs up in {cluster_start_s:.1f} s", file=sys.stderr)
    for name, command in stages.items():
        if name == "release" and not gate_passed:
            continue  # nothing to release: the gate's failure is in the report
        # A critical check that fails on the generated corpus is a finding, not a reason to
        # lose the timings: the gate is measured either way.
        seconds, rss, cpu = run_measured(command, may_fail=name == "gate", cluster=cluster)
        if name == "gate":
            gate_passed = (WORK / "reports" / "gate.json").is_file()
        results[name] = {
            "seconds": round(seconds, 2),
            "cpu_s": round(cpu, 2),
            "docs_per_s": round(args.docs / seconds),
            "peak_rss_mb": round(rss),
        }
        if cluster is not None:
            # Summed over the driver and every process of the cluster (workers, raylet, GCS,
            # object store), sampled every 0.2 s.
            results[name]["ray_peak_rss_mb"] = round(cluster.reset_peak() / 2**20)
        print(
            f"bench: {name:<12} {seconds:8.2f} s {cpu:8.2f} CPU-s {args.docs / seconds:12,.0f} docs/s "
            f"{rss:8.0f} MB" + (f" {results[name]['ray_peak_rss_mb']:8d} MB on Ray" if cluster else ""),
            file=sys.stderr,
        )
    if cluster is not None:
        cluster.__exit__(None, None, None)
        if cluster.leftovers:
            sys.exit(f"bench: Ray processes outlived the cluster: {cluster.leftovers}")
    # The floor is short and its time varies from run to run (page cache, the neighbour's
    # load): the median of three runs.
    floors = [
        run_measured([sys.executable, "-c", FLOOR, "build/ingested.parquet", "build/floor.parquet"])
        for _ in range(3)
    ]
    floor_s, floor_rss, _ = sorted(floors)[1]
    total = sum(r["seconds"] for r in results.values())
    report = {
        "docs": args.docs,
        "injected": injected,
        "floor_s": round(floor_s, 2),
        "floor_peak_rss_mb": round(floor_rss),
        "total_s": round(total, 2),
        "total_cpu_s": round(sum(r["cpu_s"] for r in results.values()), 2),
        "ratio_to_floor": round(total / floor_s, 1),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results.values()),
        "stages": results,
        "gate_passed": gate_passed,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "engine": args.engine,
        "outputs": {
            name: json.loads((WORK / "reports" / f"{name}.json").read_text())
            for name in ("dedup", "split")
            if (WORK / "reports" / f"{name}.json").is_file()
        },
    }
    if cluster is not None:
        report["ray"] = {
            "cpus": args.ray_cpus,
            "cluster_start_s": round(cluster_start_s, 2),
            "peak_rss_mb": max(r["ray_peak_rss_mb"] for r in results.values()),
        }
        report["output_hashes"] = output_hashes(WORK)
    elif args.seeds_times:
        report["seeds_times"] = args.seeds_times
        report["rss_budget_mb"] = RSS_BUDGET_MB
        report["within_rss_budget"] = report["peak_rss_mb"] <= RSS_BUDGET_MB
    elif not args.until:
        report["output_hashes"] = output_hashes(WORK)
        # Measurements of the stages' own code, the same on any engine: on the local run only.
        if gate_passed:
            report["row_index"] = row_index_cost(WORK)
        report["clean_cpu_s_by_step"] = clean_time_on_one_core(WORK / "build" / "ingested.parquet")
        language = filter_language_cost(WORK / "build" / "clean.parquet")
        # An upper bound on the language check's share of the pipeline: the whole counting pass
        # (the function words and every other measure) and the identifier, at this corpus's size,
        # in the filter on every row and in validate again on every `language_sample_every`-th.
        per_corpus = args.docs / 100_000 * (1 + 1 / params["validate"]["language_sample_every"])
        language_cpu_s = (
            language["counting_pass_cpu_s_per_100k"] + language["identifier_cpu_s_per_100k"]
        ) * per_corpus
        language["pipeline_cpu_s_upper_bound"] = round(language_cpu_s, 2)
        language["share_of_pipeline_cpu_upper_bound"] = round(
            language_cpu_s / max(report["total_cpu_s"], 1e-9), 4
        )
        report["filter_language"] = language
        print(
            f"bench: language check at most {language_cpu_s:.1f} CPU-s, "
            f"{language['share_of_pipeline_cpu_upper_bound']:.1%} of the pipeline's CPU-s",
            file=sys.stderr,
        )
        print("bench: dedup precision/recall on labelled pairs ...", file=sys.stderr)
        report["dedup_quality"] = dedup_quality(WORK / "quality")
    if "split" in report["outputs"]:
        report["leaked_pairs"] = len(report["outputs"]["split"].get("leaked_pairs", []))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(
        f"bench: floor {floor_s:.2f} s; total {total:.2f} s = {total / floor_s:.1f}x floor; "
        f"peak RSS {report['peak_rss_mb']} MB; written to {args.out}",
        file=sys.stderr,
    )
    if report.get("within_rss_budget") is False:
        sys.exit(f"bench: peak RSS {report['peak_rss_mb']} MB is over the budget of {RSS_BUDGET_MB} MB")


if __name__ == "__main__":
    main()
