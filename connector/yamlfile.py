"""Read YAML configuration keeping line numbers, and validate it into pydantic models.

Every configuration file (main file, mappings, flows, campaigns) goes through
:func:`load_model`, so every error is reported the same way: ``file:line: path: message``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from core.errors import ConfigurationError, Problem

M = TypeVar("M", bound=BaseModel)


class YamlDoc:
    """A parsed YAML document that can tell the line of any path inside it."""

    def __init__(self, path: Path, data: Any) -> None:
        self.path = path
        self.data = data

    def line_of(self, loc: Iterable[str | int]) -> int | None:
        """The 1-based line of the deepest node of ``loc`` that exists."""
        node: Any = self.data
        line: int | None = 1
        for key in loc:
            if isinstance(node, CommentedMap) and key in node:
                with contextlib.suppress(KeyError, TypeError, AttributeError):
                    line = node.lc.key(key)[0] + 1
                node = node[key]
            elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
                with contextlib.suppress(KeyError, TypeError, AttributeError):
                    line = node.lc.item(key)[0] + 1
                node = node[key]
            else:
                break
        return line

    def plain(self) -> Any:
        """The document as plain dicts and lists (no ruamel types)."""
        return _plain(self.data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str | int | bool) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_yaml(path: Path) -> YamlDoc:
    """Parse ``path``.

    Raises:
        ConfigurationError: the file is missing, unreadable or not valid YAML (with the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(Problem("file not found", file=str(path))) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(Problem(f"cannot read: {exc}", file=str(path))) from None
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigurationError(Problem(f"not valid YAML: {exc.problem}", file=str(path), line=line)) from None
    except YAMLError as exc:
        raise ConfigurationError(Problem(f"not valid YAML: {exc}", file=str(path))) from None
    return YamlDoc(path, data)


def problems_from_validation(doc: YamlDoc, exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    """Turn a pydantic error into ``file:line: path: message`` problems."""
    problems = []
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = ".".join(str(p) for p in loc)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append(Problem(message, file=str(doc.path), line=doc.line_of(loc), path=path))
    return problems


def load_model(path: Path, model: type[M], *, context: dict[str, Any] | None = None) -> tuple[M, YamlDoc]:
    """Read ``path`` and validate it into ``model``.

    Raises:
        ConfigurationError: every problem found, with file and line.
    """
    doc = read_yaml(path)
    if doc.data is None:
        raise ConfigurationError(Problem("file is empty", file=str(path)))
    try:
        return model.model_validate(doc.plain(), context=context), doc
    except ValidationError as exc:
        raise ConfigurationError(problems_from_validation(doc, exc)) from None


def write_schema(model: type[BaseModel], path: Path, title: str) -> None:
    """Write ``model``'s JSON Schema to ``path`` (published for editors)."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
