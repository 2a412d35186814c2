from collections.abc import Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
VALIDATION_PROBLEM = "urn:cutover:problem:validation-error"


def problem(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: object,
) -> JSONResponse:
    body = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extensions,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def http_exception_handler(request: Request, exc: HTTPException) -> JSONResponse:
    return problem(exc.status_code, exc.detail, headers=exc.headers, instance=request.url.path)


async def server_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return problem(500, "The server failed to process the request.", instance=request.url.path)
