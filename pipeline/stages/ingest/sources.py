"""Source declarations (`sources.yaml`) and which source each raw file belongs to.

`sources.yaml` sits at the repository's top level, beside `params.yaml`:

    sources:
      - name: acl-2021                  # unique; the `source_name` of its records
        paths: ["acl/*.xml"]            # globs under raw/ (`**` for any depth); a folder = all in it
        format: acl_xml                 # optional: sniffed from content when left out
        license: CC-BY-4.0              # optional SPDX id; formats with a known licence default to it
        field: {abstract: paperAbstract, authors: "authors[].last"}   # optional per-column paths
        defaults: {venue: CoNLL, year: 2021}                           # optional per-column values

Every file under raw/ not matched by a declaration is still read: its format is sniffed and its
source name is its path under raw/ (a folder of one-object JSON files is one source, named by
the folder; so is a folder of OpenAlex API pages). A file matched by two declarations, a
declared path that matches nothing, and a file whose format cannot be told are errors naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from pipeline.errors import BadInputError, ConfigError
from pipeline.io.formats.compression import logical_name
from pipeline.params import KNOWN_FORMATS
from pipeline.stages.ingest.mapping import TARGETS, parse_path

_KEYS = ("name", "paths", "format", "license", "field", "defaults")
# SPDX short ids are letters, digits, `.`, `-` and `+`; `NOASSERTION` where a licence is unknown.
_SPDX = re.compile(r"^[A-Za-z0-9.+-]+$")
_DEFAULTABLE = tuple(t for t in TARGETS if t not in ("abstract", "id", "arxiv_id", "arxiv_version"))


@dataclass(frozen=True)
class SourceDecl:
    name: str
    paths: tuple[str, ...]
    format: str | None = None
    license: str | None = None
    field: dict[str, str] = dataclasses.field(default_factory=dict)
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Where it was declared, for messages: `sources.yaml: sources[2] (acl-2021)`.
    where: str = ""


@dataclass(frozen=True)
class RawFile:
    path: Path
    # Path under raw/, posix.
    name: str
    source: str
    format: str
    decl: SourceDecl | None


def load_sources(path: Path | None) -> list[SourceDecl]:
    """The declarations in `path` (none when it is None or absent).

    Raises:
        ConfigError: malformed YAML, an unknown key, a missing name or path, an unknown format,
            a duplicated name or a bad field path, naming the entry and key.
    """
    if path is None:
        return []
    if not path.is_file():
        raise ConfigError(f"{path}: source declarations not found; create it (see README, Adding a source)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return []
    if not isinstance(data, Mapping) or set(data) - {"sources"}:
        raise ConfigError(f"{path}: expected one top-level key `sources:` holding a list of sources")
    entries = data.get("sources") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: sources: expected a list of sources")
    decls: list[SourceDecl] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        key = f"{path.name}: sources[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{key}: expected a mapping with name, paths, format, license, field, defaults")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}: unknown key; a source has {', '.join(_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{key}.name: required, a non-empty string")
        key = f"{key} ({name})"
        if name in seen:
            raise ConfigError(f"{key}.name: {name!r} is declared twice; source names are unique")
        seen.add(name)
        paths = entry.get("paths")
        if isinstance(paths, str):
            paths = [paths]
        if not paths or not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise ConfigError(f"{key}.paths: required, a glob or a list of globs under raw/")
        fmt = entry.get("format")
        if fmt is not None and fmt not in KNOWN_FORMATS:
            raise ConfigError(f"{key}.format: unknown format {fmt!r}; use one of {', '.join(KNOWN_FORMATS)}")
        license_id = entry.get("license")
        if license_id is not None and (not isinstance(license_id, str) or not _SPDX.match(license_id)):
            raise ConfigError(f"{key}.license: {license_id!r} is not an SPDX id (e.g. CC-BY-4.0, CC0-1.0)")
        fields = entry.get("field") or {}
        if not isinstance(fields, Mapping) or not all(isinstance(v, str) for v in fields.values()):
            raise ConfigError(f"{key}.field: expected column: field path pairs")
        for column, field_path in fields.items():
            if column not in TARGETS:
                raise ConfigError(f"{key}.field.{column}: unknown column; mappable are {', '.join(TARGETS)}")
            parse_path(field_path, f"{key}.field.{column}")
        defaults = entry.get("defaults") or {}
        if not isinstance(defaults, Mapping):
            raise ConfigError(f"{key}.defaults: expected column: value pairs")
        for column in defaults:
            if column not in _DEFAULTABLE:
                raise ConfigError(
                    f"{key}.defaults.{column}: not a column with a default; use {', '.join(_DEFAULTABLE)}"
                )
        decls.append(SourceDecl(name, tuple(paths), fmt, license_id, dict(fields), dict(defaults), key))
    return decls


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob under raw/ as a regex over posix paths: `*` and `?` stay within a folder, `**`
    crosses folders, and a pattern naming a folder matches every file below it."""
    pattern = pattern.strip().strip("/")
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts) + "(?:/.*)?")


def assign_sources(raw_dir: Path, files: list[Path], decls: list[SourceDecl], sniff: Any) -> list[RawFile]:
    """Each raw file with its source and format (declared, else sniffed by `sniff(path, name)`).

    Raises:
        BadInputError: a declared path matching no file, a file matched by two declarations,
            or a file whose format cannot be told (from `sniff`).
    """
    names = [path.relative_to(raw_dir).as_posix() for path in files]
    owner: dict[str, SourceDecl] = {}
    for decl in decls:
        for pattern in decl.paths:
            regex = _glob_regex(pattern)
            matched = [name for name in names if regex.fullmatch(name)]
            if not matched:
                raise BadInputError(
                    f"{decl.where}.paths: {pattern!r} matches no file under {raw_dir}/; fix the glob "
                    "or add the files"
                )
            for name in matched:
                other = owner.get(name)
                if other is not None and other is not decl:
                    raise BadInputError(
                        f"{raw_dir.name}/{name}: matched by two sources, {other.name!r} and {decl.name!r}; "
                        "narrow one of their paths so each file has one source"
                    )
                owner[name] = decl
    result = []
    for path, name in zip(files, names, strict=True):
        declared = owner.get(name)
        fmt = (declared.format if declared else None) or sniff(path, name)
        if declared is not None:
            source = declared.name
        elif fmt == "json_object" or (fmt == "openalex" and logical_name(name).lower().endswith(".json")):
            # One paper, one API page or one array of works per file: the folder is the source.
            parent = PurePosixPath(name).parent.as_posix()
            source = name if parent == "." else parent
        else:
            source = name
        result.append(RawFile(path, name, source, fmt, declared))
    return result
