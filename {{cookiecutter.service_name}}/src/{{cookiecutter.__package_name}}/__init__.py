"""{{ cookiecutter.description }}"""

from service_chassis.settings import Broker, DatabaseSystem, Discovery

SERVICE_NAME = "{{ cookiecutter.service_name }}"
OWNER = "{{ cookiecutter.owner }}"
DEFAULT_HTTP_PORT = {{ cookiecutter.http_port }}
# The broker and the discovery this service was baked with: defaults of MESSAGING_BROKER and
# SERVICE_DISCOVERY, which may also turn them off ("none") where a deployment has neither.
BROKER: Broker = "{{ cookiecutter.messaging }}"
DISCOVERY: Discovery = "{{ cookiecutter.discovery }}"
# The database this service was baked with: the default of DATABASE_SYSTEM.
DATABASE: DatabaseSystem = "{{ cookiecutter.database }}"
__version__ = "{{ cookiecutter.version }}"
