from service_chassis import run

from .app import create_app
from .settings import Settings

if __name__ == "__main__":
    run(create_app, Settings)
