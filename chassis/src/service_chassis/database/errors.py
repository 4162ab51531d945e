"""How a database failure reaches the caller: as the same problems as a failed downstream.

A statement cancelled by the request's deadline (``statement_timeout``, SQLSTATE 57014) or a
connection not had in time answers the 504 problem of a timed-out downstream; a database that
cannot be reached answers a 503 problem with ``Retry-After``. Both are ``DownstreamError``
with a transient ``outcome``, so the reliable consumer treats them as it treats a downstream's
(a handler failing with ``DatabaseUnavailable`` waits for the database instead of spending its
attempts).
"""

from __future__ import annotations

from ..resilience.errors import DownstreamBusy, DownstreamError, DownstreamTimeout

DATABASE = "database"
QUERY_CANCELED = "57014"
# SQLSTATE classes and codes that mean the server or the connection is gone, not the query:
# 08 connection exception, 57P01-57P03 shutdown and start-up, 53300 too many connections.
UNAVAILABLE_CODES = ("57P01", "57P02", "57P03", "53300")


class DatabaseTimeout(DownstreamTimeout):
    """The statement or the wait for a connection outlasted the time allowed."""

    def __init__(self, *, deadline: bool = True) -> None:
        super().__init__(downstream=DATABASE, attempts=1, deadline=deadline)


class DatabaseUnavailable(DownstreamBusy):
    """The database cannot be reached: nothing was committed, retrying later may work.

    A ``DownstreamBusy`` so the consumer waits for the database, as for a full bulkhead."""

    type = "urn:problem:database-unavailable"
    title = "Database unavailable"
    outcome = "unavailable"

    def __init__(self) -> None:
        DownstreamError.__init__(
            self,
            "The database cannot be reached; try again shortly.",
            downstream=DATABASE,
            attempts=1,
            headers={"Retry-After": "1"},
        )
