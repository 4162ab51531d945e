"""The chassis's own routes (``/health/*``, ``/metrics``) after the service's.

Starlette's router tries its routes in order until one matches, so every route listed before
an API route is tested on each request for it. The chassis adds its routes when the app is
made, before the service adds its own; when the service starts they move to the end of the
list, where only the requests meant for them reach them. They move only if no route of the
service answers their paths: a catch-all route must not take the probes away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute, Match, Router


def shadowing_route(routes: Iterable[BaseRoute], paths: Iterable[str]) -> str | None:
    """The first of ``routes`` that would answer a GET on one of ``paths``, described."""
    for path in sorted(paths):
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
        for route in routes:
            if route.matches(dict(scope))[0] is Match.FULL:
                return f"{getattr(route, 'path', route)!r} answers GET {path}"
    return None


def move_last(router: Router, moved: Sequence[BaseRoute], paths: Iterable[str]) -> str | None:
    """Move ``moved`` (in their order) to the end of ``router.routes``, unless another route
    would then answer one of ``paths``; returns why they stayed, or None."""
    others = [route for route in router.routes if not any(route is m for m in moved)]
    reason = shadowing_route(others, paths)
    if reason is None:
        router.routes[:] = [*others, *moved]
    return reason
