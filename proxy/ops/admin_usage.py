"""The admin API's usage report: ``GET /migrations/{name}/usage`` and ``GET /usage``, each
with ``?since=7d`` (default 7d) and ``?format=json|csv|table`` (default json)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cutover.ops.usage import NoDeprecation, UnknownMigrationUsage, UsageService
from cutover.request.problem import problem_body
from cutover.usage.report import DEFAULT_SINCE, ReportFormat, SinceError, render
from cutover.usage.store import UsageStoreError

MEDIA = {ReportFormat.CSV: "text/csv", ReportFormat.TABLE: "text/plain"}


def _problem(status: int, title: str, detail: str, slug: str) -> Response:
    body = problem_body(status, title, detail, slug=slug)
    return Response(body, status_code=status, media_type="application/problem+json")


def usage_routes(usage: UsageService) -> list[Route]:
    async def report(request: Request, name: str | None) -> Response:
        since = request.query_params.get("since", DEFAULT_SINCE)
        try:
            form = ReportFormat(request.query_params.get("format", ReportFormat.JSON))
        except ValueError:
            formats = ", ".join(ReportFormat)
            return _problem(422, "Unprocessable Content", f"format must be one of {formats}",
                            "invalid-query")  # fmt: skip
        try:
            document = await usage.report(name, since)
        except SinceError as exc:
            return _problem(422, "Unprocessable Content", str(exc), "invalid-query")
        except UnknownMigrationUsage as exc:
            return _problem(404, "Not Found", str(exc), "not-found")
        except NoDeprecation as exc:
            return _problem(409, "Conflict", str(exc), "no-deprecation")
        except UsageStoreError as exc:
            return _problem(503, "Service Unavailable", str(exc), "usage-unavailable")
        if form == ReportFormat.JSON:
            return JSONResponse(document)
        return PlainTextResponse(render(document, form), media_type=MEDIA[form])

    async def one(request: Request) -> Response:
        return await report(request, request.path_params["name"])

    async def every(request: Request) -> Response:
        return await report(request, None)

    return [Route("/migrations/{name}/usage", one), Route("/usage", every)]
