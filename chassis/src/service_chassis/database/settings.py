"""Database settings from unprefixed environment variables (``DATABASE_*``, ``OUTBOX_*``).

``DATABASE_URL`` is a secret: it is kept as a ``SecretStr`` so no repr, log line or error
message shows the password. Any PostgreSQL URL form is accepted (``postgres://``,
``postgresql://``, ``postgresql+asyncpg://``); the chassis talks to it through asyncpg.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..configuration import ConfigurationError, from_validation
from .url import DatabaseURL

LOCAL_URL = "postgresql://postgres:postgres@127.0.0.1:5432/postgres"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    url: SecretStr = Field(default=SecretStr(LOCAL_URL), validation_alias="DATABASE_URL")
    # Connections kept open, and how many more may be opened under load; a request waits at
    # most DATABASE_POOL_TIMEOUT_SECONDS (and never past its deadline) for one.
    pool_size: int = Field(default=5, ge=1, le=1000, validation_alias="DATABASE_POOL_SIZE")
    max_overflow: int = Field(default=5, ge=0, le=1000, validation_alias="DATABASE_MAX_OVERFLOW")
    pool_timeout_seconds: float = Field(
        default=5.0, gt=0, validation_alias="DATABASE_POOL_TIMEOUT_SECONDS"
    )
    # Connections older than this are replaced: a failover or a proxy's idle cut never
    # surprises a request with a dead connection.
    pool_recycle_seconds: float = Field(
        default=1800.0, gt=0, validation_alias="DATABASE_POOL_RECYCLE_SECONDS"
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, validation_alias="DATABASE_CONNECT_TIMEOUT_SECONDS"
    )
    # Every transaction's statement_timeout; a request's remaining deadline shortens it.
    statement_timeout_seconds: float = Field(
        default=10.0, gt=0, validation_alias="DATABASE_STATEMENT_TIMEOUT_SECONDS"
    )
    # Outbox relay: how often it looks for events other replicas or a crash left behind (a
    # commit in this process wakes it at once), how many it publishes per transaction.
    outbox_poll_seconds: float = Field(default=1.0, gt=0, validation_alias="OUTBOX_POLL_SECONDS")
    outbox_batch_size: int = Field(
        default=100, ge=1, le=10_000, validation_alias="OUTBOX_BATCH_SIZE"
    )
    # Replicas relay different batches at once, so across replicas an event can overtake an
    # earlier one. True: one replica relays at a time (the others stand by), in strict order.
    outbox_strict_order: bool = Field(default=False, validation_alias="OUTBOX_STRICT_ORDER")
    # Sent outbox rows are kept this long (for inspection), then deleted.
    outbox_retention_seconds: float = Field(
        default=3600.0, ge=0, validation_alias="OUTBOX_RETENTION_SECONDS"
    )
    # Handled event ids are remembered this long: longer than any broker redelivers.
    inbox_retention_seconds: float = Field(
        default=7 * 86400.0, gt=0, validation_alias="INBOX_RETENTION_SECONDS"
    )

    @model_validator(mode="after")
    def _postgres_url(self) -> Self:
        # After the fields, not on the field: a field's error repeats the value it was given,
        # and this one may hold a password.
        try:
            DatabaseURL.parse(self.url.get_secret_value())
        except ValueError as error:
            raise ValueError(f"DATABASE_URL: {error}") from None
        return self

    @property
    def database_url(self) -> DatabaseURL:
        return DatabaseURL.parse(self.url.get_secret_value())

    @classmethod
    def for_url(cls, url: str, **overrides: Any) -> Self:
        """Settings for ``url``, the rest from the environment and ``overrides`` (tests)."""
        return cls(url=SecretStr(url), **overrides)

    @classmethod
    def from_environment(cls) -> Self:
        try:
            return cls()
        except ValidationError as error:
            raise from_validation(error, cls) from None


__all__ = ["LOCAL_URL", "ConfigurationError", "DatabaseSettings"]
