"""{{ cookiecutter.description }}"""

from service_chassis.settings import Broker, Discovery

SERVICE_NAME = "{{ cookiecutter.service_name }}"
OWNER = "{{ cookiecutter.owner }}"
DEFAULT_HTTP_PORT = {{ cookiecutter.http_port }}
# The broker and the discovery this service was baked with: defaults of MESSAGING_BROKER and
# SERVICE_DISCOVERY, which may also turn them off ("none") where a deployment has neither.
BROKER: Broker = "{{ cookiecutter.messaging }}"
DISCOVERY: Discovery = "{{ cookiecutter.discovery }}"
__version__ = "{{ cookiecutter.version }}"
