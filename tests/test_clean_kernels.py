from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.kernels.text import Pieces, fold_plain_texts
from pipeline.stages.clean.core import _fold, _normalise, _text_hash_column, text_hashes

# Texts mixing words, punctuation, runs of spaces, non-ASCII letters, digits and spaces, and
# general punctuation (curly quotes, dashes, an ellipsis, a double prime, an unassigned code
# point and a superscript digit just past the block).
PUNCTUATION = ["\u2019", "\u201c", "\u2014", "\u2026", "\u2033", "\u2065", "\u2070"]
TEXT = st.text(
    alphabet=st.sampled_from([*"ab AB09,.-()|\t\n", "é", "Ω", "\u00a0", "ﬁ", "²", "中", *PUNCTUATION])
)


def plain(text: str) -> bool:
    """ASCII and the general punctuation that folds to a separator."""
    return all(c.isascii() or c in PUNCTUATION[:5] for c in text)


def polars_fold(texts: list[str]) -> list[str]:
    normalised = _normalise(pl.Series(texts, dtype=pl.String), "NFKC")
    return pl.select(_fold(pl.lit(normalised))).to_series().to_list()


def test_plain_fold_joins_alphanumeric_runs_with_single_spaces() -> None:
    texts = [
        "  Deep-Learning, (BERT) 4 U!  ",
        "",
        "Café au lait",
        "a",
        "the \u201cbest\u201d\u2014so far\u2026",
    ]
    folded, plain_rows = fold_plain_texts(pa.array(texts))
    assert folded.to_pylist() == ["deep learning bert 4 u", "", "", "a", "the best so far"]
    assert plain_rows.tolist() == [True, True, False, True, True]


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=20))
def test_plain_fold_is_polars_fold_on_every_plain_row(texts: list[str]) -> None:
    folded, plain_rows = fold_plain_texts(pa.array(texts, pa.large_string()))
    expected = polars_fold(texts)
    for text, got, is_plain, want in zip(
        texts, folded.to_pylist(), plain_rows.tolist(), expected, strict=True
    ):
        assert is_plain == plain(text)
        assert got == (want if is_plain else "")


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, max_size=20))
def test_text_hash_column_is_text_hashes_of_the_polars_fold(texts: list[str]) -> None:
    hashes = _text_hash_column(pl.Series(texts, dtype=pl.String)).to_list()
    assert hashes == text_hashes(polars_fold(texts))


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, max_size=20))
def test_pieces_are_the_distinct_space_separated_pieces_and_where_they_occur(texts: list[str]) -> None:
    pieces = Pieces.of(pl.Series("t", texts, dtype=pl.String))
    values = pieces.values.to_list()
    assert len(values) == len(set(values))
    assert set(values) == {piece for text in texts for piece in text.split(" ")}
    rebuilt = [
        " ".join(values[i] for i in pieces.occurrences[start:end])
        for start, end in zip(pieces.occurrence_offsets[:-1], pieces.occurrence_offsets[1:], strict=True)
    ]
    assert rebuilt == texts


def test_texts_holding_a_wanted_piece() -> None:
    pieces = Pieces.of(pl.Series("t", ["a glued wordhere", "clean text", "", "wordhere again wordhere"]))
    wanted = pieces.values.str.contains("wordhere")
    assert pieces.texts_holding(wanted).to_list() == [True, False, False, True]
    assert not pieces.texts_holding(pieces.values == "absent").any()


def test_pieces_keep_first_occurrence_order_past_the_first_table_size() -> None:
    # 100,000 distinct pieces: more than the first table holds, so the kernel retries larger.
    words = [f"w{i}" for i in range(100_000)]
    texts = [" ".join(words[i : i + 1000]) for i in range(0, len(words), 1000)] * 2
    pieces = Pieces.of(pl.Series("t", texts))
    assert pieces.values.to_list() == words
    assert pieces.occurrences.tolist() == list(range(100_000)) * 2


def test_pieces_that_share_their_first_sixteen_bytes_stay_apart() -> None:
    # Slots compare a piece's first 16 bytes and length; longer pieces also their other bytes.
    stem = "representational"  # 16 bytes
    texts = [f"{stem} {stem}s {stem}x {stem}ism {stem}isn {stem}s", f"{stem}ism {stem}"]
    pieces = Pieces.of(pl.Series("t", texts))
    assert pieces.values.to_list() == [stem, f"{stem}s", f"{stem}x", f"{stem}ism", f"{stem}isn"]
    assert pieces.occurrences.tolist() == [0, 1, 2, 3, 4, 1, 3, 0]
