"""Fast JSON responses (orjson); NaN and infinities become null, as JSON has no such numbers."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ProblemResponse(FastJSONResponse):
    media_type = "application/problem+json"
