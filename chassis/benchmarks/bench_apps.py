"""The two apps bench_http.py serves, as factories any ASGI server can call.

``bare()`` is FastAPI with the sample service's example routers, in the order the service
installs them, and nothing else; ``service()`` is the sample service wired as
``service_chassis.run`` wires it (settings and logs from the environment, the tracer
provider, the start-up heap frozen), without uvicorn, for servers that import an app factory
(``granian --factory bench_apps:service``).
"""

from __future__ import annotations

import gc
import importlib
import pkgutil

from fastapi import FastAPI


def bare() -> FastAPI:
    from tests.sample import example
    from tests.sample.example import items

    app = FastAPI()
    app.state.items = items.ItemStore()
    for module in pkgutil.iter_modules(example.__path__):
        routes = importlib.import_module(f"{example.__name__}.{module.name}")
        router = getattr(routes, "router", None)
        if router is not None:
            app.include_router(router)
    return app


def service() -> FastAPI:
    from tests.sample.app import create_app
    from tests.sample.settings import Settings

    from service_chassis.server import prepare

    app = prepare(create_app, Settings)[2]
    gc.freeze()  # as run() does before serving
    return app
