"""The Great Expectations project in `gx/`, opened and run through GX's public API.

`gx/` is a GX 1.x file data context, laid out as GX writes one:
- `great_expectations.yml`: stores, the Data Docs site (`reports/data_docs/`) and one pandas
  filesystem data source, `build`, over `build/validate/` with one parquet asset per table the
  validate stage writes there (`ASSETS`; see `core.stage_tables`);
- `expectations/<suite>.json`: the suites, each expectation with GX's own `severity`
  (`critical` or `warning`), a `meta.name` the reports use, and `notes` saying why;
- `validation_definitions/<suite>.json`: one per suite, the suite on its asset's batch;
- `checkpoints/release.json`: the checkpoint that runs every validation definition and then
  updates Data Docs.

GX is imported here and in `expectations.py` only: it costs seconds, and the other stages must
not pay for it. Importing `expectations.py` registers the custom Expectations the suites use.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import BadInputError

CHECKPOINT = "release"
DATASOURCE = "build"
# The tables `core.stage_tables` writes to build/validate/<asset>.parquet, one asset each.
ASSETS = ("release", "rows", "dedup", "clean")
SEVERITIES = ("critical", "warning")
# Expectations decided by a table's column names, their dtypes and its row count alone: the
# only ones allowed on `release`, whose staged copy holds the abstract column as nulls of its
# type (the facts about the text are in `rows`).
SHAPE_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_of_type",
        "expect_table_column_count_to_be_between",
        "expect_table_column_count_to_equal",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
    }
)


@dataclass(frozen=True)
class SuiteSpec:
    """One suite as the stage needs it: its name, the asset it runs on, and per expectation
    (in file order) its id, type, kwargs, severity, `meta.name` and notes."""

    name: str
    asset: str
    expectations: list[dict[str, Any]]


def _gx() -> Any:
    # GX reads this when imported; the pipeline never reports usage anywhere.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    import pipeline.stages.validate.expectations  # noqa: F401  (registers the custom Expectations)

    return gx


def open_context(gx_dir: Path) -> Any:
    """The file data context rooted at `gx_dir`.

    Raises:
        BadInputError: `gx_dir` is not a GX project.
    """
    if not (gx_dir / "great_expectations.yml").is_file():
        raise BadInputError(f"{gx_dir}: no great_expectations.yml; the GX project is missing")
    return _gx().get_context(mode="file", context_root_dir=str(gx_dir))


def read_suite_file(path: Path) -> Any:
    """One suite file as GX's `ExpectationSuite`, built from the file's JSON unchanged.

    Raises:
        BadInputError: invalid JSON, an expectation GX rejects, or one without an explicit
            `severity` of `critical` or `warning`.
    """
    gx = _gx()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    for index, expectation in enumerate(data.get("expectations", [])):
        severity = expectation.get("severity")
        if severity not in SEVERITIES:
            raise BadInputError(
                f"{path}: expectation {index} ({expectation.get('type')}) needs `severity` set to "
                f"one of {', '.join(SEVERITIES)}, got {severity!r}"
            )
    # GX logs (with a traceback) and drops an expectation it cannot build; the count below
    # turns that into one clear error instead.
    gx_logger = logging.getLogger("great_expectations")
    level = gx_logger.level
    gx_logger.setLevel(logging.CRITICAL)
    try:
        suite = gx.ExpectationSuite(**data)
    except Exception as exc:  # GX raises pydantic, marshmallow and its own errors for bad specs
        message = str(exc).strip().splitlines()
        raise BadInputError(
            f"{path}: not a valid expectation suite ({message[-1] if message else type(exc).__name__})"
        ) from None
    finally:
        gx_logger.setLevel(level)
    built = [e.expectation_type for e in suite.expectations]
    declared = [str(e.get("type")) for e in data.get("expectations", [])]
    if len(built) != len(declared):
        missing = [kind for kind in declared if kind not in built] or declared
        raise BadInputError(
            f"{path}: not a valid expectation suite (GX cannot build {', '.join(missing)}: an unknown "
            "type, or kwargs it rejects; custom types live in pipeline/stages/validate/expectations.py)"
        )
    return suite


def load_checkpoint(gx_dir: Path) -> tuple[Any, list[SuiteSpec]]:
    """The `release` checkpoint and, in its order, the suites it runs.

    Every suite file is first read on its own (`read_suite_file`) so that a bad one is named.

    Raises:
        BadInputError: a bad suite file, a missing checkpoint or validation definition, a suite
            on an unknown asset, or a value expectation on `release`.
    """
    paths = sorted((gx_dir / "expectations").glob("*.json"))
    if not paths:
        raise BadInputError(f"{gx_dir / 'expectations'}: no expectation suites (*.json) found")
    files = {path.stem: path for path in paths}
    for path in paths:
        read_suite_file(path)
    context = open_context(gx_dir)
    try:
        checkpoint = context.checkpoints.get(CHECKPOINT)
    except Exception as exc:  # GX's store raises its own not-found and parse errors
        raise BadInputError(
            f"{gx_dir / 'checkpoints' / (CHECKPOINT + '.json')}: cannot load the checkpoint ({exc})"
        ) from None
    specs = []
    for definition in checkpoint.validation_definitions:
        suite = definition.suite
        asset = definition.asset.name
        path = files.get(suite.name, gx_dir / "expectations" / f"{suite.name}.json")
        if asset not in ASSETS:
            raise BadInputError(f"{path}: runs on asset {asset!r}; use one of {', '.join(ASSETS)}")
        expectations = []
        for expectation in suite.expectations:
            configuration = expectation.configuration
            if asset == "release" and configuration.type not in SHAPE_EXPECTATIONS:
                raise BadInputError(
                    f"{path}: {configuration.type} reads values, but the staged `release` table "
                    "holds no text; move it to a suite on the `rows` asset"
                )
            expectations.append(
                {
                    "id": expectation.id,
                    "type": configuration.type,
                    "kwargs": dict(configuration.kwargs),
                    "severity": str(getattr(expectation.severity, "value", expectation.severity)),
                    "name": (expectation.meta or {}).get("name", configuration.type),
                    "notes": expectation.notes,
                }
            )
        specs.append(SuiteSpec(suite.name, asset, expectations))
    return checkpoint, specs


def artifact_patterns(specs: list[SuiteSpec]) -> dict[str, str]:
    """Artifact name -> regex, from every `expect_abstract_to_have_no_artifact`, in suite order.

    Raises:
        BadInputError: one name with two different regexes.
    """
    patterns: dict[str, str] = {}
    for spec in specs:
        for expectation in spec.expectations:
            if expectation["type"] != "expect_abstract_to_have_no_artifact":
                continue
            name, regex = expectation["kwargs"]["artifact"], expectation["kwargs"]["regex"]
            if patterns.setdefault(name, regex) != regex:
                raise BadInputError(f"gx/expectations/{spec.name}.json: artifact {name!r} has two regexes")
    return patterns


def tables_directory(checkpoint: Any) -> Path:
    """Where the checkpoint's data source reads the staged tables (its `base_directory`).

    GX's pandas filesystem data source resolves a relative `base_directory` against the working
    directory, so the stage runs from the project root, as `dvc repro` does.
    """
    directories = {
        Path(d.data.data_asset.datasource.base_directory) for d in checkpoint.validation_definitions
    }
    if len(directories) != 1:
        raise BadInputError(f"checkpoint {CHECKPOINT!r}: its suites read more than one data source directory")
    return directories.pop()


def run_checkpoint(checkpoint: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """Run the checkpoint (every validation definition, then its Data Docs action).

    Returns suite name -> GX's suite validation result.
    """
    result = checkpoint.run(expectation_parameters=parameters)
    return {suite_result.suite_name: suite_result for suite_result in result.run_results.values()}
