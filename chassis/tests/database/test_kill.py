"""SIGKILL at the worst moments, with real processes, real PostgreSQL and a real broker:

- between the commit and the relay: the broker is cut off while orders commit, the service is
  killed, a new one starts: every committed event is published, none of a rolled-back order;
- in the middle of relaying a burst: the same, whatever the relay had done when it died;
- the consumer in the middle of a batch: after the restart, each event has had its effect
  exactly once (the inbox), where an in-memory store would repeat those in flight.

Each event's effect is a row without a unique key (``effects``), so a repeat would show.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from service_chassis.database import CHASSIS_METADATA
from service_chassis.messaging.events import Event, NewEvent
from service_chassis.messaging.settings import MessagingSettings
from service_chassis.testing.brokers import BrokerUnderTest, broker_under_test
from service_chassis.testing.postgres import create_tables, fresh_database
from service_chassis.testing.proxy import TcpProxy
from service_chassis.testing.servers import ServiceProcess, eventually, start_service
from service_chassis.testing.wiring import messaging_environment

from .killable import EFFECTS

pytestmark = pytest.mark.integration

PACKAGE = "tests.database.killable"
# The relay tests cut the broker off with a loopback proxy, which Kafka's clients go around
# (they connect to the addresses the cluster advertises): NATS and RabbitMQ. The consumer's
# tests need no proxy: every broker.
PROXIED_BROKERS = ("nats", "rabbitmq")


@pytest.fixture(scope="module")
def nats_broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test("nats") as broker:
        yield broker


@pytest.fixture(scope="module")
def rabbitmq_broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test("rabbitmq") as broker:
        yield broker


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[BrokerUnderTest]:
    with broker_under_test("kafka") as broker:
        yield broker


@pytest.fixture(params=PROXIED_BROKERS)
def broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    found: BrokerUnderTest = request.getfixturevalue(f"{request.param}_broker")
    return found


@pytest.fixture(params=(*PROXIED_BROKERS, "kafka"))
def any_broker(request: pytest.FixtureRequest) -> BrokerUnderTest:
    found: BrokerUnderTest = request.getfixturevalue(f"{request.param}_broker")
    return found


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with fresh_database(prefix="kill") as url:
        await create_tables(url, CHASSIS_METADATA, EFFECTS)
        yield url


@pytest.fixture
async def messaging(broker: BrokerUnderTest) -> AsyncIterator[MessagingSettings]:
    settings = broker.settings(max_attempts=5, retry_backoff_seconds=0.05)
    yield settings
    await broker.cleanup(settings)


@pytest.fixture
async def any_messaging(any_broker: BrokerUnderTest) -> AsyncIterator[MessagingSettings]:
    settings = any_broker.settings(max_attempts=5, retry_backoff_seconds=0.05)
    yield settings
    await any_broker.cleanup(settings)


def environment(
    broker: BrokerUnderTest,
    settings: MessagingSettings,
    database_url: str,
    *,
    broker_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    env = messaging_environment(broker.system, settings)
    if broker_url is not None:
        env["BROKER_URL"] = broker_url
    return {
        **env,
        "DATABASE_SYSTEM": "postgres",
        "DATABASE_URL": database_url,
        "OUTBOX_POLL_SECONDS": "0.2",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "killable",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE_SECONDS": "2",
        **extra,
    }


@contextmanager
def running(env: dict[str, str]) -> Iterator[ServiceProcess]:
    service = start_service(PACKAGE, env, ready_path="/health/ready", timeout=30)
    try:
        yield service
    finally:
        service.stop(signal.SIGKILL)


def proxied_url(broker: BrokerUnderTest, proxy: TcpProxy) -> str:
    scheme, _, rest = broker.url.partition("://")
    credentials = rest.rpartition("@")[0]
    host = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    vhost = "/" if broker.system == "rabbitmq" else ""
    return f"{scheme}://{host}{vhost}"


def broker_address(broker: BrokerUnderTest) -> tuple[str, int]:
    hostport = broker.url.partition("://")[2].rpartition("@")[2].split("/")[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def place(service: ServiceProcess, count: int, *, fail: bool = False) -> list[str]:
    ids = []
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        for _ in range(count):
            response = client.post("/orders", params={"fail": "true"} if fail else {})
            if fail:
                assert response.status_code == 500, response.text
            else:
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
    return ids


async def rows(url: str, query: str) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


async def effect_counts(url: str) -> dict[str, int]:
    found = await rows(url, "SELECT event_id, count(*) AS n FROM effects GROUP BY event_id")
    return {row["event_id"]: row["n"] for row in found}


async def wait_for_effects(url: str, expected: set[str], within: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + within
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = await effect_counts(url)
        if expected <= set(counts):
            await asyncio.sleep(1.0)  # time for a wrong repeat to show up
            return await effect_counts(url)
        await asyncio.sleep(0.2)
    raise AssertionError(f"{len(expected - set(counts))} of {len(expected)} events never handled")


async def test_killed_between_commit_and_relay(
    broker: BrokerUnderTest, messaging: MessagingSettings, database_url: str
) -> None:
    with TcpProxy(*broker_address(broker)) as proxy:
        env = environment(broker, messaging, database_url, broker_url=proxied_url(broker, proxy))
        with running(env) as first:
            proxy.cut()  # the broker is gone: committed events stay in the outbox
            committed = await asyncio.to_thread(place, first, 20)
            await asyncio.to_thread(place, first, 5, fail=True)
            unsent = await rows(database_url, "SELECT event_id FROM outbox WHERE sent_at IS NULL")
            assert {str(row["event_id"]) for row in unsent} == set(committed)
            first.stop(signal.SIGKILL)
    with running(environment(broker, messaging, database_url)):
        counts = await wait_for_effects(database_url, set(committed))
    assert counts == dict.fromkeys(committed, 1)  # every committed one, once; no rolled-back


async def test_killed_in_the_middle_of_relaying(
    broker: BrokerUnderTest, messaging: MessagingSettings, database_url: str
) -> None:
    with TcpProxy(*broker_address(broker)) as proxy:
        env = environment(
            broker,
            messaging,
            database_url,
            broker_url=proxied_url(broker, proxy),
            OUTBOX_BATCH_SIZE="5",
        )
        with running(env) as first:
            proxy.cut()  # a backlog builds up
            committed = await asyncio.to_thread(place, first, 150)
            await asyncio.to_thread(place, first, 5, fail=True)
            proxy.restore()  # the relay works through it: kill it half way
            sent = 0
            deadline = time.monotonic() + 30
            while sent == 0 and time.monotonic() < deadline:
                sent = (await rows(database_url, SENT))[0]["n"]
            first.stop(signal.SIGKILL)
    assert 0 < (await rows(database_url, SENT))[0]["n"] < len(committed)
    with running(environment(broker, messaging, database_url)):
        counts = await wait_for_effects(database_url, set(committed))
    assert counts == dict.fromkeys(committed, 1)


SENT = "SELECT count(*) AS n FROM outbox WHERE sent_at IS NOT NULL"


async def test_consumer_killed_mid_batch_repeats_no_effect(
    any_broker: BrokerUnderTest, any_messaging: MessagingSettings, database_url: str
) -> None:
    broker, messaging = any_broker, any_messaging
    events = [Event.create(NewEvent(type="t", data={"n": n})) for n in range(80)]
    env = environment(broker, messaging, database_url, HANDLER_DELAY_SECONDS="0.05")
    with running(env) as first:
        for event in events:
            await broker.publish_raw(
                messaging,
                event.to_bytes(),
                headers={"content-type": "application/json", **broker_id_header(broker, event)},
            )
        await eventually(
            lambda: handled_at_least(database_url, 20), within=30, what="some events handled"
        )
        first.stop(signal.SIGKILL)  # with a batch of handlers in flight
    handled_before = len(await effect_counts(database_url))
    assert handled_before < len(events), "the kill came after every event was handled"
    with running(env):
        counts = await wait_for_effects(database_url, {str(event.id) for event in events})
    assert counts == {str(event.id): 1 for event in events}


async def test_sigterm_closes_the_pool_after_in_flight_work(
    broker: BrokerUnderTest, messaging: MessagingSettings, database_url: str
) -> None:
    env = environment(broker, messaging, database_url, LOG_LEVEL="INFO")
    service = start_service(PACKAGE, env, ready_path="/health/ready", timeout=30)
    try:
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            in_flight = asyncio.create_task(
                asyncio.to_thread(client.get, "/slow", params={"seconds": "1.5"})
            )
            await asyncio.sleep(0.5)
            exit_code = await asyncio.to_thread(service.stop)  # SIGTERM, then wait for the exit
            response = await in_flight
        assert response.status_code == 200, response.text
        assert exit_code == 0
    finally:
        service.stop(signal.SIGKILL)
    events = [line["event"] for line in service.logs()]
    served = next(i for i, line in enumerate(service.logs()) if line.get("url_path") == "/slow")
    assert served < events.index("database pool closed")


async def handled_at_least(url: str, count: int) -> bool:
    return len(await effect_counts(url)) >= count


def broker_id_header(broker: BrokerUnderTest, event: Event) -> dict[str, str]:
    # The id the consumer deduplicates on, as the service's own publisher sets it.
    return {"message_id": str(event.id)} if broker.system == "nats" else {}
