from __future__ import annotations

from pydantic import Field

from service_chassis import ServiceSettings
from service_chassis.settings import Broker, Discovery

from . import DEFAULT_HTTP_PORT, OWNER, SERVICE_NAME, __version__


class Settings(ServiceSettings):
    service_name: str = Field(default=SERVICE_NAME, validation_alias="OTEL_SERVICE_NAME")
    service_version: str = Field(default=__version__, validation_alias="SERVICE_VERSION")
    owner: str = Field(default=OWNER, validation_alias="SERVICE_OWNER")
    http_port: int = Field(default=DEFAULT_HTTP_PORT, ge=1, le=65535)
    messaging_broker: Broker = Field(default="nats", validation_alias="MESSAGING_BROKER")
    service_discovery: Discovery = Field(default="none", validation_alias="SERVICE_DISCOVERY")
