"""The offline Data Docs pages (`pipeline/stages/validate/docs.py`) of a real `dvc repro`
build, opened in headless Chromium: styled, offline, every link resolving, warnings as warnings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from conftest import requested_urls

from pipeline.stages.validate.docs import as_warnings, local_links, mark_failed_warnings, offline_html

# Only local schemes: the pages themselves, inline images, and the browser's own pages.
LOCAL = ("file:", "data:", "about:", "chrome:", "chrome-untrusted:")


def _pages(built_seed_project: Path) -> list[Path]:
    docs = built_seed_project / "reports" / "data_docs"
    pages = sorted(docs.glob("*.html"))
    assert docs / "index.html" in pages and len(pages) >= 2
    return pages


def test_every_page_loads_offline_without_a_script_error(
    built_seed_project: Path, headless_browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    for page in _pages(built_seed_project):
        headless_browser.get(page.as_uri())
        assert headless_browser.find_element(By.TAG_NAME, "body").text.strip(), page.name
        requested = requested_urls(headless_browser)
        assert page.as_uri() in requested  # the network log works: it saw the page itself
        assert [url for url in requested if not url.startswith(LOCAL)] == [], page.name
        errors = [e for e in headless_browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (page.name, errors)


def test_every_link_resolves(built_seed_project: Path, headless_browser: Any) -> None:
    from selenium.webdriver.common.by import By

    checked = 0
    for page in _pages(built_seed_project):
        headless_browser.get(page.as_uri())
        for link in headless_browser.find_elements(By.CSS_SELECTOR, "a[href]"):
            href = link.get_attribute("href") or ""
            url = urlparse(href)
            if url.scheme == "file" and not (url.fragment and unquote(url.path) == page.as_posix()):
                assert Path(unquote(url.path)).is_file(), (page.name, link.get_attribute("outerHTML"))
                checked += 1
            else:
                # In-page anchors (GX's table of contents and collapsible blocks).
                assert href.startswith(page.as_uri()) or href.startswith("javascript:"), (page.name, href)
    # The index links to every page; each page to the index (twice) and to its suite file.
    assert checked >= 4 * (len(_pages(built_seed_project)) - 1)


def test_a_suite_that_failed_only_warnings_says_warning(
    built_seed_project: Path, headless_browser: Any
) -> None:
    """The seeds fail one warning (text_quality's truncation share): its page and the index say
    so as a warning, and GX's "Failed Only" filter (plain JavaScript here) hides the rest."""
    from selenium.webdriver.common.by import By

    validation = json.loads((built_seed_project / "reports" / "validation.json").read_text())
    warned = {r["suite"] for r in validation["results"] if not r["success"] and r["severity"] == "warning"}
    failed = {r["suite"] for r in validation["results"] if not r["success"] and r["severity"] == "critical"}
    suites = warned - failed
    assert suites, "the seeds are expected to fail at least one warning"
    docs = built_seed_project / "reports" / "data_docs"
    headless_browser.get((docs / "index.html").as_uri())
    index = headless_browser.find_element(By.TAG_NAME, "body").text
    for suite in suites:
        assert re.search(rf"{suite}\.\w+ \(warning\)", index), index
        page = next(docs.glob(f"{suite}.*.html"))
        headless_browser.get(page.as_uri())
        body = headless_browser.find_element(By.TAG_NAME, "body").text
        assert "Status: Warning" in body and "Status: Failed" not in body
        assert not headless_browser.find_elements(By.CSS_SELECTOR, ".fa-times")
        icons = headless_browser.find_elements(By.CSS_SELECTOR, ".fa-exclamation-triangle.warning")
        assert len(icons) >= 2  # the status line and the failed expectation's row
        passed = headless_browser.find_elements(By.CSS_SELECTOR, ".fa-check-circle")
        assert passed and all(icon.is_displayed() for icon in passed)
        headless_browser.find_element(By.XPATH, "//label[contains(., 'Failed Only')]").click()
        assert not any(icon.is_displayed() for icon in passed)
        assert any(icon.is_displayed() for icon in icons[1:])
        headless_browser.find_element(By.XPATH, "//label[contains(., 'Show All')]").click()
        assert all(icon.is_displayed() for icon in passed)


def test_offline_html_drops_remote_tags_the_favicon_and_jquery_scripts() -> None:
    page = (
        '<html><head><link rel="stylesheet" href="https://cdn.example.org/b.css">'
        '<link rel="shortcut icon" href="../../../static/images/favicon.ico" type="image/x-icon"/>'
        '<script src="https://cdn.example.org/jquery.js"></script></head><body>'
        '<script>$(".ge-walkthrough-modal").modal();</script>'
        "<script>function showAllValidations() { $('.x').fadeIn(); }</script>"
        "<script>var kept = 1;</script>"
        '<img src="https://bucket.example.org/logo.png?id=1"></body></html>'
    )
    html = offline_html(page)
    assert "https://" not in html and "favicon" not in html and "ge-walkthrough" not in html
    assert "$(" not in html and "function hideSucceededValidations()" in html
    assert "<script>var kept = 1;</script>" in html and "<style>" in html


def test_links_into_gx_site_point_at_the_index_and_the_suite_files() -> None:
    html = (
        '<a href="../../../../index.html">Home</a> '
        '<a href="../../../../expectations/leakage.html">leakage</a>'
    )
    assert local_links(html, "../../gx/expectations") == (
        '<a href="index.html">Home</a> <a href="../../gx/expectations/leakage.json">leakage</a>'
    )


def test_warning_pages_lose_gx_failure_marks_and_nothing_else() -> None:
    failed = (
        '<span class="h6" >Status:</span> <i class="fas fa-times text-danger" aria-hidden="true"></i> Failed'
    )
    row = '<td><i class="fas fa-times text-danger" aria-hidden="true"></i></td><td>Failed to parse</td>'
    assert as_warnings(failed) == (
        '<span class="h6" >Status:</span> '
        '<i class="fas fa-exclamation-triangle warning" aria-hidden="true"></i> Warning'
    )
    assert as_warnings(row) == (
        '<td><i class="fas fa-exclamation-triangle warning" aria-hidden="true"></i></td>'
        "<td>Failed to parse</td>"
    )


def test_in_a_suite_failing_both_a_warning_row_has_the_warning_icon_and_a_critical_the_cross() -> None:
    """GX draws every failure as a red cross; a page failing a critical expectation and a
    warning (in one column, in another, at table level) shows each with its own icon."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.render.renderer.page_renderer import ValidationResultsPageRenderer
    from great_expectations.render.view.view import DefaultJinjaPageView

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": pd.DataFrame({"n": [5, 0], "text": ["bad", "ok"]})})
    )
    suite = context.suites.add(gx.ExpectationSuite(name="mixed"))
    for expectation in (
        gxe.ExpectTableRowCountToBeBetween(min_value=5, severity="warning"),  # fails
        gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex="bad", severity="warning"),  # fails
        gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex="zzz", severity="critical"),
        gxe.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=1, severity="critical"),  # fails
    ):
        suite.add_expectation(expectation)
    outcome = batch.validate(suite)
    document = ValidationResultsPageRenderer().render(outcome)
    assert mark_failed_warnings(document, outcome) == 2
    html = DefaultJinjaPageView().render(document)  # type: ignore[no-untyped-call]
    icons = re.findall(r'<i class="fas (fa-[a-z-]+) ([a-z-]+)"', html)
    # The header's status (GX's, the suite failed), then the sections: table level, `n`, `text`.
    assert icons[1:] == [
        ("fa-exclamation-triangle", "warning"),
        ("fa-times", "text-danger"),
        ("fa-exclamation-triangle", "warning"),
        ("fa-check-circle", "text-success"),
    ], icons
