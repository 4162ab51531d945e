"""Settings the service cannot start with: one plain line per bad variable, exit 78."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from service_chassis.configuration import EX_CONFIG, ConfigurationError
from service_chassis.messaging import check_broker_url

from .conftest import PACKAGE


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PACKAGE],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "MESSAGING_ENABLED": "false", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "lines"),
    [
        (
            {"HTTP_PORT": "abc", "LOG_LEVEL": "loud"},
            [
                "HTTP_PORT='abc': Input should be a valid integer",
                "LOG_LEVEL='LOUD': Input should be",
            ],
        ),
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, ["OTEL_TRACES_EXPORTER='jaeger' is not supported"]),
        ({"DOWNSTREAM_BREAKER_FAILURE_RATE": "2"}, ["DOWNSTREAM_BREAKER_FAILURE_RATE='2': Input"]),
        ({"DOWNSTREAM_URL": "inventory"}, ["DOWNSTREAM_URL='inventory': Value error, not a URL"]),
        (
            {"MESSAGING_ENABLED": "true", "MESSAGING_BROKER": "rabbitmq", "BROKER_URL": "garbage"},
            ["BROKER_URL='garbage': not a rabbitmq address; use amqp://"],
        ),
    ],
    ids=["two-at-once", "exporter", "knob", "url", "broker-url"],
)
def test_bad_settings_stop_the_start_with_a_line_each_and_exit_78(
    env: dict[str, str], lines: list[str]
) -> None:
    result = start(env)
    assert result.returncode == EX_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("The service cannot start with these settings:")
    for line in lines:
        assert line in result.stderr, result.stderr
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize(
    ("broker", "url"),
    [
        ("nats", "nats://nats:4222"),
        ("nats", "tls://user:pw@nats.internal:4222"),
        ("rabbitmq", "amqp://guest:guest@rabbit:5672/"),
        ("rabbitmq", "amqps://rabbit/vhost"),
        ("kafka", "kafka-1:9092,kafka-2:9092"),
    ],
)
def test_broker_urls_of_the_right_form_pass(broker: str, url: str) -> None:
    check_broker_url(broker, url)


@pytest.mark.parametrize(
    ("broker", "url"),
    [
        ("nats", "amqp://rabbit:5672/"),
        ("rabbitmq", "garbage"),
        ("rabbitmq", "nats://nats:4222"),
        ("kafka", "kafka://broker:9092"),
        ("kafka", "broker"),
    ],
)
def test_broker_urls_of_another_form_are_refused(broker: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match=f"not a {broker} address"):
        check_broker_url(broker, url)
