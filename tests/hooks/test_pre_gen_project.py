from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import TEMPLATE

GOOD: dict[str, Any] = {
    "service_name": "order-service",
    "description": "Keeps track of customers' orders.",
    "owner": "payments-team",
    "version": "0.1.0",
    "http_port": 8000,
    "messaging": "nats",
    "discovery": "kubernetes",
    "python_version": "3.12",
}


def errors_for(pre_gen: ModuleType, **changes: Any) -> list[str]:
    errors: list[str] = pre_gen.validate({**GOOD, **changes})
    return errors


def test_good_answers_pass(pre_gen: ModuleType) -> None:
    assert errors_for(pre_gen) == []


def test_defaults_in_cookiecutter_json_pass(pre_gen: ModuleType) -> None:
    defaults = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    answers = {k: (v[0] if isinstance(v, list) else v) for k, v in defaults.items()}
    assert pre_gen.validate(answers) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Orders", "'orders'"),
        ("order_service", "'order-service'"),
        ("9lives", "'svc-9lives'"),
        ("orders-", "not ending with '-'"),
        ("a" * 64, "1-63"),
        ("", "not a DNS label"),
    ],
)
def test_service_name_must_be_a_dns_label(pre_gen: ModuleType, name: str, expected: str) -> None:
    (error,) = errors_for(pre_gen, service_name=name)
    assert f"service_name {name!r}" in error
    assert expected in error


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("class", "Python keyword"),
        ("match", "Python keyword"),
        ("json", "standard library"),
        ("asyncio", "standard library"),
        ("fastapi", "dependency"),
        ("structlog", "dependency"),
        ("tests", "dependency"),
    ],
)
def test_package_names_that_shadow_are_refused(pre_gen: ModuleType, name: str, why: str) -> None:
    (error,) = errors_for(pre_gen, service_name=name)
    assert why in error
    assert f"'{name}-service'" in error  # what to type instead


@pytest.mark.parametrize(
    "attempt",
    [
        "{{ cookiecutter.__class__ }}",
        "{% for x in y %}",
        "{# hidden #}",
        'say "hi"',
        "a; rm -rf /",
        "../../etc/passwd",
        "back\\slash",
        "$(whoami)",
        "line\nbreak",
    ],
)
def test_injection_attempts_in_description_are_refused(pre_gen: ModuleType, attempt: str) -> None:
    (error,) = errors_for(pre_gen, description=attempt)
    assert "description" in error
    assert "type plain text without them" in error


@pytest.mark.parametrize("owner", ["Payments Team", "team/a", "{{x}}", "-team"])
def test_owner_must_be_a_slug(pre_gen: ModuleType, owner: str) -> None:
    (error,) = errors_for(pre_gen, owner=owner)
    assert f"owner {owner!r}" in error


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (80, "out of range"),
        (70000, "out of range"),
        ("http", "not a number"),
        (9090, "Prometheus"),
        (4222, "NATS"),
    ],
)
def test_port_must_be_usable(pre_gen: ModuleType, port: object, expected: str) -> None:
    (error,) = errors_for(pre_gen, http_port=port)
    assert expected in error
    assert "such as 8000" in error


@pytest.mark.parametrize(
    ("field", "value"),
    [("messaging", "kafkaa"), ("discovery", "eureka"), ("python_version", "2.7")],
)
def test_choices_are_enforced(pre_gen: ModuleType, field: str, value: str) -> None:
    (error,) = errors_for(pre_gen, **{field: value})
    assert f"{field} {value!r} is not one of" in error


def test_bad_version_is_refused(pre_gen: ModuleType) -> None:
    (error,) = errors_for(pre_gen, version="v1")
    assert "'0.1.0'" in error


def test_main_reports_every_error_and_fails(
    pre_gen: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    code = pre_gen.main(json.dumps({**GOOD, "service_name": "Bad Name", "http_port": 1}))
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("ERROR:") == 2
    assert "Nothing was generated" in err


def test_main_accepts_good_answers(pre_gen: ModuleType) -> None:
    assert pre_gen.main(json.dumps(GOOD)) == 0


def test_unrendered_hook_holds_the_jinja_placeholder(pre_gen: ModuleType) -> None:
    assert "cookiecutter | tojson" in pre_gen.ANSWERS_JSON
