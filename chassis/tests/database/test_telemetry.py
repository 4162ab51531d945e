"""Client spans and metrics on the stable database conventions, from a real server."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from sqlalchemy import insert, select, text

from service_chassis.database import Database
from service_chassis.database.summary import describe

from .conftest import notes


def client_spans(exporter: InMemorySpanExporter) -> list[trace.Span]:
    return [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CLIENT]  # type: ignore[misc]


async def test_a_statement_is_a_client_span_on_the_current_conventions(
    database: Database,
    database_url: str,
    tracer_provider: TracerProvider,
    span_exporter: InMemorySpanExporter,
) -> None:
    span_exporter.clear()
    with tracer_provider.get_tracer("test").start_as_current_span("request") as parent:
        async with database.transaction() as work:
            await work.session.execute(insert(notes).values(text="a secret value"))
            await work.session.execute(select(notes.c.text).where(notes.c.id == 1))
    spans = {span.name: span for span in span_exporter.get_finished_spans()}
    inserted = spans["INSERT notes"]
    assert inserted.kind is SpanKind.CLIENT
    assert inserted.parent is not None
    assert inserted.parent.span_id == parent.get_span_context().span_id
    attributes = dict(inserted.attributes or {})
    assert attributes["db.system.name"] == "postgresql"
    assert attributes["db.namespace"] == database_url.rpartition("/")[2]
    assert attributes["db.operation.name"] == "INSERT"
    assert attributes["db.collection.name"] == "notes"
    assert attributes["db.query.summary"] == "INSERT notes"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == 5432
    assert "a secret value" not in str(attributes["db.query.text"])
    assert "$1" in str(attributes["db.query.text"])
    assert "SELECT notes" in spans


async def test_a_failed_statement_records_its_sqlstate(
    database: Database, span_exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    span_exporter.clear()
    with pytest.raises(Exception, match="no_such_table"):
        async with database.transaction() as work:
            await work.session.execute(text("SELECT * FROM no_such_table"))
    failed = next(s for s in span_exporter.get_finished_spans() if "no_such_table" in s.name)
    assert failed.attributes is not None
    assert failed.attributes["db.response.status_code"] == "42P01"
    assert failed.attributes["error.type"] == "42P01"
    assert not failed.status.is_ok
    observed = registry.get_sample_value(
        "db_client_operation_duration_seconds_count",
        {
            "db_system_name": "postgresql",
            "db_namespace": database.url.database,
            "db_operation_name": "SELECT",
            "db_collection_name": "no_such_table",
            "error_type": "42P01",
        },
    )
    assert observed == 1


async def test_pool_metrics_show_connections_in_use(
    database: Database, registry: CollectorRegistry
) -> None:
    pool = f"127.0.0.1:5432/{database.url.database}"
    labels = {"db_client_connection_pool_name": pool}
    assert registry.get_sample_value("db_client_connection_max", labels) == 3
    async with database.transaction() as work:
        await work.session.execute(text("SELECT 1"))
        used = registry.get_sample_value(
            "db_client_connection_count", {**labels, "db_client_connection_state": "used"}
        )
        assert used == 1
    assert registry.get_sample_value("db_client_connection_wait_time_seconds_count", labels)
    assert registry.get_sample_value("db_client_connection_pending_requests", labels) == 0


async def test_readiness_probes_and_polls_add_no_spans(
    database: Database, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    assert await database.check() == "connected"
    assert span_exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("sql", "summary", "collection"),
    [
        ("SELECT a FROM items WHERE id = $1", "SELECT items", "items"),
        ("select * from orders o join items i on i.o = o.id", "SELECT orders items", ""),
        ('INSERT INTO "outbox" (a) VALUES ($1)', "INSERT outbox", "outbox"),
        ("UPDATE public.items SET q = 3 WHERE id = 7", "UPDATE public.items", "public.items"),
        ("DELETE FROM inbox WHERE handled_at < now()", "DELETE inbox", "inbox"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "INSERT t x", ""),
        ("SET LOCAL statement_timeout = 200", "SET", ""),
    ],
)
def test_summary(sql: str, summary: str, collection: str) -> None:
    described = describe(sql)
    assert described.summary == summary
    assert described.collection == collection


def test_literals_never_reach_the_query_text() -> None:
    text_ = describe("SELECT * FROM users WHERE email = 'a@b.c' AND age > 42 AND t2.x = $1").text
    assert "a@b.c" not in text_
    assert "42" not in text_
    assert "$1" in text_
    assert "t2.x" in text_
