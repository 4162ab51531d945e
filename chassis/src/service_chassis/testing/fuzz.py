"""Fuzz an app from its own OpenAPI document, wired as it runs: never a 500, every error a
problem document.

``wired(create_app, settings)`` builds the app with every downstream it declares pointed at a
real local server and its broker real (``wiring.py``); ``fuzz(app, mode)`` has Schemathesis
generate valid (``positive``) or invalid (``negative``) requests for every operation and sends
them in process (ASGI), a few examples each, derandomized, no example database. A documented
failure of a dependency (502, 503, 504 as a problem) is allowed; anything else at 5xx is not.
So a new route that calls a downstream or publishes is fuzzed as it is, with no new fixture.
Needs ``schemathesis`` and ``hypothesis``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.python import asgi

from ..problems import PROBLEM_JSON
from ..settings import ServiceSettings
from .brokers import broker_under_test
from .servers import free_port, run_downstream
from .wiring import downstream_urls, environment, messaging_environment

MAX_EXAMPLES = 15

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]


# What a dependency's failure may answer; anything else at 5xx is a defect.
DEPENDENCY_FAILURES = frozenset({502, 503, 504})


def no_unhandled_error(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    status = response.status_code
    assert status < 500 or status in DEPENDENCY_FAILURES, f"{status}: {response.text[:500]}"
    return None


def problem_details(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """Every 4xx and 5xx answers ``application/problem+json`` with the required members."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    assert content_type == PROBLEM_JSON, (
        f"{response.status_code} answered {content_type or 'no content-type'}, not {PROBLEM_JSON}"
    )
    body = response.json()
    missing = {"type", "title", "status", "detail", "instance", "trace_id"} - set(body)
    assert not missing, f"the problem lacks {sorted(missing)}"
    assert body["status"] == response.status_code
    return None


@contextlib.contextmanager
def wired(create_app: Callable[[SettingsT], FastAPI], settings: SettingsT) -> Iterator[FastAPI]:
    """``create_app(settings)`` with its broker and every declared downstream real and local."""
    with contextlib.ExitStack() as stack:
        env = {
            # Consul: an agent address where nothing listens, so nothing gets registered,
            # and one retry an hour rather than a loop of them beside the fuzzing.
            "CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "CONSUL_RETRY_INITIAL_SECONDS": "3600",
            "CONSUL_RETRY_MAX_SECONDS": "3600",
            "MESSAGING_ENABLED": "false",
        }
        if settings.messaging_broker != "none":
            broker = stack.enter_context(broker_under_test(settings.messaging_broker))
            env |= messaging_environment(settings.messaging_broker, broker.settings())
        downstream = stack.enter_context(contextlib.contextmanager(run_downstream)())
        stack.enter_context(environment(env))
        env |= downstream_urls(lambda: create_app(settings), downstream.url)
        stack.enter_context(environment(env))
        yield create_app(settings)
        # Schemathesis started the app's lifespan; stop it while the stand-ins still run.
        asgi.shutdown_lifespans()


def operations(schema: schemathesis.BaseSchema, mode: GenerationMode) -> list[Operation]:
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the OpenAPI document has an invalid operation: {result.err()}")
        found.append(result.ok())
    if mode is GenerationMode.NEGATIVE:
        # Only an operation that takes parameters or a body has invalid requests to make.
        found = [
            op
            for op in found
            if op.definition.raw.get("parameters") or op.definition.raw.get("requestBody")
        ]
    return found


def fuzz(app: FastAPI, mode: GenerationMode, *, max_examples: int = MAX_EXAMPLES) -> None:
    """Every operation of ``app``'s OpenAPI document, ``max_examples`` cases each."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert operations(schema, GenerationMode.POSITIVE), "the OpenAPI document lists nothing"
    # In negative mode only operations with parameters or a body have something to get wrong.
    for operation in operations(schema, mode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=max_examples,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_well(case: Case) -> None:
            case.call_and_validate(checks=[no_unhandled_error, problem_details])

        answers_well()
