"""Messaging settings from unprefixed environment variables.

Destinations are named after the service (``<service>.events``) so that several services can
share one broker without colliding: ``MessagingSettings.for_service`` fills in every name left
unset. The broker URL has no default here: each broker module knows its own local default
(``DEFAULT_URL`` in ``nats.py``, ``rabbitmq.py``, ``kafka.py``).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..configuration import from_validation


class MessagingSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    # Off only where a broker cannot be had (unit tests of the HTTP side); never in production.
    enabled: bool = Field(default=True, validation_alias="MESSAGING_ENABLED")
    broker_url: str | None = Field(default=None, validation_alias="BROKER_URL")

    # Subject (NATS), queue (RabbitMQ) or topic (Kafka) the example publishes to and consumes.
    # Empty: named after the service by ``for_service``.
    destination: str = Field(default="", validation_alias="MESSAGING_DESTINATION")
    dead_letter_destination: str = Field(
        default="", validation_alias="MESSAGING_DEAD_LETTER_DESTINATION"
    )
    # Who shares the work: the NATS durable consumer, the RabbitMQ queue
    # (<destination>.<group>, bound to the destination's exchange), the Kafka consumer group.
    consumer_group: str = Field(default="", validation_alias="MESSAGING_CONSUMER_GROUP")

    # Handler attempts per delivery before the message goes to the dead letters.
    max_attempts: int = Field(default=5, ge=1, le=100, validation_alias="MESSAGING_MAX_ATTEMPTS")
    retry_backoff_seconds: float = Field(
        default=0.5, ge=0, validation_alias="MESSAGING_RETRY_BACKOFF_SECONDS"
    )
    retry_backoff_max_seconds: float = Field(
        default=10.0, ge=0, validation_alias="MESSAGING_RETRY_BACKOFF_MAX_SECONDS"
    )
    # Messages handled at once (NATS workers, RabbitMQ prefetch). Kafka handles one message
    # at a time per partition assignment, so that commits stay in order.
    concurrency: int = Field(default=8, ge=1, le=1000, validation_alias="MESSAGING_CONCURRENCY")
    # On shutdown: how long in-flight handlers may run before they are cancelled (unacked).
    drain_seconds: float = Field(default=10.0, ge=0, validation_alias="MESSAGING_DRAIN_SECONDS")

    # The largest event body published; a larger one is refused with 413. The default stays
    # under NATS's 1 MiB max_payload (headers included) and Kafka's 1 MB message.max.bytes.
    max_message_bytes: int = Field(
        default=900_000, ge=1, validation_alias="MESSAGING_MAX_MESSAGE_BYTES"
    )
    publish_timeout_seconds: float = Field(
        default=5.0, gt=0, validation_alias="MESSAGING_PUBLISH_TIMEOUT_SECONDS"
    )
    # At start, how long to wait for the broker before serving (not ready) while reconnecting.
    connect_wait_seconds: float = Field(
        default=5.0, ge=0, validation_alias="MESSAGING_CONNECT_WAIT_SECONDS"
    )
    reconnect_seconds: float = Field(
        default=1.0, gt=0, validation_alias="MESSAGING_RECONNECT_SECONDS"
    )
    # NATS only: how long JetStream waits for an ack before it redelivers a message.
    ack_wait_seconds: float = Field(
        default=30.0, gt=0, validation_alias="MESSAGING_ACK_WAIT_SECONDS"
    )
    # Message ids the in-memory idempotency store remembers (oldest forgotten first).
    idempotency_capacity: int = Field(
        default=100_000, ge=1, validation_alias="MESSAGING_IDEMPOTENCY_CAPACITY"
    )

    @classmethod
    def for_service(cls, service_name: str, **overrides: Any) -> Self:
        """The settings from the environment (``overrides`` win), with every destination and
        group left unset named after ``service_name``."""
        try:
            settings = cls(**overrides)
        except ValidationError as error:
            raise from_validation(error, cls) from None
        defaults = {
            "destination": f"{service_name}.events",
            "dead_letter_destination": f"{service_name}.events.dlq",
            "consumer_group": service_name,
        }
        unset = {name: value for name, value in defaults.items() if not getattr(settings, name)}
        return settings.model_copy(update=unset)
