"""``python -m {{ cookiecutter.__package_name }}``: JSON logs, tracing, uvicorn, graceful stop."""

from service_chassis import run

from .app import create_app
from .settings import Settings


def main() -> None:
    run(create_app, Settings)


if __name__ == "__main__":
    main()
