"""DATABASE_URL: any PostgreSQL form accepted, a wrong one refused with what to type, and the
password never shown."""

from __future__ import annotations

import pytest

from service_chassis.configuration import ConfigurationError
from service_chassis.database import DatabaseSettings, DatabaseURL
from service_chassis.migrate import NO_DATABASE
from service_chassis.migrate import main as migrate

SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://app:{SECRET}@db:5432/orders",
        f"postgresql://app:{SECRET}@db/orders",
        f"postgresql+asyncpg://app:{SECRET}@db:6432/orders",
    ],
)
def test_postgres_urls_are_taken_and_shown_without_the_password(url: str) -> None:
    settings = DatabaseSettings.for_url(url)
    parsed = settings.database_url
    assert parsed.url.drivername == "postgresql+asyncpg"
    assert (parsed.host, parsed.database) == ("db", "orders")
    for shown in (repr(settings), str(settings), parsed.redacted(), repr(parsed)):
        assert SECRET not in shown


@pytest.mark.parametrize(
    "url", [f"mysql://app:{SECRET}@db/orders", "postgresql://db", "not a url at all"]
)
def test_a_wrong_url_says_what_to_type_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigurationError) as refused:
        DatabaseSettings.from_environment()
    message = str(refused.value)
    assert "DATABASE_URL" in message
    assert "postgresql://user:password@host:5432/database" in message
    assert SECRET not in message


def test_migrate_in_a_service_without_a_database_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrate("tests.sample", []) == NO_DATABASE
    assert "has no database" in capsys.readouterr().err


def test_the_url_type_is_exported() -> None:
    assert DatabaseURL.parse("postgresql://a@b/c").port == 5432
