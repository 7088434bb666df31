"""Typed, validated view of `params.yaml`, read once per command.

Each stage has one section and one frozen dataclass. Loading rejects unknown keys, wrong types
and out-of-range values with a `ConfigError` naming the key (`split.fractions.train`) and the
value, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import ConfigError

# Every format ingest reads (sources.yaml `format:`; the `format` column of the records).
KNOWN_FORMATS = (
    "abstract_lines",
    "viewer_table",
    "arxiv_snapshot",
    "jsonl",
    "csv",
    "parquet",
    "tsv",
    "json_array",
    "json_object",
    "acl_xml",
    "bibtex",
    "arxiv_oai",
    "arxiv_atom",
    "openalex",
    "semantic_scholar",
)


@dataclass(frozen=True)
class IngestParams:
    # Formats, licences and field mappings are per source, in sources.yaml (not params).
    # Records buffered before a parquet row group is written; bounds ingest memory.
    batch_rows: int = 50_000

    def __post_init__(self) -> None:
        _check_range("ingest.batch_rows", self.batch_rows, 1, 10_000_000)


@dataclass(frozen=True)
class CleanParams:
    # Batches cleaned at once, on threads of the stage's process; output is identical for any value.
    workers: int = 2
    # Rows per Arrow batch handed to a worker thread (and per output row group).
    batch_rows: int = 50_000
    # Abstracts shorter than this (characters, after cleaning) are flagged `too_short`.
    min_chars: int = 200
    # Abstracts longer than this (characters, after cleaning) are flagged `too_long`.
    max_chars: int = 5_000
    # Zipf frequency (wordfreq, log10 per billion words) from which a string counts as a word
    # when dehyphenating and splitting glued words; 3 is about once per million words.
    word_min_zipf: float = 3.0
    # Zipf frequency from which a word of at most 4 letters is a function word ("is", "on"); only
    # splits through a function word are repaired, other glued-looking words are flagged.
    function_word_min_zipf: float = 6.4
    # Zipf frequency from which a word is common: a verb before a name ("proposeX") or the stem
    # of a derived word ("robust" in "robustifying") must be.
    common_word_min_zipf: float = 3.5
    # A split whose content words are all at least this frequent is repaired even where the
    # glued token repeats in its abstract ("bypoints" twice): the same damage, twice.
    strong_split_min_zipf: float = 4.0
    # Abstracts with fewer words are never flagged `non_english` (too little evidence).
    non_english_min_words: int = 20
    # Share of words that are common English function words below which a row is `non_english`.
    english_min_stopword_share: float = 0.08
    # Names and terms that the word-splitting and -joining rules never touch (wordfreq does not
    # know them and they look glued: "tieredImageNet"); a small maintained list, see README.
    terms: tuple[str, ...] = ()
    # A glued-looking token seen as-is this many times in one abstract (or in its title or
    # author list) is taken for a name or term and left alone.
    term_min_repeats: int = 2

    def __post_init__(self) -> None:
        _check_range("clean.term_min_repeats", self.term_min_repeats, 2, 1_000)
        _check_range("clean.workers", self.workers, 1, 64)
        _check_range("clean.batch_rows", self.batch_rows, 1, 10_000_000)
        _check_range("clean.min_chars", self.min_chars, 0, 1_000_000)
        _check_range("clean.max_chars", self.max_chars, self.min_chars + 1, 1_000_000)
        _check_range("clean.word_min_zipf", self.word_min_zipf, 0.0, 8.0)
        _check_range("clean.function_word_min_zipf", self.function_word_min_zipf, self.word_min_zipf, 8.0)
        _check_range("clean.common_word_min_zipf", self.common_word_min_zipf, self.word_min_zipf, 8.0)
        _check_range("clean.strong_split_min_zipf", self.strong_split_min_zipf, self.word_min_zipf, 8.0)
        _check_range("clean.non_english_min_words", self.non_english_min_words, 1, 100_000)
        _check_range("clean.english_min_stopword_share", self.english_min_stopword_share, 0.0, 1.0)


# The ML-related arXiv categories and the Semantic Scholar field of study a row may carry.
DEFAULT_TOPICS = (
    "cs.LG",
    "stat.ML",
    "cs.AI",
    "cs.CL",
    "cs.CV",
    "cs.NE",
    "cs.IR",
    "cs.RO",
    "cs.MA",
    "eess.AS",
    "eess.IV",
    "eess.SP",
    "Computer Science",
)


@dataclass(frozen=True)
class FilterParams:
    """The curation policy: which cleaned rows are not released (pipeline.stages.filter)."""

    # Batches judged at once, on threads of the stage's process; output is identical for any value.
    workers: int = 2
    # Rows per batch (and per row group of build/filter.parquet).
    batch_rows: int = 50_000
    # `too_short` / `too_long`: bounds on one abstract in characters and in space-separated
    # words (clean leaves single spaces). Keep them inside validate's bounds: GX checks them again.
    min_chars: int = 200
    max_chars: int = 5_000
    min_words: int = 20
    max_words: int = 1_000
    # `placeholder`: only texts of at most this many words can be a notice ("This paper has
    # been withdrawn ..."); a longer text that mentions a withdrawal is an abstract.
    placeholder_max_words: int = 80
    # `not_english`: a row whose share of common English function words (the, of, and, ...;
    # case-insensitive) is at least this is English without asking the language identifier.
    english_sure_share: float = 0.15
    # `not_english`: the identifier's (py3langid) probability from which its non-English answer
    # drops a row; a less sure answer keeps the row and is counted as unsure.
    language_min_confidence: float = 0.9
    # `off_topic`: a row with categories passes when any of them is on this list (compared
    # case-insensitively); a row without categories passes.
    topics: tuple[str, ...] = DEFAULT_TOPICS
    # `truncated`: a text without terminal punctuation whose last word is lower-case and rarer
    # than this (wordfreq Zipf; 3 is once per million words) ends inside a cut word.
    truncated_max_zipf: float = 3.0
    # `mostly_non_text`: largest share of an abstract's characters that are ASCII digits or
    # symbols other than prose punctuation (.,;:!?'"()-).
    max_non_text_share: float = 0.3
    # `markup_junk`: the weight of markup markers (a script/style tag or page boilerplate
    # counts 2, a code construct 1) from which a row is web-page junk, not prose.
    markup_min_weight: int = 2

    def __post_init__(self) -> None:
        _check_range("filter.workers", self.workers, 1, 64)
        _check_range("filter.batch_rows", self.batch_rows, 1, 10_000_000)
        _check_range("filter.min_chars", self.min_chars, 0, 10**7)
        _check_range("filter.max_chars", self.max_chars, self.min_chars + 1, 10**7)
        _check_range("filter.min_words", self.min_words, 0, 10**6)
        _check_range("filter.max_words", self.max_words, self.min_words + 1, 10**6)
        _check_range("filter.placeholder_max_words", self.placeholder_max_words, 1, 10**6)
        _check_range("filter.english_sure_share", self.english_sure_share, 0.0, 1.0)
        _check_range("filter.language_min_confidence", self.language_min_confidence, 0.0, 1.0)
        _check_range("filter.truncated_max_zipf", self.truncated_max_zipf, 0.0, 8.0)
        _check_range("filter.max_non_text_share", self.max_non_text_share, 0.0, 1.0)
        _check_range("filter.markup_min_weight", self.markup_min_weight, 1, 100)
        for i, topic in enumerate(self.topics):
            if not topic.strip():
                raise ConfigError(f"filter.topics[{i}] must not be empty")


@dataclass(frozen=True)
class DedupParams:
    # Source formats from richest to poorest: breaks ties between rows of the same paper.
    format_priority: tuple[str, ...] = (
        "arxiv_snapshot",
        "viewer_table",
        "parquet",
        "jsonl",
        "csv",
        "abstract_lines",
    )

    # Rows whose word-shingle Jaccard similarity is at least this are near duplicates.
    near_threshold: float = 0.7
    # Words per shingle (word n-grams of the normalised text).
    shingle_words: int = 5
    # LSH bands x rows per band = MinHash permutations; 20 x 5 finds a pair of similarity 0.7
    # with probability 0.975 and one of 0.8 with probability 0.9997.
    bands: int = 20
    rows_per_band: int = 5
    # MinHash seed: changing it changes which borderline pairs become candidates.
    seed: int = 42
    # Threads and rows per batch for the MinHash pass; output is identical for any value.
    workers: int = 2
    batch_rows: int = 50_000

    def __post_init__(self) -> None:
        unknown = [f for f in self.format_priority if f not in KNOWN_FORMATS]
        if unknown:
            raise ConfigError(f"dedup.format_priority: unknown format(s) {unknown}")
        _check_range("dedup.near_threshold", self.near_threshold, 0.05, 1.0)
        _check_range("dedup.shingle_words", self.shingle_words, 1, 20)
        _check_range("dedup.bands", self.bands, 1, 512)
        _check_range("dedup.rows_per_band", self.rows_per_band, 1, 64)
        _check_range("dedup.seed", self.seed, 0, 2**32 - 1)
        _check_range("dedup.workers", self.workers, 1, 64)
        _check_range("dedup.batch_rows", self.batch_rows, 1, 10_000_000)


@dataclass(frozen=True)
class SplitParams:
    # Changing the seed reshuffles every row: do it only for a new major version.
    seed: int = 20261123
    fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    # Largest number of rows in one release parquet shard.
    rows_per_shard: int = 500_000

    def __post_init__(self) -> None:
        if set(self.fractions) != {"train", "validation", "test"}:
            raise ConfigError(
                "split.fractions must have exactly the keys train, validation, test; "
                f"got {sorted(self.fractions)}"
            )
        for name, value in self.fractions.items():
            _check_range(f"split.fractions.{name}", value, 0.0, 1.0)
        total = sum(self.fractions.values())
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ConfigError(f"split.fractions must sum to 1, got {total:g}")
        _check_range("split.rows_per_shard", self.rows_per_shard, 1, 100_000_000)


@dataclass(frozen=True)
class ValidateParams:
    # Bounds on the total number of release rows (all splits).
    min_rows: int = 1
    max_rows: int = 10_000_000
    # Bounds on one published abstract, in characters and in space-separated words.
    min_chars: int = 200
    max_chars: int = 5_000
    min_words: int = 20
    max_words: int = 1_000
    # Each split's row count may differ from rows * split.fractions by this many binomial
    # standard deviations (GX's expect_split_sizes_within_binomial_bound).
    split_sigmas: float = 4.0
    # The policy suite's language check runs the filter's language rule on every this-many-th
    # release row (1: every row). Counting English function words costs ten times the word
    # count over the text; a sampled row the rule would drop is still a filter bug (critical).
    language_sample_every: int = 4

    def __post_init__(self) -> None:
        _check_range("validate.split_sigmas", self.split_sigmas, 0, 100)
        _check_range("validate.language_sample_every", self.language_sample_every, 1, 10**6)
        _check_range("validate.min_rows", self.min_rows, 0, 10**12)
        _check_range("validate.max_rows", self.max_rows, self.min_rows, 10**12)
        _check_range("validate.min_chars", self.min_chars, 0, 10**7)
        _check_range("validate.max_chars", self.max_chars, self.min_chars, 10**7)
        _check_range("validate.min_words", self.min_words, 0, 10**6)
        _check_range("validate.max_words", self.max_words, self.min_words, 10**6)


@dataclass(frozen=True)
class CardParams:
    pretty_name: str = "ML Abstracts"
    license: str = "cc-by-4.0"
    # Project homepage shown in the card and as the Croissant `url`; the card stage requires it.
    homepage: str = ""
    # Who answers questions about the dataset (an address or an issue tracker URL): the card's
    # "Dataset Card Contact" and the Croissant creator's contact point. The release version is
    # not a param: it follows from the diff against the last published release (releases/).
    contact: str = ""
    # Published rows gone in this release (removed or merged) listed by id in the changelog;
    # past that, the card gives the count and points to reports/release_diff.json.
    removals_listed: int = 100

    def __post_init__(self) -> None:
        for key in ("pretty_name", "license"):
            if not getattr(self, key).strip():
                raise ConfigError(f"card.{key} is required and must not be empty")
        _check_range("card.removals_listed", self.removals_listed, 0, 100_000)


@dataclass(frozen=True)
class PublishParams:
    # Hub repository the release is published to (`ORG/NAME`).
    repo_id: str = "ml-abstracts/ml-abstracts"
    # Seconds a Hub request may wait to connect or for the next bytes of an answer: a stalled
    # server then fails the publish with a message (the HF client waits forever by default).
    timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        parts = self.repo_id.split("/")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"publish.repo_id must look like ORG/NAME, got {self.repo_id!r}")
        _check_range("publish.timeout_seconds", self.timeout_seconds, 0.1, 3600)


@dataclass(frozen=True)
class ReviewParams:
    # Seed of the reproducible row sampling (rule examples, flagged rows).
    seed: int = 20261123
    # Before/after pairs shown per cleaning rule.
    examples_per_rule: int = 5
    # Flagged rows shown per flag, spread over the raw files.
    rows_per_flag: int = 10
    # Rejected lines shown per reject reason.
    rejects_per_reason: int = 5
    # Largest duplicate clusters shown.
    clusters: int = 10
    # Folded rows shown per duplicate cluster.
    folded_per_cluster: int = 5
    # Example rows shown per kind of release diff (added/removed/changed/moved).
    diff_examples: int = 5
    # Longest text shown for one abstract or rejected line; longer ones are cut with "…".
    text_chars: int = 600
    # Filtered rows shown per filter rule (reports/filtered.parquet, in file order).
    filtered_per_rule: int = 5
    # Published rows gone in this build (removed or merged) listed by id; the count is always shown.
    removed_rows: int = 100
    # Bars per length histogram.
    histogram_bins: int = 50
    # Most rows whose words are counted for the words histogram (every k-th row of each split).
    word_sample_rows: int = 200_000

    def __post_init__(self) -> None:
        for key in ("examples_per_rule", "rows_per_flag", "rejects_per_reason", "clusters"):
            _check_range(f"review.{key}", getattr(self, key), 0, 1_000)
        _check_range("review.folded_per_cluster", self.folded_per_cluster, 0, 1_000)
        _check_range("review.diff_examples", self.diff_examples, 0, 1_000)
        _check_range("review.filtered_per_rule", self.filtered_per_rule, 0, 1_000)
        _check_range("review.removed_rows", self.removed_rows, 0, 100_000)
        _check_range("review.text_chars", self.text_chars, 20, 100_000)
        _check_range("review.histogram_bins", self.histogram_bins, 5, 500)
        _check_range("review.word_sample_rows", self.word_sample_rows, 1, 100_000_000)
        _check_range("review.seed", self.seed, 0, 2**63 - 1)


@dataclass(frozen=True)
class ReleaseDiffParams:
    # Example ids listed per kind of change (added/removed/changed/moved) in release_diff.json.
    examples: int = 20

    def __post_init__(self) -> None:
        _check_range("release_diff.examples", self.examples, 0, 10_000)


@dataclass(frozen=True)
class Params:
    ingest: IngestParams = field(default_factory=IngestParams)
    clean: CleanParams = field(default_factory=CleanParams)
    filter: FilterParams = field(default_factory=FilterParams)
    dedup: DedupParams = field(default_factory=DedupParams)
    split: SplitParams = field(default_factory=SplitParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    card: CardParams = field(default_factory=CardParams)
    publish: PublishParams = field(default_factory=PublishParams)
    release_diff: ReleaseDiffParams = field(default_factory=ReleaseDiffParams)
    review: ReviewParams = field(default_factory=ReviewParams)


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g}, got {value!r}")


T = TypeVar("T")


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check `value` against the type hint `hint`, converting YAML lists to tuples."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, key)
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {
            _coerce(f"{key}.{k}", key_type, k): _coerce(f"{key}.{k}", value_type, v) for k, v in value.items()
        }
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", item_type, v) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported union hint for {key}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    raise TypeError(f"unsupported type hint {hint!r} for {key}")


def _build(cls: type[T], data: Any, section: str, complete: bool = False) -> T:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{section} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    if section == "card" and "version" in unknown:
        raise ConfigError(
            "card.version: no longer a param; the next version is computed from the diff against the "
            "last published release (reports/card.json, `abstracts publish --dry-run`): delete the key"
        )
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key; known keys are {', '.join(sorted(names))}")
    if complete:
        for f in fields:
            if f.name not in data:
                raise ConfigError(
                    f"{section}.{f.name} is missing; add `{f.name}: {_yaml_value(_default(f))}` under "
                    f"`{section}:` (the default)"
                )
    kwargs = {name: _coerce(f"{section}.{name}", hints[name], value) for name, value in data.items()}
    return cls(**kwargs)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _yaml_value(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def parse_params(data: Any, origin: str = "params.yaml", complete: bool = False) -> Params:
    """Build `Params` from already-parsed YAML data; `origin` only names the file in errors.

    `complete` requires every section and key (a params file); otherwise a missing one takes its
    default (params built in code).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of stage sections")
    names = {f.name for f in dataclasses.fields(Params)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown section {unknown[0]!r}; known sections are {', '.join(sorted(names))}"
        )
    if complete:
        for name in sorted(names - set(data)):
            raise ConfigError(f"section `{name}:` is missing; every section and key is required")
    hints = typing.get_type_hints(Params)
    sections = {name: _build(hints[name], value, name, complete) for name, value in data.items()}
    return Params(**sections)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# The key an error message is about: it starts with it, or names a missing or unknown section.
_KEY_PATH = re.compile(r"(?:section `|unknown section ')?(?P<path>[A-Za-z_]+(?:\.[A-Za-z_]+|\[\d+\])*)")


def _key_line(text: str, message: str) -> int | None:
    """Line (1-based) in the YAML `text` of the key an error message starts with (`a.b[2]`); of
    its nearest present parent when the key itself is missing."""
    match = _KEY_PATH.match(message)
    if match is None:
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in re.findall(r"[A-Za-z_]+|\[\d+\]", match["path"]):
        if isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = int(part[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not found:
                break
            key_node, node = found[0]
            line = key_node.start_mark.line + 1
        else:
            break
    return line


def load_params(path: Path) -> Params:
    """Read and validate `params.yaml`.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or has a bad key or value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read params ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            problem += f" ({context} on line {context_mark.line + 1})"
        raise ConfigError(f"{where}: {problem}; fix the YAML syntax") from None
    try:
        return parse_params(data, str(path), complete=True)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{path}: ")
        line = _key_line(text, message)
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(
            f"{where}: {message}; fix it in {path} (every key is documented in pipeline/params.py)"
        ) from None
