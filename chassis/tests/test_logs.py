from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from service_chassis.logs import configure_logging, resolve_format
from service_chassis.settings import ServiceSettings


@pytest.fixture
def stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(service="svc", level="INFO", stream=stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_structlog_and_stdlib_lines_share_one_shape(
    stream: io.StringIO, tracer_provider: TracerProvider
) -> None:
    tracer = tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        structlog.get_logger("app").info("from structlog", order_id=7)
        logging.getLogger("some.library").warning("from %s", "stdlib")
    first, second = records(stream)
    expected_trace = format(span.get_span_context().trace_id, "032x")
    expected_span = format(span.get_span_context().span_id, "016x")
    for record in (first, second):
        assert record.keys() >= {"timestamp", "level", "event", "service", "trace_id", "span_id"}
        assert record["trace_id"] == expected_trace
        assert record["span_id"] == expected_span
        assert record["service"] == "svc"
    assert first["event"] == "from structlog"
    assert first["order_id"] == 7
    assert second["event"] == "from stdlib"
    assert second["level"] == "warning"


def test_no_trace_fields_outside_a_span(stream: io.StringIO) -> None:
    structlog.get_logger("app").info("idle")
    (record,) = records(stream)
    assert "trace_id" not in record
    assert "span_id" not in record


def test_level_filters_and_exceptions_render_as_text(stream: io.StringIO) -> None:
    log = structlog.get_logger("app")
    log.debug("hidden")
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("failed")
    (record,) = records(stream)
    assert record["level"] == "error"
    assert "ValueError: bad" in record["exception"]


def test_uvicorn_access_log_is_replaced(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("uvicorn.error").info("Started server process")
    (record,) = records(stream)
    assert record["event"] == "Started server process"
    assert record["logger"] == "uvicorn.error"


def test_uvicorn_copy_of_a_reraised_error_is_dropped(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("already logged")
    except RuntimeError as error:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=error)
    logging.getLogger("uvicorn.error").error("something else")
    assert [record["event"] for record in records(stream)] == ["something else"]


def test_console_format_is_for_people_with_readable_tracebacks(stream: io.StringIO) -> None:
    configure_logging(service="svc", level="INFO", stream=stream, log_format="console")
    log = structlog.get_logger("svc.test")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke", order=7)
    text = stream.getvalue()
    first = text.splitlines()[0]
    assert not first.startswith("{")
    assert "it broke" in first
    assert "order=7" in first
    assert "Traceback (most recent call last)" in text
    assert "\\n" not in text  # a real multi-line traceback, not an escaped string


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_console_at_a_terminal_and_json_elsewhere() -> None:
    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"


def test_settings_take_level_and_format_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_FORMAT", "Console")
    settings = ServiceSettings()
    assert (settings.log_level, settings.log_format) == ("DEBUG", "console")
