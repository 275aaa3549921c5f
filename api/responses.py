"""Fast JSON responses (orjson); NaN and infinities become null, as JSON has no such numbers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

# numpy arrays (datetime64 columns of series) are written natively; datetimes as UTC "…Z".
_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
)


def dumps(content: Any) -> bytes:
    """JSON bytes as every response writes them."""
    return orjson.dumps(content, option=_OPTIONS)


class FastJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class ProblemResponse(FastJSONResponse):
    media_type = "application/problem+json"
