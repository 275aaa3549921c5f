"""The OpenAPI document, made true: problem+json errors with their codes, the bearer scheme.

FastAPI documents its own ``HTTPValidationError`` for every 422, which this API never sends,
and knows nothing of the problems the edge answers.  Routes name the problems only they can
give (``problems(404, 409)``); the rules every route shares are applied here, in one place:
422 where there is input, 401/403 where a token is needed, 413 where there is a body, 503
everywhere (a backend is down).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .edge import SCOPES_KEY
from .schemas import NO_NUL, Problem

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTIONS = {
    401: "No token, or not a valid one (`WWW-Authenticate: Bearer`)",
    403: "The token lacks the scope, or the package is outside the token's",
    404: "Not found",
    409: "The Idempotency-Key was used for another body",
    413: "The body is over its limit (SPECWATCH_MAX_BODY_BYTES, SPECWATCH_MAX_JOB_BYTES)",
    422: "Invalid input: `location` says where, `errors` lists every problem",
    503: "A backend (database or series store) is unavailable; retry",
}


def problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS.get(status, "Problem"),
        "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
    }


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route's own problems (the shared ones are added for all)."""
    return {status: problem_response(status) for status in statuses}


def _complete(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    has_input = bool(operation.get("parameters")) or "requestBody" in operation
    shared = [503]
    if has_input:
        shared.append(422)
    if operation.get("security"):
        shared += [401, 403]
    if "requestBody" in operation:
        shared.append(413)
    for status in shared:
        responses[str(status)] = problem_response(status)


def _bound_strings(operation: dict[str, Any], max_chars: int) -> None:
    """Say what the edge refuses in every string parameter: NUL characters, and length."""
    for parameter in operation.get("parameters", []):
        schema = parameter["schema"]
        for variant in schema.get("anyOf", [schema]):
            if variant.get("type") == "string" and "enum" not in variant:
                variant.setdefault("pattern", NO_NUL)
                variant["maxLength"] = min(variant.get("maxLength", max_chars), max_chars)


def install_openapi(app: FastAPI, *, read_token_required: bool, max_param_chars: int) -> None:
    """Replace ``app.openapi`` by the completed document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        for path_item in document.get("paths", {}).values():
            for operation in path_item.values():
                if not read_token_required and operation.get(SCOPES_KEY) == ["read"]:
                    # Reads are open by default: no token needed, none documented.
                    operation.pop("security", None)
                _complete(operation)
                _bound_strings(operation, max_param_chars)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
