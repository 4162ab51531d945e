"""Consul settings, from Consul's own variables where it has them and unprefixed ones otherwise."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Consul's duration syntax for check fields, e.g. "10s", "1m", "500ms".
DURATION = re.compile(r"^\d+(ms|s|m|h)$")
UNSPECIFIED = frozenset({"", "0.0.0.0", "::", "[::]"})  # wildcard listen addresses


class DiscoverySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # The local agent, as Consul's CLI reads it: "host:port" or a full http(s) URL.
    consul_http_addr: str = "127.0.0.1:8500"
    consul_http_token: SecretStr | None = None
    consul_http_ssl: bool = False  # scheme for an address given without one
    consul_timeout_seconds: float = Field(default=2.0, gt=0)

    # What this instance advertises. The address must be one other hosts can reach: the
    # default is HTTP_HOST when that is a concrete address, else this host's own address.
    service_id: str | None = None
    service_address: str | None = None
    service_port: int | None = Field(default=None, ge=1, le=65535)
    service_tags: Annotated[tuple[str, ...], NoDecode] = ("http",)

    # The HTTP check Consul runs against /health/ready, in Consul's duration syntax.
    consul_check_interval: str = "10s"
    consul_check_timeout: str = "2s"
    # Consul removes an instance whose check stays critical this long (1m at the least). Longer
    # than the ServiceDown alert's `for` (1m), so a crashed instance is a failing scrape target
    # long enough for the alert to fire before it disappears from discovery.
    consul_deregister_after: str = "10m"

    # Registration retries with exponential backoff and jitter while the agent is unusable,
    # then checks every resync period that the agent still knows the instance.
    consul_retry_initial_seconds: float = Field(default=0.5, gt=0)
    consul_retry_max_seconds: float = Field(default=30.0, gt=0)
    consul_resync_seconds: float = Field(default=30.0, gt=0)

    # Resolution of consul:// URLs: how long a list of passing instances is reused, and how
    # long an instance that refused a connection is passed over.
    consul_cache_ttl_seconds: float = Field(default=5.0, ge=0)
    consul_failed_instance_seconds: float = Field(default=10.0, ge=0)

    @field_validator("service_tags", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(tag.strip() for tag in value.split(",") if tag.strip())
        return value

    @field_validator("consul_check_interval", "consul_check_timeout", "consul_deregister_after")
    @classmethod
    def _consul_duration(cls, value: str) -> str:
        if not DURATION.match(value):
            raise ValueError(f"{value!r} is not a Consul duration such as '10s' or '1m'")
        return value

    @field_validator("service_address")
    @classmethod
    def _concrete_address(cls, value: str | None) -> str | None:
        if value is not None and value.strip() in UNSPECIFIED:
            raise ValueError(
                f"SERVICE_ADDRESS {value!r} is not an address other hosts can reach: "
                "set this instance's IP address or DNS name"
            )
        return value

    @property
    def consul_url(self) -> str:
        address = self.consul_http_addr.strip().rstrip("/")
        if "://" in address:
            return address
        return f"{'https' if self.consul_http_ssl else 'http'}://{address}"

    def advertised_address(self, http_host: str) -> str:
        """The address Consul hands out for this instance: never 0.0.0.0."""
        if self.service_address:
            return self.service_address.strip()
        if http_host.strip() not in UNSPECIFIED:
            return http_host.strip()
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError:
            # A host whose own name does not resolve (some laptops): only a local agent
            # could reach it anyway.
            return "127.0.0.1"
        if ipaddress.ip_address(address).is_unspecified:
            raise ValueError("this host's name resolves to 0.0.0.0: set SERVICE_ADDRESS")
        return address

    def advertised_port(self, http_port: int) -> int:
        return self.service_port or http_port

    def instance_id(self, service_name: str, http_port: int) -> str:
        """Unique per instance and stable across its restarts, so a restart replaces itself."""
        if self.service_id:
            return self.service_id
        return f"{service_name}-{socket.gethostname()}-{self.advertised_port(http_port)}"
