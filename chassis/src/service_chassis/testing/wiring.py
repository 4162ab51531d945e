"""The app as deployed, with every dependency it declares pointed at a real local stand-in.

``wired_environment(create_app, settings_factory, downstream_url=..., broker=...)`` finds the
downstreams an app declares (required ones by the start-up error that names them, optional
ones by their unset URL) and returns the environment variables that give each one a URL, plus
the broker's. A test that builds the app with them (a fuzz test, say) exercises every route
as it really runs, so a new route that calls a downstream or publishes needs no new fixture.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from ..downstreams import Downstreams, MissingDownstreamURLError

if TYPE_CHECKING:  # importable without a broker's packages, as a service without one is
    from ..messaging.settings import MessagingSettings

MAX_DOWNSTREAMS = 100


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def downstream_urls(build: Callable[[], FastAPI], url: str) -> dict[str, str]:
    """``<NAME>_URL=url`` for every downstream ``build()`` declares."""
    found: dict[str, str] = {}
    for _ in range(MAX_DOWNSTREAMS):
        with environment(found):
            try:
                app = build()
            except MissingDownstreamURLError as missing:
                found[missing.downstream.url_variable] = url
                continue
        downstreams: Downstreams = app.state.downstreams
        unset = {
            declared.url_variable
            for declared in downstreams.declarations
            if downstreams[declared.name].missing_url_variable is not None
        }
        if not unset:
            return found
        found |= dict.fromkeys(unset, url)
    raise AssertionError(f"more than {MAX_DOWNSTREAMS} downstreams: {sorted(found)}")


def messaging_environment(broker: str, settings: MessagingSettings) -> dict[str, str]:
    """``settings`` as the environment variables a service reads, messaging on."""
    from ..messaging.settings import MessagingSettings

    env = {"MESSAGING_ENABLED": "true", "MESSAGING_BROKER": broker}
    for name, field in MessagingSettings.model_fields.items():
        value = getattr(settings, name)
        if name != "enabled" and value is not None and isinstance(field.validation_alias, str):
            env[field.validation_alias] = str(value)
    return env
