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


def json_response(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "bad request",
        401: "admin token missing or wrong",
        403: "admin endpoints closed on this listener",
        404: "not on this listener",
        405: "method not allowed",
        409: "conflict",
        503: "the database cannot be read",
    }
    return {
        str(c): {"$ref": f"#/components/responses/E{c}", "description": words[c]} for c in codes
    }


ADMIN: tuple[dict[str, list[str]], ...] = ({"adminToken": []}, {"adminBasic": []})


def op(summary: str, responses: dict[str, Any], *, admin: bool, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if admin:
        op["security"] = list(ADMIN)
        op["responses"].update(errors(401, 403, 404))
    return op


def json_body(schema: Schema) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def text_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": STR}}}
