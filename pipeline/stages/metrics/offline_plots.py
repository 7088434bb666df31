"""The HTML template `dvc plots show` fills, with Vega, Vega-Lite and Vega-Embed inlined.

DVC's default page loads the three libraries from a CDN; `.dvc/config` points
`plots.html_template` at this template instead (`plots/offline.html`, relative to `.dvc/`), so
the page draws without network. The libraries come from `vl-convert-python` (a dev
dependency), which bundles them; `make` writes the template when it installs the dev extras.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import BadInputError
from pipeline.io.writers import atomic_path

# The Vega-Lite major.minor the bundle carries: DVC's templates are Vega-Lite 5 specs.
VEGA_LITE_VERSION = "5.8"
# What DVC's plot divs call: `vegaEmbed` (and the libraries it uses) on `window`.
GLOBALS_SNIPPET = "window.vegaEmbed = vegaEmbed; window.vegaLite = vegaLite; window.vega = vega;"


def offline_template(bundle: str) -> str:
    """A dvc-render page template around the inlined `bundle`.

    dvc-render fills the template with `str.format` (`{plot_divs}`, `{refresh_tag}`), so the
    bundle's braces are doubled; `{scripts}` (the CDN tags) is left out on purpose.
    """
    escaped = bundle.replace("{", "{{").replace("}", "}}").replace("</script", "<\\/script")
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n    {refresh_tag}\n    <meta charset='utf-8'>\n"
        "    <title>DVC Plot</title>\n    <script>" + escaped + "</script>\n"
        "    <style>table {{ border-spacing: 15px; }}</style>\n</head>\n<body>\n"
        "    {plot_divs}\n</body>\n</html>\n"
    )


def write_offline_template(target: Path) -> None:
    """Write the template to `target`.

    Raises:
        BadInputError: vl-convert-python is not installed (it comes with the dev extras).
    """
    try:
        import vl_convert
    except ImportError:
        raise BadInputError(
            "vl-convert-python is not installed; run `make .venv/.installed-dev` (the dev extras)"
        ) from None
    bundle = vl_convert.javascript_bundle(GLOBALS_SNIPPET, vl_version=VEGA_LITE_VERSION)
    with atomic_path(target) as tmp:
        tmp.write_text(offline_template(bundle), encoding="utf-8")
