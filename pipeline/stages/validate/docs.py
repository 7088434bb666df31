"""The offline Data Docs pages in `reports/data_docs/`: one per suite (`<suite>.<asset>.html`)
and an index, rendered from this run's results with GX's own renderers; the checkpoint's
`OfflineDataDocsAction` (`actions.py`) writes them.

GX's usual site (`context.build_data_docs()`, in `gx/uncommitted/data_docs/local_site/`) pulls
CSS/JS from CDNs and a logo from GX's bucket with the data context id in its query, and changes
on every run; the pages here are the ones the review links to, so they open without network,
fetch nothing and are byte-identical on a rerun of the same inputs: every remote tag is dropped
and GX's own stylesheet (shipped in the package) is inlined. GX's page scripts need jQuery and
Bootstrap from a CDN; the one that works the page's "Failed Only" filter is replaced by the
same in plain JavaScript, the walkthrough pop-up is dropped, and Font Awesome's status icons are
drawn as text. GX's links into its own site are pointed at this directory's index and at the
suite files under `gx/expectations/`. A failed warning's row has a warning icon, where GX draws
every failure as a red cross, and a suite whose failures are all warnings says `Warning` where
GX says `Failed`."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from pipeline.io.writers import atomic_directory

_REMOTE_TAG = re.compile(
    r"<link\b[^>]*\bhref=[\"']https?://[^>]*>|<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>"
    r"|<img\b[^>]*\bsrc=[\"']https?://[^>]*>",
    re.IGNORECASE,
)
_REMOTE_URL = re.compile(r"https?://[^\s\"'<>)]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OFFLINE_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ccc; padding: .2rem .4rem; }
.text-danger { color: #b00020; } .text-success { color: #1b7f3b; } .d-none, .modal { display: none; }
.warning { color: #8a5a00; }
.fas { font-style: normal; } .fa-check-circle::before { content: "\2714"; }
.fa-times::before { content: "\2716"; } .fa-exclamation-triangle::before { content: "\26a0"; }
"""
# GX's filter buttons (`showAllValidations`, `hideSucceededValidations`) without jQuery.
_FILTER_SCRIPT = """<script>
function _targets(hidden) {
  document.querySelectorAll(".hide-succeeded-validation-target-child").forEach(function (el) {
    el.parentElement.style.display = hidden ? "none" : "";
  });
  document.querySelectorAll(".hide-succeeded-validation-target").forEach(function (el) {
    el.style.display = hidden ? "none" : "";
  });
  document.querySelectorAll(".hide-succeeded-validations-column-section-target-child").forEach(function (el) {
    var section = el.parentElement.parentElement;
    section.style.display = hidden ? "none" : "";
    document.querySelectorAll('a[href$="' + section.id + '"]').forEach(function (a) {
      a.style.display = hidden ? "none" : "";
    });
  });
}
function showAllValidations() { _targets(false); }
function hideSucceededValidations() { _targets(true); }
</script>"""
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_FAVICON = re.compile(r"<link\b[^>]*\bhref=[\"'][^\"']*favicon\.ico[\"'][^>]*>", re.IGNORECASE)
_SITE_INDEX = re.compile(r"href=\"(?:\.\./)+index\.html\"")
_SITE_SUITE = re.compile(r"href=\"(?:\.\./)+expectations/([A-Za-z0-9_.-]+)\.html\"")
_STATUS_FAILED = '<i class="fas fa-times text-danger" aria-hidden="true"></i> Failed'
_STATUS_WARNING = '<i class="fas fa-exclamation-triangle warning" aria-hidden="true"></i> Warning'


def _page_script(match: re.Match[str]) -> str:
    body = match.group(1)
    if "ge-walkthrough-modal" in body:
        return ""
    if "function showAllValidations" in body:
        return _FILTER_SCRIPT
    return match.group(0)


def local_links(html: str, suites: str) -> str:
    """GX's links into its own site pointed at this directory's index and at the suite files
    (`suites`: the relative path from the pages to `gx/expectations/`)."""
    html = _SITE_INDEX.sub('href="index.html"', html)
    return _SITE_SUITE.sub(lambda m: f'href="{suites}/{m.group(1)}.json"', html)


def as_warnings(html: str) -> str:
    """A page whose only failures are warnings: GX's failure status and icons as warnings."""
    html = html.replace(_STATUS_FAILED, _STATUS_WARNING)
    return html.replace('class="fas fa-times text-danger"', 'class="fas fa-exclamation-triangle warning"')


_TABLE_LEVEL = "Table-Level Expectations"  # GX's name for the section of column-less expectations
_WARNING_ICON = {"tag": "i", "classes": ["fas", "fa-exclamation-triangle", "warning"]}


def _is_failed_warning(result: Any) -> bool:
    return not result.success and _severity(result) == "warning"


def mark_failed_warnings(document: Any, outcome: Any) -> int:
    """Give each failed warning's row in a rendered page (GX's `RenderedDocumentContent`) the
    warning icon, where GX draws every failure as a red cross; returns the rows marked.

    GX renders one section per column (column-less expectations in a first section), each a
    table with one row per result in result order, and no severity; a section whose rows do not
    pair one to one with its results is left as GX drew it.
    """
    by_section: dict[str, list[Any]] = {}
    for result in outcome.results:
        by_section.setdefault(result.expectation_config.kwargs.get("column", _TABLE_LEVEL), []).append(result)
    marked = 0
    for section in document.sections[1:]:
        results = by_section.get(section.section_name, [])
        tables = [block for block in section.content_blocks if getattr(block, "table", None) is not None]
        if len(tables) != 1 or len(tables[0].table) != len(results):
            continue
        for row, result in zip(tables[0].table, results, strict=True):
            status = row[0][0] if isinstance(row[0], list) else row[0]
            template = getattr(status, "string_template", None)
            if _is_failed_warning(result) and template and template.get("template") == "$icon":
                template["params"]["markdown_status_icon"] = "\u26a0\ufe0f"
                template["styling"]["params"]["icon"] = dict(_WARNING_ICON)
                marked += 1
    return marked


def offline_html(html: str) -> str:
    """GX Data Docs HTML that loads nothing from the network."""
    from great_expectations.render.view import view

    styles = Path(view.__file__).parent / "static" / "styles" / "data_docs_default_styles.css"
    inline = f"<style>{_OFFLINE_CSS}{styles.read_text(encoding='utf-8')}</style>"
    html = _REMOTE_TAG.sub("", html.replace("</head>", f"{inline}</head>", 1))
    html = _SCRIPT.sub(_page_script, _FAVICON.sub("", html))
    html = _REMOTE_URL.sub("#", html)
    # GX gives collapsible blocks random uuid4 ids; number them so reruns are byte-identical.
    numbers: dict[str, str] = {}
    return _UUID.sub(lambda m: numbers.setdefault(m.group(0), f"block-{len(numbers) + 1}"), html)


def _severity(result: Any) -> str:
    severity = getattr(result.expectation_config, "severity", None)
    return str(getattr(severity, "value", severity))


def suite_status(outcome: Any) -> str:
    """`passed`, `warning` (only warnings failed) or `FAILED` (a critical expectation failed)."""
    failed = [result for result in outcome.results if not result.success]
    if any(_severity(result) != "warning" for result in failed):
        return "FAILED"
    return "warning" if failed else "passed"


def _asset_name(outcome: Any) -> str:
    """The data asset a suite ran on, from the batch GX records in the result's meta."""
    batch = outcome.meta.get("active_batch_definition") or {}
    name = (
        batch.get("data_asset_name") if isinstance(batch, dict) else getattr(batch, "data_asset_name", None)
    )
    return str(name or "batch")


def write_data_docs(outcomes: dict[str, Any], directory: Path, suites_dir: Path) -> None:
    """Render one page per suite (`<suite>.<asset>.html`) and an index into `directory`, from
    GX's suite validation results (`outcomes`: suite name -> result), left unchanged.

    The directory is replaced as a whole (`io.writers.atomic_directory`), so pages of suites
    that no longer exist disappear and a killed run leaves the previous pages.
    """
    with atomic_directory(directory) as staging:
        _render_pages(outcomes, staging, directory, suites_dir)


def _render_pages(outcomes: dict[str, Any], staging: Path, directory: Path, suites_dir: Path) -> None:
    from great_expectations.render.renderer.page_renderer import ValidationResultsPageRenderer
    from great_expectations.render.view.view import DefaultJinjaPageView

    links = []
    suites = Path(os.path.relpath(suites_dir.resolve(), directory.resolve())).as_posix()
    # One view for every page: a view compiles each of GX's templates once, on first use.
    view = DefaultJinjaPageView()
    for name, outcome in outcomes.items():
        page = f"{name}.{_asset_name(outcome)}"
        # Drop what differs between identical runs (batch markers carry a load time, a run id).
        shown = copy.copy(outcome)
        shown.meta = {"great_expectations_version": outcome.meta.get("great_expectations_version")}
        document = ValidationResultsPageRenderer().render(shown)
        mark_failed_warnings(document, shown)
        html = local_links(offline_html(view.render(document)), suites)  # type: ignore[no-untyped-call]
        status = suite_status(outcome)
        if status == "warning":
            html = as_warnings(html)
        (staging / f"{page}.html").write_text(html, encoding="utf-8")
        css = {"FAILED": "text-danger", "warning": "warning"}.get(status, "text-success")
        links.append(f'<li><a href="{page}.html">{page}</a> (<span class="{css}">{status}</span>)</li>')
    (staging / "index.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Validation</title>"
        f"<style>{_OFFLINE_CSS}</style></head><body>"
        "<h1>Release validation</h1><p>A failed <em>warning</em> is reported, a failed "
        "<em>critical</em> expectation stops the release (the gate stage).</p><ul>"
        + "".join(links)
        + "</ul></body></html>\n",
        encoding="utf-8",
    )
