"""The example API and subscriber: replace them with the service's own.

The app installs every module here that has an ``install(service)`` function. Delete this
package (and ``tests/example/``) to start from a clean slate: the service still starts, with
its health, metrics and problem details, and no routes of its own.
"""
