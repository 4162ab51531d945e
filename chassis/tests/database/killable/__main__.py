from service_chassis import ServiceSettings, run

from .app import create_app

if __name__ == "__main__":
    run(create_app, ServiceSettings)
