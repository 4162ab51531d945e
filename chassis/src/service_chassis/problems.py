"""RFC 9457 problem details for every error the service answers.

Each error path (unknown route, wrong method, invalid or oversized body, a domain error, an
unexpected exception) answers ``application/problem+json`` with ``type``, ``title``,
``status``, ``detail``, ``instance`` and the ``trace_id`` that finds the request's trace.
A 5xx never carries exception text.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry import trace
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope, Send

PROBLEM_JSON = "application/problem+json"
ABOUT_BLANK = "about:blank"

log = structlog.get_logger(__name__)


class Problem(Exception):
    """A domain error the service raises on purpose; subclass it per kind of problem.

    ``type`` is a URI naming the kind of problem (a stable identifier clients can branch on);
    ``detail`` explains this occurrence to a person.
    """

    status: int = 400
    type: str = ABOUT_BLANK
    title: str = "Bad Request"

    def __init__(
        self,
        detail: str,
        *,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = dict(extensions or {})
        self.headers = dict(headers or {})


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def problem_document(
    *,
    status: int,
    detail: str,
    instance: str,
    type_: str = ABOUT_BLANK,
    title: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or _http_status_phrase(status),
        "status": status,
        "detail": detail,
        "instance": instance,
        "trace_id": current_trace_id(),
    }
    if extensions:
        # Extensions never overwrite the standard members.
        body.update({k: v for k, v in extensions.items() if k not in body})
    return orjson.dumps(body)


def problem_response(
    *,
    request: Request,
    status: int,
    detail: str,
    type_: str = ABOUT_BLANK,
    title: str | None = None,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    document = problem_document(
        status=status,
        detail=detail,
        instance=request.url.path,
        type_=type_,
        title=title,
        extensions=extensions,
    )
    return Response(
        document, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {})
    )


def _http_status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    phrase = _http_status_phrase(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else phrase
    if exc.status_code == 404 and detail == phrase:
        detail = f"No resource at {request.url.path}."
    headers = exc.headers
    if exc.status_code == 405:
        # The router names the methods of the first route that matched the path; RFC 9110
        # (15.5.6) wants every method the path allows.
        allowed = allowed_methods(request)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        if detail == phrase:
            detail = (
                f"{request.method} is not allowed on {request.url.path}; "
                f"allowed: {', '.join(allowed)}."
            )
    elif exc.status_code == 413:
        detail = "The request body is larger than this service accepts."
    return problem_response(
        request=request,
        status=exc.status_code,
        title=phrase,
        detail=detail,
        headers=headers,
    )


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (asked of the routes themselves,
    as included routers keep their routes to themselves)."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def _pointer(location: tuple[int | str, ...]) -> str:
    # JSON Pointer (RFC 6901) into the request part that failed, e.g. "#/body/quantity".
    parts = (str(part).replace("~", "~0").replace("/", "~1") for part in location)
    return "#/" + "/".join(parts)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    invalid_json = [error for error in exc.errors() if error.get("type") == "json_invalid"]
    if invalid_json:
        # FastAPI points at a character offset ("#/body/26"): say what is wrong, and where.
        error = invalid_json[0]
        reason = str((error.get("ctx") or {}).get("error") or error["msg"])
        position = error["loc"][-1] if len(error["loc"]) > 1 else None
        where = f" at character {position}" if isinstance(position, int) else ""
        detail = f"The request body is not valid JSON: {reason}{where}."
        return problem_response(
            request=request,
            status=422,
            detail=detail,
            extensions={
                "errors": [{"pointer": "#/body", "detail": detail, "type": "json_invalid"}]
            },
        )
    errors = [
        {"pointer": _pointer(tuple(error["loc"])), "detail": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return problem_response(
        request=request,
        status=422,
        detail=f"The request has {len(errors)} invalid field(s); see errors.",
        extensions={"errors": errors},
    )


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(
        request=request,
        status=exc.status,
        type_=exc.type,
        title=exc.title,
        detail=exc.detail,
        extensions=exc.extensions,
        headers=exc.headers,
    )


INTERNAL_ERROR_DETAIL = (
    "The service could not complete the request. Quote the trace_id when reporting it."
)


async def send_problem(send: Send, status: int, document: bytes) -> None:
    """Answer a problem straight on the ASGI channel (for layers outside the router)."""
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(document)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": document})


async def send_internal_error(scope: Scope, send: Send) -> None:
    # The client learns only that something failed and which trace to quote; the exception
    # itself goes to the log.
    document = problem_document(status=500, detail=INTERNAL_ERROR_DETAIL, instance=scope["path"])
    await send_problem(send, 500, document)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Reached only for errors outside the request observer (which answers the rest itself).
    return problem_response(request=request, status=500, detail=INTERNAL_ERROR_DETAIL)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Problem, handle_problem)
    app.add_exception_handler(Exception, handle_unexpected)
