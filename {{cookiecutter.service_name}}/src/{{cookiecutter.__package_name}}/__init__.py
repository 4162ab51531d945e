"""{{ cookiecutter.description }}"""

SERVICE_NAME = "{{ cookiecutter.service_name }}"
OWNER = "{{ cookiecutter.owner }}"
DEFAULT_HTTP_PORT = {{ cookiecutter.http_port }}
__version__ = "{{ cookiecutter.version }}"
