"""A service built on the chassis the way a baked one is: the chassis's tests run against it."""

SERVICE_NAME = "sample"
OWNER = "platform-team"
DEFAULT_HTTP_PORT = 8000
__version__ = "0.1.0"
