"""Refuse oversized request bodies with a problem.

Starlette's ``RequestBodyLimitMiddleware`` enforces the limit while a body streams in; its 413
goes through the problem handlers. Before it, two cheap things: a request that carries no body
(no ``Content-Length`` or ``Transfer-Encoding``) skips the limiter, which would otherwise wrap
``receive`` and ``send`` on every GET; and a request that declares an oversized
``Content-Length`` is refused at once, before the route (which may never read the body) runs.

The request observer (observe.py) finds the body headers in the pass over the headers it makes
anyway and asks ``app_for`` what runs the request: no ASGI layer of its own on every request.
``BodyLimit`` called as a middleware does the same with a pass of its own, for the requests the
observer lets through unobserved.
"""

from __future__ import annotations

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem_document, send_problem

CONTENT_LENGTH = b"content-length"
TRANSFER_ENCODING = b"transfer-encoding"


def body_headers(scope: Scope) -> tuple[bool, bytes | None]:
    """Whether the request has a body, and its declared ``Content-Length`` if any."""
    declared: bytes | None = None
    has_body = False
    for name, value in scope["headers"]:
        if name == CONTENT_LENGTH:
            declared, has_body = value, True
        elif name == TRANSFER_ENCODING:
            has_body = True
    return has_body, declared


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._limited = RequestBodyLimitMiddleware(app, max_body_size=max_body_bytes)

    def app_for(self, has_body: bool, declared: bytes | None) -> ASGIApp:
        """What runs a request with these body headers: the app itself without a body, a 413
        when the declared length is over the limit, else the app behind the streaming limit."""
        if not has_body:
            return self.app
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return self._refuse
        return self._limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app_for(*body_headers(scope))(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = problem_document(
            status=413,
            detail=f"The request body is larger than this service accepts "
            f"({self.max_body_bytes} bytes).",
            instance=scope["path"],
        )
        await send_problem(send, 413, document)
