"""Handlers of /api/v1/definitions."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends

from specwatch.api import schemas
from specwatch.api.deps import Context, require_scope
from specwatch.api.edge import EdgeRoute
from specwatch.api.responses import FastJSONResponse
from specwatch.services.definitions import ImportSummary
from specwatch.services.tokens import Principal

router = APIRouter(route_class=EdgeRoute, prefix="/api/v1/definitions", tags=["definitions"])


@router.post(
    "",
    summary="Import metric and specification definitions (upsert)",
    response_model=ImportSummary,  # the service's record, as it is answered
)
async def post_definitions(
    upload: schemas.DefinitionUpload,
    context: Context,
    principal: Annotated[Principal, Depends(require_scope("write:definitions"))],
) -> FastJSONResponse:
    summary = await context.definitions().import_files(
        upload.files, retire=upload.retire, allowed_packages=principal.packages
    )
    return FastJSONResponse(asdict(summary))
