from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.clean import _fold, _normalise, _text_hash_column, text_hashes
from pipeline.clean_kernels import ascii_fold, distinct_pieces

# Texts mixing words, punctuation, runs of spaces and non-ASCII letters, digits and spaces.
TEXT = st.text(alphabet=st.sampled_from([*"ab AB09,.-()|\t\n", "é", "Ω", "\u00a0", "ﬁ", "²", "中"]))


def polars_fold(texts: list[str]) -> list[str]:
    normalised = _normalise(pl.Series(texts, dtype=pl.String), "NFKC")
    return pl.select(_fold(pl.lit(normalised))).to_series().to_list()


def test_ascii_fold_joins_alphanumeric_runs_with_single_spaces() -> None:
    folded, ascii = ascii_fold(pa.array(["  Deep-Learning, (BERT) 4 U!  ", "", "Café au lait", "a"]))
    assert folded.to_pylist() == ["deep learning bert 4 u", "", "", "a"]
    assert ascii.tolist() == [True, True, False, True]


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=20))
def test_ascii_fold_is_polars_fold_on_every_ascii_row(texts: list[str]) -> None:
    folded, ascii = ascii_fold(pa.array(texts, pa.large_string()))
    expected = polars_fold(texts)
    for text, got, is_ascii, want in zip(texts, folded.to_pylist(), ascii.tolist(), expected, strict=True):
        assert is_ascii == text.isascii()
        assert got == (want if is_ascii else "")


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, max_size=20))
def test_text_hash_column_is_text_hashes_of_the_polars_fold(texts: list[str]) -> None:
    hashes = _text_hash_column(pl.Series(texts, dtype=pl.String)).to_list()
    assert hashes == text_hashes(polars_fold(texts))


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=20))
def test_distinct_pieces_is_the_set_of_space_separated_pieces(texts: list[str]) -> None:
    pieces = distinct_pieces(pl.Series("t", texts, dtype=pl.String)).to_list()
    assert len(pieces) == len(set(pieces))
    assert set(pieces) == {piece for text in texts for piece in text.split(" ")}


def test_distinct_pieces_keep_first_occurrence_order_past_the_first_table_size() -> None:
    # 100,000 distinct pieces: more than the first table holds, so the kernel retries larger.
    words = [f"w{i}" for i in range(100_000)]
    texts = [" ".join(words[i : i + 1000]) for i in range(0, len(words), 1000)] * 2
    assert distinct_pieces(pl.Series("t", texts)).to_list() == words
