"""The service's settings: the chassis's (``ServiceSettings``: HTTP, logs, ``OTEL_*``, broker,
discovery, shutdown) with this service's defaults, plus any of its own.

Every field reads the unprefixed environment variable of the same name (``HTTP_PORT``,
``LOG_LEVEL``, ...). Downstreams read theirs (``<NAME>_URL``, ``<NAME>_TIMEOUT_SECONDS``, ...)
when they are declared; messaging reads ``BROKER_URL`` and ``MESSAGING_*``, the database
``DATABASE_URL`` and ``DATABASE_*``.
"""

from __future__ import annotations

from pydantic import Field
from service_chassis import ServiceSettings
from service_chassis.settings import Broker, DatabaseSystem, Discovery

from . import BROKER, DATABASE, DEFAULT_HTTP_PORT, DISCOVERY, OWNER, SERVICE_NAME, __version__


class Settings(ServiceSettings):
    service_name: str = Field(default=SERVICE_NAME, validation_alias="OTEL_SERVICE_NAME")
    service_version: str = Field(default=__version__, validation_alias="SERVICE_VERSION")
    owner: str = Field(default=OWNER, validation_alias="SERVICE_OWNER")
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=1, le=65535)
    messaging_broker: Broker = Field(default=BROKER, validation_alias="MESSAGING_BROKER")
    service_discovery: Discovery = Field(default=DISCOVERY, validation_alias="SERVICE_DISCOVERY")
    database_system: DatabaseSystem = Field(default=DATABASE, validation_alias="DATABASE_SYSTEM")
