"""Refuse oversized request bodies with a problem, before reading them.

Starlette's ``RequestBodyLimitMiddleware`` enforces the limit while the body streams in (its
413 goes through the problem handlers). A request that declares an oversized
``Content-Length`` is refused here first, so it gets a problem too even when the route never
reads its body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import PROBLEM_JSON, problem_document


class DeclaredBodyLimit:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._declared_too_large(scope):
            await self._refuse(scope, send)
            return
        await self.app(scope, receive, send)

    def _declared_too_large(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_body_bytes
        return False

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = problem_document(
            status=413,
            detail=f"The request body is larger than this service accepts "
            f"({self.max_body_bytes} bytes).",
            instance=scope["path"],
        )
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
