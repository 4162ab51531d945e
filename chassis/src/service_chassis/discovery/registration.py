"""Keep this instance registered with the local Consul agent while it runs.

Registration runs in the background: a Consul agent that is down, slow or refusing never
stops the service from starting or serving. The instance registers with an HTTP check on
``/health/ready`` (Consul starts a new check as critical, so the instance receives traffic
only once the service reports ready), retries with backoff while the agent is unusable,
registers again if the agent forgets it, and deregisters as soon as shutdown begins, before
in-flight requests drain, so Consul stops handing it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import structlog

from ..health import HealthRegistry
from ..outages import OutageLog
from ..settings import ServiceSettings
from .consul import ConsulAgent, ConsulError, ConsulUnreachable
from .settings import DiscoverySettings

log = structlog.get_logger(__name__)

READY_PATH = "/health/ready"
METRICS_PATH = "/metrics"
# How often the background task looks for the start of shutdown: readiness fails on the
# stop signal, and deregistration should follow within a fraction of a second.
SHUTDOWN_POLL_SECONDS = 0.05


def service_definition(settings: ServiceSettings, discovery: DiscoverySettings) -> dict[str, Any]:
    """The body of ``PUT /v1/agent/service/register`` for this instance."""
    address = discovery.advertised_address(settings.http_host)
    port = discovery.advertised_port(settings.http_port)
    host = f"[{address}]" if ":" in address else address
    return {
        "ID": discovery.instance_id(settings.service_name, settings.http_port),
        "Name": settings.service_name,
        "Tags": list(discovery.service_tags),
        "Address": address,
        "Port": port,
        # Prometheus' consul_sd_configs exposes these as __meta_consul_service_metadata_*.
        "Meta": {
            "version": settings.service_version,
            "owner": settings.owner,
            "environment": settings.environment,
            "metrics_path": METRICS_PATH,
        },
        "Check": {
            "Name": f"HTTP GET {READY_PATH}",
            "HTTP": f"http://{host}:{port}{READY_PATH}",
            "Method": "GET",
            "Interval": discovery.consul_check_interval,
            "Timeout": discovery.consul_check_timeout,
            "DeregisterCriticalServiceAfter": discovery.consul_deregister_after,
        },
    }


def backoff(failures: int, *, initial: float, maximum: float, jitter: float) -> float:
    """Exponential and capped, with half of it jittered so instances do not retry in step."""
    cap = min(maximum, initial * 2.0 ** (failures - 1))
    return cap / 2 + cap / 2 * jitter


class Registration:
    """A lifespan component; ``note`` feeds the ``consul:registration`` readiness entry."""

    name = "consul-registration"

    def __init__(
        self,
        agent: ConsulAgent,
        definition: dict[str, Any],
        *,
        health: HealthRegistry,
        settings: DiscoverySettings,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._agent = agent
        self._definition = definition
        self._health = health
        self._settings = settings
        self._jitter = jitter
        self.service_id: str = definition["ID"]
        self.registered = False
        self.note = f"not registered yet with Consul at {agent.url}"
        self._maybe_registered = False  # a register call reached the agent
        self._deregistered = False
        self._closing = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog("consul call")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            # The task sees the flag within a poll, deregisters and ends; a call hanging on
            # a slow agent is cut off by its own timeout, and this wait covers the rest.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(
                    self._task, timeout=self._settings.consul_timeout_seconds + 1
                )
        await self.deregister()
        await self._agent.aclose()

    async def check(self) -> str:
        # Informational: a registry outage must not take a working instance out of every
        # other load balancer, so this entry passes and says what is going on.
        return self.note

    async def deregister(self) -> None:
        async with self._lock:
            if self._deregistered or not self._maybe_registered:
                return
            self.registered = False
            try:
                await self._agent.deregister(self.service_id)
            except ConsulError as error:
                # Not tried again: Consul's check turns critical once the port closes, and the
                # instance is removed after DeregisterCriticalServiceAfter.
                self.note = f"could not deregister: {error}"
                log.warning("consul deregistration failed", error=str(error))
            else:
                self.note = f"deregistered {self.service_id} from Consul at {self._agent.url}"
                log.info("deregistered from consul", service_id=self.service_id)
            self._deregistered = True

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                if not self.registered:
                    await self._register()
                    self.registered = True
                    self.note = f"registered {self.service_id} with Consul at {self._agent.url}"
                    self._outage.recovered()
                    log.info("registered with consul", **self._log_fields())
                elif not await self._agent.is_registered(self.service_id):
                    # The agent restarted with no state, or removed the instance after its
                    # check stayed critical: register again.
                    self.registered = False
                    log.warning("consul lost the registration", service_id=self.service_id)
                    continue
                failures = 0
                self._outage.recovered()
                wait = self._settings.consul_resync_seconds
            except ConsulError as error:
                failures += 1
                wait = self._backoff(failures)
                self.note = (
                    f"{'registered' if self.registered else 'not registered'}; last call "
                    f"failed: {error}; next try in {wait:.1f} s"
                )
                self._outage.failed(error=str(error), retry_in=round(wait, 2))
            if await self._shutdown_within(wait):
                break
        await self.deregister()

    async def _register(self) -> None:
        try:
            await self._agent.register(self._definition)
        except ConsulUnreachable:
            raise
        except ConsulError:
            # It may have registered all the same (an answer lost to the timeout, say).
            self._maybe_registered = True
            raise
        self._maybe_registered = True

    @property
    def _stopping(self) -> bool:
        return self._closing or self._health.shutting_down

    def _backoff(self, failures: int) -> float:
        return backoff(
            failures,
            initial=self._settings.consul_retry_initial_seconds,
            maximum=self._settings.consul_retry_max_seconds,
            jitter=self._jitter(),
        )

    async def _shutdown_within(self, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(remaining, SHUTDOWN_POLL_SECONDS))
        return True

    def _log_fields(self) -> dict[str, Any]:
        return {
            "service_id": self.service_id,
            "address": self._definition["Address"],
            "port": self._definition["Port"],
            "consul": self._agent.url,
        }
