"""The checkpoint's Data Docs action: this run's offline pages (`docs.write_data_docs`).

`OfflineDataDocsAction` is a GX `ValidationAction` subclass; GX registers an action type when
its class is defined, so importing this module (`expectations` does) is what makes
`gx/checkpoints/release.json` loadable. It stands where GX's `UpdateDataDocsAction` would:
that action re-renders GX's whole site once per suite and keeps every run (three quarters of the
stage's time on the seeds, growing with each run), and its pages load CSS, scripts and a logo
from the network. This one renders the run's results with GX's own renderers into one offline,
byte-reproducible directory, the one the review links to. GX's site stays one call away for a
`gx` user: `context.build_data_docs()`.

Paths are relative to the working directory, as the data source's `base_directory` is: the
stage runs from the project root, as `dvc repro` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from great_expectations.checkpoint.actions import ValidationAction


class OfflineDataDocsAction(ValidationAction):
    """Write one offline page per suite of the checkpoint's run, and an index, to `directory`."""

    type: Literal["offline_data_docs"] = "offline_data_docs"
    # Where the pages go (a DVC output of the validate stage: see dvc.yaml).
    directory: str = "reports/data_docs"
    # The suite files the pages link to.
    suites_directory: str = "gx/expectations"

    def run(self, checkpoint_result: Any, action_context: Any = None) -> dict[str, Any]:
        from pipeline.stages.validate.docs import write_data_docs

        outcomes = {result.suite_name: result for result in checkpoint_result.run_results.values()}
        write_data_docs(outcomes, Path(self.directory), Path(self.suites_directory))
        return {"directory": self.directory, "pages": len(outcomes)}
