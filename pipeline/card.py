"""Stage `card`: the dataset card `release/README.md`, generated from data and reports.

Reads: the release data directory, `dataset_card/` (Jinja template and static metadata) and the
stage reports (ingest, clean, dedup, split, validation). Writes: the card, whose YAML front
matter (built with huggingface_hub's `DatasetCardData`) holds `configs` (data files per split)
and `dataset_info` (features, per-split `num_examples` and `num_bytes`) computed from the parquet
files. Params: `card` (pretty name, license, homepage) and `publish.repo_id`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from pipeline.errors import BadInputError, ConfigError
from pipeline.outputs import atomic_path
from pipeline.params import CardParams
from pipeline.split import RELEASE_SCHEMA, SPLITS

_ARROW_TO_HF = {pa.string(): "string", pa.int64(): "int64"}
REQUIRED_METADATA = ("summary", "description", "citation", "limitations", "fields")


def size_category(rows: int) -> str:
    """The Hub's `size_categories` bucket for a row count."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ]
    return next((label for bound, label in bounds if rows < bound), "100M<n<1B")


def dataset_info(release: Path) -> dict[str, Any]:
    """`dataset_info` for the card, computed from the release parquet files."""
    splits = []
    download_size = 0
    for split in SPLITS:
        files = sorted((release / "data").glob(f"{split}-*.parquet"))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        num_bytes = sum(pq.read_table(f).nbytes for f in files)
        download_size += sum(f.stat().st_size for f in files)
        splits.append({"name": split, "num_bytes": num_bytes, "num_examples": rows})
    return {
        "features": [{"name": f.name, "dtype": _ARROW_TO_HF[f.type]} for f in RELEASE_SCHEMA],
        "splits": splits,
        "download_size": download_size,
        "dataset_size": sum(s["num_bytes"] for s in splits),
    }


def load_metadata(card_dir: Path) -> dict[str, Any]:
    path = card_dir / "metadata.yaml"
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadInputError(f"{path}: cannot read card metadata ({exc})") from None
    for key in REQUIRED_METADATA:
        if not metadata.get(key):
            raise ConfigError(f"{path}: required field {key!r} is missing or empty")
    return metadata


def _read_report(reports: Path, name: str) -> dict[str, Any]:
    path = reports / name
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read report ({exc}); run `dvc repro` first") from None


def render_card(release: Path, card_dir: Path, reports: Path, params: CardParams, repo_id: str) -> str:
    metadata = load_metadata(card_dir)
    info = dataset_info(release)
    total = sum(s["num_examples"] for s in info["splits"])
    card_data = DatasetCardData(
        pretty_name=params.pretty_name,
        license=params.license,
        language=metadata.get("language", ["en"]),
        task_categories=metadata.get("task_categories"),
        size_categories=[size_category(total)],
        source_datasets=metadata.get("source_datasets"),
        tags=metadata.get("tags"),
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in SPLITS],
            }
        ],
        dataset_info=info,
    )
    ingest = _read_report(reports, "ingest.json")
    clean = _read_report(reports, "clean.json")
    dedup = _read_report(reports, "dedup.json")
    validation = _read_report(reports, "validation.json")
    funnel = [
        {"name": "raw lines", "count": ingest["totals"]["lines"]},
        {"name": "blank lines", "count": ingest["totals"]["blank_lines"]},
        {"name": "rejected lines", "count": ingest["totals"]["rejects"]},
        {"name": "raw records", "count": ingest["totals"]["records"]},
    ]
    funnel += [
        {"name": f"folded duplicates ({method})", "count": count}
        for method, count in dedup["folded_by_method"].items()
    ]
    funnel += [{"name": f"rows in {s['name']}", "count": s["num_examples"]} for s in info["splits"]]
    quality = (
        f"{len(validation['results'])} expectations checked; "
        f"{validation['critical_failures']} critical failures, {validation['warnings']} warnings."
    )
    card = DatasetCard.from_template(
        card_data,
        template_path=str(card_dir / "template.md"),
        repo_id=repo_id,
        summary=metadata["summary"],
        description=metadata["description"],
        curators=metadata.get("curators", ""),
        license=params.license,
        homepage=params.homepage or "-",
        fields=[
            {"name": f.name, "dtype": _ARROW_TO_HF[f.type], "description": metadata["fields"].get(f.name, "")}
            for f in RELEASE_SCHEMA
        ],
        splits=[{"name": s["name"], "rows": s["num_examples"]} for s in info["splits"]],
        funnel=funnel,
        rules=[{"name": n, "count": r["rows_changed"]} for n, r in clean["rules"].items()],
        quality=quality,
        limitations=metadata["limitations"],
        citation=metadata["citation"],
    )
    return str(card.content)


def run_card(release: Path, card_dir: Path, reports: Path, params: CardParams, repo_id: str) -> Path:
    """Write `release/README.md`."""
    content = render_card(release, card_dir, reports, params, repo_id)
    target = release / "README.md"
    with atomic_path(target) as tmp:
        tmp.write_text(content if content.endswith("\n") else content + "\n", encoding="utf-8")
    return target
