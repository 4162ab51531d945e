"""Refuse oversized request bodies with a problem.

Starlette's ``RequestBodyLimitMiddleware`` enforces the limit while a body streams in; its 413
goes through the problem handlers. Around it, this layer does two cheap things first: a request
that carries no body (no ``Content-Length`` or ``Transfer-Encoding``) skips the limiter, which
would otherwise wrap ``receive`` and ``send`` on every GET; and a request that declares an
oversized ``Content-Length`` is refused at once, before the route (which may never read the
body) runs.
"""

from __future__ import annotations

from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem_document, send_problem


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._limited = RequestBodyLimitMiddleware(app, max_body_size=max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared, has_body = value, True
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            await self.app(scope, receive, send)
        elif declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, send)
        else:
            await self._limited(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        document = problem_document(
            status=413,
            detail=f"The request body is larger than this service accepts "
            f"({self.max_body_bytes} bytes).",
            instance=scope["path"],
        )
        await send_problem(send, 413, document)
