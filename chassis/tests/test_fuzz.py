"""Fuzz the API from its own OpenAPI document: never a 500, every error a problem document.

Schemathesis generates valid and invalid requests for every operation in ``/openapi.json``
and sends them to the app in process (ASGI), its lifespan started once for the module. The
run is bounded and deterministic: a few examples per operation, derandomized, no example
database. The app runs as deployed: every downstream it declares points at a real local
server and its broker is real, so a new route that calls a downstream or publishes is fuzzed
as it is. A documented failure of a dependency (502, 503, 504 as a problem) is allowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Err
from schemathesis.python import asgi

from service_chassis.problems import PROBLEM_JSON
from service_chassis.testing.brokers import broker_under_test
from service_chassis.testing.servers import free_port, run_downstream
from service_chassis.testing.wiring import downstream_urls, environment, messaging_environment
from tests.sample.app import create_app
from tests.sample.settings import Settings

MAX_EXAMPLES = 15

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


@pytest.fixture(scope="module")
def fuzzed_app() -> Iterator[FastAPI]:
    settings = Settings(otel_traces_exporter="none")
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


@pytest.fixture(scope="module")
def api_schema(fuzzed_app: FastAPI) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)


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


# Schemathesis' own pytest integration (``from_fixture``) does not run under pytest 9, so each
# operation's strategy drives a plain Hypothesis test here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# The app runs in another thread, where background work (retry jitter) may use the global
# `random` while Hypothesis draws a case, which Hypothesis would take for the strategy's doing.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_api_answers_without_server_errors_and_with_problem_details(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    assert operations(api_schema, GenerationMode.POSITIVE), "the OpenAPI document lists nothing"
    # In negative mode only operations with parameters or a body have something to get wrong.
    for operation in operations(api_schema, mode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_well(case: Case) -> None:
            case.call_and_validate(checks=[no_unhandled_error, problem_details])

        answers_well()
