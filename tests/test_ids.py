from __future__ import annotations

import pytest

from pipeline.ids import (
    acl_anthology_id,
    dblp_key,
    ids_in_url,
    normalize_doi,
    openalex_id,
    openreview_id,
    parse_arxiv_id,
    pmlr_id,
    semantic_scholar_id,
    split_title_suffix,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2301.00006", ("2301.00006", None)),
        ("0704.0001v2", ("0704.0001", 2)),
        ("hep-th/9901001", ("hep-th/9901001", None)),
        ("math.GT/0309136v1", ("math.GT/0309136", 1)),
        ("arXiv:2301.00006v2", ("2301.00006", 2)),
        ("arxiv:2301.00006", ("2301.00006", None)),
        ("https://arxiv.org/abs/2301.00006v2", ("2301.00006", 2)),
        ("http://arxiv.org/pdf/2301.00006", ("2301.00006", None)),
        ("https://arxiv.org/pdf/2301.00006v3.pdf", ("2301.00006", 3)),
        ("http://export.arxiv.org/abs/hep-th/9901001v1", ("hep-th/9901001", 1)),
        ("10.48550/arXiv.2301.00006", ("2301.00006", None)),
        ("https://doi.org/10.48550/arXiv.2301.00006", ("2301.00006", None)),
        ("  2301.00006  ", ("2301.00006", None)),
    ],
)
def test_arxiv_ids_in_every_form(raw: str, expected: tuple[str, int | None]) -> None:
    assert parse_arxiv_id(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "x",
        "10.18653/v1/2021.conll-1.5",
        "https://example.org/abs/2301.00006",
        "HEP-TH/9901001",
        "2301.000",
    ],
)
def test_not_arxiv_ids(raw: str) -> None:
    assert parse_arxiv_id(raw) is None


def test_rss_title_suffix_is_removed_and_read() -> None:
    assert split_title_suffix("Fair O-RANs. (arXiv:2301.00597v3 [cs.NI] UPDATED)") == (
        "Fair O-RANs.",
        ("2301.00597", 3),
    )
    assert split_title_suffix("Title (arXiv:2301.00006v1 [cs.HC])") == ("Title", ("2301.00006", 1))
    # A title that merely mentions arXiv keeps its text.
    assert split_title_suffix("Why arXiv:2301.00006 matters") == ("Why arXiv:2301.00006 matters", None)


def test_doi_is_lower_case_without_resolver() -> None:
    assert normalize_doi("https://doi.org/10.18653/V1/2021.CONLL-1.5") == "10.18653/v1/2021.conll-1.5"
    assert normalize_doi("doi:10.1103/PhysRevD.76.013009") == "10.1103/physrevd.76.013009"
    assert normalize_doi("http://dx.doi.org/10.48550/arXiv.1706.03762") == "10.48550/arxiv.1706.03762"
    assert normalize_doi("not a doi") is None


def test_other_ids() -> None:
    assert acl_anthology_id("2021.conll-1.5") == "2021.conll-1.5"
    assert acl_anthology_id("https://aclanthology.org/P19-1001.pdf") == "P19-1001"
    assert acl_anthology_id("pan17") is None
    assert openreview_id("https://openreview.net/forum?id=-_FVMKvxVCQo1") == "-_FVMKvxVCQo1"
    assert openreview_id("https://openreview.net/pdf?id=abc_123") == "abc_123"
    assert pmlr_id("https://proceedings.mlr.press/v35/chen14.html") == "v35/chen14"
    assert pmlr_id("pmlr-v35-chen14") == "v35/chen14"
    assert (
        semantic_scholar_id("204e3073870fae3d05bcbc2f6a8e263d9b72e776")
        == "204e3073870fae3d05bcbc2f6a8e263d9b72e776"
    )
    assert semantic_scholar_id(
        "https://www.semanticscholar.org/paper/204e3073870fae3d05bcbc2f6a8e263d9b72e776"
    ) == ("204e3073870fae3d05bcbc2f6a8e263d9b72e776")
    assert openalex_id("https://openalex.org/W2626778328") == "W2626778328"


def test_ids_in_url() -> None:
    assert ids_in_url("https://arxiv.org/abs/2301.00006v2") == {"arxiv": "2301.00006v2"}
    assert ids_in_url("https://aclanthology.org/2021.conll-1.5") == {"acl_anthology": "2021.conll-1.5"}
    assert ids_in_url("https://doi.org/10.18653/v1/N19-1423") == {"doi": "10.18653/v1/n19-1423"}
    assert ids_in_url("https://example.org/paper") == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("conf/nips/VaswaniSPUJGKP17", "conf/nips/VaswaniSPUJGKP17"),
        ("journals/corr/abs-1706-03762", "journals/corr/abs-1706-03762"),
        ("https://dblp.org/rec/conf/iclr/KingmaB14.html", "conf/iclr/KingmaB14"),
        # A venue list's per-author profile cells, a person's key and free text are not paper keys.
        (";;", None),
        ("", None),
        ("homepages/v/AshishVaswani", None),
        ("conf/nips", None),
        ("Ashish Vaswani", None),
    ],
)
def test_dblp_keys(raw: str, expected: str | None) -> None:
    assert dblp_key(raw) == expected


def test_bare_openreview_forum_ids() -> None:
    assert openreview_id("-_FVMKvxVCQo1") == "-_FVMKvxVCQo1"
    assert openreview_id("rJXMpikCZ") == "rJXMpikCZ"
    assert openreview_id(";") is None and openreview_id("a b c d e f") is None
