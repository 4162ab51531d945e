"""A service with a database and a broker, run as a real process and killed with SIGKILL by
tests/database/test_kill.py: ``POST /orders`` writes a row and its event in one transaction
(``?fail=true`` rolls both back); the consumer records each event's effect in the inbox's
transaction, after ``HANDLER_DELAY_SECONDS`` (so a kill finds handlers mid-batch)."""

from sqlalchemy import BigInteger, Column, Identity, MetaData, String, Table

EFFECTS = MetaData()
effects = Table(
    "effects",
    EFFECTS,
    Column("id", BigInteger, Identity(), primary_key=True),
    # No unique key on purpose: a repeated effect shows as a second row.
    Column("event_id", String(64), nullable=False),
)
orders = Table(
    "orders",
    EFFECTS,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", String(64), nullable=False),
)
