"""Pydantic-backed validation of YAML inputs, with errors that name file, key, line, expected and found."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from melt.errors import InputError, Problem
from melt.yamlfile import KeyPath, YamlDoc


class Strict(BaseModel):
    """Frozen, closed (unknown keys refused) and strict (no "2" for 2) description."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def axis(item_type: Any) -> Any:
    """A matrix axis: a single value or a list of values, always held as a non-empty list."""
    from pydantic import Field

    return Annotated[list[item_type], BeforeValidator(_as_list), Field(min_length=1)]


def _unwrap(t: Any) -> Any:
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    return t


def _is_union(t: Any) -> bool:
    return get_origin(t) in (Union, types.UnionType)


def _step(t: Any, part: Any) -> Any:
    """The type found one key below type t (None when it cannot be told)."""
    t = _unwrap(t)
    if _is_union(t):
        members = [_unwrap(m) for m in get_args(t) if m is not type(None)]
        for m in members:  # a discriminated union: loc holds the tag
            is_model = isinstance(m, type) and issubclass(m, BaseModel) and "runtime" in m.model_fields
            if is_model and get_args(m.model_fields["runtime"].annotation) == (part,):
                return m
        models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
        return _step(models[0], part) if len(models) == 1 else None
    if isinstance(t, type) and issubclass(t, BaseModel):
        field = t.model_fields.get(part)
        return field.annotation if field else t
    origin = get_origin(t)
    if origin in (list, tuple):
        return get_args(t)[0]
    if origin is dict:
        return get_args(t)[1]
    return None


def _allowed_keys(root: type[BaseModel], raw_loc: KeyPath) -> list[str]:
    t: Any = root
    for part in raw_loc[:-1]:
        t = _step(t, part)
        if t is None:
            return []
    t = _unwrap(t)
    if _is_union(t):
        models = [m for m in get_args(t) if isinstance(m, type) and issubclass(m, BaseModel)]
        t = models[0] if len(models) == 1 else None
    return list(t.model_fields) if isinstance(t, type) and issubclass(t, BaseModel) else []


def _data_path(data: Any, raw_loc: KeyPath) -> KeyPath:
    """Drop loc parts that are not keys of the data (union tags, type names), keep the last."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(raw_loc):
        if (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and part < len(node)
        ):
            out.append(part)
            node = node[part]
        elif i == len(raw_loc) - 1 and isinstance(part, (str, int)) and not _looks_like_type(part):
            out.append(part)
    return tuple(out)


def _looks_like_type(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"int", "float", "str", "bool"})


def _found(value: Any) -> str:
    if isinstance(value, list):
        return f"a list {value!r}"
    if isinstance(value, dict):
        return f"a mapping with keys {sorted(map(str, value))}"
    if isinstance(value, bool):
        return f"{value!r} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    return f"{value!r} ({type(value).__name__})"


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _expected(err: dict, allowed: list[str]) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind in _TYPE_WORDS:
        word = _TYPE_WORDS[kind]
        if isinstance(err.get("input"), list) and kind != "list_type":
            return f"a single value ({word}); lists belong only to matrix axes under params"
        return word
    if kind == "missing":
        return "a value (this key is required)"
    if kind == "extra_forbidden":
        return "one of the keys " + ", ".join(allowed) if allowed else "a known key"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"a '{ctx.get('discriminator', '').strip(chr(39))}' key"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()), "?")
        return f"a number {sign} {limit}"
    if kind == "string_pattern_mismatch":
        return f"a string matching {ctx.get('pattern')}"
    if kind in ("too_short", "too_long"):
        return err["msg"].replace("List should have", "a list with").replace("Value should have", "a value with")
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


def validate(model: type[BaseModel], doc: YamlDoc, data: dict | None = None, prefix: KeyPath = ()) -> Any:
    """Validate data (default: the whole document) against model; raise InputError with every problem."""
    data = doc.data if data is None else data
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            raw_loc = tuple(err["loc"])
            path = _data_path(data, raw_loc)
            if err["type"] == "union_tag_invalid":
                path += (err["ctx"]["discriminator"].strip("'"),)
                found = repr(err["ctx"]["tag"])
            elif err["type"] == "extra_forbidden":
                found = f"unknown key {path[-1]!r}" if path else "an unknown key"
            elif err["type"] == "missing":
                found = "nothing"
            elif err["type"] == "value_error":
                found = _found(err.get("input"))
            else:
                found = _found(err.get("input"))
            problems.append(doc.problem(prefix + path, _expected(err, _allowed_keys(model, raw_loc)), found))
        raise InputError(_dedupe(problems)) from None


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, out = set(), []
    for p in problems:
        if (p.key, p.expected, p.found) not in seen:
            seen.add((p.key, p.expected, p.found))
            out.append(p)
    return out


__all__ = ["Strict", "axis", "validate", "Literal", "typing"]
