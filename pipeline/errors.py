"""The pipeline's error hierarchy.

Every error a user can cause (bad params, bad raw input, failed validation, refused publish)
is a `PipelineError`. The CLI prints its message and exits non-zero, never a traceback, so
each message names the file, line, key or row and says what to do next.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: something the user can fix. The message says what and how."""

    exit_code = 1


class ConfigError(PipelineError):
    """`params.yaml` is missing, malformed, has an unknown key or an out-of-range value.

    Fix the key named in the message; `params.yaml` documents every key.
    """

    exit_code = 2


class BadInputError(PipelineError):
    """A raw or intermediate file cannot be read: empty, not UTF-8, unknown format, missing column.

    Fix or remove the file named in the message, or declare its source in `sources.yaml`
    (`format:`, `field:`).
    """

    exit_code = 3


class ValidationFailed(PipelineError):
    """A critical expectation failed; the release must not be built or published.

    Read the table printed above (and `reports/validation.json`), fix the data or the rule,
    then rerun `dvc repro`.
    """

    exit_code = 4


class PublishError(PipelineError):
    """Publishing was refused or failed; the remote repository is left as it was.

    The message names the precondition or the server's answer.
    """

    exit_code = 5
