"""``DATABASE_URL``: parsed once, handed to asyncpg, shown only without its password."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg")
EXAMPLE = "postgresql://user:password@host:5432/database"


@dataclass(frozen=True)
class DatabaseURL:
    url: URL  # always postgresql+asyncpg

    @classmethod
    def parse(cls, text: str) -> DatabaseURL:
        try:
            url = make_url(text.strip())
        except ArgumentError:
            raise ValueError(f"not a database URL; use {EXAMPLE}") from None
        if url.drivername not in SCHEMES or not url.host or not url.database:
            # The value itself is never repeated: it may hold a password.
            raise ValueError(f"not a PostgreSQL URL with a host and a database; use {EXAMPLE}")
        return cls(url.set(drivername="postgresql+asyncpg"))

    @property
    def host(self) -> str:
        return self.url.host or ""

    @property
    def port(self) -> int:
        return self.url.port or 5432

    @property
    def database(self) -> str:
        return self.url.database or ""

    def redacted(self) -> str:
        """For logs: user, host, port and database, never the password."""
        return self.url.render_as_string(hide_password=True).replace("+asyncpg", "")

    def __repr__(self) -> str:
        return f"DatabaseURL({self.redacted()!r})"
