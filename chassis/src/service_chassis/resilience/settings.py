"""Settings of one downstream: where it is and how hard to try, from `<NAME>_*` variables.

Every downstream reads the same knobs under its own prefix: the example downstream reads
`DOWNSTREAM_URL`, `DOWNSTREAM_TIMEOUT_SECONDS`, ...; one named `payments` would read
`PAYMENTS_URL`, `PAYMENTS_TIMEOUT_SECONDS`, ... (`DownstreamSettings.from_env("payments")`).
A value that makes no sense (a window that is not a positive number of seconds, a rate above 1)
stops the service at start with a message that names the variable.
"""

from __future__ import annotations

import re
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..configuration import from_validation
from .breaker import BreakerConfig
from .retry import RetryBudget, RetryPolicy

# The breaker's window is kept in this many buckets, whatever its length: outcomes age out in
# steps of 1/30 of the window (one second for the default 30 s window).
BREAKER_WINDOW_BUCKETS = 30
RETRY_BUDGET_WINDOW_SECONDS = 10.0
URL_SCHEMES = frozenset({"http", "https", "consul", "consul+https"})


def env_prefix(name: str) -> str:
    """`payments` -> `PAYMENTS_`, `order-service` -> `ORDER_SERVICE_`."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").upper() + "_"


class DownstreamSettings(BaseSettings):
    """The knobs of one downstream. Defaults suit an internal HTTP service answering in
    milliseconds; see the README's "Resilience" section for when to change them."""

    model_config = SettingsConfigDict(
        env_prefix="DOWNSTREAM_", extra="ignore", frozen=True, allow_inf_nan=False
    )

    url: str | None = None

    # Each attempt (httpx): limits per operation, not for the whole attempt.
    connect_timeout: float = Field(default=1.0, gt=0)
    read_timeout: float = Field(default=2.0, gt=0)
    write_timeout: float = Field(default=2.0, gt=0)
    pool_timeout: float = Field(default=1.0, gt=0)
    max_connections: int = Field(default=100, ge=1)

    # The whole call, every attempt and backoff included; an incoming request's own deadline
    # (X-Request-Timeout) shortens it, never lengthens it.
    timeout_seconds: float = Field(default=5.0, gt=0)

    # Retries: idempotent requests only, on connection errors, timeouts, 429, 502, 503, 504.
    retry_max_attempts: int = Field(default=3, ge=1)  # the first attempt included; 1: no retry
    retry_base_delay_seconds: float = Field(default=0.1, ge=0)  # backoff ceiling, doubling
    retry_max_delay_seconds: float = Field(default=1.0, ge=0)
    retry_after_max_seconds: float = Field(default=10.0, ge=0)  # a longer Retry-After: give up
    # Retries may add this fraction to the requests of the last 10 s, plus a small reserve.
    retry_budget_ratio: float = Field(default=0.2, ge=0)
    retry_budget_min_per_second: float = Field(default=3.0, ge=0)

    # Circuit breaker: opens when, over the window, at least `minimum_calls` calls were made and
    # the failure rate (or the slow-call rate) reached its threshold.
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_window_seconds: float = Field(default=30.0, gt=0)
    breaker_minimum_calls: int = Field(default=20, ge=1)
    breaker_slow_call_seconds: float = Field(default=1.0, gt=0)
    breaker_slow_call_rate: float = Field(default=1.0, gt=0, le=1)
    breaker_open_seconds: float = Field(default=15.0, gt=0)
    breaker_half_open_calls: int = Field(default=3, ge=1)

    # Bulkhead: calls in flight at once; one more waits this long for a slot, then fails fast.
    bulkhead_max_concurrent: int = Field(default=20, ge=1)
    bulkhead_max_wait_seconds: float = Field(default=0.1, ge=0)

    @classmethod
    def from_env(cls, name: str, **overrides: Any) -> Self:
        """The settings of downstream `name`, from `<NAME>_*` variables; `overrides` win."""
        # `_env_prefix` is pydantic-settings' own init argument; type checkers see only fields.
        try:
            return cls(**{"_env_prefix": env_prefix(name), **overrides})
        except ValidationError as error:
            raise from_validation(error, cls, env_prefix(name)) from None

    @field_validator("url")
    @classmethod
    def _a_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
            raise ValueError(
                "not a URL the client can call: use http://host:port/path, https://... "
                "or consul://service-name/path"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Build the primitives' configs once, so a bad combination fails at start.
        self.breaker_config()
        self.retry_policy()
        return self

    def breaker_config(self) -> BreakerConfig:
        return BreakerConfig(
            window=self.breaker_window_seconds,
            bucket_width=self.breaker_window_seconds / BREAKER_WINDOW_BUCKETS,
            minimum_calls=self.breaker_minimum_calls,
            failure_rate_threshold=self.breaker_failure_rate,
            slow_call_duration=self.breaker_slow_call_seconds,
            slow_call_rate_threshold=self.breaker_slow_call_rate,
            open_duration=self.breaker_open_seconds,
            half_open_max_calls=self.breaker_half_open_calls,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_delay=self.retry_base_delay_seconds,
            max_delay=self.retry_max_delay_seconds,
            max_retry_after=self.retry_after_max_seconds,
        )

    def retry_budget(self) -> RetryBudget:
        """A new, empty budget (it keeps state: one per downstream)."""
        return RetryBudget(
            ratio=self.retry_budget_ratio,
            min_retries_per_second=self.retry_budget_min_per_second,
            window=RETRY_BUDGET_WINDOW_SECONDS,
        )
