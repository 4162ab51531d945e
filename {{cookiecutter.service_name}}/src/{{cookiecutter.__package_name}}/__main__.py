"""``python -m {{ cookiecutter.__package_name }}``: JSON logs, tracing, uvicorn, graceful stop.

``python -m {{ cookiecutter.__package_name }} migrate`` brings the database to the latest
migration (``--downgrade <revision>``, ``--new "what changed"``: see README.md, "Database").
"""

import sys

from service_chassis import migrate, run

from .app import create_app
from .settings import Settings


def main() -> None:
    if sys.argv[1:2] == ["migrate"]:
        sys.exit(migrate.main(__package__ or "{{ cookiecutter.__package_name }}", sys.argv[2:]))
    run(create_app, Settings)


if __name__ == "__main__":
    main()
