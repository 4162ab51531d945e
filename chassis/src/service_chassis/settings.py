"""The settings every service has, from unprefixed environment variables and ``OTEL_*``.

A service subclasses ``ServiceSettings`` to give its own defaults (name, owner, port, broker,
discovery) and to add settings of its own. The OpenTelemetry SDK reads the standard ``OTEL_*``
variables itself; the few it does not act on directly (exporter choice, protocol, SDK switch)
are mirrored here so the chassis can decide how to set tracing up.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Broker = Literal["nats", "rabbitmq", "kafka", "none"]
Discovery = Literal["consul", "kubernetes", "none"]
DatabaseSystem = Literal["postgres", "none"]


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    service_name: str = Field(default="service", validation_alias="OTEL_SERVICE_NAME")
    service_version: str = Field(default="0.0.0", validation_alias="SERVICE_VERSION")
    owner: str = Field(default="unowned", validation_alias="SERVICE_OWNER")
    environment: str = Field(default="development", validation_alias="DEPLOYMENT_ENVIRONMENT")

    http_host: str = "0.0.0.0"  # a container must listen beyond loopback
    http_port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # json: one object per line (the contract); console: for a person; auto: console when
    # stdout is a terminal, JSON otherwise (so containers keep JSON).
    log_format: Literal["json", "console", "auto"] = "auto"
    access_log: bool = True

    # Requests whose body is larger are refused with 413 before the body is read.
    max_request_body_bytes: int = Field(default=1_048_576, ge=0)
    # What one connection may hold on to (connections.py): the request line and headers
    # (431 beyond), the time to send them (408 beyond), a stall in the body, and idleness
    # between requests on a kept-alive connection.
    http_max_header_bytes: int = Field(default=65_536, ge=1024)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    http_keep_alive_seconds: float = Field(default=5.0, gt=0)

    # Which broker the service talks to and how it is discovered; a bake sets the defaults.
    messaging_broker: Broker = Field(default="none", validation_alias="MESSAGING_BROKER")
    service_discovery: Discovery = Field(default="none", validation_alias="SERVICE_DISCOVERY")
    # The service's own database (DATABASE_URL, DATABASE_*): database/ in the chassis.
    database_system: DatabaseSystem = Field(default="none", validation_alias="DATABASE_SYSTEM")

    # Tracing: see the OpenTelemetry SDK's environment variable specification.
    otel_sdk_disabled: bool = False
    otel_traces_exporter: str = "otlp"
    otel_exporter_otlp_protocol: Literal["grpc", "http/protobuf"] = "http/protobuf"
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    # FastAPI's spans for dependencies, endpoint and serialisation: useful when profiling a
    # route, about as costly as the request span itself, so off unless asked for.
    trace_operation_spans: bool = False
    # The server span's recommended attributes server.address, server.port, client.address,
    # network.protocol.version and user_agent.original: a few microseconds per request.
    trace_connection_attributes: bool = False
    # Baggage keys (comma-separated) copied onto every span and log line, e.g. "tenant,plan".
    baggage_attributes: str = ""

    # Graceful shutdown: how long in-flight work may take after SIGTERM.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # Between the stop signal and closing the listener: readiness already fails, requests are
    # still served, so load balancers and registries notice before connections are refused.
    shutdown_delay_seconds: float = Field(default=0.0, ge=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        # LOG_LEVEL=info means what LOG_LEVEL=INFO does.
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def traces_exporters(self) -> tuple[str, ...]:
        names = (name.strip().lower() for name in self.otel_traces_exporter.split(","))
        return tuple(name for name in names if name)

    @property
    def baggage_keys(self) -> tuple[str, ...]:
        return tuple(key for key in (k.strip() for k in self.baggage_attributes.split(",")) if key)

    @property
    def otlp_endpoint_configured(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)
