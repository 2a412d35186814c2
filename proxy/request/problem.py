"""RFC 9457 problem details, the body of every error the gateway itself produces."""

from __future__ import annotations

import json

from cutover.types import RawHeaders, Send
from cutover.upstream.base import UpstreamError

# Problem types are named, not fetched; README.md lists them.
PROBLEM_TYPE_BASE = "urn:cutover:problem:"


def problem_body(
    status: int, title: str, detail: str, *, instance: str | None = None, slug: str, **extra: object
) -> bytes:
    problem: dict[str, object] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        problem["instance"] = instance
    problem.update(extra)
    return json.dumps(problem).encode("utf-8")


async def send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    instance: str | None = None,
    headers: RawHeaders = (),  # type: ignore[assignment]
    **extra: object,
) -> None:
    body = problem_body(status, title, detail, instance=instance, slug=slug, **extra)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_upstream_failure(
    send: Send, exc: UpstreamError, backend: str, instance: str | None, headers: RawHeaders
) -> None:
    """The backend gave no usable answer: 504 when it timed out, else 502."""
    if exc.status == 504:
        title = "Gateway Timeout"
        detail = f"The {backend} backend did not answer in time."
    else:
        title = "Bad Gateway"
        detail = f"The {backend} backend could not be reached ({exc.kind})."
    await send_problem(
        send,
        exc.status,
        title,
        detail,
        slug=f"upstream-{exc.kind}",
        instance=instance,
        headers=headers,
        backend=backend,
    )


async def send_overloaded(send: Send, backend: str, retry_after: int, headers: RawHeaders) -> None:
    """Every slot of the backend stayed taken (``slots.py``): 503 with ``Retry-After``."""
    await send_problem(
        send,
        503,
        "Service Unavailable",
        f"Too many requests are in flight to the {backend} backend; retry shortly.",
        slug="overloaded",
        headers=[*headers, (b"retry-after", str(retry_after).encode("ascii"))],
        backend=backend,
    )
