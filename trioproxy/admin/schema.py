"""JSON Schema building blocks for /openapi.json (2020-12, as OpenAPI 3.1 takes)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def obj(props: dict[str, Schema], *, closed: bool = True, optional: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": not closed,
    }


INT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
COUNTS: Schema = {"type": "object", "additionalProperties": INT}
NULLABLE_NUM: Schema = {"type": ["number", "null"]}
