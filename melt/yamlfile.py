"""YAML loading that remembers where each key was, so errors can name the line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from melt.errors import InputError, Problem

KeyPath = tuple[Any, ...]


def format_key(path: KeyPath) -> str:
    """('models', 0, 'params', 'threads') -> 'models[0].params.threads'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class YamlDoc:
    """A parsed YAML mapping plus the line of every key path in it."""

    def __init__(self, path: Path, data: dict, lines: dict[KeyPath, int]):
        self.path = path
        self.data = data
        self._lines = lines

    def line_of(self, key: KeyPath) -> int | None:
        """Line of the deepest known prefix of key (an unknown key still points near its parent)."""
        key = tuple(key)
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return None

    def problem(self, key: KeyPath, expected: str, found: str) -> Problem:
        return Problem(str(self.path), format_key(key), expected, found, self.line_of(key))


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                raise InputError(
                    Problem(
                        file,
                        format_key(path + (key,)),
                        "each key once",
                        f"a duplicate (first on line {seen[key]})",
                        line,
                    )
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, file)


def load(path: Path, what: str) -> YamlDoc:
    """Parse a YAML mapping; syntax errors and non-mappings become InputError with the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(Problem(str(path), "", f"a {what} file", "no such file"))
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        reason = getattr(e, "problem", None) or str(e)
        raise InputError(Problem(str(path), "", "valid YAML", reason, mark.line + 1 if mark else None)) from None
    if not isinstance(data, dict):
        raise InputError(Problem(str(path), "", f"a {what}: a YAML mapping of keys", type(data).__name__))
    lines: dict[KeyPath, int] = {}
    _walk(node, (), lines, str(path))
    return YamlDoc(path, data, lines)
