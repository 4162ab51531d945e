"""The direct access-log line against structlog's: byte for byte the same, but for the time."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import re
import threading
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from service_chassis.access_log import FLUSH_AFTER, DirectAccessLog, access_logger
from service_chassis.logs import configure_logging

TIMESTAMP = re.compile(r'"timestamp":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)"')
names = st.sampled_from(
    ["http_method", "http_route", "url_path", "http_status", "duration_ms", "service", "level",
     "trace_id", "tenant", "event_id", "logger"]
)  # fmt: skip
values = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
)


def line_without_time(text: str) -> str:
    [line, end] = text.split("\n")  # not splitlines(): a value may hold U+0085 and the like
    assert end == ""
    assert TIMESTAMP.search(line), line
    return TIMESTAMP.sub('"timestamp":"T"', line)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.dictionaries(names, values, max_size=6),
    bound=st.dictionaries(names, values, max_size=2),
    in_span=st.booleans(),
    entries=st.dictionaries(st.sampled_from(["tenant", "plan", "other"]), st.text(max_size=5)),
)
def test_the_direct_line_is_structlogs(
    fields: dict[str, Any], bound: dict[str, Any], in_span: bool, entries: dict[str, str]
) -> None:
    stream = io.StringIO()
    configure_logging(service="svc", level="INFO", stream=stream, baggage_keys=("tenant", "plan"))
    direct = access_logger()
    assert isinstance(direct, DirectAccessLog)
    ctx = context.Context()
    if in_span:
        span = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False)
        ctx = trace.set_span_in_context(NonRecordingSpan(span), ctx)
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    token = context.attach(ctx)
    structlog.contextvars.bind_contextvars(**bound)
    try:
        structlog.get_logger("access").info("request", **fields)
        expected = line_without_time(stream.getvalue())
        stream.seek(0)
        stream.truncate()
        direct.info("request", **fields)
        assert line_without_time(stream.getvalue()) == expected
    finally:
        structlog.contextvars.clear_contextvars()
        context.detach(token)


@pytest.mark.parametrize(
    ("log_format", "level"), [("console", "INFO"), ("json", "WARNING")], ids=["console", "warning"]
)
def test_structlog_writes_it_when_the_line_is_not_json_or_not_written(
    log_format: str, level: str
) -> None:
    stream = io.StringIO()
    configure_logging(service="svc", level=level, stream=stream, log_format=log_format)  # type: ignore[arg-type]
    logger = access_logger()
    assert not isinstance(logger, DirectAccessLog)
    logger.info("request", http_route="/x")
    assert ("/x" in stream.getvalue()) == (level == "INFO")


def test_structlog_configured_elsewhere_takes_over() -> None:
    configure_logging(service="svc", level="INFO", stream=io.StringIO())
    structlog.configure(logger_factory=structlog.PrintLoggerFactory())
    try:
        assert not isinstance(access_logger(), DirectAccessLog)
    finally:
        structlog.reset_defaults()


@given(st.lists(st.integers(0, 4_102_444_800 * 10**9), min_size=1, max_size=5))
def test_the_timestamp_is_isoformat_in_utc(moments: list[int]) -> None:
    log = DirectAccessLog(
        service="svc", stream=io.StringIO(), lock=threading.RLock(), baggage_keys=(), dumps=str
    )
    for moment in [*moments, moments[0] - moments[0] % 10**9]:  # also a whole second
        seconds, nanoseconds = divmod(moment, 10**9)
        exact = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
        exact = exact.replace(microsecond=nanoseconds // 1000)
        assert log._timestamp(moment) == exact.isoformat().replace("+00:00", "Z")


async def test_lines_reach_the_stream_within_the_flush_interval() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=1 << 16), encoding="utf-8")
    configure_logging(service="svc", level="INFO", stream=stream)
    log = access_logger()
    assert isinstance(log, DirectAccessLog)
    for number in range(3):
        log.info("request", number=number)
    assert raw.getvalue() == b""  # buffered: no write call per line
    await asyncio.sleep(FLUSH_AFTER * 2)
    lines = raw.getvalue().decode().splitlines()
    assert [json.loads(line)["number"] for line in lines] == [0, 1, 2]
