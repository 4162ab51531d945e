from __future__ import annotations

import pytest
from pydantic import ValidationError

from service_chassis.configuration import ConfigurationError
from service_chassis.resilience.settings import DownstreamSettings, env_prefix


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for prefix in ("DOWNSTREAM_", "PAYMENTS_"):
        for name in DownstreamSettings.model_fields:
            monkeypatch.delenv(prefix + name.upper(), raising=False)


def test_defaults_make_working_primitives() -> None:
    settings = DownstreamSettings()
    assert settings.url is None
    assert settings.timeout_seconds == 5.0
    breaker = settings.breaker_config()
    assert breaker.window == 30.0
    assert breaker.bucket_width == 1.0
    assert breaker.minimum_calls == 20
    assert breaker.failure_rate_threshold == 0.5
    assert settings.retry_policy().max_attempts == 3
    assert settings.bulkhead_max_concurrent == 20


def test_the_example_downstream_reads_downstream_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOWNSTREAM_URL", "http://inventory:8000/stock")
    monkeypatch.setenv("DOWNSTREAM_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("DOWNSTREAM_RETRY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("DOWNSTREAM_BREAKER_FAILURE_RATE", "0.25")
    settings = DownstreamSettings.from_env("downstream")
    assert settings.url == "http://inventory:8000/stock"
    assert settings.timeout_seconds == 2.5
    assert settings.retry_policy().max_attempts == 1
    assert settings.breaker_config().failure_rate_threshold == 0.25


def test_a_second_downstream_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOWNSTREAM_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("PAYMENTS_URL", "http://payments:8000")
    monkeypatch.setenv("PAYMENTS_BULKHEAD_MAX_CONCURRENT", "5")
    payments = DownstreamSettings.from_env("payments", breaker_open_seconds=3.0)
    assert payments.url == "http://payments:8000"
    assert payments.bulkhead_max_concurrent == 5
    assert payments.timeout_seconds == 5.0  # not the example's
    assert payments.breaker_open_seconds == 3.0  # an explicit override wins


def test_env_prefix_of_a_name() -> None:
    assert env_prefix("payments") == "PAYMENTS_"
    assert env_prefix("order-service") == "ORDER_SERVICE_"


def test_any_positive_window_works() -> None:
    config = DownstreamSettings(breaker_window_seconds=2.5).breaker_config()
    assert config.window == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DOWNSTREAM_BREAKER_FAILURE_RATE", "1.5"),
        ("DOWNSTREAM_TIMEOUT_SECONDS", "0"),
        ("DOWNSTREAM_TIMEOUT_SECONDS", "inf"),
        ("DOWNSTREAM_RETRY_MAX_ATTEMPTS", "0"),
        ("DOWNSTREAM_BULKHEAD_MAX_CONCURRENT", "-1"),
    ],
)
def test_nonsense_fails_at_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=variable.removeprefix("DOWNSTREAM_").lower()):
        DownstreamSettings()
    # Through a declaration, the message names the variable itself, with its value.
    with pytest.raises(ConfigurationError, match=f"{variable}={value!r}"):
        DownstreamSettings.from_env("downstream")


@pytest.mark.parametrize("url", ["garbage", "inventory:8000", "ftp://files/x", "http://"])
def test_a_url_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("PAYMENTS_URL", url)
    with pytest.raises(ConfigurationError, match=r"PAYMENTS_URL=.*not a URL the client can call"):
        DownstreamSettings.from_env("payments")
