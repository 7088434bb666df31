from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.clean import CLEAN_SCHEMA, clean_batch, run_clean
from pipeline.ingest import RECORD_SCHEMA
from pipeline.params import CleanParams


def records(*texts: str) -> pa.RecordBatch:
    n = len(texts)
    return pa.RecordBatch.from_pydict(
        {
            "source": [f"t.txt:{i + 1}" for i in range(n)],
            "file": ["t.txt"] * n,
            "line": list(range(1, n + 1)),
            "format": ["abstract_lines"] * n,
            "raw_id": [None] * n,
            "arxiv_id": [None] * n,
            "arxiv_version": [None] * n,
            "raw_text": list(texts),
        },
        schema=RECORD_SCHEMA,
    )


def clean_one(text: str) -> dict:
    out = clean_batch(records(text), CleanParams(min_chars=10))
    assert out.schema == CLEAN_SCHEMA
    return out.to_pylist()[0]


@pytest.mark.parametrize(
    ("raw", "clean", "rules"),
    [
        ("Abstract:We study X.", "We study X.", ["strip_prefix"]),
        ("ABSTRACT We study X.", "We study X.", ["strip_prefix"]),
        ("Abstract reasoning is hard.", "Abstract reasoning is hard.", []),
        ("We study X. |", "We study X.", ["table_residue"]),
        ("We study X. | |", "We study X.", ["table_residue"]),
        ("We study\nX  and Y.", "We study X and Y.", ["whitespace"]),
        ("We study\u00a0X\u200b.", "We study X.", ["unicode"]),
        ("words (\x18~600 sentences).", "words (~600 sentences).", ["unicode"]),
        ("language (NLU) . We", "language (NLU). We", ["empty_citation"]),
        ("as in ( ) prior work , we", "as in prior work, we", ["empty_citation"]),
        ("on .NET and 0.5 .", "on .NET and 0.5.", ["empty_citation"]),
    ],
)
def test_rules(raw: str, clean: str, rules: list[str]) -> None:
    row = clean_one(raw)
    assert row["abstract"] == clean
    assert row["clean_rules"] == rules


def test_flags_and_hash() -> None:
    row = clean_one("Short and cut")
    assert row["flags"] == ["truncated"]
    assert clean_one("See https://x.org for code.")["flags"] == ["url"]
    # Case, punctuation and spacing do not change the text hash used for exact duplicates.
    assert clean_one("We Study X, and Y.")["text_hash"] == clean_one("we study x and y")["text_hash"]
    assert clean_one("We study X.")["text_hash"] != clean_one("We study Y.")["text_hash"]


def test_output_is_identical_for_any_worker_count(tmp_path: Path) -> None:
    texts = [f"Abstract: Paper {i} studies\nthing {i % 7} . |" for i in range(500)]
    pq.write_table(pa.Table.from_batches([records(*texts)]), tmp_path / "in.parquet")
    outputs = []
    for workers in (1, 2, 3):
        out = tmp_path / f"out{workers}.parquet"
        run_clean(
            tmp_path / "in.parquet",
            out,
            tmp_path / f"r{workers}.json",
            CleanParams(workers=workers, batch_rows=64),
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    report = (tmp_path / "r1.json").read_text()
    assert (tmp_path / "r2.json").read_text() == report
    frame = pl.read_parquet(tmp_path / "out1.parquet")
    assert frame.height == 500
    assert frame["abstract"][3] == "Paper 3 studies thing 3."
