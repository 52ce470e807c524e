"""Checks report.json against its JSON Schema without the drill extra: an auditor verifies
evidence with a plain install. Only the keywords report.schema.json uses are understood; a
schema using any other is refused (never silently half-checked). A test holds this to the
answers of the jsonschema package on the same documents."""

from __future__ import annotations

import re
from typing import Any

ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
CHECKED = {"type", "enum", "const", "required", "properties", "additionalProperties", "items",
           "minimum", "pattern", "oneOf", "$ref"}  # fmt: skip
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaViolation(ValueError):
    """The document does not follow the schema; the message says where and why."""


def validate(document: Any, schema: dict[str, Any]) -> None:
    try:
        _check(document, schema, schema, "report")
    except RecursionError:  # nested past the stack: no report this tool writes is
        raise SchemaViolation("report: nested deeper than any report") from None


def _is(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False  # JSON's true is not a number
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise SchemaViolation(f"the schema refers outside itself ({ref}): not supported")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return dict(node)


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> None:
    unknown = set(schema) - ANNOTATIONS - CHECKED
    if unknown:
        raise SchemaViolation(f"the schema uses keywords this check does not know: {unknown}")
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, where)
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, kind) for kind in kinds):
            raise SchemaViolation(f"{where}: {value!r:.60} is not of type {' or '.join(kinds)}")
    if "enum" in schema and not any(_same(value, v) for v in schema["enum"]):
        raise SchemaViolation(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if "const" in schema and not _same(value, schema["const"]):
        raise SchemaViolation(f"{where}: {value!r:.60} is not {schema['const']!r}")
    if "minimum" in schema and _is(value, "number") and value < schema["minimum"]:
        raise SchemaViolation(f"{where}: {value} is less than {schema['minimum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        raise SchemaViolation(f"{where}: {value!r:.60} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        _check_object(value, schema, root, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{i}]")
    if "oneOf" in schema:
        matching = 0
        for option in schema["oneOf"]:
            try:
                _check(value, option, root, where)
            except SchemaViolation:
                continue
            matching += 1
        if matching != 1:
            raise SchemaViolation(f"{where}: matches {matching} of the allowed shapes, not one")


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], where: str
) -> None:
    for name in schema.get("required", []):
        if name not in value:
            raise SchemaViolation(f"{where}: {name!r} is missing")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], root, f"{where}.{name}")
        elif extra is False:
            raise SchemaViolation(f"{where}: {name!r:.60} is not allowed")
        elif isinstance(extra, dict):
            _check(item, extra, root, f"{where}.{name}")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 and True differ, 1 and 1.0 do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)
