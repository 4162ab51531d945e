"""Fuzz the API from its own OpenAPI document, the app wired as it runs (real broker, every
declared downstream a real local server): never a 500, every error a problem document. A new
route is fuzzed as soon as it exists (service_chassis.testing.fuzz)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from schemathesis import GenerationMode

from service_chassis.testing.fuzz import fuzz, wired
from tests.sample.app import create_app
from tests.sample.settings import Settings


@pytest.fixture(scope="module")
def fuzzed_app() -> Iterator[FastAPI]:
    with wired(create_app, Settings(otel_traces_exporter="none")) as app:
        yield app


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# The app runs in another thread, where background work (retry jitter) may use the global
# `random` while Hypothesis draws a case, which Hypothesis would take for the strategy's doing.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_api_answers_without_server_errors_and_with_problem_details(
    fuzzed_app: FastAPI, mode: GenerationMode
) -> None:
    fuzz(fuzzed_app, mode)
